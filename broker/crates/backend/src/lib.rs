//! Secret backends: one [`SecretBackend`] trait, one module per store, and
//! the registry of mount kinds ([`mount`]) that builds them from settings.
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
pub mod mount;
pub mod vault;

use std::any::Any;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::{Mutation, NotApplied, WriteRule};
use leash_policy::{Capability, Grant};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

pub use aws::{AwsBackend, AwsSettings};
pub use builtin::{BuiltinBackend, BuiltinSettings};
pub use guard::{GuardSettings, GuardStats, Guarded};
pub use mount::{
    BuildContext, BuildError, MountCommon, MountConfig, MountKind, MountKindName, MountRefusal,
};
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
    /// The mount takes writes, but not this operation (the text says why
    /// and is shown to the caller).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A write's condition failed in the store: check-and-set saw another
    /// version, a create-only write found the secret, an update-only write
    /// found none.
    #[error("the write did not apply: {}", .0.as_str())]
    NotApplied(NotApplied),
    /// The upstream store refused Leash's own credentials, or answered
    /// something Leash cannot use. Never shown to a caller in detail.
    #[error("the secret store rejected the request")]
    Upstream(String),
}

/// Which change a request asks of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// A new version (write, or merge patch).
    Write,
    /// A soft delete of the latest version.
    Delete,
}

/// Where a mount's writes happen, which decides the audit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// In Leash's own database, as a [`Mutation`] committed in the same
    /// transaction as the request's audit event
    /// ([`SecretBackend::prepare_write`], [`SecretBackend::prepare_delete`]).
    InTransaction,
    /// In an external store ([`SecretBackend::write`],
    /// [`SecretBackend::delete`]): the broker commits the decision to the
    /// audit log first, then calls upstream, then records the outcome.
    Upstream,
}

/// What an upstream write created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The version number Leash exposes for it.
    pub version: u64,
    /// When the store says it was created; `None` when the store keeps no
    /// such time (a KV v1 engine).
    pub created_time: Option<DateTime<Utc>>,
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
    /// Names the store gives this version (AWS staging labels such as
    /// `AWSCURRENT`); empty for stores without them.
    pub stages: Vec<String>,
}

/// A store of secrets behind one mount. `Any`, so that start-up can keep
/// the concrete handle of a built-in store it built (for seeding).
#[async_trait]
pub trait SecretBackend: Any + Send + Sync {
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
    ///
    /// By default (a store written upstream, or not at all): checks that
    /// the grant is a write grant for this mount ([`GrantMismatch`]
    /// otherwise), then refuses with [`ReadOnly`].
    ///
    /// [`GrantMismatch`]: BackendError::GrantMismatch
    /// [`ReadOnly`]: BackendError::ReadOnly
    async fn prepare_write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Mutation, BackendError> {
        let _ = (data, rule, cas, now);
        granted_path(grant, self.mount(), WRITE_CAPS)?;
        Err(BackendError::ReadOnly)
    }

    /// Prepares the soft delete of the latest version (a `delete` grant).
    ///
    /// By default: checks that the grant is a delete grant for this mount
    /// ([`GrantMismatch`] otherwise), then refuses with [`ReadOnly`].
    ///
    /// [`GrantMismatch`]: BackendError::GrantMismatch
    /// [`ReadOnly`]: BackendError::ReadOnly
    fn prepare_delete(&self, grant: &Grant, now: DateTime<Utc>) -> Result<Mutation, BackendError> {
        let _ = now;
        granted_path(grant, self.mount(), &[Capability::Delete])?;
        Err(BackendError::ReadOnly)
    }

    /// Whether and where this mount takes `op`: an error (`ReadOnly`,
    /// `Unsupported`) when it does not. Asked after the policy decision and
    /// before anything is committed or sent upstream.
    fn writes(&self, op: WriteOp) -> Result<WritePath, BackendError> {
        let _ = op;
        Err(BackendError::ReadOnly)
    }

    /// Writes a new version of the secret the grant names (a `create`,
    /// `update` or `patch` grant) in an external store, honouring `rule`
    /// and check-and-set `cas` (0: the secret must not exist). Only for a
    /// [`WritePath::Upstream`] mount, and only after the decision is in
    /// the audit log. Never retried: a write is not idempotent.
    async fn write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let _ = (grant, data, rule, cas);
        Err(BackendError::ReadOnly)
    }

    /// Soft-deletes the latest version in an external store (a `delete`
    /// grant); same conditions as [`SecretBackend::write`].
    async fn delete(&self, grant: &Grant) -> Result<(), BackendError> {
        let _ = grant;
        Err(BackendError::ReadOnly)
    }

    /// Lists the folder the grant names: direct children, sub-folders
    /// ending in `/`. Empty when there is nothing.
    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError>;
}

/// The capabilities of a grant that writes a new version of a secret.
pub const WRITE_CAPS: &[Capability] = &[Capability::Create, Capability::Update, Capability::Patch];

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
