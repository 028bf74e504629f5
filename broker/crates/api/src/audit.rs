//! The audit answers: a page of `GET /v1/leash/audit` ([`AuditPage`] of
//! [`AuditEvent`]s) and the report of `GET /v1/leash/audit/verify`
//! ([`ChainReport`]).
//!
//! [`AuditEvent`] mirrors the fields of `leash_domain::AuditEvent` plus its
//! `seq`, as plain text and JSON, so a client reads audit events without
//! the domain crate and its cryptography. The broker's tests check that the
//! domain event's JSON reads back as this type and serialises to the same
//! JSON. Must never happen: a field of the domain event missing here, or a
//! value type that differs from the domain event's JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One audited request, as `GET /v1/leash/audit` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The request id the caller received.
    pub request_id: String,
    /// RFC 3339 time the broker received the request (UTC, `Z`).
    pub time: String,
    /// The caller's token accessor, when a token was resolved.
    #[serde(default)]
    pub identity: Option<String>,
    /// The workload, or the role named at login.
    #[serde(default)]
    pub workload: Option<String>,
    /// The peer address.
    #[serde(default)]
    pub peer: String,
    /// What was asked, e.g. `kv.read`.
    pub operation: String,
    /// The HTTP method.
    pub method: String,
    /// The canonical path.
    pub path: String,
    /// `allowed`, `denied` or `error`.
    pub decision: String,
    /// The HTTP status the caller received.
    pub status: u16,
    /// Why, in words.
    #[serde(default)]
    pub reason: String,
    /// The keyed digest of the lease involved, if any.
    #[serde(default)]
    pub lease_ref: Option<String>,
    /// What was proven about the caller (a JSON object; never a JWT or a
    /// token).
    #[serde(default)]
    pub attestation: Value,
}

/// `data` of `GET /v1/leash/audit?after=SEQ&limit=N`: events in seq order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The events after `after`, at most `limit` of them.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub events: Vec<AuditEvent>,
}

/// `data` of `GET /v1/leash/audit/verify` (and the result of the broker's
/// offline `audit verify`): the hash chain, verified end to end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    /// True when every row verified and the chain ends at the head.
    pub ok: bool,
    /// Rows verified before the end or the first break.
    pub events: u64,
    /// The recorded head (0 when the log is empty). The broker always sends
    /// it; absent (older brokers, when the chain broke) reads as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<i64>,
    /// The first break, in words; absent when the chain verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
