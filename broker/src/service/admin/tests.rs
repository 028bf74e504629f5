//! The audit event of the operator API against the domain's: a stored
//! event as `GET leash/audit` lists it is the domain event's own JSON plus
//! `seq`, and that JSON reads back as `leash_api::AuditEvent` (the client's
//! type) without loss.

use chrono::{TimeZone, Utc};
use leash_domain::{AuditEvent, Decision, Digest, StoredEvent};
use serde_json::{Value, json};

use super::audit_event;

fn stored(time: chrono::DateTime<Utc>, full: bool) -> StoredEvent {
    StoredEvent {
        seq: 42,
        event: AuditEvent {
            request_id: "req-1".into(),
            time,
            identity: full.then(|| "acc-1".into()),
            workload: full.then(|| "payments-api".into()),
            peer: "127.0.0.1".into(),
            operation: "kv.read".into(),
            method: "GET".into(),
            path: "secret/data/payments/db".into(),
            decision: if full {
                Decision::Allowed
            } else {
                Decision::Denied
            },
            status: if full { 200 } else { 403 },
            reason: if full {
                String::new()
            } else {
                "out of scope".into()
            },
            lease_ref: full.then(|| "ab".repeat(32)),
            attestation: if full {
                json!({"iss": "https://issuer", "sub": "svc", "claims": {"ns": "pay"}})
            } else {
                json!({})
            },
        },
        mac: Digest::ZERO,
    }
}

/// The domain event's JSON with `seq` added: what the broker sent before
/// the wire types existed.
fn domain_json(row: &StoredEvent) -> Value {
    let mut v = serde_json::to_value(&row.event).unwrap();
    v.as_object_mut()
        .unwrap()
        .insert("seq".into(), row.seq.into());
    v
}

#[test]
fn the_wire_event_is_the_domain_event_plus_seq() {
    let whole = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let times = [
        whole,
        whole + chrono::Duration::microseconds(1),
        whole + chrono::Duration::milliseconds(250),
        whole + chrono::Duration::nanoseconds(123_456_789),
    ];
    for time in times {
        for full in [true, false] {
            let row = stored(time, full);
            let expected = domain_json(&row);
            let wire = audit_event(row);
            assert_eq!(serde_json::to_value(&wire).unwrap(), expected);
            let read: leash_api::AuditEvent = serde_json::from_value(expected).unwrap();
            assert_eq!(read, wire);
        }
    }
}

#[test]
fn every_decision_reads_as_its_domain_name() {
    for d in [Decision::Allowed, Decision::Denied, Decision::Error] {
        let mut row = stored(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(), true);
        row.event.decision = d;
        assert_eq!(
            serde_json::to_value(audit_event(row)).unwrap()["decision"],
            serde_json::to_value(d).unwrap()
        );
    }
}
