//! AWS Secrets Manager behind a Vault-style KV v2 mount, read-only unless
//! the operator made it `writable`.
//!
//! This module owns the mapping between the two models and every call to
//! AWS: the secret named by a grant is `prefix` + the path under the mount;
//! a JSON-object `SecretString` is the data map, any other string becomes
//! `{"value": …}` and a `SecretBinary` becomes `{"value_base64": …}`.
//! Secrets Manager versions (ids with staging labels) are shown as numbers
//! `1..=n` in creation order up to the `AWSCURRENT` version, which is `n`;
//! versions created after it (a rotation's `AWSPENDING`) stay hidden until
//! they are promoted. Each exposed version carries its staging labels
//! (`AWSCURRENT`, `AWSPREVIOUS`, custom stages). Numbers are positional: when AWS drops a deprecated
//! version, the numbers of the ones after it move down. Listing uses
//! `ListSecrets` with a name-prefix filter, re-checked exactly (AWS matches
//! loosely), and caches each folder's children briefly because `ListSecrets`
//! is rate-limited upstream. Credentials come from the standard AWS chain
//! (environment, profile or an operator-supplied credentials file, web
//! identity, ECS, IMDS).
//!
//! Writes (writable mounts only) store the data map as a JSON
//! `SecretString`: `PutSecretValue` on an existing secret, `CreateSecret`
//! for a new one. Check-and-set, create-only and update-only are checked
//! against the version list right before the call: AWS has no conditional
//! put, so this is not atomic against a writer that bypasses Leash or a
//! concurrent write (documented). A delete is refused: AWS deletes whole
//! secrets (with a recovery window), not versions.
//!
//! Must never happen: a write reaching AWS from a mount that is not
//! writable, or a delete reaching AWS at all; a secret value outside [`SecretData`] once it leaves the SDK
//! (in an error, a log line or a `Debug` output); an AWS error message or
//! body copied into a [`BackendError`]; a call without a bound in time
//! (each method as a whole is bounded by `timeout_secs`); a missing or
//! unreachable store read as anything but `Ok(None)` (it does not exist) or
//! an error (fail closed). The SDK's own HTTP buffers are outside Leash's
//! control and are not zeroised.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use leash_domain::{Mutation, NotApplied, WriteRule};
use leash_policy::{Capability, Grant};
use zeroize::Zeroizing;

use crate::{
    BackendError, SecretBackend, SecretData, SecretVersion, VersionInfo, WRITE_CAPS, WriteOp,
    WritePath, Written, granted_path,
};

/// The `Upstream` text for refused credentials or permissions.
const PERMISSION_DENIED: &str = "permission denied upstream";
/// Longest secret name AWS accepts.
const MAX_NAME_LEN: usize = 512;
/// Longest accepted `timeout_secs`.
const MAX_TIMEOUT_SECS: u64 = 300;
/// Longest accepted `list_cache_secs`.
const MAX_LIST_CACHE_SECS: u64 = 3600;
/// Most folders whose children are cached at once.
const LIST_CACHE_MAX_FOLDERS: usize = 1024;
/// Page size for `ListSecrets` and `ListSecretVersionIds` (the AWS maximum).
const PAGE_SIZE: i32 = 100;
/// Most `ListSecrets` pages one listing reads (10 000 secrets).
const MAX_LIST_PAGES: usize = 100;
/// Most `ListSecretVersionIds` pages one secret's history reads.
const MAX_VERSION_PAGES: usize = 20;
/// Attempts per AWS call (the SDK retries throttling and transient errors
/// with jittered backoff); the whole method stays within `timeout_secs`.
const MAX_ATTEMPTS: u32 = 2;

fn secs10() -> u64 {
    10
}

fn secs30() -> u64 {
    30
}

