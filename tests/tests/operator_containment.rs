//! The operator's side of containment, end to end on PostgreSQL and SQLite:
//! quarantine an identity through the API (its logins refused, on every
//! replica, until released or expired), release it, list and show the
//! detections the store holds, refuse bad parameters with 400 and callers
//! without the operator token with 403 — every call audited, naming the
//! identity's workload and the canonical request path. And the real `leash`
//! binary against a broker, for the commands an operator types.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test bodies shared by the generated #[test]s

use leash_client::{IdentityRef, QuarantineRequest};
use leash_domain::audit::{AuditEvent, Decision};
use leash_domain::detection::{Detection, Subject};
use leash_domain::{Clock, CommitUnit, Mutation};
use leash_tests::{Db, TestBroker, bin_dir, dual, run_tool};
use serde_json::{Value, json};

dual!(
    a_quarantine_refuses_logins_until_released,
    a_quarantine_for_a_while_ends_by_itself,
    detections_page_and_show,
    bad_parameters_and_callers_are_refused_and_audited,
);

/// The dev issuer's `iss`: what a test login attests.
/// The issuer a dev token records: the issuer's name in the configuration.
const ISSUER: &str = "dev";

fn who(workload: &str) -> IdentityRef {
    IdentityRef {
        workload: workload.into(),
        issuer: ISSUER.into(),
        // The test harness mints `sub` = the workload's name.
        subject: workload.into(),
    }
}

fn quarantine(workload: &str, reason: Option<&str>, duration: Option<&str>) -> QuarantineRequest {
    let w = who(workload);
    QuarantineRequest {
        workload: w.workload,
        issuer: w.issuer,
        subject: w.subject,
        reason: reason.map(str::to_owned),
        duration: duration.map(str::to_owned),
    }
}

/// The status of a login of `workload` as the test issuer attests it.
async fn login_status(b: &TestBroker, workload: &str) -> u16 {
    let body = json!({"role": workload, "jwt": b.jwt(workload)});
    b.client
        .raw("POST", "/v1/auth/jwt/login", Some(body))
        .await
        .unwrap()
        .status
}

/// Every audit event, in order.
async fn events(b: &TestBroker) -> Vec<leash_client::AuditEvent> {
    b.operator().audit_events(0, 1000).await.unwrap()
}

