//! The core promises, end to end, on PostgreSQL and on SQLite: log in, read
//! inside the scope under a lease, refusals outside it, renew, revoke,
//! refusal after revoke, expiry, and an audit log with exactly one event per
//! request whose hash chain verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test bodies shared by the generated #[test]s

use std::time::Duration;

use leash_attest::login::jwt::LOGIN_DENIED;
use leash_domain::Clock;
use leash_tests::{Db, Options, SEEDED, TestBroker, dual};
use serde_json::json;

dual!(
    read_lease_renew_revoke,
    forged_lease_ids_match_nothing,
    refusals_do_not_reveal_existence,
    token_lifecycle,
    expiry_is_refused_at_once_and_reaped,
    audit_counts_every_request_and_chain_verifies,
    tampering_is_detected,
    bad_input_is_a_clear_audited_4xx,
    login_failures,
    audit_outage_fails_closed_and_recovers,
    revoke_during_read_hands_nothing_out,
    policy_reload_keeps_last_good_set,
    operator_api,
);

fn seeded(path: &str) -> (&'static str, &'static str) {
    let (_, k, v) = SEEDED.iter().find(|(p, _, _)| *p == path).unwrap();
    (k, v)
}

async fn read_lease_renew_revoke(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;

    let s = w.kv_read("secret", "payments/db", None).await.unwrap();
    let (k, v) = seeded("payments/db");
    assert_eq!(s.data[k], json!(v));
    assert_eq!(s.data["owner"], json!("e2e"));
    assert!(
        s.lease_id.starts_with("secret/data/payments/db/"),
        "{}",
        s.lease_id
    );
    assert!(s.lease_id.len() > "secret/data/payments/db/".len() + 40);
    assert_eq!(s.lease_duration, 300, "the workload's TTL");
    assert!(s.renewable);
    assert_eq!(s.metadata.version, 1);

    // Each read is its own lease.
    let s2 = w.kv_read("secret", "payments/db", None).await.unwrap();
    assert_ne!(s.lease_id, s2.lease_id);

    let info = w.lease_lookup(&s.lease_id).await.unwrap();
    assert_eq!(info.id, s.lease_id);
    assert!(info.ttl <= 300 && info.ttl >= 299);
    assert_eq!(info.path, "secret/data/payments/db");

    let r = w.lease_renew(&s.lease_id, Some(60)).await.unwrap();
    assert_eq!(r.lease_duration, 60);
    assert!(r.warnings.is_empty());
    // Past the max TTL (1h): capped, with a warning, not an error.
    let r = w.lease_renew(&s.lease_id, Some(100_000)).await.unwrap();
    assert_eq!(r.lease_duration, 3600);
    assert_eq!(r.warnings.len(), 1);
    // No increment: the workload's TTL again.
    let r = w.lease_renew(&s.lease_id, None).await.unwrap();
    assert_eq!(r.lease_duration, 300);

    // Another workload cannot touch this lease: same answer as a missing one.
    let other = b.login("reporting-agent").await;
    let e = other.lease_renew(&s.lease_id, None).await.unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().contains("lease not found")),
        (Some(400), true)
    );
    other.lease_revoke(&s.lease_id).await.unwrap();
    w.lease_lookup(&s.lease_id)
        .await
        .expect("revoke by a stranger did nothing");

    w.lease_revoke(&s.lease_id).await.unwrap();
    let e = w.lease_renew(&s.lease_id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    let e = w.lease_lookup(&s.lease_id).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    // Revoking again is fine (idempotent, 204).
    w.lease_revoke(&s.lease_id).await.unwrap();
    // The other lease is untouched.
    w.lease_lookup(&s2.lease_id).await.unwrap();

    // sync:false → 202, as the CLI expects.
    let s3 = w.kv_read("secret", "payments/api-key", None).await.unwrap();
    let r = w
        .raw(
            "PUT",
            &format!("/v1/sys/leases/revoke/{}", s3.lease_id),
            Some(json!({"sync": false})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    assert!(w.lease_lookup(&s3.lease_id).await.is_err());

    // Revoke-prefix revokes only the caller's own leases under the prefix.
    let mine = w.kv_read("secret", "payments/db", None).await.unwrap();
    w.lease_revoke_prefix("secret/data/payments/")
        .await
        .unwrap();
    assert!(w.lease_lookup(&mine.lease_id).await.is_err());
    assert!(w.lease_lookup(&s2.lease_id).await.is_err());

    // Listing inside the scope.
    let keys = w.kv_list("secret", "payments").await.unwrap();
    assert_eq!(keys, vec!["admin/", "api-key", "db"]);
    for q in ["?list=true", "?list=1"] {
        let r = w
            .raw("GET", &format!("/v1/secret/metadata/payments{q}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(
            r.json().unwrap()["data"]["keys"],
            json!(["admin/", "api-key", "db"])
        );
    }
    // A missing secret inside the scope is Vault's bare 404.
    let r = w
        .raw("GET", "/v1/secret/data/payments/nope", None)
        .await
        .unwrap();
    assert_eq!((r.status, r.json().unwrap()), (404, json!({"errors": []})));
    b.stop().await;
}

/// A lease id's tail is its issue time, `.`, 256 random bits; its storage
/// key is that time and 192 bits of the whole id's HMAC. An id with another
/// time, another random part, or no time at all finds no lease: not to look
/// up, renew or revoke.
async fn forged_lease_ids_match_nothing(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let s = w.kv_read("secret", "payments/db", None).await.unwrap();
    let s2 = w.kv_read("secret", "payments/db", None).await.unwrap();
    let (path, tail) = s.lease_id.rsplit_once('/').unwrap();
    let (time, random) = tail.split_once('.').unwrap();
    assert_eq!((time.len(), random.len()), (11, 43), "{tail}");

    let flip = |c: char| if c == 'A' { 'B' } else { 'A' };
    let mut other_random: Vec<char> = random.chars().collect();
    other_random[10] = flip(other_random[10]);
    let other_random: String = other_random.into_iter().collect();
    let mut other_time: Vec<char> = time.chars().collect();
    other_time[10] = flip(other_time[10]);
    let other_time: String = other_time.into_iter().collect();
    let forged = [
        // Another issue time in front of this lease's random part.
        format!("{path}/{other_time}.{random}"),
        format!("{path}/AAAAAAAAAAA.{random}"),
        // The right time, a random part one character off.
        format!("{path}/{time}.{other_random}"),
        // No time: keyed the way ids were before times.
        format!("{path}/{random}"),
        // Another path.
        format!("secret/data/payments/api-key/{tail}"),
    ];
    for id in &forged {
        assert_ne!(id, &s.lease_id);
        let e = w.lease_lookup(id).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "lookup {id}");
        let e = w.lease_renew(id, None).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "renew {id}");
        // Revoking an unknown lease is Vault's idempotent 204; it revokes
        // nothing.
        w.lease_revoke(id).await.unwrap();
    }
    let info = w.lease_lookup(&s.lease_id).await.unwrap();
    assert_eq!(info.id, s.lease_id);
    w.lease_lookup(&s2.lease_id).await.unwrap();
    let r = w.lease_renew(&s.lease_id, Some(60)).await.unwrap();
    assert_eq!(r.lease_duration, 60);
}

async fn refusals_do_not_reveal_existence(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let denied = json!({"errors": ["permission denied"]});
    // Existing and missing paths outside the scope, through every alias:
    // one answer, and the backend is never asked.
    for path in [
        "/v1/secret/data/payments/admin/root",
        "/v1/secret/data/payments/admin/nope",
        "/v1/secret/data/reporting/warehouse",
        "/v1/secret/data/nothing/here",
        "/v1/secret/metadata/payments/admin?list=true",
        "/v1/secret/metadata/payments/admin/?list=true",
        "/v1/secret/metadata/?list=true",
        "/v1/secret/metadata/reporting?list=true",
    ] {
        let r = w.raw("GET", path, None).await.unwrap();
        assert_eq!(
            (r.status, r.json().unwrap()),
            (403, denied.clone()),
            "{path}"
        );
    }
    let r = w
        .raw("LIST", "/v1/secret/metadata/payments/admin", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // No token, a bogus token: 403 too (never 401).
    for c in [b.client.clone(), b.client.with_token("lsh.bogus")] {
        let r = c
            .raw("GET", "/v1/secret/data/payments/db", None)
            .await
            .unwrap();
        assert_eq!((r.status, r.json().unwrap()), (403, denied.clone()));
    }
    // Every one of these was audited as denied, with the canonical path.
    let events = b.operator().audit_events(0, 1000).await.unwrap();
    let refused: Vec<_> = events.iter().filter(|e| e.status == 403).collect();
    assert_eq!(refused.len(), 11);
    assert!(refused.iter().all(|e| e.decision == "denied"));
    assert!(refused.iter().any(|e| e.path == "secret/payments/admin/root" && e.reason.contains("denied by scope")));
    assert!(
        refused
            .iter()
            .any(|e| e.path == "secret/payments/admin/" && e.operation == "kv.list")
    );
    b.stop().await;
}

async fn token_lifecycle(db: Db) {
    let b = TestBroker::start(db).await;
    let auth = b
        .client
        .jwt_login("payments-api", &b.jwt("payments-api"))
        .await
        .unwrap();
    assert!(auth.client_token.starts_with("lsh.") && auth.client_token.len() >= 47);
    assert_eq!(auth.lease_duration, 300);
    assert!(auth.renewable && auth.orphan);
    assert_eq!(auth.token_type, "service");
    assert_eq!(auth.metadata.as_ref().unwrap()["role"], "payments-api");
    let w = b.client.with_token(auth.client_token.clone());

    // The raw lookup-self shape ESO and vaultrs depend on.
    let r = w
        .raw("GET", "/v1/auth/token/lookup-self", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    for k in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(v.as_object().unwrap().contains_key(k), "envelope key {k}");
    }
    assert_eq!(v["lease_id"], json!(""));
    let d = &v["data"];
    assert!(d["ttl"].is_i64() && d["creation_ttl"].is_i64() && d["creation_time"].is_i64());
    assert_eq!(d["type"], json!("service"));
    assert!(d["expire_time"].is_string());
    assert_eq!(d["accessor"], json!(auth.accessor));
    // POST on lookup-self is refused, as Vault's default policy does.
    assert_eq!(
        w.raw("POST", "/v1/auth/token/lookup-self", None)
            .await
            .unwrap()
            .status,
        403
    );

    b.clock.advance(chrono::Duration::seconds(100));
    let renewed = w.token_renew_self(Some(120)).await.unwrap();
    assert_eq!(renewed.lease_duration, 120);
    // Past the max (1h from login): capped with a warning.
    let r = w
        .raw(
            "POST",
            "/v1/auth/token/renew-self",
            Some(json!({"increment": "10h"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    assert_eq!(v["auth"]["lease_duration"], json!(3500));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    // Bodies the real clients send: none, {}, increment 0, form-encoded empty.
    for body in [None, Some(json!({})), Some(json!({"increment": 0}))] {
        let r = w
            .raw("PUT", "/v1/auth/token/renew-self", body)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json().unwrap()["auth"]["lease_duration"], json!(300));
    }

    let s = w.kv_read("secret", "payments/db", None).await.unwrap();
    w.token_revoke_self().await.unwrap();
    // The token is gone, and so are its leases.
    let r = w
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        w.raw("GET", "/v1/auth/token/lookup-self", None)
            .await
            .unwrap()
            .status,
        403
    );
    let lease = b
        .store
        .lease(&b.hasher.lease(&s.lease_id))
        .await
        .unwrap()
        .unwrap();
    assert!(lease.revoked_at.is_some());
    assert_eq!(
        w.raw("POST", "/v1/auth/token/revoke-self", None)
            .await
            .unwrap()
            .status,
        403
    );
    b.stop().await;
}

async fn expiry_is_refused_at_once_and_reaped(db: Db) {
    let b = TestBroker::start_with(
        db,
        Options {
            reap: Some((Duration::from_millis(100), Duration::ZERO)),
            ..Options::default()
        },
    )
    .await;
    let w = b.login("payments-api").await;
    let s = w.kv_read("secret", "payments/db", None).await.unwrap();
    let digest = b.hasher.lease(&s.lease_id);
    assert!(b.store.lease(&digest).await.unwrap().is_some());

    // Keep the token alive past the lease (both have the workload's 5m TTL).
    b.clock.advance(chrono::Duration::seconds(200));
    w.token_renew_self(None).await.unwrap();
    // One second before expiry the lease works; at expiry it does not.
    b.clock.advance(chrono::Duration::seconds(99));
    w.lease_lookup(&s.lease_id).await.unwrap();
    b.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(
        w.lease_lookup(&s.lease_id).await.unwrap_err().status(),
        Some(400)
    );
    assert_eq!(
        w.lease_renew(&s.lease_id, None).await.unwrap_err().status(),
        Some(400)
    );
    w.token_lookup_self()
        .await
        .expect("the token itself is still live");
    // Then the token expires too.
    b.clock.advance(chrono::Duration::seconds(200));
    assert_eq!(
        w.raw("GET", "/v1/secret/data/payments/db", None)
            .await
            .unwrap()
            .status,
        403
    );

    // The reaper removes the rows.
    let store = b.store.clone();
    assert!(
        leash_tests::eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { store.lease(&digest).await.unwrap().is_none() }
        })
        .await,
        "expired lease was not reaped"
    );

    // A token never outlives its JWT: a JWT with 60 s left gives a 60 s token.
    // (JWT times are whole seconds: start on one.)
    b.clock
        .set(chrono::SubsecRound::trunc_subsecs(b.clock.now(), 0));
    let jwt = b
        .issuer
        .mint(
            "payments-api",
            Duration::from_secs(60),
            Default::default(),
            b.clock.now(),
        )
        .unwrap();
    let auth = b.client.jwt_login("payments-api", &jwt).await.unwrap();
    assert_eq!(auth.lease_duration, 60);
    let short = b.client.with_token(auth.client_token);
    let r = short
        .raw(
            "POST",
            "/v1/auth/token/renew-self",
            Some(json!({"increment": 3600})),
        )
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["auth"]["lease_duration"], json!(60));
    let s = short.kv_read("secret", "payments/db", None).await.unwrap();
    assert_eq!(s.lease_duration, 60, "a lease never outlives its token");
    b.stop().await;
}

async fn audit_counts_every_request_and_chain_verifies(db: Db) {
    let b = TestBroker::start(db).await;
    assert_eq!(b.audit_count().await, 0);
    let w = b.login("payments-api").await; // 1
    let s = w.kv_read("secret", "payments/db", None).await.unwrap(); // 2
    let _ = w
        .kv_read("secret", "payments/admin/root", None)
        .await
        .unwrap_err(); // 3
    let _ = w.kv_list("secret", "payments").await.unwrap(); // 4
    let _ = w.lease_renew(&s.lease_id, None).await.unwrap(); // 5
    let _ = w.lease_lookup(&s.lease_id).await.unwrap(); // 6
    w.lease_revoke(&s.lease_id).await.unwrap(); // 7
    let _ = w.token_lookup_self().await.unwrap(); // 8
    let _ = b
        .client
        .raw("GET", "/v1/no/such/route", None)
        .await
        .unwrap(); // 9
    let _ = b.client.raw("GET", "/not-v1", None).await.unwrap(); // 10
    let _ = w
        .raw(
            "POST",
            "/v1/auth/jwt/login",
            Some(json!({"role": "nope", "jwt": "x"})),
        )
        .await
        .unwrap(); // 11
    // Health and seal status are not audited (Vault's list).
    let _ = b.client.health().await.unwrap();
    let _ = b
        .client
        .raw("GET", "/v1/sys/seal-status", None)
        .await
        .unwrap();
    assert_eq!(b.audit_count().await, 11);

    let events = b.operator().audit_events(0, 100).await.unwrap(); // 12 (recorded after the query)
    assert_eq!(events.len(), 11);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
    let ops: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        ops,
        [
            "auth.jwt.login",
            "kv.read",
            "kv.read",
            "kv.list",
            "lease.renew",
            "lease.lookup",
            "lease.revoke",
            "token.lookup_self",
            "unknown",
            "unknown",
            "auth.jwt.login"
        ]
    );
    let read = &events[1];
    assert_eq!(
        (read.decision.as_str(), read.status, read.path.as_str()),
        ("allowed", 200, "secret/payments/db")
    );
    assert_eq!(read.workload.as_deref(), Some("payments-api"));
    assert_eq!(
        read.lease_ref.as_deref(),
        Some(b.hasher.lease(&s.lease_id).to_hex().as_str())
    );
    assert_eq!(read.peer, "127.0.0.1");
    assert!(read.identity.is_some());
    assert_eq!(events[0].attestation["sub"], json!("payments-api"));
    assert_eq!(events[2].decision, "denied");

    // Nothing secret in the audit log: no secret value, token or lease id.
    let dump = serde_json::to_string(&b.store.audit_events(0, 1000).await.unwrap()).unwrap();
    for (_, _, v) in SEEDED {
        assert!(!dump.contains(v));
    }
    assert!(!dump.contains(w.token().unwrap()));
    assert!(!dump.contains(&s.lease_id));
    assert!(!dump.contains(&b.jwt("payments-api")[..40]));

    let report = b.verify_chain().await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, 12);
    let v = b.operator().audit_verify().await.unwrap();
    assert!(v.ok);
    b.stop().await;
}