/// Settings of an `aws` mount, from the operator's configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The AWS region, e.g. `eu-central-1`.
    pub region: String,
    /// An endpoint override (emulators, VPC endpoints); `http://` or
    /// `https://`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Prepended to the path under the mount to form the secret name
    /// (default none). Only characters AWS allows in names.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Bound on each backend call as a whole, in seconds (1–300).
    #[serde(default = "secs10")]
    pub timeout_secs: u64,
    /// How long a folder listing is cached, in seconds (0 disables; at most
    /// 3600). `ListSecrets` is rate-limited upstream.
    #[serde(default = "secs30")]
    pub list_cache_secs: u64,
    /// The profile the credential chain uses (default: `AWS_PROFILE`, then
    /// `default`).
    #[serde(default)]
    pub profile: Option<String>,
    /// A shared credentials file used instead of `~/.aws/credentials`
    /// (the default config file is still read). Must exist.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// A KV v2 mount backed by AWS Secrets Manager.
pub struct AwsBackend {
    mount: String,
    writable: bool,
    client: Client,
    prefix: String,
    timeout: Duration,
    list_ttl: Duration,
    list_cache: Mutex<ListCache>,
}

impl fmt::Debug for AwsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackend")
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("list_ttl", &self.list_ttl)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

fn bad(msg: &str) -> BackendError {
    BackendError::BadRequest(format!("aws mount settings: {msg}"))
}

/// Characters AWS allows in a secret name.
fn is_aws_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'=' | b'.' | b'@' | b'-')
}

fn is_aws_name(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && s.bytes().all(is_aws_name_byte)
}

impl AwsSettings {
    fn validate(&self) -> Result<(), BackendError> {
        let r = &self.region;
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("`region` must look like `eu-central-1`"));
        }
        if let Some(url) = &self.endpoint_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let ok = rest.is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.contains('@')
                    && rest.bytes().all(|b| b.is_ascii_graphic())
            });
            if !ok || url.len() > 2048 {
                return Err(bad(
                    "`endpoint_url` must be an http:// or https:// URL without credentials",
                ));
            }
        }
        if let Some(prefix) = &self.prefix
            && !is_aws_name(prefix)
        {
            return Err(bad(
                "`prefix` may only hold characters AWS allows in secret names \
                 (A-Z a-z 0-9 / _ + = . @ -) and be at most 512 bytes",
            ));
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(bad("`timeout_secs` must be between 1 and 300"));
        }
        if self.list_cache_secs > MAX_LIST_CACHE_SECS {
            return Err(bad("`list_cache_secs` must be at most 3600"));
        }
        if let Some(p) = &self.profile
            && (p.is_empty() || p.len() > 128 || !p.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(bad("`profile` must be a non-empty profile name"));
        }
        if let Some(f) = &self.credentials_file
            && !f.is_file()
        {
            return Err(bad("`credentials_file` does not name a readable file"));
        }
        Ok(())
    }
}

impl AwsBackend {
    /// A backend for `mount`. Credentials come from the standard chain
    /// (with `profile` and `credentials_file` applied); the endpoint
    /// override, if any, replaces the regional endpoint. Nothing is sent to
    /// AWS here, so the broker starts while AWS is unreachable and the mount
    /// answers `Unavailable` until it is reachable.
    pub async fn connect(mount: &str, settings: AwsSettings) -> Result<Self, BackendError> {
        settings.validate()?;
        let timeout = Duration::from_secs(settings.timeout_secs);
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
        Ok(Self {
            mount: mount.to_owned(),
            writable: false,
            client: Client::new(&sdk),
            prefix: settings.prefix.unwrap_or_default(),
            timeout,
            list_ttl: Duration::from_secs(settings.list_cache_secs),
            list_cache: Mutex::new(ListCache::default()),
        })
    }

    /// Lets workloads write through Leash (the operator's `writable =
    /// true`); read-only otherwise. Deletes are never taken.
    #[must_use]
    pub fn with_writes(mut self, writable: bool) -> Self {
        self.writable = writable;
        self
    }

