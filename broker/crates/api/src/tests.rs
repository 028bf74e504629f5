//! Round trips of every wire type: what the broker sends reads back and
//! serialises to the same JSON, and what older brokers sent still reads.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;

/// `v` read as `T` serialises back to exactly `v`.
fn round_trip<T: Serialize + DeserializeOwned>(v: Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&t).unwrap(), v);
    t
}

#[test]
fn status_round_trips_every_field_the_broker_sends() {
    let v = json!({
        "version": "0.1.0", "store": "postgres", "store_ok": true, "workloads": 3,
        "policy_generation": 2, "policy_reload_failures": 1,
        "live_tokens": 4, "live_leases": 5, "audit_events": 6, "audit_head_seq": 6,
        "mounts": [
            {"path": "kv1", "kind": "builtin", "kv_version": 1},
            {"path": "secret", "kind": "vault", "kv_version": 2, "health": {
                "state": "up", "cache_hits": 1, "cache_misses": 2, "upstream_calls": 3,
                "upstream_failures": 0, "last_latency_ms": 4, "cached_entries": 1
            }}
        ],
        "sessions": {"listening": true, "cached": 1, "hits": 2, "misses": 3, "evictions": 0},
        "commits": {"batches": 1, "flushes": 1, "units": 2, "failures": 0,
            "paths": {"one_statement": 1, "general": 0, "stale": 0}},
        "connections": {"open": 3, "refused_overall": 0, "refused_per_peer": 7,
            "timed_out": 2, "handler_timeouts": 1},
        "limited": {"logins_per_source": 1, "logins_per_identity": 2,
            "requests_per_source": 3, "requests_per_identity": 4}
    });
    let s: Status = round_trip(v);
    assert_eq!(s.mounts[0].health, None);
    assert_eq!(s.mounts[1].health.as_ref().unwrap().state, "up");
    assert_eq!(s.commits.paths.one_statement, 1);
    assert!(s.sessions.listening);
    assert_eq!(s.connections.refused_per_peer, 7);
    assert_eq!(s.limited.requests_per_identity, 4);
}

#[test]
fn status_from_an_older_broker_still_reads() {
    let s: Status = serde_json::from_value(json!({
        "version": "0.1.0", "store": "sqlite", "store_ok": true, "workloads": 2,
        "live_tokens": 1, "live_leases": 0, "audit_events": 0, "mounts": null
    }))
    .unwrap();
    assert_eq!(s.audit_head_seq, None);
    assert_eq!(s.policy_generation, 0);
    assert!(s.mounts.is_empty());
    assert_eq!(s.sessions, SessionStatus::default());
    assert_eq!(s.commits, CommitStatus::default());
    assert_eq!(s.connections, ConnectionStatus::default());
    assert_eq!(s.limited, LimitedStatus::default());
}

#[test]
fn revoke_request_sets_exactly_one_field() {
    let r = RevokeRequest::from(RevokeTarget::Lease("secret/data/a/x".into()));
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"lease_id": "secret/data/a/x"})
    );
    for (t, v) in [
        (RevokeTarget::Prefix("p/".into()), json!({"prefix": "p/"})),
        (RevokeTarget::Accessor("a".into()), json!({"accessor": "a"})),
        (RevokeTarget::Workload("w".into()), json!({"workload": "w"})),
    ] {
        let r: RevokeRequest = round_trip(v);
        assert_eq!(r.target(), Some(t));
    }
    let read = |v: Value| serde_json::from_value::<RevokeRequest>(v).map(RevokeRequest::target);
    assert_eq!(read(json!({})).unwrap(), None);
    assert_eq!(read(json!({"prefix": "a", "workload": "w"})).unwrap(), None);
    // An empty string counts as unset.
    assert_eq!(
        read(json!({"prefix": "", "workload": "w"})).unwrap(),
        Some(RevokeTarget::Workload("w".into()))
    );
    assert!(
        read(json!({"lease": "x"})).is_err(),
        "unknown fields refused"
    );
}

#[test]
fn debug_never_shows_a_lease_id() {
    let id = "secret/data/app/db/0123456789abcdef";
    let r = RevokeRequest::from(RevokeTarget::Lease(id.into()));
    assert!(!format!("{r:?}").contains(id));
    assert!(!format!("{:?}", r.target()).contains(id));
}

#[test]
fn revoked_round_trips() {
    let r: Revoked = round_trip(json!({"revoked": 4}));
    assert_eq!(r.revoked, 4);
}