async fn tampering_is_detected(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    for _ in 0..4 {
        w.kv_read("secret", "payments/db", None).await.unwrap();
    }
    assert!(b.verify_chain().await.ok);
    // An attacker with write access to the database must first get past the
    // append-only triggers.
    let bypass: &[&str] = if db == Db::Postgres {
        &["SET session_replication_role = replica"]
    } else {
        &[
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_no_delete",
        ]
    };

    // A changed row.
    let mut sql: Vec<&str> = bypass.to_vec();
    sql.push("UPDATE audit_events SET decision = 'denied' WHERE seq = 3");
    b.sql(&sql).await;
    let r = b.verify_chain().await;
    assert!(
        !r.ok && r.error.as_deref().unwrap().contains("row 3"),
        "{r:?}"
    );
    let v = b.operator().audit_verify().await.unwrap();
    assert!(!v.ok);
    let mut sql: Vec<&str> = bypass.to_vec();
    sql.push("UPDATE audit_events SET decision = 'allowed' WHERE seq = 3");
    b.sql(&sql).await;
    assert!(b.verify_chain().await.ok);

    // A deleted middle row, then a deleted last row.
    let mut sql: Vec<&str> = bypass.to_vec();
    sql.push("DELETE FROM audit_events WHERE seq = 2");
    b.sql(&sql).await;
    assert!(!b.verify_chain().await.ok);
    b.stop().await;

    let b2 = TestBroker::start(db).await;
    let w = b2.login("payments-api").await;
    w.kv_read("secret", "payments/db", None).await.unwrap();
    let mut sql: Vec<&str> = bypass.to_vec();
    sql.push("DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)");
    b2.sql(&sql).await;
    let r = b2.verify_chain().await;
    assert!(!r.ok, "{r:?}");
    if db == Db::Postgres {
        // Without the bypass, the database itself refuses to change history.
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&b2.store_url).await.unwrap();
        assert!(
            sqlx::Executor::execute(&mut c, "DELETE FROM audit_events")
                .await
                .is_err()
        );
        assert!(
            sqlx::Executor::execute(&mut c, "UPDATE audit_events SET reason = 'x'")
                .await
                .is_err()
        );
    }
    b2.stop().await;
}

