//! The detection seam, end to end on PostgreSQL and SQLite: a detector sees
//! every decided request — allowed and refused, with the refusal's kind and
//! the policy rule that made it, never a secret — and the consequences of
//! its findings commit in the same unit as the event of the request that
//! triggered them, before that request's answer leaves: the identity's
//! token and leases are already revoked when the caller reads its 403.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test bodies shared by the generated #[test]s

use std::sync::{Arc, Mutex};

use leash_broker::detect::{Detector, Detectors, Finding, Observation};
use leash_domain::Clock;
use leash_policy::{Response, RevokeScope};
use leash_tests::{Db, Options, SEEDED, TestBroker, dual};

dual!(
    a_detector_sees_every_decision_and_never_a_secret,
    consequences_commit_before_the_answer,
);

/// What the test detector saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    operation: String,
    path: String,
    identity: Option<String>,
    decision: String,
    refusal: Option<&'static str>,
    rule: Option<usize>,
    token_source: Option<String>,
    event_json: String,
}

/// Records every observation; with `contain`, revokes the identity of any
/// request its policy refused (its tokens, every session of its subject).
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    contain: bool,
}

#[async_trait::async_trait]
impl Detector for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        self.seen.lock().unwrap().push(Seen {
            operation: o.event.operation.clone(),
            path: o.event.path.clone(),
            identity: o.event.identity.clone(),
            decision: o.event.decision.as_str().to_owned(),
            refusal: o.refusal.map(|r| r.kind),
            rule: o.refusal.and_then(|r| r.policy).and_then(|d| d.rule()),
            token_source: o.token.map(|t| t.source.clone()),
            event_json: serde_json::to_string(o.event).unwrap(),
        });
        let policy_refused = o.refusal.is_some_and(|r| r.policy.is_some());
        if !(self.contain && policy_refused) {
            return Vec::new();
        }
        vec![Finding {
            detector: "recorder",
            rule: "test.recorder",
            summary: format!("{} outside its scope", o.event.path),
            evidence: vec![o.event.request_id.clone()],
            paths: vec![o.event.path.clone()],
            response: Response {
                revoke: Some(RevokeScope::Identity),
                quarantine: false,
                alert: false,
                quarantine_for: None,
            },
        }]
    }
}

async fn start(db: Db, contain: bool) -> (TestBroker, Arc<Recorder>) {
    let recorder = Arc::new(Recorder {
        contain,
        ..Recorder::default()
    });
    let b = TestBroker::start_with(
        db,
        Options {
            detectors: Some(Detectors::with(vec![recorder.clone()])),
            ..Options::default()
        },
    )
    .await;
    (b, recorder)
}

async fn a_detector_sees_every_decision_and_never_a_secret(db: Db) {
    let (b, rec) = start(db, false).await;
    let w = b.login("payments-api").await;
    let read = w.kv_read("secret", "payments/db", None).await.unwrap();
    let refused = w
        .raw("GET", "/v1/secret/data/payments/admin/root", None)
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    let outside = w
        .raw("GET", "/v1/secret/data/reporting/warehouse", None)
        .await
        .unwrap();
    assert_eq!(outside.status, 403);
    let bogus = b
        .client
        .with_token("lsh.bogus")
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(bogus.status, 403);

    let seen = rec.seen.lock().unwrap().clone();
    let ops: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|s| (s.operation.as_str(), s.path.as_str(), s.decision.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("auth.jwt.login", "auth/jwt/login", "allowed"),
            ("kv.read", "secret/payments/db", "allowed"),
            ("kv.read", "secret/payments/admin/root", "denied"),
            ("kv.read", "secret/reporting/warehouse", "denied"),
            ("kv.read", "secret/payments/db", "denied"),
        ]
    );
    // The login's observation carries the token being issued; the read's,
    // the session's token: same identity, the login's source.
    let identity = seen[1].identity.clone().unwrap();
    assert_eq!(seen[0].identity.as_deref(), Some(identity.as_str()));
    assert!(
        seen[..4]
            .iter()
            .all(|s| s.identity.as_deref() == Some(&identity))
    );
    assert_eq!(seen[1].token_source.as_deref(), Some("127.0.0.1"));
    assert_eq!(seen[1].refusal, None);
    // Refusals come as data: the explicit deny names its rule (the dev
    // policy's second scope, `secret/payments/admin/*`); out of scope has
    // none; an unknown token is a session refusal with no token record.
    assert_eq!(seen[2].refusal, Some("explicit_deny"));
    assert_eq!(seen[2].rule, Some(1));
    assert_eq!(seen[3].refusal, Some("out_of_scope"));
    assert_eq!(seen[3].rule, None);
    assert_eq!(seen[4].refusal, Some("session.unknown"));
    assert_eq!(seen[4].token_source, None);
    // No detector sees a secret value, the token or the lease id.
    let token = w.token().unwrap();
    for s in &seen {
        for (_, _, value) in SEEDED {
            assert!(!s.event_json.contains(value), "{}", s.event_json);
        }
        assert!(!s.event_json.contains(token), "{}", s.event_json);
        assert!(!s.event_json.contains(&read.lease_id), "{}", s.event_json);
    }
    b.stop().await;
}

async fn consequences_commit_before_the_answer(db: Db) {
    let (b, _rec) = start(db, true).await;
    let w = b.login("payments-api").await;
    // A second session of the same identity (same workload, issuer and
    // subject): contained with it.
    let twin = b.login("payments-api").await;
    let bystander = b.login("reporting-agent").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    let before = b.audit_count().await;

    // The refused read crosses the (test) threshold: its identity is
    // revoked in the same commit as its event.
    let r = w
        .raw("GET", "/v1/secret/data/payments/admin/root", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        b.audit_count().await,
        before + 1,
        "one event: the revocation rode the refusal's commit"
    );
    // By the time the 403 was read, the token and its lease were revoked:
    // the very next request is refused, on this replica, with no sleep.
    let again = w
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(again.status, 403);
    let lease = b
        .store
        .lease(&b.hasher.lease(&held.lease_id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        lease.revoked_at.is_some(),
        "the identity's lease is revoked"
    );
    let events = b.operator().audit_events(before, 10).await.unwrap();
    assert_eq!(events[0].path, "secret/payments/admin/root");
    assert_eq!(events[0].decision, "denied");
    assert_eq!(events[1].reason, "token revoked");
    let twin_again = twin
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(twin_again.status, 403, "every session of the identity");
    // Another identity is untouched.
    let ok = bystander
        .kv_read("secret", "reporting/warehouse", None)
        .await
        .unwrap();
    assert!(!ok.lease_id.is_empty());
    assert!(b.verify_chain().await.ok);
    let live = b.store.stats(b.clock.now()).await.unwrap();
    assert_eq!(live.live_tokens, 1, "only the bystander's token is live");
    b.stop().await;
}