async fn a_quarantine_refuses_logins_until_released(db: Db) {
    let b = TestBroker::start(db).await;
    let op = b.operator();
    assert_eq!(login_status(&b, "payments-api").await, 200);
    let open = b.login("payments-api").await;

    let q = quarantine("payments-api", Some("probing admin paths"), None);
    assert_eq!(op.quarantine(&q).await.unwrap(), 1);
    // Idempotent: one in force already.
    assert_eq!(op.quarantine(&q).await.unwrap(), 0);

    let v = op.identity(&who("payments-api")).await.unwrap();
    let active = v.quarantine.clone().expect("a quarantine in force");
    assert!(active.active);
    assert_eq!(active.by, "operator");
    assert_eq!(active.reason, "probing admin paths");
    assert_eq!(active.until, None);
    assert_eq!(active.detection_id, None);
    assert_eq!(v.history, vec![active.clone()]);
    assert!(v.detections.is_empty());
    // Another identity of the same workload is not affected.
    let other = IdentityRef {
        subject: "someone-else".into(),
        ..who("payments-api")
    };
    assert_eq!(op.identity(&other).await.unwrap().quarantine, None);

    // Logins of the identity are refused like any failed login; other
    // workloads log in; the open session is the revoke endpoint's to end.
    assert_eq!(login_status(&b, "payments-api").await, 400);
    assert_eq!(login_status(&b, "reporting-agent").await, 200);
    assert!(open.kv_read("secret", "payments/db", None).await.is_ok());

    assert_eq!(op.release(&who("payments-api")).await.unwrap(), 1);
    assert_eq!(op.release(&who("payments-api")).await.unwrap(), 0);
    let v = op.identity(&who("payments-api")).await.unwrap();
    assert_eq!(v.quarantine, None);
    assert_eq!(v.history.len(), 1);
    assert!(!v.history[0].active);
    assert!(v.history[0].until.is_some(), "ends at its release");
    assert_eq!(login_status(&b, "payments-api").await, 200);

    // Every call audited as the operator's, naming the identity's workload.
    let evs = events(&b).await;
    let admin: Vec<_> = evs
        .iter()
        .filter(|e| e.operation.starts_with("admin.identity_"))
        .map(|e| {
            (
                e.operation.as_str(),
                e.path.as_str(),
                e.identity.as_deref(),
                e.workload.as_deref(),
                e.decision.as_str(),
            )
        })
        .collect();
    let q = (
        "admin.identity_quarantine",
        "leash/identities/quarantine",
        Some("operator"),
        Some("payments-api"),
        "allowed",
    );
    let show = (
        "admin.identity_show",
        "leash/identities",
        Some("operator"),
        Some("payments-api"),
        "allowed",
    );
    let r = (
        "admin.identity_release",
        "leash/identities/release",
        Some("operator"),
        Some("payments-api"),
        "allowed",
    );
    assert_eq!(admin, vec![q, q, show, show, r, r, show], "{admin:#?}");
    let e = evs
        .iter()
        .find(|e| e.operation == "admin.identity_quarantine")
        .unwrap();
    assert_eq!(
        e.reason,
        format!("issuer={ISSUER} subject=payments-api"),
        "{e:?}"
    );
    assert!(b.verify_chain().await.ok);
}

async fn a_quarantine_for_a_while_ends_by_itself(db: Db) {
    let b = TestBroker::start(db).await;
    let op = b.operator();
    let q = quarantine("payments-api", None, Some("1h"));
    assert_eq!(op.quarantine(&q).await.unwrap(), 1);
    let v = op.identity(&who("payments-api")).await.unwrap();
    let active = v.quarantine.unwrap();
    assert_eq!(active.reason, "quarantined by an operator");
    let since = chrono::DateTime::parse_from_rfc3339(&active.since).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(active.until.as_deref().unwrap()).unwrap();
    assert_eq!(until - since, chrono::Duration::hours(1));
    assert_eq!(login_status(&b, "payments-api").await, 400);

    b.clock.advance(chrono::Duration::minutes(61));
    let v = op.identity(&who("payments-api")).await.unwrap();
    assert_eq!(v.quarantine, None);
    assert!(!v.history[0].active);
    assert_eq!(login_status(&b, "payments-api").await, 200);
    // Nothing left to release.
    assert_eq!(op.release(&who("payments-api")).await.unwrap(), 0);
}

/// A detection of `workload`, committed straight through the store as a
/// detector's consequence would be.
async fn record_detection(b: &TestBroker, n: usize, workload: &str) -> Detection {
    // Microseconds: what both stores keep.
    let at = chrono::SubsecRound::trunc_subsecs(b.clock.now(), 6);
    let d = Detection {
        id: format!("det_test_{n}"),
        at,
        detector: "enumeration".into(),
        rule: "default".into(),
        subject: Subject {
            workload: workload.into(),
            issuer: ISSUER.into(),
            subject: workload.into(),
        },
        summary: format!("{n} paths probed"),
        evidence: vec![format!("req-{n}-a"), format!("req-{n}-b")],
        responses: vec!["revoke".into(), "quarantine".into()],
        dry_run: n.is_multiple_of(2),
        paths: vec!["secret/data/payments/admin/".into()],
    };
    let event = AuditEvent {
        request_id: format!("req-{n}-b"),
        time: at,
        identity: Some(format!("acc-{n}")),
        workload: Some(workload.into()),
        peer: "127.0.0.1".into(),
        operation: "kv.read".into(),
        method: "GET".into(),
        path: "secret/data/payments/admin/root".into(),
        decision: Decision::Denied,
        status: 403,
        reason: "out of scope".into(),
        lease_ref: None,
        attestation: json!({}),
    };
    let unit = CommitUnit {
        mutation: None,
        consequences: vec![Mutation::RecordDetection(d.clone())],
        event,
        on_refusal: None,
    };
    b.store.commit(&[unit]).await.unwrap();
    d
}

