//! The floor server writes what it claims: every 2xx it answers has its
//! lease row and audit row committed, and a commit that fails is a 503,
//! never a 2xx. Real PostgreSQL; no timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

use std::time::Duration;

use leash_bench::floor::Floor;
use leash_bench::load::{self, LoadConfig, RequestSpec};
use leash_bench::pg::{self, Database};
use sqlx::Connection as _;

fn pg_url() -> String {
    std::env::var("LEASH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn cfg() -> LoadConfig {
    LoadConfig {
        connections: 8,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(600),
    }
}

async fn count(url: &str, table: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_read_has_its_rows_committed() {
    let spec = RequestSpec::get_with_token("/v1/secret/data/bench/db", "floor").unwrap();
    for pipelined in [false, true] {
        let db = pg::scratch_database(&pg_url(), "floortest").await.unwrap();
        let floor = Floor::start(&db.url, 2, pipelined, 16).await.unwrap();
        let out = load::run(floor.addr, &spec, cfg()).await.unwrap();
        drop(floor);
        assert!(
            out.clean(),
            "pipelined {pipelined}: {:?}",
            out.first_problem
        );
        assert!(out.ok > 0);
        let ok = i64::try_from(out.ok).unwrap();
        // Every 200 was answered after its commit; nothing else was sent.
        assert_eq!(
            count(&db.url, "bench_audit").await,
            ok,
            "pipelined {pipelined}"
        );
        assert_eq!(
            count(&db.url, "bench_leases").await,
            ok,
            "pipelined {pipelined}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_a_503() {
    let spec = RequestSpec::get_with_token("/v1/secret/data/bench/db", "floor").unwrap();
    for pipelined in [false, true] {
        // No scratch tables: every insert fails.
        let db = Database::create(&pg_url(), "floorbroken").await.unwrap();
        let floor = Floor::start(&db.url, 1, pipelined, 16).await.unwrap();
        let out = load::run(floor.addr, &spec, cfg()).await.unwrap();
        drop(floor);
        assert_eq!(
            out.ok, 0,
            "pipelined {pipelined}: a failed commit answered 2xx"
        );
        assert!(out.non_2xx.get(&503).copied().unwrap_or(0) > 0);
    }
}
