//! The settings of an `aws` mount and their validation: region, endpoint
//! override, name prefix, time bound, listing cache and where the
//! credential chain looks (profile, credentials file).
//!
//! Must never happen: a secret in these settings (credentials come from the
//! standard AWS chain, never from this file); an endpoint accepted that
//! carries credentials or is not `http://` or `https://`; a prefix accepted
//! that AWS would not take in a secret name.

use std::path::PathBuf;

use crate::BackendError;

/// Longest secret name AWS accepts.
const MAX_NAME_LEN: usize = 512;
/// Longest accepted `timeout_secs`.
const MAX_TIMEOUT_SECS: u64 = 300;
/// Longest accepted `list_cache_secs`.
const MAX_LIST_CACHE_SECS: u64 = 3600;

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

fn bad(msg: &str) -> BackendError {
    BackendError::BadRequest(format!("aws mount settings: {msg}"))
}

/// Characters AWS allows in a secret name.
fn is_aws_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'=' | b'.' | b'@' | b'-')
}

pub(super) fn is_aws_name(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && s.bytes().all(is_aws_name_byte)
}

impl AwsSettings {
    pub(super) fn validate(&self) -> Result<(), BackendError> {
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
