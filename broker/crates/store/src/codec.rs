//! How domain values are laid out in rows, shared by both databases.
//!
//! Owns: times as microseconds since the epoch, digests as 32-byte blobs,
//! JSON columns as text, the raw row shapes and their decoding into domain
//! records, and the classification of a refused lease renewal.
//! Must never happen: a row that does not decode exactly is turned into a
//! record anyway (it is [`StoreError::Corrupt`]), or a stored value is put
//! into an error message.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leash_domain::audit::{AuditEvent, Decision, StoredEvent};
use leash_domain::crypto::Digest;
use leash_domain::records::{LeaseRecord, NotApplied, TokenRecord};

use crate::StoreError;
use crate::commit::ChainedEvent;
use crate::kv::{KvVersion, KvVersionMeta};

/// The rows deleted per transaction when reaping.
pub(crate) const REAP_BATCH: i64 = 1000;

/// A time as stored: microseconds since the Unix epoch. Sub-microsecond
/// precision is dropped, as [`AuditEvent::canonical_bytes`] does.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored time back, or `Corrupt` if it is out of range.
pub(crate) fn time(what: &'static str, us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::corrupt(what, "time out of range"))
}

pub(crate) fn opt_time(what: &'static str, us: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    us.map(|us| time(what, us)).transpose()
}

/// A stored digest back, or `Corrupt` if it is not 32 bytes.
pub(crate) fn digest(what: &'static str, b: &[u8]) -> Result<Digest, StoreError> {
    Digest::from_slice(b).ok_or_else(|| StoreError::corrupt(what, "digest is not 32 bytes"))
}

/// Token metadata as stored JSON text.
pub(crate) fn meta_json(meta: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(meta).map_err(|e| StoreError::Other(Box::new(e)))
}

/// An attestation as stored JSON text.
pub(crate) fn attestation_json(v: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(Box::new(e)))
}

/// Token rows as columns, for one multi-row insert.
#[derive(Default)]
pub(crate) struct TokenColumns {
    pub hash: Vec<Vec<u8>>,
    pub accessor: Vec<String>,
    pub workload: Vec<String>,
    pub auth_path: Vec<String>,
    pub issuer: Vec<String>,
    pub subject: Vec<String>,
    pub source: Vec<String>,
    pub meta: Vec<String>,
    pub created_at: Vec<i64>,
    pub expires_at: Vec<i64>,
    pub max_expires_at: Vec<i64>,
    pub ttl_secs: Vec<i64>,
    pub renewable: Vec<bool>,
    pub revoked_at: Vec<Option<i64>>,
}

impl TokenColumns {
    pub(crate) fn of(tokens: &[&TokenRecord]) -> Result<Self, StoreError> {
        let mut c = Self::default();
        for t in tokens {
            c.hash.push(t.hash.0.to_vec());
            c.accessor.push(t.accessor.clone());
            c.workload.push(t.workload.clone());
            c.auth_path.push(t.auth_path.clone());
            c.issuer.push(t.issuer.clone());
            c.subject.push(t.subject.clone());
            c.source.push(t.source.clone());
            c.meta.push(meta_json(&t.meta)?);
            c.created_at.push(micros(t.created_at));
            c.expires_at.push(micros(t.expires_at));
            c.max_expires_at.push(micros(t.max_expires_at));
            c.ttl_secs.push(t.ttl_secs);
            c.renewable.push(t.renewable);
            c.revoked_at.push(t.revoked_at.map(micros));
        }
        Ok(c)
    }
}

/// Lease rows as columns, for one multi-row insert.
#[derive(Default)]
pub(crate) struct LeaseColumns {
    pub hash: Vec<Vec<u8>>,
    pub token_hash: Vec<Vec<u8>>,
    pub workload: Vec<String>,
    pub path: Vec<String>,
    pub lease_path: Vec<String>,
    pub issued_at: Vec<i64>,
    pub expires_at: Vec<i64>,
    pub max_expires_at: Vec<i64>,
    pub ttl_secs: Vec<i64>,
    pub renewable: Vec<bool>,
    pub last_renewal: Vec<Option<i64>>,
    pub revoked_at: Vec<Option<i64>>,
}