    /// Writes `data` as the secret's new current version, under `rule`
    /// and `cas`, checked against the version list first (not atomic).
    async fn write_inner(
        &self,
        name: &str,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let exists = self.exists(name).await?;
        let current = if exists {
            self.versions(name).await?.map_or(0, |v| v.len())
        } else {
            0
        };
        let current = u64::try_from(current).unwrap_or(u64::MAX);
        if let Some(cas) = cas
            && cas != current
        {
            return Err(BackendError::NotApplied(NotApplied::CasMismatch));
        }
        match (rule, exists) {
            (WriteRule::CreateOnly, true) => {
                return Err(BackendError::NotApplied(NotApplied::AlreadyExists));
            }
            (WriteRule::UpdateOnly, false) => {
                return Err(BackendError::NotApplied(NotApplied::Missing));
            }
            _ => {}
        }
        // The SDK's request buffers hold a copy of the value; like its
        // response buffers, they are not zeroised.
        if exists {
            let r = self
                .client
                .put_secret_value()
                .secret_id(name)
                .secret_string(data.expose_json())
                .send()
                .await;
            if let Err(e) = r {
                return Err(
                    match classify("PutSecretValue", e, &["ResourceNotFoundException"]) {
                        Failure::Missing => BackendError::NotApplied(NotApplied::CasMismatch),
                        Failure::Error(e) => e,
                    },
                );
            }
        } else {
            let r = self
                .client
                .create_secret()
                .name(name)
                .secret_string(data.expose_json())
                .send()
                .await;
            if let Err(e) = r {
                return Err(
                    match classify("CreateSecret", e, &["ResourceExistsException"]) {
                        // Created meanwhile by someone else.
                        Failure::Missing => BackendError::NotApplied(NotApplied::CasMismatch),
                        Failure::Error(e) => e,
                    },
                );
            }
        }
        let versions = self.versions(name).await?.unwrap_or_default();
        let Some(last) = versions.last() else {
            return Err(BackendError::Upstream(
                "the written version is missing from the version list".into(),
            ));
        };
        Ok(Written {
            version: u64::try_from(versions.len()).unwrap_or(u64::MAX),
            created_time: last.created,
        })
    }

    /// The AWS secret name for a path under the mount, or `None` when the
    /// path is a folder or cannot be an AWS name (so no such secret exists).
    fn secret_name(&self, path: &str) -> Option<String> {
        if path.is_empty() || path.ends_with('/') {
            return None;
        }
        let name = format!("{}{path}", self.prefix);
        is_aws_name(&name).then_some(name)
    }

