//! The audit event and its hash chain.
//!
//! Every request that reaches a handler produces exactly one [`AuditEvent`].
//! Events never hold a secret value, a token or a lease id in clear: the
//! identity is the token's accessor, a lease is referenced by its keyed
//! digest, and free text that came from a caller is escaped so it cannot
//! forge a log line.
//!
//! Events are chained: `mac(n) = HMAC(key, prev_mac ‖ seq ‖ canonical(event))`.
//! A changed, inserted or deleted row breaks the chain at that row, and
//! without the hash key nobody can recompute it.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{Digest, KeyedHasher, label};
pub use crate::text::escape_untrusted;

/// What the broker decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request was allowed and answered.
    Allowed,
    /// The request was refused (policy, authentication, a bad request).
    Denied,
    /// The broker or a dependency failed.
    Error,
}

impl Decision {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Error => "error",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allowed" => Some(Decision::Allowed),
            "denied" => Some(Decision::Denied),
            "error" => Some(Decision::Error),
            _ => None,
        }
    }
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The request id, also sent to the caller as `request_id`.
    pub request_id: String,
    /// When the broker received the request (microsecond precision).
    pub time: DateTime<Utc>,
    /// The caller's token accessor, when a token was resolved.
    pub identity: Option<String>,
    /// The workload the token belongs to, or the role named at login.
    pub workload: Option<String>,
    /// The peer address the request came from.
    pub peer: String,
    /// What was asked, e.g. `kv.read`, `auth.jwt.login`, `lease.renew`.
    pub operation: String,
    /// The HTTP method.
    pub method: String,
    /// The canonical path, or an escaped rendering of a path that could not
    /// be canonicalised.
    pub path: String,
    /// What the broker decided.
    pub decision: Decision,
    /// The HTTP status the caller received.
    pub status: u16,
    /// Why, in words (never a secret).
    pub reason: String,
    /// The keyed digest (hex) of the lease id this request issued or touched.
    pub lease_ref: Option<String>,
    /// What was proven about the caller: issuer, subject, bound claims,
    /// source. A JSON object; never a JWT or a token.
    pub attestation: serde_json::Value,
}

impl AuditEvent {
    /// The bytes the chain MAC covers: JSON with the time truncated to
    /// microseconds (what every store keeps exactly) and object keys sorted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // The event's own serialisation (same fields, same order, same
        // names), borrowed rather than cloned. serde_json without
        // `preserve_order` sorts object keys, and struct fields serialise
        // in declaration order: the output is canonical.
        #[derive(Serialize)]
        struct Canonical<'a> {
            request_id: &'a str,
            time: DateTime<Utc>,
            identity: &'a Option<String>,
            workload: &'a Option<String>,
            peer: &'a str,
            operation: &'a str,
            method: &'a str,
            path: &'a str,
            decision: Decision,
            status: u16,
            reason: &'a str,
            lease_ref: &'a Option<String>,
            attestation: &'a serde_json::Value,
        }
        // Destructured, so a field added to the event cannot be left out.
        let AuditEvent {
            request_id,
            time,
            identity,
            workload,
            peer,
            operation,
            method,
            path,
            decision,
            status,
            reason,
            lease_ref,
            attestation,
        } = self;
        serde_json::to_vec(&Canonical {
            request_id,
            time: time.trunc_subsecs(6),
            identity,
            workload,
            peer,
            operation,
            method,
            path,
            decision: *decision,
            status: *status,
            reason,
            lease_ref,
            attestation,
        })
        .unwrap_or_default()
    }

    /// This event's chain link after `prev`, at position `seq`.
    pub fn chain_mac(&self, hasher: &KeyedHasher, prev: &Digest, seq: i64) -> Digest {
        hasher.digest_parts(
            label::AUDIT_CHAIN,
            &[&prev.0, &seq.to_be_bytes(), &self.canonical_bytes()],
        )
    }
}

/// An event as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
    /// Its chain link.
    pub mac: Digest,
}

/// Where and why a chain failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ChainBreak {
    /// A row is missing before `seq`.
    #[error("audit row(s) missing before seq {seq} (expected seq {expected})")]
    Gap {
        /// The seq found.
        seq: i64,
        /// The seq expected.
        expected: i64,
    },
    /// The row at `seq` was changed, or a row before it was deleted.
    #[error(
        "audit row {seq} does not match its chain link (changed, or a row before it was removed)"
    )]
    Mismatch {
        /// The first row that fails.
        seq: i64,
    },
    /// The chain ends before the recorded head.
    #[error(
        "audit log ends at seq {last} but the recorded head is seq {head}: rows were removed from the end"
    )]
    Truncated {
        /// The last seq found.
        last: i64,
        /// The head seq recorded.
        head: i64,
    },
    /// The recorded head does not match the last row.
    #[error("the recorded audit head does not match row {seq}")]
    HeadMismatch {
        /// The head seq.
        seq: i64,
    },
}

/// Verifies the chain incrementally, one row at a time in `seq` order.
#[derive(Debug)]
pub struct ChainVerifier<'a> {
    hasher: &'a KeyedHasher,
    prev: Digest,
    next_seq: i64,
}

impl<'a> ChainVerifier<'a> {
    /// A verifier for a chain that starts at seq 1.
    pub fn new(hasher: &'a KeyedHasher) -> Self {
        Self {
            hasher,
            prev: Digest::ZERO,
            next_seq: 1,
        }
    }

