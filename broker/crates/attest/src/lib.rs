//! Leash attestation: validating a presented JWT against the operator's
//! configured issuers, the login methods built on it ([`login`]: JWT,
//! Kubernetes, AppRole — one file each behind one trait), and the
//! development issuer used by `leash-broker dev`.
//!
//! This crate owns the decision "is this JWT genuine, and what does it
//! prove". Keys are read once at load; verifying never does I/O, never lets
//! the token pick its key or algorithm, and never trusts a claim before the
//! signature holds. Must never happen: a JWT, a private key or a claim value
//! in an error, a log line or `Debug` output.

mod dev;
mod encoding;
mod error;
mod issuer;
mod keys;
pub mod login;

pub use dev::DevIssuer;
pub use error::{ConfigError, LoginError};
pub use issuer::{IssuerConfig, Issuers, MAX_JWT_BYTES, MAX_LEEWAY_SECS, VerifiedJwt};
pub use keys::Algorithm;
