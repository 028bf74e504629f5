//! The wire types of the Leash operator API under `/v1/leash/` (see
//! `docs/api.md`): the request bodies and the `data` payloads of the
//! answers. The broker serialises its replies from these types and the
//! client deserialises the same ones, so the two cannot drift.
//!
//! This crate holds data shapes only: it depends on serde alone, does no
//! I/O and knows nothing of the broker's internals. Deserialisation stays
//! lenient where older brokers sent less (missing counters default to zero,
//! `null` lists to empty), so a newer client still reads an older broker.
//! Nothing here may hold a token or a secret value.

mod audit;
mod containment;
mod revoke;
mod status;

pub use audit::{AuditEvent, AuditPage, ChainReport};
pub use containment::{
    Applied, DetectionPage, DetectionView, IdentityRef, IdentityView, QuarantineRequest,
    QuarantineView, ReleaseRequest, ReleaseResult,
};
pub use revoke::{RevokeRequest, RevokeTarget, Revoked};
pub use status::{
    CommitPaths, CommitStatus, ConnectionStatus, LimitedStatus, MountHealth, MountStatus,
    SessionStatus, Status,
};

use serde::{Deserialize, Deserializer};

/// Deserialises `null` as the type's default (brokers, like Vault, may send
/// `null` for an empty list).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
