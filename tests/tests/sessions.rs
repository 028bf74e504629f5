//! The session cache across replicas sharing one PostgreSQL database: a
//! token revoked on one replica is refused by another through the
//! announcement committed with the revocation, even when that replica was
//! told to trust its cached records for a long time; a stale cached record
//! never yields a secret; a lost announcement connection turns the cache
//! off until it is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use leash_client::LeashClient;
use leash_tests::{Db, Options, TestBroker, eventually};

/// A second replica on `a`'s database and keys, trusting cached token
/// records for `ttl`.
async fn replica(a: &TestBroker, ttl: Duration) -> TestBroker {
    TestBroker::start_with(
        Db::Postgres,
        Options {
            shared_pg: Some(a.store_url.clone()),
            shared_keys: Some(a.keys_dir.clone()),
            clock: a.clock.clone(),
            session_ttl: Some(ttl),
            ..Options::default()
        },
    )
    .await
}

async fn sessions(b: &TestBroker) -> serde_json::Value {
    let r = b
        .operator()
        .raw("GET", "/v1/leash/status", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().unwrap()["data"]["sessions"].clone()
}

/// How `b`'s commits were written: `(one_statement, general, stale)`.
async fn commit_paths(b: &TestBroker) -> (u64, u64, u64) {
    let r = b
        .operator()
        .raw("GET", "/v1/leash/status", None)
        .await
        .unwrap();
    let p = r.json().unwrap()["data"]["commits"]["paths"].clone();
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
    (n("one_statement"), n("general"), n("stale"))
}

async fn lookup_status(c: &LeashClient) -> u16 {
    c.raw("GET", "/v1/auth/token/lookup-self", None)
        .await
        .unwrap()
        .status
}

async fn listening(b: &TestBroker) -> bool {
    sessions(b).await["listening"] == true
}

/// Waits until `b` hears revocations (it subscribes at start-up).
async fn until_listening(b: &TestBroker) {
    assert!(
        eventually(Duration::from_secs(10), || listening(b)).await,
        "the replica never subscribed to revocations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_replica_reaches_the_other_through_the_announcement() {
    let a = TestBroker::start(Db::Postgres).await;
    // B trusts its cache for an hour: only the announcement can evict.
    let b = replica(&a, Duration::from_secs(3600)).await;
    until_listening(&b).await;
    let auth = a
        .client
        .jwt_login("payments-api", &a.jwt("payments-api"))
        .await
        .unwrap();
    let on_b = b.client.with_token(auth.client_token.clone());
    for _ in 0..5 {
        assert_eq!(lookup_status(&on_b).await, 200);
    }
    let s = sessions(&b).await;
    assert!(s["hits"].as_u64().unwrap() >= 4, "cache in use: {s}");

    a.client
        .with_token(auth.client_token.clone())
        .token_revoke_self()
        .await
        .unwrap();
    let revoked = Instant::now();
    let refused = eventually(Duration::from_secs(5), || {
        let c = on_b.clone();
        async move { lookup_status(&c).await == 403 }
    })
    .await;
    assert!(refused, "the other replica kept trusting a revoked token");
    let took = revoked.elapsed();
    // DESIGN: refused by every replica within one second.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(sessions(&b).await["evictions"].as_u64().unwrap() >= 1);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_record_never_yields_a_secret_and_the_ttl_bounds_it() {
    let a = TestBroker::start(Db::Postgres).await;
    let b = replica(&a, Duration::from_millis(1500)).await;
    until_listening(&b).await;
    let w = b.login("payments-api").await;
    w.kv_read("secret", "payments/db", None).await.unwrap();
    w.kv_read("secret", "payments/db", None).await.unwrap();
    assert_eq!(lookup_status(&w).await, 200);
    // B learnt the audit head from its first commit, so its reads are
    // written in one statement each, chained in advance.
    let (one, _, stale) = commit_paths(&b).await;
    assert!(one >= 1, "reads in one statement: {one}");
    // Revoked behind Leash's back (no announcement): the cached record is
    // stale now.
    let digest = a.hasher.token(&leash_domain::SecretToken::new(
        w.token().unwrap().to_owned(),
    ));
    let sql = format!(
        "UPDATE tokens SET revoked_at = 1 WHERE hash = '\\x{}'",
        digest.to_hex()
    );
    a.sql(&[&sql]).await;
    let at = Instant::now();
    // A read still goes through the database's conditional lease insert:
    // refused at once, nothing handed out.
    let r = w
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains("pw-"));
    // The read's one statement found its lease not inserted and undid
    // itself; the general transaction then recorded the refusal.
    let (_, _, stale_after) = commit_paths(&b).await;
    assert!(
        stale_after > stale,
        "the one statement refused: {stale_after}"
    );
    // Calls that hand nothing out may trust the stale copy, but only until
    // the TTL runs out.
    assert!(
        eventually(Duration::from_secs(5), || {
            let w = w.clone();
            async move { lookup_status(&w).await == 403 }
        })
        .await
    );
    assert!(at.elapsed() < Duration::from_secs(4));
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_announcement_connection_turns_the_cache_off_until_it_is_back() {
    let a = TestBroker::start(Db::Postgres).await;
    let b = replica(&a, Duration::from_secs(3600)).await;
    until_listening(&b).await;
    let w = b.login("payments-api").await;
    assert_eq!(lookup_status(&w).await, 200);
    assert_eq!(lookup_status(&w).await, 200);
    // Revoked behind Leash's back: B's cache (trusted for an hour) is
    // stale, and no announcement will come.
    let digest = a.hasher.token(&leash_domain::SecretToken::new(
        w.token().unwrap().to_owned(),
    ));
    a.sql(&[&format!(
        "UPDATE tokens SET revoked_at = 1 WHERE hash = '\\x{}'",
        digest.to_hex()
    )])
    .await;
    assert_eq!(lookup_status(&w).await, 200, "served from the cache");
    // Kill every LISTEN connection of this database, as a network blip or
    // a database restart would.
    let db = a.store_url.rsplit('/').next().unwrap().to_owned();
    a.sql(&[&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db}' AND query LIKE 'LISTEN%'"
    )])
    .await;
    // The cache is cleared when the connection is lost, and again when it
    // is back: the stale record is gone either way.
    assert!(
        eventually(Duration::from_secs(5), || {
            let w = w.clone();
            async move { lookup_status(&w).await == 403 }
        })
        .await
    );
    until_listening(&b).await;
    assert_eq!(lookup_status(&w).await, 403);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_revokes_a_workload_or_an_identity_on_every_replica() {
    let a = TestBroker::start(Db::Postgres).await;
    let b = replica(&a, Duration::from_secs(3600)).await;
    until_listening(&b).await;
    // Two sessions of the workload, used (and cached) on B.
    let w1 = b.login("payments-api").await;
    let w2 = b.login("payments-api").await;
    for w in [&w1, &w2] {
        w.kv_read("secret", "payments/db", None).await.unwrap();
        assert_eq!(lookup_status(w).await, 200);
    }
    // One identity first, by the accessor its audit events carry.
    let accessor = w1.token_lookup_self().await.unwrap().accessor;
    let n = a.operator().admin_revoke_accessor(&accessor).await.unwrap();
    assert_eq!(n, 2, "its token and its lease");
    assert!(
        eventually(Duration::from_secs(1), || lookup_status_is(&w1, 403)).await,
        "B kept the revoked identity"
    );
    assert_eq!(lookup_status(&w2).await, 200);
    // Then the whole workload.
    let n = a
        .operator()
        .admin_revoke_workload("payments-api")
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(eventually(Duration::from_secs(1), || lookup_status_is(&w2, 403)).await);
    let r = w2
        .raw("GET", "/v1/secret/data/payments/db", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // Bad input is a clear, audited 400.
    let r = a
        .operator()
        .raw(
            "POST",
            "/v1/leash/leases/revoke",
            Some(serde_json::json!({"workload": "a", "accessor": "b"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(a.verify_chain().await.ok);
    b.stop().await;
    a.stop().await;
}

async fn lookup_status_is(c: &LeashClient, status: u16) -> bool {
    lookup_status(c).await == status
}