impl LeaseColumns {
    pub(crate) fn of(leases: &[&LeaseRecord]) -> Self {
        let mut c = Self::default();
        for l in leases {
            c.hash.push(l.hash.0.to_vec());
            c.token_hash.push(l.token_hash.0.to_vec());
            c.workload.push(l.workload.clone());
            c.path.push(l.path.clone());
            c.lease_path.push(l.lease_path.clone());
            c.issued_at.push(micros(l.issued_at));
            c.expires_at.push(micros(l.expires_at));
            c.max_expires_at.push(micros(l.max_expires_at));
            c.ttl_secs.push(l.ttl_secs);
            c.renewable.push(l.renewable);
            c.last_renewal.push(l.last_renewal.map(micros));
            c.revoked_at.push(l.revoked_at.map(micros));
        }
        c
    }
}

/// Audit rows as columns, for one multi-row insert, borrowing the events.
#[derive(Default)]
pub(crate) struct EventColumns<'a> {
    pub seq: Vec<i64>,
    pub request_id: Vec<&'a str>,
    pub time: Vec<i64>,
    pub identity: Vec<Option<&'a str>>,
    pub workload: Vec<Option<&'a str>>,
    pub peer: Vec<&'a str>,
    pub operation: Vec<&'a str>,
    pub method: Vec<&'a str>,
    pub path: Vec<&'a str>,
    pub decision: Vec<&'static str>,
    pub status: Vec<i32>,
    pub reason: Vec<&'a str>,
    pub lease_ref: Vec<Option<&'a str>>,
    pub attestation: Vec<String>,
    pub mac: Vec<&'a [u8]>,
}

impl<'a> EventColumns<'a> {
    pub(crate) fn of(events: &'a [ChainedEvent<'_>]) -> Result<Self, StoreError> {
        let mut c = Self::default();
        for ChainedEvent { seq, event: e, mac } in events {
            c.seq.push(*seq);
            c.request_id.push(&e.request_id);
            c.time.push(micros(e.time));
            c.identity.push(e.identity.as_deref());
            c.workload.push(e.workload.as_deref());
            c.peer.push(&e.peer);
            c.operation.push(&e.operation);
            c.method.push(&e.method);
            c.path.push(&e.path);
            c.decision.push(e.decision.as_str());
            c.status.push(i32::from(e.status));
            c.reason.push(&e.reason);
            c.lease_ref.push(e.lease_ref.as_deref());
            c.attestation.push(attestation_json(&e.attestation)?);
            c.mac.push(&mac.0[..]);
        }
        Ok(c)
    }
}

/// A token row.
#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    hash: Vec<u8>,
    accessor: String,
    workload: String,
    auth_path: String,
    issuer: String,
    subject: String,
    source: String,
    meta: String,
    created_at: i64,
    expires_at: i64,
    max_expires_at: i64,
    ttl_secs: i64,
    renewable: bool,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        const W: &str = "tokens";
        Ok(TokenRecord {
            hash: digest(W, &r.hash)?,
            accessor: r.accessor,
            workload: r.workload,
            auth_path: r.auth_path,
            issuer: r.issuer,
            subject: r.subject,
            source: r.source,
            meta: serde_json::from_str(&r.meta).map_err(|e| StoreError::Corrupt {
                what: W,
                source: Some(Box::new(e)),
            })?,
            created_at: time(W, r.created_at)?,
            expires_at: time(W, r.expires_at)?,
            max_expires_at: time(W, r.max_expires_at)?,
            ttl_secs: r.ttl_secs,
            renewable: r.renewable,
            revoked_at: opt_time(W, r.revoked_at)?,
        })
    }
}

