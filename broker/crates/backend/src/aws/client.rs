//! The AWS SDK client of one mount and where its credentials come from:
//! the standard chain (environment, profile or an operator-supplied
//! credentials file, web identity, ECS, IMDS), over rustls with ring, with
//! every attempt and operation bounded by the mount's timeout and at most
//! `MAX_ATTEMPTS` attempts per call.
//!
//! Must never happen: a credential read from Leash's own configuration or
//! logged; an SDK call without a bound in time; anything sent to AWS while
//! the client is built (the broker starts while AWS is unreachable).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::fault::unavailable;
use super::settings::AwsSettings;
use crate::BackendError;

/// Attempts per AWS call (the SDK retries throttling and transient errors
/// with jittered backoff); the whole method stays within `timeout_secs`.
const MAX_ATTEMPTS: u32 = 2;

/// The Secrets Manager client `settings` describe, every call bounded by
/// `timeout`. Reads profile files only.
pub(super) async fn sdk_client(
    settings: &AwsSettings,
    timeout: Duration,
) -> Result<Client, BackendError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .http_client(http)
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(file) = &settings.credentials_file {
        loader = loader.profile_files(
            EnvConfigFiles::builder()
                .include_default_config_file(true)
                .with_file(EnvConfigFileKind::Credentials, file)
                .build(),
        );
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    // Loading reads profile files only; bounded all the same.
    let sdk = tokio::time::timeout(timeout, loader.load())
        .await
        .map_err(|_| unavailable("load configuration", "timed out"))?;
    Ok(Client::new(&sdk))
}