async fn bad_input_is_a_clear_audited_4xx(db: Db) {
    let b = TestBroker::start_with(
        db,
        Options {
            max_body: Some(64 * 1024),
            ..Options::default()
        },
    )
    .await;
    let w = b.login("payments-api").await;
    let tok = w.token().unwrap().to_owned();
    let before = b.audit_count().await;
    let auth = [("X-Vault-Token", tok.as_str())];
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/v1/auth/jwt/login",
            b"{bad json".to_vec(),
            400,
            "failed to decode JSON input",
        ),
        (
            "POST",
            "/v1/auth/jwt/login",
            b"[1,2]".to_vec(),
            400,
            "failed to decode JSON input",
        ),
        (
            "POST",
            "/v1/auth/jwt/login",
            b"{}".to_vec(),
            400,
            "missing role",
        ),
        (
            "POST",
            "/v1/auth/jwt/login",
            br#"{"role":"payments-api"}"#.to_vec(),
            400,
            "missing token",
        ),
        (
            "POST",
            "/v1/auth/jwt/login",
            br#"{"role":"ghost\n{\"x\":1}","jwt":"a.b.c"}"#.to_vec(),
            400,
            LOGIN_DENIED,
        ),
        (
            "POST",
            "/v1/auth/jwt/login",
            br#"{"role":"payments-api","jwt":"not-a-jwt"}"#.to_vec(),
            400,
            LOGIN_DENIED,
        ),
        (
            "POST",
            "/v1/auth/jwt/login",
            vec![b'x'; 100 * 1024],
            413,
            "too large",
        ),
        (
            "PUT",
            "/v1/sys/leases/renew",
            b"{\"lease_id\":".to_vec(),
            400,
            "failed to decode JSON input",
        ),
        (
            "PUT",
            "/v1/sys/leases/revoke",
            b"{}".to_vec(),
            400,
            "lease_id must be specified",
        ),
        (
            "PUT",
            "/v1/sys/leases/renew",
            br#"{"lease_id":"x","increment":"forever"}"#.to_vec(),
            400,
            "invalid increment",
        ),
        (
            "GET",
            "/v1/secret/data/payments/../payments/admin/root",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/%2e%2e/payments/admin/root",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/admin%2Froot",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/%252e%252e/admin/root",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/db%00",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/%EF%BC%8E%EF%BC%8E/admin",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/db%E2%80%AE",
            vec![],
            400,
            "invalid path",
        ),
        (
            "GET",
            "/v1/secret/data/payments/db?version=abc",
            vec![],
            400,
            "invalid version",
        ),
        (
            "GET",
            "/v1/secret/metadata/payments?list=yes",
            vec![],
            400,
            "",
        ),
        (
            "OPTIONS",
            "/v1/secret/data/payments/db",
            vec![],
            405,
            "unsupported operation",
        ),
    ];
    for (method, path, body, status, msg) in &cases {
        let (got, text) = b.raw_http(method, path, &auth, body).await;
        assert_eq!(got, *status, "{method} {path}: {text}");
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {text}"));
        assert!(
            errors.iter().any(|e| e.as_str().unwrap().contains(msg)),
            "{path}: {text}"
        );
        assert!(!text.contains("pw-"), "no secret in an error body");
    }
    // Headers: wrapping refused, unknown namespace, duplicate tokens.
    let (s, t) = b
        .raw_http(
            "GET",
            "/v1/secret/data/payments/db",
            &[("X-Vault-Token", &tok), ("X-Vault-Wrap-TTL", "5m")],
            b"",
        )
        .await;
    assert_eq!(s, 400, "{t}");
    assert!(t.contains("wrapping"));
    let (s, t) = b
        .raw_http(
            "GET",
            "/v1/secret/data/payments/db",
            &[("X-Vault-Token", &tok), ("X-Vault-Namespace", "team1")],
            b"",
        )
        .await;
    assert_eq!(
        (s, t.trim()),
        (404, r#"{"errors":["namespace not found"]}"#)
    );
    let (s, _) = b
        .raw_http(
            "GET",
            "/v1/secret/data/payments/db",
            &[("X-Vault-Token", &tok), ("X-Vault-Namespace", "root")],
            b"",
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = b
        .raw_http(
            "GET",
            "/v1/secret/data/payments/db",
            &[("X-Vault-Token", &tok), ("X-Vault-Token", "other")],
            b"",
        )
        .await;
    assert_eq!(s, 400);
    // Every request above reached a handler and was audited, exactly once.
    assert_eq!(b.audit_count().await - before, cases.len() as i64 + 4);
    // The forged log line in the role name was escaped.
    let events = b.store.audit_events(0, 1000).await.unwrap();
    assert!(events.iter().all(|e| !e.event.path.contains('\0')
        && !e.event.workload.clone().unwrap_or_default().contains('\n')));
    // The caller read one message for an unknown role and a bad JWT; the
    // audit events keep which check failed.
    assert!(
        events
            .iter()
            .any(|e| e.event.reason.contains("could not be found"))
    );
    assert!(
        events
            .iter()
            .any(|e| e.event.reason.contains("error validating token"))
    );
    assert!(b.verify_chain().await.ok);
    b.stop().await;
}

async fn login_failures(db: Db) {
    let b = TestBroker::start(db).await;
    let bad = |jwt: String, role: &'static str| {
        let c = b.client.clone();
        async move { c.jwt_login(role, &jwt).await.unwrap_err() }
    };
    // The JWT's subject is another workload's.
    let e = bad(b.jwt("reporting-agent"), "payments-api").await;
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains(LOGIN_DENIED), "{e}");
    // A bound claim missing.
    let e = bad(b.jwt_with("ci-deployer", json!({})), "ci-deployer").await;
    assert_eq!(e.status(), Some(400));
    let e = bad(
        b.jwt_with("ci-deployer", json!({"environment": "staging"})),
        "ci-deployer",
    )
    .await;
    assert_eq!(e.status(), Some(400));
    b.client
        .jwt_login("ci-deployer", &b.jwt("ci-deployer"))
        .await
        .unwrap();
    // Expired outside the leeway.
    let old = b
        .issuer
        .mint(
            "payments-api",
            Duration::from_secs(60),
            Default::default(),
            b.clock.now() - chrono::Duration::seconds(300),
        )
        .unwrap();
    let e = bad(old, "payments-api").await;
    assert!(e.to_string().contains(LOGIN_DENIED), "{e}");
    // A JWT signed by another key that claims the same issuer.
    let dir = tempfile::tempdir().unwrap();
    let rogue = leash_attest::DevIssuer::load_or_create(dir.path()).unwrap();
    let forged = rogue
        .mint(
            "payments-api",
            Duration::from_secs(60),
            Default::default(),
            b.clock.now(),
        )
        .unwrap();
    let e = bad(forged, "payments-api").await;
    assert_eq!(e.status(), Some(400));
    // alg:none.
    let payload = forged_payload(&b);
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    assert_eq!(bad(none, "payments-api").await.status(), Some(400));
    // A stale token header on login is ignored.
    let ok = b
        .client
        .with_token("lsh.stale")
        .jwt_login("payments-api", &b.jwt("payments-api"))
        .await;
    assert!(ok.is_ok());
    // Replaying one JWT gives separate tokens (both bound to the workload).
    let jwt = b.jwt("payments-api");
    let a = b.client.jwt_login("payments-api", &jwt).await.unwrap();
    let c = b.client.jwt_login("payments-api", &jwt).await.unwrap();
    assert_ne!(a.client_token, c.client_token);
    let logins = b.store.audit_events(0, 1000).await.unwrap();
    assert!(
        logins
            .iter()
            .filter(|e| e.event.operation == "auth.jwt.login")
            .count()
            >= 10
    );
    b.stop().await;
}

