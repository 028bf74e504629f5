//! Containment, end to end on PostgreSQL and SQLite, with the default
//! detection settings (the dev policies say nothing about detection):
//! enumeration, LIST sweeps, a token used from another host, a request
//! after hours, a canary read — each contained before the answer to the
//! request that crossed the line leaves: every token and lease of the
//! identity revoked, fresh logins refused (quarantine), a detection record
//! with its evidence, an alert in the outbox. Honest traffic trips
//! nothing, and a dry-run workload is only recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test bodies shared by the generated #[test]s

use std::net::{IpAddr, Ipv4Addr};

use leash_client::LeashClient;
use leash_domain::Clock;
use leash_domain::detection::Subject;
use leash_tests::{Db, Options, TestBroker, dual, policy_files, raw_http_from, repo_root};

dual!(
    enumeration_is_contained_within_a_handful_of_probes,
    a_list_sweep_is_contained,
    a_token_from_another_host_is_refused_and_revoked_for_its_own_host_too,
    a_request_after_hours_contains_the_identity,
    a_canary_read_answers_like_a_secret_and_contains,
    honest_traffic_trips_nothing,
    dry_run_records_and_changes_nothing,
    a_released_identity_logs_in_again,
    a_burst_above_the_baseline_is_alerted_not_contained,
);

fn subject(workload: &str) -> Subject {
    Subject {
        workload: workload.into(),
        issuer: "dev".into(),
        subject: workload.into(),
    }
}

/// The dev policies with `workload`'s file replaced by `text`.
fn policies_with(workload: &str, text: &str) -> Vec<(String, String)> {
    let mut files = policy_files(&repo_root().join("policies/dev"));
    files.retain(|(name, _)| name != &format!("{workload}.toml"));
    files.push((format!("{workload}.toml"), text.to_owned()));
    files
}

/// A broker whose payments-api policy is `text`.
async fn start_payments(db: Db, text: &str) -> TestBroker {
    TestBroker::start_with(
        db,
        Options {
            policies: Some(policies_with("payments-api", text)),
            ..Options::default()
        },
    )
    .await
}

/// The dev policy of payments-api, with `extra` appended.
fn payments_with(extra: &str) -> String {
    let base = std::fs::read_to_string(repo_root().join("policies/dev/payments-api.toml")).unwrap();
    format!("{base}\n{extra}\n")
}

async fn status(c: &LeashClient, path: &str) -> u16 {
    c.raw("GET", path, None).await.unwrap().status
}

/// Asserts `b`'s identity `workload` is contained: `held` (a lease id of
/// one of its sessions) revoked, `sessions` refused, a fresh login refused
/// as quarantined, exactly one detection by `detector`.
async fn assert_contained(
    b: &TestBroker,
    workload: &str,
    sessions: &[&LeashClient],
    held: &str,
    detector: &str,
) -> leash_domain::detection::Detection {
    for s in sessions {
        assert_eq!(
            status(s, "/v1/auth/token/lookup-self").await,
            403,
            "every session of the identity is revoked"
        );
    }
    let lease = b.store.lease(&b.hasher.lease(held)).await.unwrap().unwrap();
    assert!(lease.revoked_at.is_some(), "its leases are revoked");
    let login = b.client.jwt_login(workload, &b.jwt(workload)).await;
    let err = login.expect_err("a quarantined identity cannot log in");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("quarantined"), "{err}");
    assert!(
        b.store
            .active_quarantine(&subject(workload), b.clock.now())
            .await
            .unwrap()
            .is_some()
    );
    let found = b.store.detections(None, 100).await.unwrap();
    let mine: Vec<_> = found
        .into_iter()
        .filter(|d| d.detection.detector == detector)
        .collect();
    assert_eq!(mine.len(), 1, "one detection by {detector}: {mine:?}");
    let d = mine.into_iter().next().unwrap().detection;
    assert_eq!(d.subject, subject(workload));
    assert!(!d.dry_run);
    assert!(
        d.responses.contains(&"revoke".to_owned()),
        "{:?}",
        d.responses
    );
    assert!(!d.evidence.is_empty());
    // The request that crossed the line names the detection in the log.
    let events = b.operator().audit_events(0, 1000).await.unwrap();
    let last = d.evidence.last().unwrap();
    let crossing = events.iter().find(|e| &e.request_id == last).unwrap();
    assert!(
        crossing
            .reason
            .ends_with(&format!("detected: {detector} {}", d.id)),
        "{}",
        crossing.reason
    );
    assert!(b.verify_chain().await.ok);
    d
}

