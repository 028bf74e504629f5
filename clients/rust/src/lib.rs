//! Typed Rust client for the Leash HTTP API: the Vault-shaped workload API
//! and the operator API under `/v1/leash/` (see `docs/api.md`).
//!
//! This crate owns the wire contract on the client side. A token or a secret
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
pub use types::{
    AuditEvent, AuditVerify, Auth, KvMetadata, KvSecret, LeaseInfo, LeaseRenewal, Status, TokenInfo,
};
