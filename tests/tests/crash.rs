//! PostgreSQL crashes under load (SECURITY-BAR, faults to survive: nothing
//! handed out unaudited, nothing audited lost, recovery on its own).
//!
//! A read is answered only after its batch's commit returned, and every
//! commit waits for the WAL to reach the disk. A commit that did not wait
//! (`synchronous_commit = off`) would be lost in a crash while its WAL was
//! still in PostgreSQL's shared memory, and so would one "flushed" by a
//! transaction that writes no WAL, or flushed on the server restarted
//! after the crash: each of these answered reads whose audit rows were
//! gone. So: readers run against a private PostgreSQL server, which is
//! crashed in the middle and restarted, three times, and every read
//! answered 200 must have its audit row after crash recovery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time // a test

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leash_tests::{Db, Options, PgCluster, TestBroker, eventually};
use sqlx::Connection as _;

const READERS: usize = 16;
/// Crash, outage, restart: this many times under the same load.
const CRASHES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_read_answered_before_a_postgres_crash_keeps_its_audit_row() {
    let cluster = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap());
    let b = TestBroker::start_with(
        Db::Postgres,
        Options {
            shared_pg: Some(cluster.url()),
            seed_shared_pg: true,
            commit_timeout: Duration::from_secs(2),
            ..Options::default()
        },
    )
    .await;
    let w = b.login("payments-api").await;

    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (w, answered, refused, stop) =
            (w.clone(), answered.clone(), refused.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match w.raw("GET", "/v1/secret/data/payments/db", None).await {
                    Ok(r) if r.status == 200 => {
                        let j = r.json().unwrap();
                        let id = j["request_id"].as_str().unwrap().to_owned();
                        answered.lock().unwrap().push(id);
                    }
                    Ok(r) => {
                        assert_eq!(r.status, 503, "{}", r.body);
                        assert!(!r.body.contains("pw-"), "a secret in a refusal");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("transport error: {e}"),
                }
            }
        }));
    }
    let count = || answered.lock().unwrap().len();
    assert!(
        eventually(Duration::from_secs(30), || async { count() >= 300 }).await,
        "no load before the first crash"
    );
    for _ in 0..CRASHES {
        // A crash in the middle of the readers' batches, an outage, and
        // the restart (crash recovery from the WAL).
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.crash())
            .await
            .unwrap();
        let at_crash = count();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.resume())
            .await
            .unwrap();
        // Leash recovers on its own: reads are answered again.
        assert!(
            eventually(Duration::from_secs(60), || async {
                count() >= at_crash + 300
            })
            .await,
            "reads not answered again after PostgreSQL came back"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the crash refused no read: it hit no batch in flight"
    );

    // Every read answered 200 has its allowed audit row.
    let mut c = sqlx::PgConnection::connect(&cluster.url()).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT request_id FROM audit_events WHERE operation = 'kv.read' AND status = 200",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let logged: HashSet<String> = rows.into_iter().map(|(id,)| id).collect();
    let answered = answered.lock().unwrap().clone();
    let lost: Vec<&String> = answered.iter().filter(|id| !logged.contains(*id)).collect();
    for id in &lost {
        let rows: Vec<(i64, String, i32, String)> = sqlx::query_as(
            "SELECT seq, operation, status, reason FROM audit_events WHERE request_id = $1",
        )
        .bind(id.as_str())
        .fetch_all(&mut c)
        .await
        .unwrap();
        let pos = answered.iter().position(|a| a == *id).unwrap();
        eprintln!("lost: {id}, answered #{pos}; its audit rows: {rows:?}");
    }
    assert!(
        lost.is_empty(),
        "{} of {} answered reads lost their audit row in the crash (first: {})",
        lost.len(),
        answered.len(),
        lost[0]
    );
    assert!(b.verify_chain().await.ok, "the chain after crash recovery");
    b.stop().await;
}

/// A unit that only records an allowed read with `request_id`.
fn unit(request_id: &str) -> leash_domain::records::CommitUnit {
    use leash_domain::audit::{AuditEvent, Decision};
    leash_domain::records::CommitUnit::event(AuditEvent {
        request_id: request_id.to_owned(),
        time: chrono::Utc::now(),
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
        attestation: serde_json::json!({}),
    })
}

/// A private server and a migrated store on it.
async fn cluster_and_store() -> (Arc<PgCluster>, Arc<dyn leash_store::Store>) {
    let cluster = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap());
    let hasher = leash_domain::crypto::KeyedHasher::new(&[9u8; 32]).unwrap();
    let store = leash_store::connect(&cluster.url(), &leash_store::PoolOptions::default(), hasher)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (cluster, store)
}

/// The same, deterministically and without load: a commit that returned
/// is on disk, even before any flush, so a crash right after it loses
/// nothing. (The trait lets a store defer durability to `flush`; this one
/// must not: see `flush` in the PostgreSQL store. This server's WAL writer
/// sleeps 10 s, so a commit that did not wait for the disk would be lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_returned_survives_a_crash() {
    let (cluster, store) = cluster_and_store().await;
    store.commit(&[unit("first")]).await.unwrap();
    for round in 0..3 {
        let id = format!("returned-{round}");
        store.commit_unflushed(&[unit(&id)]).await.unwrap();
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || {
            c.crash();
            c.resume();
        })
        .await
        .unwrap();
        let mut c = sqlx::PgConnection::connect(&cluster.url()).await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM audit_events WHERE request_id = $1")
                .bind(&id)
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert_eq!(
            n, 1,
            "round {round}: a commit that returned was lost in the crash"
        );
    }
    // And the store goes on by itself after the restarts.
    store.commit(&[unit("last")]).await.unwrap();
    store.flush().await.unwrap();
}