    /// Runs `fut` within the backend's timeout.
    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unavailable(op, "timed out"))?
    }

    /// Whether the secret exists and is not scheduled for deletion.
    async fn exists(&self, name: &str) -> Result<bool, BackendError> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(out.deleted_date.is_none()),
            Err(e) => match classify("DescribeSecret", e, &["ResourceNotFoundException"]) {
                Failure::Missing => Ok(false),
                Failure::Error(e) => Err(e),
            },
        }
    }

    /// The exposed versions of `name`, oldest first, the `AWSCURRENT` one
    /// last; `None` when the secret does not exist.
    async fn versions(&self, name: &str) -> Result<Option<Vec<AwsVersion>>, BackendError> {
        let mut all: Vec<AwsVersion> = Vec::new();
        let mut token: Option<String> = None;
        for page in 0.. {
            if page == MAX_VERSION_PAGES {
                return Err(BackendError::Upstream(
                    "the secret has too many versions to list".into(),
                ));
            }
            let out = match self
                .client
                .list_secret_version_ids()
                .secret_id(name)
                .include_deprecated(true)
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    return match classify("ListSecretVersionIds", e, &["ResourceNotFoundException"])
                    {
                        Failure::Missing => Ok(None),
                        Failure::Error(e) => Err(e),
                    };
                }
            };
            for v in out.versions.unwrap_or_default() {
                let Some(id) = v.version_id else { continue };
                let stages = v.version_stages.unwrap_or_default();
                let current = stages.iter().any(|s| s == "AWSCURRENT");
                all.push(AwsVersion {
                    id,
                    created: to_chrono(v.created_date.as_ref()),
                    current,
                    stages,
                });
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(Some(order_versions(all)))
    }

    /// `GetSecretValue` for the current version, or for `version_id`.
    async fn get_value(
        &self,
        name: &str,
        version_id: Option<&str>,
    ) -> Result<Option<GetSecretValueOutput>, BackendError> {
        let req = self
            .client
            .get_secret_value()
            .secret_id(name)
            .set_version_id(version_id.map(str::to_owned));
        match req.send().await {
            Ok(out) => Ok(Some(out)),
            // InvalidRequestException: the secret is scheduled for deletion.
            Err(e) => match classify(
                "GetSecretValue",
                e,
                &["ResourceNotFoundException", "InvalidRequestException"],
            ) {
                Failure::Missing => Ok(None),
                Failure::Error(e) => Err(e),
            },
        }
    }

    async fn read_inner(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        let (out, number, created) = match version {
            None => {
                let Some(out) = self.get_value(name, None).await? else {
                    return Ok(None);
                };
                let Some(versions) = self.versions(name).await? else {
                    return Ok(None);
                };
                let id = out.version_id.as_deref().unwrap_or_default();
                let Some((i, v)) = versions.iter().enumerate().find(|(_, v)| v.id == id) else {
                    return Err(BackendError::Upstream(
                        "the current version is missing from the version list".into(),
                    ));
                };
                (out, i + 1, v.created)
            }
            Some(n) => {
                if !self.exists(name).await? {
                    return Ok(None);
                }
                let Some(versions) = self.versions(name).await? else {
                    return Ok(None);
                };
                let Some(v) = usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| versions.get(i))
                else {
                    return Ok(None);
                };
                let Some(out) = self.get_value(name, Some(&v.id)).await? else {
                    return Ok(None);
                };
                (out, usize::try_from(n).unwrap_or(usize::MAX), v.created)
            }
        };
        Ok(Some(SecretVersion {
            data: Some(into_data(out)?),
            version: u64::try_from(number).unwrap_or(u64::MAX),
            created_time: created,
            deletion_time: None,
            destroyed: false,
        }))
    }

    async fn metadata_inner(&self, name: &str) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        if !self.exists(name).await? {
            return Ok(None);
        }
        let Some(versions) = self.versions(name).await? else {
            return Ok(None);
        };
        if versions.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            versions
                .iter()
                .enumerate()
                .map(|(i, v)| VersionInfo {
                    version: u64::try_from(i + 1).unwrap_or(u64::MAX),
                    created_time: v.created,
                    deletion_time: None,
                    destroyed: false,
                    stages: v.stages.clone(),
                })
                .collect(),
        ))
    }

    /// The direct children of the folder whose full name prefix is `full`.
    async fn list_children(&self, full: &str) -> Result<Vec<String>, BackendError> {
        let mut children = BTreeSet::new();
        let mut token: Option<String> = None;
        for page in 0.. {
            if page == MAX_LIST_PAGES {
                return Err(BackendError::Upstream(
                    "too many secrets under this folder to list".into(),
                ));
            }
            let mut req = self
                .client
                .list_secrets()
                .max_results(PAGE_SIZE)
                .set_next_token(token.take());
            if !full.is_empty() {
                req = req.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .values(full)
                        .build(),
                );
            }
            let out = req
                .send()
                .await
                .map_err(|e| match classify("ListSecrets", e, &[]) {
                    Failure::Missing => BackendError::Upstream("unexpected answer".into()),
                    Failure::Error(e) => e,
                })?;
            for entry in out.secret_list.unwrap_or_default() {
                if let Some(child) = entry.name.as_deref().and_then(|n| direct_child(full, n)) {
                    children.insert(child.to_owned());
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(children.into_iter().collect())
    }
}

/// The direct child of folder `full` that secret `name` lies in: a leaf
/// name, or `sub/` for a deeper one. `None` when `name` is not under `full`
/// exactly (AWS's name filter is looser than a byte prefix) or the child
/// could not be a Leash path segment.
fn direct_child<'n>(full: &str, name: &'n str) -> Option<&'n str> {
    let rest = name.strip_prefix(full)?;
    let child = match rest.find('/') {
        Some(i) => rest.get(..=i)?,
        None => rest,
    };
    let segment = child.strip_suffix('/').unwrap_or(child);
    if segment.is_empty() || segment == "." || segment == ".." {
        return None;
    }
    Some(child)
}