async fn enumeration_is_contained_within_a_handful_of_probes(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let twin = b.login("payments-api").await;
    let bystander = b.login("reporting-agent").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    // Guessed paths, alternating with normal reads: the fourth distinct
    // path outside scope is the last answered with anything but 403 for
    // this identity — and it is answered 403 already contained.
    let probes = [
        "reporting/warehouse",
        "ci/deploy-key",
        "payments/admin/root",
        "hr/salaries",
    ];
    for (i, p) in probes.iter().enumerate() {
        assert_eq!(status(&w, &format!("/v1/secret/data/{p}")).await, 403);
        if i + 1 < probes.len() {
            // Still honest-looking in between: served.
            assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 200);
        }
    }
    let d = assert_contained(
        &b,
        "payments-api",
        &[&w, &twin],
        &held.lease_id,
        "enumeration",
    )
    .await;
    // The gap report: what it looked for that its policy does not grant.
    let mut paths = d.paths.clone();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "secret/ci/deploy-key",
            "secret/hr/salaries",
            "secret/payments/admin/root",
            "secret/reporting/warehouse",
        ]
    );
    assert_eq!(d.evidence.len(), 4, "the four probes: {:?}", d.evidence);
    // Another identity is untouched.
    assert_eq!(
        status(&bystander, "/v1/secret/data/reporting/warehouse").await,
        200
    );
    b.stop().await;
}

async fn a_list_sweep_is_contained(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    assert_eq!(
        status(&w, "/v1/secret/metadata/payments?list=true").await,
        200
    );
    assert_eq!(status(&w, "/v1/secret/metadata/?list=true").await, 403);
    assert_eq!(
        status(&w, "/v1/secret/metadata/reporting?list=true").await,
        403
    );
    let d = assert_contained(&b, "payments-api", &[&w], &held.lease_id, "enumeration").await;
    assert!(d.summary.contains("LIST"), "{}", d.summary);
    b.stop().await;
}

async fn a_token_from_another_host_is_refused_and_revoked_for_its_own_host_too(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    // Same token, another host — inside the workload's CIDRs (127/8).
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (st, body) = raw_http_from(
        other,
        &b.addr,
        "GET",
        "/v1/secret/data/payments/db",
        &[("X-Vault-Token", w.token().unwrap())],
        b"",
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(!body.contains("pw-payments"), "nothing handed out");
    let d = assert_contained(&b, "payments-api", &[&w], &held.lease_id, "new_source").await;
    assert!(d.summary.contains("127.0.0.2"), "{}", d.summary);
    b.stop().await;
}

async fn a_request_after_hours_contains_the_identity(db: Db) {
    // A window around "now", so the login succeeds; then the clock moves
    // past its end.
    let opts = Options::default();
    let now = opts.clock.now();
    let start = now - chrono::Duration::minutes(30);
    // Ends before the token's 5-minute TTL runs out.
    let end = now + chrono::Duration::minutes(2);
    if start.date_naive() != end.date_naive() {
        // A window cannot cross midnight; this minute of the day is not
        // the one to run it in.
        return;
    }
    let window = format!(
        "[[conditions.time_windows]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nstart = \"{}\"\nend = \"{}\"\n",
        start.format("%H:%M"),
        end.format("%H:%M"),
    );
    let base = std::fs::read_to_string(repo_root().join("policies/dev/payments-api.toml")).unwrap();
    // The window belongs in the `[conditions]` table the file already has.
    let text = base.replace(
        "[conditions]\nsource_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n",
        &format!("[conditions]\nsource_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n\n{window}"),
    );
    assert_ne!(text, base, "the dev policy's [conditions] moved");
    let clock = opts.clock.clone();
    let b = TestBroker::start_with(
        db,
        Options {
            policies: Some(policies_with("payments-api", &text)),
            ..opts
        },
    )
    .await;
    let w = b.login("payments-api").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    clock.advance(chrono::Duration::minutes(3));
    // After hours, a path it never uses.
    assert_eq!(status(&w, "/v1/secret/data/payments/admin/root").await, 403);
    assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 403);
    // Logins are refused after hours anyway; back inside the window the
    // quarantine still refuses them.
    clock.set(now);
    assert_contained(&b, "payments-api", &[&w], &held.lease_id, "off_hours").await;
    b.stop().await;
}

async fn a_canary_read_answers_like_a_secret_and_contains(db: Db) {
    let text = payments_with("[detection]\ncanaries = [\"secret/payments/api-key\"]");
    let b = start_payments(db, &text).await;
    let w = b.login("payments-api").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    // The decoy answers like any secret: its value, a lease.
    let decoy = w.kv_read("secret", "payments/api-key", None).await.unwrap();
    assert_eq!(decoy.data["key"], "ak-payments-Zr81");
    assert!(!decoy.lease_id.is_empty());
    let d = assert_contained(&b, "payments-api", &[&w], &held.lease_id, "canary").await;
    assert_eq!(d.paths, vec!["secret/payments/api-key"]);
    b.stop().await;
}