async fn detections_page_and_show(db: Db) {
    let b = TestBroker::start(db).await;
    let op = b.operator();
    let empty = op.detections(None, 100).await.unwrap();
    assert!(empty.detections.is_empty());
    assert_eq!(empty.next_after, None);

    let mut made = Vec::new();
    for n in 1..=5 {
        let w = if n == 3 {
            "reporting-job"
        } else {
            "payments-api"
        };
        made.push(record_detection(&b, n, w).await);
        b.clock.advance(chrono::Duration::seconds(1));
    }

    // Paging: two at a time, in seq order, until a page is not full.
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = op.detections(after, 2).await.unwrap();
        pages += 1;
        seen.extend(page.detections.iter().cloned());
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let ids: Vec<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "det_test_1",
            "det_test_2",
            "det_test_3",
            "det_test_4",
            "det_test_5"
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    // `after` is exclusive.
    let tail = op.detections(Some(seen[3].seq), 100).await.unwrap();
    assert_eq!(tail.detections.len(), 1);
    assert_eq!(tail.detections[0].id, "det_test_5");

    // One, with every field as recorded.
    let d = op.detection("det_test_2").await.unwrap().unwrap();
    let m = &made[1];
    assert_eq!(d.seq, seen[1].seq);
    assert_eq!(
        (d.detector.as_str(), d.rule.as_str(), d.summary.as_str()),
        ("enumeration", "default", "2 paths probed")
    );
    assert_eq!(
        (d.workload.as_str(), d.issuer.as_str(), d.subject.as_str()),
        ("payments-api", ISSUER, "payments-api")
    );
    assert_eq!(d.evidence, m.evidence);
    assert_eq!(d.responses, m.responses);
    assert_eq!(d.paths, m.paths);
    assert!(d.dry_run);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&d.at).unwrap(),
        m.at.fixed_offset()
    );
    assert_eq!(op.detection("det_nope").await.unwrap(), None);
    let raw = op
        .raw("GET", "/v1/leash/detections/det_nope", None)
        .await
        .unwrap();
    assert_eq!(
        (raw.status, raw.json().unwrap()),
        (404, json!({"errors": []}))
    );

    // The identity shows its own detections, newest first.
    let v = op.identity(&who("payments-api")).await.unwrap();
    let ids: Vec<&str> = v.detections.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        ["det_test_5", "det_test_4", "det_test_2", "det_test_1"]
    );

    // Audited: the list with no workload, a found detection with its own.
    let evs = events(&b).await;
    let shown: Vec<_> = evs
        .iter()
        .filter(|e| e.operation == "admin.detection_show")
        .map(|e| (e.path.as_str(), e.workload.as_deref(), e.status))
        .collect();
    assert_eq!(
        shown,
        [
            ("leash/detections/det_test_2", Some("payments-api"), 200),
            ("leash/detections/det_nope", None, 404),
            ("leash/detections/det_nope", None, 404),
        ]
    );
    assert!(
        evs.iter()
            .filter(|e| e.operation == "admin.detection_list")
            .all(|e| e.path == "leash/detections" && e.identity.as_deref() == Some("operator"))
    );
    assert!(b.verify_chain().await.ok);
}