fn forged_payload(b: &TestBroker) -> String {
    use base64::Engine;
    let now = b.clock.now().timestamp();
    let claims = json!({"iss": leash_attest::DevIssuer::ISSUER, "aud": "leash", "sub": "payments-api", "exp": now + 600, "iat": now});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
}

async fn audit_outage_fails_closed_and_recovers(db: Db) {
    let b = TestBroker::start_with(
        db,
        Options {
            commit_timeout: Duration::from_millis(800),
            ..Options::default()
        },
    )
    .await;
    let w = b.login("payments-api").await;
    w.kv_read("secret", "payments/db", None).await.unwrap();
    let before = b.audit_count().await;
    let live_before = b.store.stats(b.clock.now()).await.unwrap().live_leases;

    // Hold the audit chain's write lock from outside, as a stuck or slow
    // database would: no commit can complete.
    use sqlx::Connection;
    let blocker: Box<dyn std::any::Any + Send> = match db {
        Db::Postgres => {
            let mut c = sqlx::PgConnection::connect(&b.store_url).await.unwrap();
            sqlx::Executor::execute(&mut c, "BEGIN").await.unwrap();
            sqlx::Executor::execute(&mut c, "LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            Box::new(c)
        }
        Db::Sqlite => {
            let path = b.store_url.trim_start_matches("sqlite:").to_owned();
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{path}"))
                .await
                .unwrap();
            sqlx::Executor::execute(&mut c, "BEGIN EXCLUSIVE")
                .await
                .unwrap();
            Box::new(c)
        }
    };
    let started = std::time::Instant::now();
    let r = w
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(!r.body.contains("pw-"), "no secret without an audit row");
    assert!(
        r.json().unwrap()["errors"][0]
            .as_str()
            .unwrap()
            .contains("audit")
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
    // Refusals fail closed too: they cannot be audited, so they are 503.
    let r = w
        .raw("GET", "/v1/secret/data/payments/admin/root", None)
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    drop(blocker);

    // Recovery without a restart.
    let store = b.store.clone();
    let now = b.clock.now();
    let _ = leash_tests::eventually(Duration::from_secs(10), || {
        let w = w.clone();
        async move { w.kv_read("secret", "payments/db", None).await.is_ok() }
    })
    .await;
    w.kv_read("secret", "payments/db", None).await.unwrap();
    // Nothing was handed out during the outage: every live lease has an
    // allowed read event in the log (the timed-out reads left no lease).
    let after = store.stats(now).await.unwrap();
    let events = store.audit_events(0, 1000).await.unwrap();
    let allowed_reads = events
        .iter()
        .filter(|e| e.event.operation == "kv.read" && e.event.status == 200)
        .count() as i64;
    assert_eq!(after.live_leases, allowed_reads);
    assert!(after.live_leases > live_before);
    assert!(b.audit_count().await > before);
    assert!(b.verify_chain().await.ok);
    b.stop().await;
}

async fn revoke_during_read_hands_nothing_out(db: Db) {
    // Two replicas on one database (PostgreSQL), or one broker (SQLite):
    // a token revoked on one is refused by the other at once, and a read
    // racing the revocation either gets a lease committed before it, or 403.
    let a = TestBroker::start(db).await;
    let auth = a
        .client
        .jwt_login("payments-api", &a.jwt("payments-api"))
        .await
        .unwrap();
    let b = if db == Db::Postgres {
        Some(
            TestBroker::start_with(
                db,
                Options {
                    shared_pg: Some(a.store_url.clone()),
                    shared_keys: Some(a.keys_dir.clone()),
                    clock: a.clock.clone(),
                    ..Options::default()
                },
            )
            .await,
        )
    } else {
        None
    };
    let other = b
        .as_ref()
        .map_or_else(|| a.client.clone(), |b| b.client.clone())
        .with_token(auth.client_token.clone());
    let on_a = a.client.with_token(auth.client_token.clone());
    other.kv_read("secret", "payments/db", None).await.unwrap();

    let readers: Vec<_> = (0..40)
        .map(|_| {
            let c = other.clone();
            tokio::spawn(async move {
                c.raw("GET", "/v1/secret/data/payments/db", None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    on_a.token_revoke_self().await.unwrap();
    let mut served = 0;
    for r in readers {
        let r = r.await.unwrap();
        assert!(r.status == 200 || r.status == 403, "{}", r.status);
        if r.status == 200 {
            served += 1;
        }
    }
    // After the revoke committed: refused everywhere, immediately.
    assert_eq!(
        other
            .raw("GET", "/v1/secret/data/payments/db", None)
            .await
            .unwrap()
            .status,
        403
    );
    // Every lease that was handed out belongs to a read whose audit row
    // committed before the revocation's, and all of them are now revoked.
    let events = a.store.audit_events(0, 10_000).await.unwrap();
    let revoke_seq = events
        .iter()
        .find(|e| e.event.operation == "token.revoke_self")
        .unwrap()
        .seq;
    let ok_reads: Vec<_> = events
        .iter()
        .filter(|e| e.event.operation == "kv.read" && e.event.status == 200)
        .collect();
    assert_eq!(ok_reads.len(), served + 1);
    assert!(ok_reads.iter().all(|e| e.seq < revoke_seq));
    assert_eq!(a.store.stats(a.clock.now()).await.unwrap().live_leases, 0);
    if let Some(b) = b {
        b.stop().await;
    }
    a.stop().await;
}

async fn policy_reload_keeps_last_good_set(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("reporting-agent").await;
    w.kv_read("secret", "reporting/warehouse", None)
        .await
        .unwrap();
    let file = b.policy_dir.join("reporting-agent.toml");
    let good = std::fs::read_to_string(&file).unwrap();

    // A bad set is refused with file and line; the old set stays.
    std::fs::write(&file, good.replace("[[scope]]", "[[scope]]\nbogus = 1")).unwrap();
    let problems = b.reloader.reload().unwrap_err();
    assert!(
        problems[0].contains("reporting-agent.toml:"),
        "{problems:?}"
    );
    w.kv_read("secret", "reporting/warehouse", None)
        .await
        .unwrap();

    // A good change takes effect at once, for live sessions too.
    std::fs::write(&file, good.replace("secret/reporting/*", "secret/ci/*")).unwrap();
    b.reloader.reload().unwrap();
    assert_eq!(
        w.kv_read("secret", "reporting/warehouse", None)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    w.kv_read("secret", "ci/deploy-key", None).await.unwrap();

    // A workload removed from the set loses access, token or not.
    std::fs::remove_file(&file).unwrap();
    b.reloader.reload().unwrap();
    assert_eq!(
        w.kv_read("secret", "ci/deploy-key", None)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    b.stop().await;
}

async fn operator_api(db: Db) {
    let b = TestBroker::start(db).await;
    let w = b.login("payments-api").await;
    let s1 = w.kv_read("secret", "payments/db", None).await.unwrap();
    let s2 = w.kv_read("secret", "payments/api-key", None).await.unwrap();
    let op = b.operator();
    let st = op.status().await.unwrap();
    assert_eq!(st.live_leases, 2);
    assert_eq!(st.workloads, 3);
    // A workload token is not an operator token.
    assert_eq!(w.status().await.unwrap_err().status(), Some(403));
    assert_eq!(
        w.admin_revoke_lease(&s1.lease_id)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );

    assert_eq!(op.admin_revoke_lease(&s1.lease_id).await.unwrap(), 1);
    assert_eq!(
        op.admin_revoke_lease(&s1.lease_id).await.unwrap(),
        0,
        "idempotent"
    );
    assert!(w.lease_lookup(&s1.lease_id).await.is_err());
    // A prefix is literal: `%` and `_` match nothing special.
    assert_eq!(op.admin_revoke_prefix("secret/data/pay%").await.unwrap(), 0);
    assert_eq!(
        op.admin_revoke_prefix("secret/data/payments/")
            .await
            .unwrap(),
        1
    );
    assert!(w.lease_lookup(&s2.lease_id).await.is_err());
    let events = op.audit_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.operation == "admin.lease_revoke"
                && e.identity.as_deref() == Some("operator"))
    );
    let r = op
        .raw("GET", "/v1/leash/audit?limit=5000", None)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    b.stop().await;
}