/// One Secrets Manager version as Leash numbers it.
#[derive(Debug)]
struct AwsVersion {
    id: String,
    created: DateTime<Utc>,
    current: bool,
    /// Its staging labels.
    stages: Vec<String>,
}

/// Orders by creation date (stable, so AWS's order breaks ties) and drops
/// what comes after the `AWSCURRENT` version, which becomes the highest.
/// No current version: nothing is exposed.
fn order_versions(mut all: Vec<AwsVersion>) -> Vec<AwsVersion> {
    all.sort_by_key(|v| v.created);
    match all.iter().position(|v| v.current) {
        Some(i) => {
            all.truncate(i + 1);
            all
        }
        None => Vec::new(),
    }
}

fn to_chrono(d: Option<&aws_sdk_secretsmanager::primitives::DateTime>) -> DateTime<Utc> {
    d.and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The data map of a `GetSecretValue` answer; the value never leaves
/// zeroising buffers on the way.
fn into_data(out: GetSecretValueOutput) -> Result<SecretData, BackendError> {
    let GetSecretValueOutput {
        secret_string,
        secret_binary,
        ..
    } = out;
    if let Some(text) = secret_string {
        let text = Zeroizing::new(text);
        let object = text.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        if object {
            return SecretData::from_json(text);
        }
        return single_field("value", &text);
    }
    if let Some(blob) = secret_binary {
        let bytes = Zeroizing::new(blob.into_inner());
        let mut encoded = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
        base64::engine::general_purpose::STANDARD.encode_string(&*bytes, &mut encoded);
        return single_field("value_base64", &encoded);
    }
    Err(BackendError::Upstream(
        "the secret version has no value".into(),
    ))
}

/// `{"<key>": "<value>"}` built in a zeroising buffer large enough for the
/// worst-case escaping, so it never reallocates (and leaves no copy).
fn single_field(key: &str, value: &str) -> Result<SecretData, BackendError> {
    let cap = (key.len() + value.len())
        .saturating_mul(6)
        .saturating_add(8);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap));
    let corrupt = || BackendError::Corrupt("secret value could not be encoded".into());
    buf.push(b'{');
    serde_json::to_writer(&mut *buf, key).map_err(|_| corrupt())?;
    buf.push(b':');
    serde_json::to_writer(&mut *buf, value).map_err(|_| corrupt())?;
    buf.push(b'}');
    let text = String::from_utf8(std::mem::take(&mut *buf)).map_err(|e| {
        drop(Zeroizing::new(e.into_bytes()));
        corrupt()
    })?;
    SecretData::from_json(Zeroizing::new(text))
}

/// The cause behind an `Unavailable`: which call and what went wrong, in
/// Leash's words (never an AWS message or body).
#[derive(Debug)]
struct AwsFault {
    op: &'static str,
    what: String,
}

impl fmt::Display for AwsFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AWS {}: {}", self.op, self.what)
    }
}

impl std::error::Error for AwsFault {}

fn unavailable(op: &'static str, what: impl Into<String>) -> BackendError {
    BackendError::Unavailable(Box::new(AwsFault {
        op,
        what: what.into(),
    }))
}

/// An AWS error code reduced to a short, log-safe token.
fn safe_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        .take(64)
        .collect()
}

enum Failure {
    /// The secret does not exist (or is scheduled for deletion).
    Missing,
    Error(BackendError),
}

/// Codes that mean Leash's own credentials or permissions were refused.
const DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "NotAuthorized",
    "AuthFailure",
    "UnauthorizedOperation",
    "KMSAccessDeniedException",
];

/// Codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServiceError",
    "InternalServiceErrorException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