async fn bad_parameters_and_callers_are_refused_and_audited(db: Db) {
    let b = TestBroker::start(db).await;
    let op = b.operator();
    let id = "workload=payments-api&issuer=https%3A%2F%2Fdev.leash.invalid&subject=payments-api";
    let body = |extra: Value| {
        let mut v =
            json!({"workload": "payments-api", "issuer": ISSUER, "subject": "payments-api"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let long = "x".repeat(257);
    let bad: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/leash/detections?limit=0".into(), None),
        ("GET", "/v1/leash/detections?limit=1001".into(), None),
        ("GET", "/v1/leash/detections?limit=ten".into(), None),
        ("GET", "/v1/leash/detections?after=-1".into(), None),
        ("GET", "/v1/leash/detections?after=x".into(), None),
        ("GET", "/v1/leash/identities".into(), None),
        (
            "GET",
            "/v1/leash/identities?workload=payments-api&issuer=x".into(),
            None,
        ),
        (
            "GET",
            format!("/v1/leash/identities?workload=a%0Ab&issuer=i&subject={long}"),
            None,
        ),
        ("POST", "/v1/leash/identities/quarantine".into(), None),
        (
            "POST",
            "/v1/leash/identities/quarantine".into(),
            Some(body(json!({"for": "30s"}))),
        ),
        (
            "POST",
            "/v1/leash/identities/quarantine".into(),
            Some(body(json!({"for": "forever"}))),
        ),
        (
            "POST",
            "/v1/leash/identities/quarantine".into(),
            Some(body(json!({"reason": "a\u{1b}[31mb"}))),
        ),
        (
            "POST",
            "/v1/leash/identities/quarantine".into(),
            Some(body(json!({"reason": long.clone()}))),
        ),
        (
            "POST",
            "/v1/leash/identities/quarantine".into(),
            Some(body(json!({"until": "tomorrow"}))),
        ),
        (
            "POST",
            "/v1/leash/identities/release".into(),
            Some(json!({"workload": "payments-api"})),
        ),
    ];
    let before = b.audit_count().await;
    for (method, path, body) in &bad {
        let r = op.raw(method, path, body.clone()).await.unwrap();
        assert_eq!(r.status, 400, "{method} {path} {body:?}: {}", r.body);
        let errors = r.json().unwrap()["errors"].clone();
        assert!(
            errors.as_array().is_some_and(|e| e.len() == 1),
            "the Vault error shape: {errors}"
        );
    }
    // Nothing was quarantined by any of them.
    let v = op.identity(&who("payments-api")).await.unwrap();
    assert!(v.history.is_empty());
    assert_eq!(
        op.raw("GET", "/v1/leash/identities/quarantine", None)
            .await
            .unwrap()
            .status,
        405
    );

    // Without the operator token: 403 for every endpoint, nothing done.
    let w = b.login("payments-api").await;
    let nobody = b.client.clone();
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/leash/detections".into(), None),
        ("GET", "/v1/leash/detections/det_1".into(), None),
        ("GET", format!("/v1/leash/identities?{id}"), None),
        (
            "POST",
            "/v1/leash/identities/quarantine".into(),
            Some(body(json!({}))),
        ),
        (
            "POST",
            "/v1/leash/identities/release".into(),
            Some(body(json!({}))),
        ),
    ];
    for caller in [&w, &nobody, &b.client.with_token("lsh.not-a-token")] {
        for (method, path, body) in &calls {
            let r = caller.raw(method, path, body.clone()).await.unwrap();
            assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        }
    }
    assert!(
        op.identity(&who("payments-api"))
            .await
            .unwrap()
            .history
            .is_empty()
    );
    assert_eq!(login_status(&b, "payments-api").await, 200);

    // Every one of those calls is in the audit log: the 400s, the identity
    // shows, the 405, the login and the 403s, the last show and the login.
    let after = b.audit_count().await;
    let expected = bad.len() + 1 + 1 + 1 + 3 * calls.len() + 1 + 1;
    assert_eq!(after - before, expected as i64);
    let evs = events(&b).await;
    let refused: Vec<_> = evs
        .iter()
        .filter(|e| e.operation.starts_with("admin.") && e.status == 403)
        .collect();
    assert_eq!(refused.len(), 3 * calls.len());
    assert!(refused.iter().all(|e| e.decision == "denied"));
    let bad_requests = evs
        .iter()
        .filter(|e| e.operation.starts_with("admin.") && e.status == 400)
        .count();
    assert_eq!(bad_requests, bad.len());
    assert!(b.verify_chain().await.ok);
}

/// `leash` as an operator types it, against a running broker: quarantine,
/// show as JSON, list detections as JSON, release; exit codes as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leash_cli_quarantines_shows_and_lists() {
    let b = TestBroker::start(Db::Sqlite).await;
    record_detection(&b, 1, "payments-api").await;
    let leash = bin_dir().join("leash");
    let env = [
        ("LEASH_ADDR", b.addr.as_str()),
        ("LEASH_TOKEN", b.operator_token.as_str()),
    ];
    let ident = [
        "--workload",
        "payments-api",
        "--issuer",
        ISSUER,
        "--subject",
        "payments-api",
    ];
    let args = |head: &[&'static str], tail: &[&'static str]| -> Vec<String> {
        head.iter()
            .chain(ident.iter())
            .chain(tail.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    let run = |a: Vec<String>| {
        let leash = leash.clone();
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            run_tool(&leash, &a, &env).await
        }
    };

    let r = run(args(
        &["identity", "quarantine"],
        &["--reason", "probing", "--for", "1h"],
    ))
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("quarantined"), "{r:?}");
    assert!(!r.stdout.contains(&b.operator_token) && !r.stderr.contains(&b.operator_token));

    let v = run(args(&["identity", "show"], &["--output", "json"]))
        .await
        .json();
    assert_eq!(v["workload"], "payments-api");
    assert_eq!(v["quarantine"]["active"], true);
    assert_eq!(v["quarantine"]["reason"], "probing");
    assert_eq!(v["quarantine"]["by"], "operator");
    assert_eq!(v["history"].as_array().unwrap().len(), 1);
    assert_eq!(v["detections"][0]["id"], "det_test_1");
    assert_eq!(login_status(&b, "payments-api").await, 400);

    let text = run(args(&["identity", "show"], &[])).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("quarantined since"), "{text:?}");

    let v = run(vec![
        "detections".into(),
        "list".into(),
        "--output".into(),
        "json".into(),
    ])
    .await
    .json();
    assert_eq!(v["detections"][0]["id"], "det_test_1");
    assert_eq!(
        v["detections"][0]["evidence"],
        json!(["req-1-a", "req-1-b"])
    );
    assert_eq!(v["next_after"], Value::Null);
    let r = run(vec![
        "detections".into(),
        "show".into(),
        "det_test_1".into(),
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("evidence:\n  req-1-a\n  req-1-b\n"),
        "{r:?}"
    );
    let r = run(vec!["detections".into(), "show".into(), "det_none".into()]).await;
    assert_eq!(r.code, 1, "{r:?}");

    let v = run(args(&["identity", "release"], &["--output", "json"]))
        .await
        .json();
    assert_eq!(v, json!({"applied": 1}));
    assert_eq!(login_status(&b, "payments-api").await, 200);

    // A refusal is exit 1; a usage error exit 2.
    let r = run(args(&["identity", "quarantine"], &["--for", "10s"])).await;
    assert_eq!(r.code, 1, "{r:?}");
    let r = run(vec!["identity".into(), "show".into()]).await;
    assert_eq!(r.code, 2, "{r:?}");
    let no_token = run_tool(
        &leash,
        &["detections", "list"],
        &[
            ("LEASH_ADDR", b.addr.as_str()),
            ("LEASH_TOKEN", "lsh.bogus"),
        ],
    )
    .await;
    assert_eq!(no_token.code, 1, "{no_token:?}");
}
