//! The shared vocabulary of Leash: identifiers, keyed hashes, token and lease
//! records, audit events and their hash chain, containment's detections
//! and quarantines, the clock, and the one
//! duration grammar and untrusted-text escaper every crate uses.
//!
//! This crate does no I/O. Nothing in it may print, log or `Debug` a token,
//! a lease id or a secret value: the types that hold them redact themselves.

pub mod audit;
pub mod clock;
pub mod crypto;
pub mod detection;
pub mod duration;
pub mod records;
pub mod text;

pub use audit::{AuditEvent, Decision, StoredEvent};
pub use clock::{Clock, ManualClock, SystemClock};
pub use crypto::{Digest, KeyError, KeyedHasher, SecretToken};
pub use detection::{AlertDelivery, Detection, Quarantine, Signal, SignalStats, Subject};
pub use duration::{DurationError, parse_duration};
pub use records::{
    CommitUnit, Committed, LeaseRecord, Mutation, NotApplied, Outcome, Refusal, TokenRecord,
    TokenSelector, WriteRule,
};
