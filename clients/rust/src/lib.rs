//! Typed Rust client for the Leash HTTP API: the Vault-shaped workload API
//! and the operator API under `/v1/leash/` (see `docs/api.md`).
//!
//! This crate owns the workload API's wire contract on the client side; the
//! operator API's types are `leash_api`'s, the same ones the broker
//! serialises, re-exported here under their old names. A token or a secret
//! value never appears in a `Debug` rendering, an error message or a URL:
//! tokens travel only in the `X-Vault-Token` header (marked sensitive), lease
//! ids travel in request bodies, and the types that hold a token or secret
//! data have hand-written `Debug` implementations that redact them.

mod client;
mod error;
mod path;
mod types;

#[cfg(any(test, feature = "test-server"))]
#[doc(hidden)]
pub mod test_server;

pub use client::{LeashClient, RawResponse};
pub use error::ClientError;
pub use types::{Auth, KvMetadata, KvSecret, LeaseInfo, LeaseRenewal, TokenInfo};

/// The operator API's answers: the broker's own wire types (`leash-api`).
/// [`AuditVerify`] is [`leash_api::ChainReport`].
pub use leash_api::{
    AuditEvent, ChainReport as AuditVerify, CommitPaths, CommitStatus, DetectionPage,
    DetectionView, IdentityRef, IdentityView, MountHealth, MountStatus, QuarantineRequest,
    QuarantineView, SessionStatus, Status,
};
