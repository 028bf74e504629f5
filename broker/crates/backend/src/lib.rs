//! Secret backends: one [`SecretBackend`] trait, one module per store.
//!
//! A backend knows nothing of HTTP or policy decisions, but it cannot be
//! called without a [`Grant`]: the only way to read or list a secret is to
//! hold the capability the policy engine issued for exactly that resource.
//! The path read is derived from the grant, never passed beside it.
//!
//! Secret values live in [`SecretData`], whose `Debug` is redacted and whose
//! buffer is zeroised on drop. Errors never carry a value.

pub mod aws;
pub mod builtin;
pub mod guard;
pub mod vault;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::{Mutation, WriteRule};
use leash_policy::{Capability, Grant};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

pub use aws::{AwsBackend, AwsSettings};
pub use builtin::BuiltinBackend;
pub use guard::{GuardSettings, GuardStats, Guarded};
pub use vault::{VaultBackend, VaultSettings};

/// Why a backend call failed. Display texts are safe to show to a caller.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The grant does not cover this backend or operation.
    #[error("grant does not cover this request")]
    GrantMismatch,
    /// The store or key source behind the backend is unreachable.
    #[error("secret store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value could not be opened (wrong key, tampered row).
    #[error("secret store returned an unreadable value")]
    Corrupt(String),
    /// The request was malformed for this backend.
    #[error("{0}")]
    BadRequest(String),
    /// The mount does not accept writes through Leash.
    #[error("this mount is read-only through Leash")]
    ReadOnly,
    /// The upstream store refused Leash's own credentials, or answered
    /// something Leash cannot use. Never shown to a caller in detail.
    #[error("the secret store rejected the request")]
    Upstream(String),
}

/// A secret's key/value map as JSON text, zeroised on drop (every clone
/// too), never printed.
#[derive(Clone)]
pub struct SecretData(Zeroizing<String>);

impl SecretData {
    /// Wraps JSON text, which must be a JSON object.
    pub fn from_json(text: Zeroizing<String>) -> Result<Self, BackendError> {
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') {
            return Err(BackendError::Corrupt(
                "secret data is not a JSON object".into(),
            ));
        }
        serde_json::from_str::<&RawValue>(&text)
            .map_err(|_| BackendError::Corrupt("secret data is not valid JSON".into()))?;
        Ok(Self(text))
    }

    /// From a map (used for seeding and tests).
    pub fn from_map(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, BackendError> {
        let text = serde_json::to_string(map)
            .map_err(|_| BackendError::BadRequest("secret data must be a JSON object".into()))?;
        Ok(Self(Zeroizing::new(text)))
    }

    /// The JSON text, for the one place that writes it into a response.
    pub fn expose_json(&self) -> &str {
        &self.0
    }

    /// The value as a raw JSON fragment, for serialising into a response
    /// without re-parsing.
    pub fn as_raw(&self) -> Result<&RawValue, BackendError> {
        serde_json::from_str(&self.0)
            .map_err(|_| BackendError::Corrupt("secret data is not valid JSON".into()))
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretData(<redacted>)")
    }
}

/// One version of a secret.
#[derive(Debug, Clone)]
pub struct SecretVersion {
    /// The value; `None` when the version was deleted or destroyed.
    pub data: Option<SecretData>,
    /// The version number (1, 2, …).
    pub version: u64,
    /// When it was written.
    pub created_time: DateTime<Utc>,
    /// When it was soft-deleted.
    pub deletion_time: Option<DateTime<Utc>>,
    /// Whether it was destroyed.
    pub destroyed: bool,
}

/// The history entry of one version (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version number.
    pub version: u64,
    /// When it was written.
    pub created_time: DateTime<Utc>,
    /// When it was soft-deleted.
    pub deletion_time: Option<DateTime<Utc>>,
    /// Whether it was destroyed.
    pub destroyed: bool,
}

/// A store of secrets behind one mount.
#[async_trait]
pub trait SecretBackend: Send + Sync + 'static {
    /// A short name of the kind of store, e.g. `builtin`.
    fn kind(&self) -> &'static str;

    /// The mount this backend serves.
    fn mount(&self) -> &str;

    /// The KV API version the mount speaks to Vault clients (1 or 2).
    fn kv_version(&self) -> u8 {
        2
    }

    /// Reads the secret the grant names (latest version, or `version`).
    /// `Ok(None)` when it does not exist.
    async fn read(
        &self,
        grant: &Grant,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError>;

    /// The version history of the secret the grant names (read capability),
    /// oldest first; `Ok(None)` when it does not exist.
    async fn metadata(&self, grant: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError>;

    /// Prepares a new version of the secret the grant names (a `create`,
    /// `update` or `patch` grant). A store that lives in Leash's own
    /// database returns the write as a [`Mutation`], committed in the same
    /// transaction as the request's audit event.
    async fn prepare_write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Mutation, BackendError>;

    /// Prepares the soft delete of the latest version (a `delete` grant).
    fn prepare_delete(&self, grant: &Grant, now: DateTime<Utc>) -> Result<Mutation, BackendError>;

    /// Lists the folder the grant names: direct children, sub-folders
    /// ending in `/`. Empty when there is nothing.
    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError>;
}

/// The path inside `mount` that `grant` covers, when the grant is for that
/// mount and one of `caps`; an error otherwise.
pub fn granted_path<'g>(
    grant: &'g Grant,
    mount: &str,
    caps: &[Capability],
) -> Result<&'g str, BackendError> {
    if !caps.contains(&grant.capability()) {
        return Err(BackendError::GrantMismatch);
    }
    let full = grant.resource().as_str();
    full.strip_prefix(mount)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(BackendError::GrantMismatch)
}