#[test]
fn audit_page_round_trips_and_reads_null_as_empty() {
    let p: AuditPage = round_trip(json!({"events": [{
        "seq": 7, "request_id": "r7", "time": "2024-01-01T00:00:00.000001Z",
        "identity": null, "workload": "app", "peer": "127.0.0.1", "operation": "kv.read",
        "method": "GET", "path": "secret/data/app", "decision": "denied", "status": 403,
        "reason": "policy", "lease_ref": null, "attestation": {"iss": "dev"}
    }]}));
    assert_eq!(p.events[0].seq, 7);
    assert_eq!(p.events[0].attestation["iss"], "dev");
    let p: AuditPage = serde_json::from_value(json!({"events": null})).unwrap();
    assert!(p.events.is_empty());
}

#[test]
fn chain_report_round_trips() {
    let r: ChainReport = round_trip(json!({"ok": true, "events": 4, "head_seq": 4}));
    assert_eq!(r.head_seq, Some(4));
    let r: ChainReport = round_trip(json!({
        "ok": false, "events": 2, "head_seq": 9, "error": "row 3 changed"
    }));
    assert_eq!(r.error.as_deref(), Some("row 3 changed"));
    // Older brokers left `head_seq` out when the chain broke.
    let r: ChainReport = round_trip(json!({"ok": false, "events": 2, "error": "x"}));
    assert_eq!(r.head_seq, None);
}

fn detection_json(seq: i64) -> Value {
    json!({
        "seq": seq, "id": format!("det_{seq}"), "at": "2024-01-01T00:00:00Z",
        "detector": "enumeration", "rule": "default", "workload": "app",
        "issuer": "https://issuer", "subject": "svc", "summary": "12 paths probed",
        "evidence": ["r1", "r2"], "responses": ["revoke", "quarantine"],
        "dry_run": false, "paths": ["secret/data/admin/"]
    })
}

#[test]
fn detection_page_round_trips_and_reads_null_lists_as_empty() {
    let p: DetectionPage = round_trip(json!({
        "detections": [detection_json(3), detection_json(4)], "next_after": 4
    }));
    assert_eq!(p.detections[1].seq, 4);
    assert_eq!(p.detections[0].responses, ["revoke", "quarantine"]);
    assert_eq!(p.next_after, Some(4));
    let p: DetectionPage = round_trip(json!({"detections": [], "next_after": null}));
    assert!(p.detections.is_empty());
    let d: DetectionView = serde_json::from_value(json!({
        "seq": 1, "id": "d", "at": "t", "detector": "x", "workload": "w", "issuer": "i",
        "subject": "s", "evidence": null, "responses": null, "paths": null
    }))
    .unwrap();
    assert!(d.evidence.is_empty() && d.paths.is_empty() && !d.dry_run);
}

#[test]
fn identity_view_round_trips() {
    let q = json!({
        "workload": "app", "issuer": "i", "subject": "s", "since": "2024-01-01T00:00:00Z",
        "until": null, "reason": "probing", "by": "operator", "detection_id": null,
        "active": true
    });
    let v: IdentityView = round_trip(json!({
        "workload": "app", "issuer": "i", "subject": "s", "quarantine": q.clone(),
        "history": [q], "detections": [detection_json(1)]
    }));
    assert!(v.quarantine.as_ref().unwrap().active);
    assert_eq!(v.history.len(), 1);
    let v: IdentityView = round_trip(json!({
        "workload": "app", "issuer": "i", "subject": "s", "quarantine": null,
        "history": [], "detections": []
    }));
    assert_eq!(v.quarantine, None);
}

#[test]
fn quarantine_and_release_requests() {
    let r: QuarantineRequest = round_trip(json!({
        "workload": "w", "issuer": "i", "subject": "s", "reason": "r", "for": "1h"
    }));
    assert_eq!(r.duration.as_deref(), Some("1h"));
    assert_eq!(
        r.identity(),
        IdentityRef {
            workload: "w".into(),
            issuer: "i".into(),
            subject: "s".into()
        }
    );
    let r: QuarantineRequest = round_trip(json!({"workload": "w", "issuer": "i", "subject": "s"}));
    assert_eq!((r.reason, r.duration), (None, None));
    assert!(
        serde_json::from_value::<QuarantineRequest>(json!({"workload": "w", "until": "x"}))
            .is_err(),
        "unknown fields refused"
    );
    let _: ReleaseRequest = round_trip(json!({"workload": "w", "issuer": "i", "subject": "s"}));
    assert!(serde_json::from_value::<ReleaseRequest>(json!({"workload": "w", "x": 1})).is_err());
    let a: ReleaseResult = round_trip(json!({"applied": 1}));
    assert_eq!(a.applied, 1);
}