fn credentials_failed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<CredentialsError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Sorts an SDK error into missing, unavailable (retry later) or upstream
/// refusal. Only the operation name, an HTTP status and a sanitised error
/// code are kept.
fn classify<E>(op: &'static str, err: SdkError<E>, missing: &[&str]) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if credentials_failed(&err) {
        return Failure::Error(BackendError::Upstream(PERMISSION_DENIED.into()));
    }
    let e = match &err {
        SdkError::TimeoutError(_) => unavailable(op, "timed out"),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                unavailable(op, "timed out")
            } else if d.is_io() {
                unavailable(op, "connection failed")
            } else {
                unavailable(op, "request could not be sent")
            }
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            let status = ctx.raw().status().as_u16();
            if missing.contains(&code) {
                return Failure::Missing;
            }
            if DENIED_CODES.contains(&code) {
                BackendError::Upstream(PERMISSION_DENIED.into())
            } else if TRANSIENT_CODES.contains(&code) || status == 429 || status >= 500 {
                unavailable(op, format!("HTTP {status} {}", safe_code(code)))
            } else if status == 401 || status == 403 {
                BackendError::Upstream(PERMISSION_DENIED.into())
            } else {
                BackendError::Upstream(format!(
                    "AWS {op} failed: HTTP {status} {}",
                    safe_code(code)
                ))
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            if status == 429 || status >= 500 {
                unavailable(op, format!("HTTP {status}"))
            } else {
                BackendError::Upstream(format!("AWS {op}: unreadable answer (HTTP {status})"))
            }
        }
        SdkError::ConstructionFailure(_) => {
            BackendError::Upstream(format!("AWS {op}: the request could not be built"))
        }
        _ => unavailable(op, "failed"),
    };
    Failure::Error(e)
}

/// Children of recently listed folders, bounded in number; the oldest
/// entry is evicted first.
#[derive(Default)]
struct ListCache {
    entries: HashMap<String, CachedList>,
    seq: u64,
}

struct CachedList {
    at: Instant,
    seq: u64,
    children: Arc<[String]>,
}

impl ListCache {
    fn get(&self, key: &str, ttl: Duration) -> Option<Vec<String>> {
        let hit = self.entries.get(key)?;
        (hit.at.elapsed() < ttl).then(|| hit.children.to_vec())
    }

    fn put(&mut self, key: String, children: &[String], ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.entries.retain(|_, e| e.at.elapsed() < ttl);
        while self.entries.len() >= LIST_CACHE_MAX_FOLDERS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
        self.seq = self.seq.wrapping_add(1);
        self.entries.insert(
            key,
            CachedList {
                at: Instant::now(),
                seq: self.seq,
                children: Arc::from(children),
            },
        );
    }
}

#[async_trait]
impl SecretBackend for AwsBackend {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn mount(&self) -> &str {
        &self.mount
    }

    fn kv_version(&self) -> u8 {
        2
    }

    async fn read(
        &self,
        grant: &Grant,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        let path = granted_path(grant, &self.mount, &[Capability::Read, Capability::Patch])?;
        // A patch reads before it writes; refuse before touching AWS.
        if grant.capability() == Capability::Patch && !self.writable {
            return Err(BackendError::ReadOnly);
        }
        let Some(name) = self.secret_name(path) else {
            return Ok(None);
        };
        self.bounded("read", self.read_inner(&name, version)).await
    }

    async fn metadata(&self, grant: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        let path = granted_path(grant, &self.mount, &[Capability::Read])?;
        let Some(name) = self.secret_name(path) else {
            return Ok(None);
        };
        self.bounded("metadata", self.metadata_inner(&name)).await
    }

    fn writes(&self, op: WriteOp) -> Result<WritePath, BackendError> {
        match (self.writable, op) {
            (false, _) => Err(BackendError::ReadOnly),
            (true, WriteOp::Write) => Ok(WritePath::Upstream),
            (true, WriteOp::Delete) => Err(BackendError::Unsupported(
                "deleting through Leash is not supported on an AWS Secrets Manager mount: \
                 AWS deletes a whole secret, not a version; delete it in AWS",
            )),
        }
    }