/// A lease row.
#[derive(sqlx::FromRow)]
pub(crate) struct LeaseRow {
    hash: Vec<u8>,
    token_hash: Vec<u8>,
    workload: String,
    path: String,
    lease_path: String,
    issued_at: i64,
    expires_at: i64,
    max_expires_at: i64,
    ttl_secs: i64,
    renewable: bool,
    last_renewal: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<LeaseRow> for LeaseRecord {
    type Error = StoreError;

    fn try_from(r: LeaseRow) -> Result<Self, StoreError> {
        const W: &str = "leases";
        Ok(LeaseRecord {
            hash: digest(W, &r.hash)?,
            token_hash: digest(W, &r.token_hash)?,
            workload: r.workload,
            path: r.path,
            lease_path: r.lease_path,
            issued_at: time(W, r.issued_at)?,
            expires_at: time(W, r.expires_at)?,
            max_expires_at: time(W, r.max_expires_at)?,
            ttl_secs: r.ttl_secs,
            renewable: r.renewable,
            last_renewal: opt_time(W, r.last_renewal)?,
            revoked_at: opt_time(W, r.revoked_at)?,
        })
    }
}

/// An audit row.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    request_id: String,
    time: i64,
    identity: Option<String>,
    workload: Option<String>,
    peer: String,
    operation: String,
    method: String,
    path: String,
    decision: String,
    status: i32,
    reason: String,
    lease_ref: Option<String>,
    attestation: String,
    mac: Vec<u8>,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        const W: &str = "audit_events";
        let decision = Decision::parse(&r.decision)
            .ok_or_else(|| StoreError::corrupt(W, "unknown decision"))?;
        let status =
            u16::try_from(r.status).map_err(|_| StoreError::corrupt(W, "status out of range"))?;
        let attestation =
            serde_json::from_str(&r.attestation).map_err(|e| StoreError::Corrupt {
                what: W,
                source: Some(Box::new(e)),
            })?;
        Ok(StoredEvent {
            seq: r.seq,
            mac: digest(W, &r.mac)?,
            event: AuditEvent {
                request_id: r.request_id,
                time: time(W, r.time)?,
                identity: r.identity,
                workload: r.workload,
                peer: r.peer,
                operation: r.operation,
                method: r.method,
                path: r.path,
                decision,
                status,
                reason: r.reason,
                lease_ref: r.lease_ref,
                attestation,
            },
        })
    }
}

/// The audit head row: `(seq, mac)`.
pub(crate) fn head(seq: i64, mac: &[u8]) -> Result<(i64, Digest), StoreError> {
    if seq < 0 {
        return Err(StoreError::corrupt("audit_head", "negative seq"));
    }
    Ok((seq, digest("audit_head", mac)?))
}

/// What a refused renewal looked like when it was read back: the lease's
/// owner and state, and its token's state (absent if the token is gone).
#[derive(sqlx::FromRow)]
pub(crate) struct RenewProbe {
    token_hash: Vec<u8>,
    revoked_at: Option<i64>,
    expires_at: i64,
    renewable: bool,
    token_revoked_at: Option<i64>,
    token_expires_at: Option<i64>,
}

/// The probe query, the same in both databases: `$1` is the lease hash.
pub(crate) const RENEW_PROBE: &str = "SELECT l.token_hash, l.revoked_at, l.expires_at, \
     l.renewable, t.revoked_at AS token_revoked_at, t.expires_at AS token_expires_at \
     FROM leases l LEFT JOIN tokens t ON t.hash = l.token_hash WHERE l.hash = $1";

/// Why a lease renewal did not apply. A lease owned by another token looks
/// exactly like a missing one.
pub(crate) fn renew_refusal(probe: Option<RenewProbe>, token: &Digest, now: i64) -> NotApplied {
    let Some(p) = probe else {
        return NotApplied::LeaseNotFound;
    };
    let owned = Digest::from_slice(&p.token_hash).is_some_and(|d| d.ct_eq(token));
    if !owned {
        NotApplied::LeaseNotFound
    } else if p.revoked_at.is_some() {
        NotApplied::LeaseRevoked
    } else if p.expires_at <= now {
        NotApplied::LeaseExpired
    } else if !p.renewable {
        NotApplied::NotRenewable
    } else if p.token_revoked_at.is_some() || p.token_expires_at.is_none_or(|e| e <= now) {
        NotApplied::TokenNotLive
    } else {
        // The conditional update saw a state this read does not: it cannot
        // happen while commits are serialised, and refusing is the safe
        // answer if it ever does.
        tracing::warn!("lease renewal refused without a visible reason");
        NotApplied::LeaseNotFound
    }
}

/// What a refused token renewal looked like: `(revoked_at, expires_at, renewable)`.
pub(crate) fn token_renew_refusal(probe: Option<(Option<i64>, i64, bool)>, now: i64) -> NotApplied {
    match probe {
        Some((None, exp, false)) if exp > now => NotApplied::NotRenewable,
        _ => NotApplied::TokenNotLive,
    }
}

