//! The broker's attestation part: who is calling. A presented token is
//! resolved to a [`Session`] here — the token record, still live, and the
//! workload it runs under, whose conditions hold now — and the operator
//! token is checked here. (The login methods that issue tokens are the
//! `leash_attest` crate's.)
//!
//! Must never happen: a revoked, expired or unknown token resolving to a
//! session; a session whose workload's conditions do not hold at the
//! request's time and source; the operator token compared in variable time.

mod session;

pub(crate) use session::{Session, Sessions};
pub use session::{SessionError, SessionRefusal};