    /// Checks the next row.
    pub fn push(&mut self, row: &StoredEvent) -> Result<(), ChainBreak> {
        if row.seq != self.next_seq {
            return Err(ChainBreak::Gap {
                seq: row.seq,
                expected: self.next_seq,
            });
        }
        let mac = row.event.chain_mac(self.hasher, &self.prev, row.seq);
        if !mac.ct_eq(&row.mac) {
            return Err(ChainBreak::Mismatch { seq: row.seq });
        }
        self.prev = row.mac;
        self.next_seq += 1;
        Ok(())
    }

    /// Checks the end of the chain against the recorded head.
    pub fn finish(self, head: Option<(i64, Digest)>) -> Result<i64, ChainBreak> {
        let last = self.next_seq - 1;
        match head {
            None if last == 0 => Ok(0),
            None => Err(ChainBreak::HeadMismatch { seq: last }),
            Some((seq, _)) if seq > last => Err(ChainBreak::Truncated { last, head: seq }),
            Some((seq, mac)) if seq == last && mac.ct_eq(&self.prev) => Ok(last),
            Some((seq, _)) => Err(ChainBreak::HeadMismatch { seq }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(i: u32) -> AuditEvent {
        AuditEvent {
            request_id: format!("req-{i}"),
            time: Utc.timestamp_opt(1_800_000_000, 123_456_789).unwrap(),
            identity: Some("acc".into()),
            workload: Some("w".into()),
            peer: "127.0.0.1".into(),
            operation: "kv.read".into(),
            method: "GET".into(),
            path: "secret/a".into(),
            decision: Decision::Allowed,
            status: 200,
            reason: "ok".into(),
            lease_ref: None,
            attestation: serde_json::json!({"iss": "x", "sub": "y"}),
        }
    }

    fn chain(h: &KeyedHasher, n: u32) -> Vec<StoredEvent> {
        let mut prev = Digest::ZERO;
        (1..=n)
            .map(|i| {
                let e = event(i);
                let mac = e.chain_mac(h, &prev, i as i64);
                prev = mac;
                StoredEvent {
                    seq: i as i64,
                    event: e,
                    mac,
                }
            })
            .collect()
    }

    fn verify(
        h: &KeyedHasher,
        rows: &[StoredEvent],
        head: Option<(i64, Digest)>,
    ) -> Result<i64, ChainBreak> {
        let mut v = ChainVerifier::new(h);
        for r in rows {
            v.push(r)?;
        }
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        let h = KeyedHasher::new(&[1u8; 32]).unwrap();
        let rows = chain(&h, 5);
        let head = Some((5, rows[4].mac));
        assert_eq!(verify(&h, &rows, head), Ok(5));
    }

    #[test]
    fn changed_row_is_found() {
        let h = KeyedHasher::new(&[1u8; 32]).unwrap();
        let mut rows = chain(&h, 5);
        let head = Some((5, rows[4].mac));
        rows[2].event.decision = Decision::Denied;
        assert_eq!(
            verify(&h, &rows, head),
            Err(ChainBreak::Mismatch { seq: 3 })
        );
    }

    #[test]
    fn deleted_rows_are_found() {
        let h = KeyedHasher::new(&[1u8; 32]).unwrap();
        let mut rows = chain(&h, 5);
        let head = Some((5, rows[4].mac));
        rows.remove(1);
        assert!(matches!(
            verify(&h, &rows, head),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2
            })
        ));
        let mut rows = chain(&h, 5);
        rows.pop();
        assert_eq!(
            verify(&h, &rows, head),
            Err(ChainBreak::Truncated { last: 4, head: 5 })
        );
    }

    #[test]
    fn renumbering_after_delete_is_found() {
        let h = KeyedHasher::new(&[1u8; 32]).unwrap();
        let mut rows = chain(&h, 3);
        rows.remove(1);
        rows[1].seq = 2;
        assert_eq!(
            verify(&h, &rows, None),
            Err(ChainBreak::Mismatch { seq: 2 })
        );
    }

    #[test]
    fn a_different_key_cannot_forge() {
        let h = KeyedHasher::new(&[1u8; 32]).unwrap();
        let other = KeyedHasher::new(&[2u8; 32]).unwrap();
        let rows = chain(&other, 2);
        assert_eq!(
            verify(&h, &rows, None),
            Err(ChainBreak::Mismatch { seq: 1 })
        );
    }

    #[test]
    fn canonical_bytes_are_the_events_own_serialisation() {
        // What chains written before the borrowed form was introduced were
        // computed over: the event itself, time truncated, as JSON.
        for mut e in [event(1), event(2)] {
            e.identity = None;
            e.attestation = serde_json::json!({"z": [1, {"b": 2, "a": "\u{1}"}], "a": null});
            let mut old = e.clone();
            old.time = old.time.trunc_subsecs(6);
            assert_eq!(e.canonical_bytes(), serde_json::to_vec(&old).unwrap());
        }
        let e = event(3);
        let mut old = e.clone();
        old.time = old.time.trunc_subsecs(6);
        assert_eq!(e.canonical_bytes(), serde_json::to_vec(&old).unwrap());
    }

    #[test]
    fn canonical_bytes_ignore_sub_microsecond_time() {
        let a = event(1);
        let mut b = a.clone();
        b.time = b.time.trunc_subsecs(6);
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn untrusted_text_cannot_forge_lines() {
        let s = escape_untrusted("a\nb\u{202e}\"{\"x\":1}\x1b[2J\0", 100);
        assert!(
            !s.contains('\n') && !s.contains('\u{202e}') && !s.contains('"') && !s.contains('\0')
        );
        assert!(escape_untrusted(&"x".repeat(1000), 10).chars().count() <= 11);
    }
}