/// A KV version row.
#[derive(sqlx::FromRow)]
pub(crate) struct KvRow {
    version: i64,
    created_at: i64,
    deleted_at: Option<i64>,
    destroyed: bool,
    sealed: Option<Vec<u8>>,
}

impl TryFrom<KvRow> for KvVersion {
    type Error = StoreError;

    fn try_from(r: KvRow) -> Result<Self, StoreError> {
        const W: &str = "kv_versions";
        Ok(KvVersion {
            version: u64::try_from(r.version)
                .map_err(|_| StoreError::corrupt(W, "negative version"))?,
            created_at: time(W, r.created_at)?,
            deleted_at: opt_time(W, r.deleted_at)?,
            destroyed: r.destroyed,
            sealed: if r.destroyed { None } else { r.sealed },
        })
    }
}

/// A KV version's metadata row.
#[derive(sqlx::FromRow)]
pub(crate) struct KvMetaRow {
    version: i64,
    created_at: i64,
    deleted_at: Option<i64>,
    destroyed: bool,
}

impl TryFrom<KvMetaRow> for KvVersionMeta {
    type Error = StoreError;

    fn try_from(r: KvMetaRow) -> Result<Self, StoreError> {
        const W: &str = "kv_versions";
        Ok(KvVersionMeta {
            version: u64::try_from(r.version)
                .map_err(|_| StoreError::corrupt(W, "negative version"))?,
            created_at: time(W, r.created_at)?,
            deleted_at: opt_time(W, r.deleted_at)?,
            destroyed: r.destroyed,
        })
    }
}

/// A stored version number back as `u64`.
pub(crate) fn version(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt("kv_paths", "negative version"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_round_trip_at_microseconds() {
        let t = Utc
            .timestamp_opt(1_800_000_000, 123_456_789)
            .single()
            .unwrap();
        let back = time("t", micros(t)).unwrap();
        assert_eq!(
            back,
            Utc.timestamp_opt(1_800_000_000, 123_456_000)
                .single()
                .unwrap()
        );
        assert!(time("t", i64::MAX).is_err());
    }

    #[test]
    fn renew_refusals_are_ordered() {
        let tok = Digest([1; 32]);
        let probe = |owner: [u8; 32],
                     rev: Option<i64>,
                     exp: i64,
                     ren: bool,
                     trev: Option<i64>,
                     texp: Option<i64>| {
            Some(RenewProbe {
                token_hash: owner.to_vec(),
                revoked_at: rev,
                expires_at: exp,
                renewable: ren,
                token_revoked_at: trev,
                token_expires_at: texp,
            })
        };
        assert_eq!(renew_refusal(None, &tok, 5), NotApplied::LeaseNotFound);
        assert_eq!(
            renew_refusal(probe([2; 32], Some(1), 1, false, None, None), &tok, 5),
            NotApplied::LeaseNotFound
        );
        assert_eq!(
            renew_refusal(probe([1; 32], Some(1), 1, false, None, None), &tok, 5),
            NotApplied::LeaseRevoked
        );
        assert_eq!(
            renew_refusal(probe([1; 32], None, 5, false, None, None), &tok, 5),
            NotApplied::LeaseExpired
        );
        assert_eq!(
            renew_refusal(probe([1; 32], None, 9, false, None, None), &tok, 5),
            NotApplied::NotRenewable
        );
        assert_eq!(
            renew_refusal(probe([1; 32], None, 9, true, Some(1), Some(9)), &tok, 5),
            NotApplied::TokenNotLive
        );
        assert_eq!(
            renew_refusal(probe([1; 32], None, 9, true, None, Some(5)), &tok, 5),
            NotApplied::TokenNotLive
        );
        assert_eq!(
            renew_refusal(probe([1; 32], None, 9, true, None, None), &tok, 5),
            NotApplied::TokenNotLive
        );
        assert_eq!(token_renew_refusal(None, 5), NotApplied::TokenNotLive);
        assert_eq!(
            token_renew_refusal(Some((None, 9, false)), 5),
            NotApplied::NotRenewable
        );
        assert_eq!(
            token_renew_refusal(Some((None, 5, false)), 5),
            NotApplied::TokenNotLive
        );
        assert_eq!(
            token_renew_refusal(Some((Some(1), 9, true)), 5),
            NotApplied::TokenNotLive
        );
    }
}