async fn honest_traffic_trips_nothing(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    for _ in 0..10 {
        let r = w.kv_read("secret", "payments/db", None).await.unwrap();
        assert!(!r.lease_id.is_empty());
        assert_eq!(
            status(&w, "/v1/secret/metadata/payments?list=true").await,
            200
        );
        // A path inside its scope that does not exist: 404, benign.
        assert_eq!(status(&w, "/v1/secret/data/payments/not-there").await, 404);
        let renew = w
            .raw(
                "PUT",
                "/v1/sys/leases/renew",
                Some(serde_json::json!({"lease_id": r.lease_id})),
            )
            .await
            .unwrap();
        assert_eq!(renew.status, 200, "{}", renew.body);
        assert_eq!(
            w.raw(
                "POST",
                "/v1/auth/token/renew-self",
                Some(serde_json::json!({}))
            )
            .await
            .unwrap()
            .status,
            200
        );
    }
    // One mistake is not an attack.
    assert_eq!(status(&w, "/v1/secret/data/reporting/warehouse").await, 403);
    assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 200);
    assert!(b.store.detections(None, 10).await.unwrap().is_empty());
    assert!(b.login("payments-api").await.token().is_some());
    b.stop().await;
}

async fn dry_run_records_and_changes_nothing(db: Db) {
    let text = payments_with("[detection]\ndry_run = true");
    let b = start_payments(db, &text).await;
    let w = b.login("payments-api").await;
    for p in ["a", "b", "c", "d", "e", "f", "g"] {
        assert_eq!(
            status(&w, &format!("/v1/secret/data/reporting/{p}")).await,
            403
        );
    }
    // From another host: served, only recorded.
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (st, _) = raw_http_from(
        other,
        &b.addr,
        "GET",
        "/v1/secret/data/payments/db",
        &[("X-Vault-Token", w.token().unwrap())],
        b"",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 200);
    let found = b.store.detections(None, 100).await.unwrap();
    let mut detectors: Vec<&str> = found
        .iter()
        .map(|d| d.detection.detector.as_str())
        .collect();
    detectors.sort();
    // Each crossed once (dry-run reports a threshold once, not every
    // request past it).
    assert_eq!(
        detectors,
        vec!["enumeration", "new_source", "scope_violations"]
    );
    assert!(found.iter().all(|d| d.detection.dry_run));
    assert!(
        b.store
            .active_quarantine(&subject("payments-api"), b.clock.now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(b.login("payments-api").await.token().is_some());
    b.stop().await;
}

async fn a_released_identity_logs_in_again(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let held = w.kv_read("secret", "payments/db", None).await.unwrap();
    for p in ["a", "b", "c", "d"] {
        assert_eq!(
            status(&w, &format!("/v1/secret/data/reporting/{p}")).await,
            403
        );
    }
    assert_contained(&b, "payments-api", &[&w], &held.lease_id, "enumeration").await;
    let unit = leash_domain::CommitUnit {
        mutation: Some(leash_domain::Mutation::ReleaseQuarantine {
            subject: subject("payments-api"),
            at: b.clock.now(),
        }),
        consequences: Vec::new(),
        event: test_event(&b),
        on_refusal: None,
    };
    b.store.commit(&[unit]).await.unwrap();
    let again = b.login("payments-api").await;
    assert_eq!(status(&again, "/v1/secret/data/payments/db").await, 200);
    b.stop().await;
}

/// An operator's event, for a unit committed straight to the store.
fn test_event(b: &TestBroker) -> leash_domain::AuditEvent {
    leash_domain::AuditEvent {
        request_id: uuid::Uuid::new_v4().to_string(),
        time: b.clock.now(),
        identity: Some("operator".into()),
        workload: None,
        peer: "127.0.0.1".into(),
        operation: "identity.release".into(),
        method: "POST".into(),
        path: "leash/identities/release".into(),
        decision: leash_domain::Decision::Allowed,
        status: 200,
        reason: "ok".into(),
        lease_ref: None,
        attestation: serde_json::json!({}),
    }
}

async fn a_burst_above_the_baseline_is_alerted_not_contained(db: Db) {
    let text = payments_with("[detection.volume]\nwindow = \"10s\"\nfactor = 5\nmin_requests = 20");
    let b = start_payments(db, &text).await;
    let w = b.login("payments-api").await;
    // A steady baseline: 4 reads every 10 s for a minute.
    for _ in 0..6 {
        for _ in 0..4 {
            assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 200);
        }
        b.clock.advance(chrono::Duration::seconds(10));
    }
    assert!(b.store.detections(None, 10).await.unwrap().is_empty());
    // Then 30 in one window: over 5x the baseline and over 20.
    for _ in 0..30 {
        assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 200);
    }
    let found = b.store.detections(None, 10).await.unwrap();
    assert_eq!(found.len(), 1, "reported once per window: {found:?}");
    let d = &found[0].detection;
    assert_eq!(d.detector, "volume");
    assert_eq!(d.responses, vec!["alert"]);
    // Alert-only: nothing is contained.
    assert_eq!(status(&w, "/v1/secret/data/payments/db").await, 200);
    assert!(
        b.store
            .active_quarantine(&subject("payments-api"), b.clock.now())
            .await
            .unwrap()
            .is_none()
    );
    b.stop().await;
}