    async fn write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let path = granted_path(grant, &self.mount, WRITE_CAPS)?;
        if !self.writable {
            return Err(BackendError::ReadOnly);
        }
        let Some(name) = self.secret_name(path) else {
            return Err(BackendError::BadRequest(
                "invalid path: not a name AWS Secrets Manager accepts".into(),
            ));
        };
        let r = self
            .bounded("write", self.write_inner(&name, data, rule, cas))
            .await;
        // A new secret changes its folder's listing.
        self.list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .clear();
        r
    }

    async fn prepare_write(
        &self,
        grant: &Grant,
        _data: &SecretData,
        _rule: WriteRule,
        _cas: Option<u64>,
        _now: DateTime<Utc>,
    ) -> Result<Mutation, BackendError> {
        granted_path(grant, &self.mount, WRITE_CAPS)?;
        Err(BackendError::ReadOnly)
    }

    fn prepare_delete(&self, grant: &Grant, _now: DateTime<Utc>) -> Result<Mutation, BackendError> {
        granted_path(grant, &self.mount, &[Capability::Delete])?;
        Err(BackendError::ReadOnly)
    }

    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError> {
        // List resources are folders: `aws/` lists the mount's root.
        let folder = granted_path(grant, &self.mount, &[Capability::List])?;
        let mut full = format!("{}{folder}", self.prefix);
        if !folder.is_empty() && !full.ends_with('/') {
            full.push('/');
        }
        if !is_aws_name(&full) {
            return Ok(Vec::new());
        }
        let cached = self
            .list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&full, self.list_ttl);
        if let Some(children) = cached {
            return Ok(children);
        }
        let children = self.bounded("list", self.list_children(&full)).await?;
        self.list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(full, &children, self.list_ttl);
        Ok(children)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_children_are_exact() {
        assert_eq!(direct_child("prod/", "prod/db"), Some("db"));
        assert_eq!(direct_child("prod/", "prod/payments/db"), Some("payments/"));
        assert_eq!(direct_child("prod/", "Prod/db"), None);
        assert_eq!(direct_child("prod/", "prodX/db"), None);
        assert_eq!(direct_child("prod/", "prod/"), None);
        assert_eq!(direct_child("prod/", "prod//x"), None);
        assert_eq!(direct_child("prod/", "prod/../x"), None);
        assert_eq!(direct_child("", "top"), Some("top"));
    }

    #[test]
    fn versions_end_at_current() {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let v = |id: &str, s, current| AwsVersion {
            id: id.into(),
            created: t(s),
            current,
            stages: Vec::new(),
        };
        let ordered = order_versions(vec![
            v("pending", 30, false),
            v("cur", 20, true),
            v("old", 10, false),
            v("older-tie", 10, false),
        ]);
        let ids: Vec<&str> = ordered.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["old", "older-tie", "cur"]);
        assert!(order_versions(vec![v("x", 1, false)]).is_empty());
    }

    #[test]
    fn single_field_escapes() {
        let d = single_field("value", "a\"b\\c\u{1}é").unwrap();
        let back: serde_json::Value = serde_json::from_str(d.expose_json()).unwrap();
        assert_eq!(back["value"], "a\"b\\c\u{1}é");
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let mut c = ListCache::default();
        let ttl = Duration::from_secs(60);
        for i in 0..LIST_CACHE_MAX_FOLDERS + 10 {
            c.put(format!("f{i}/"), &[format!("x{i}")], ttl);
        }
        assert_eq!(c.entries.len(), LIST_CACHE_MAX_FOLDERS);
        assert!(c.get("f0/", ttl).is_none());
        assert_eq!(
            c.get(&format!("f{}/", LIST_CACHE_MAX_FOLDERS + 9), ttl),
            Some(vec![format!("x{}", LIST_CACHE_MAX_FOLDERS + 9)])
        );
        c.put("z/".into(), &[], Duration::ZERO);
        assert!(c.get("z/", Duration::ZERO).is_none());
    }
}
