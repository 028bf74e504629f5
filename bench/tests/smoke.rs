//! The benchmark's whole code path in smoke mode, against the debug
//! binaries (`cargo build --workspace --bins` builds them, as CI does),
//! the real OpenBao from `.tools/` and PostgreSQL: the report must be
//! complete and every measured request must have succeeded. No timing is
//! asserted: this checks the instrument, not the numbers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

use std::path::PathBuf;

use leash_bench::{Options, repo_root};

fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LEASH_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/smoke-… → target/<profile>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    assert!(
        dir.join("leash-broker").exists(),
        "leash-broker not found in {}: run `cargo build --workspace --bins` first",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_is_complete_and_every_request_succeeds() {
    let pg = std::env::var("LEASH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut opts = Options::full(bin_dir(), repo_root().join(".tools/venv/bin/bao"), pg).smoke();
    opts.progress = true;
    let report = leash_bench::run(&opts).await.expect("the smoke run");
    let text = report.render();
    println!("{text}");

    assert!(
        report.problems.is_empty(),
        "problems: {:#?}",
        report.problems
    );
    assert_eq!(report.compare.len(), 2 * opts.connections.len());
    for c in &report.compare {
        for (who, s) in [("leash", &c.leash), ("openbao", &c.openbao)] {
            let what = format!("{} c={} {who}", c.workload, c.connections);
            assert_eq!(s.rounds.len(), opts.rounds, "{what}");
            assert!(s.ok > 0, "{what}: nothing succeeded");
            assert_eq!(s.errors, 0, "{what}: transport errors");
            assert_eq!(s.non_2xx, 0, "{what}: non-2xx answers");
            assert!(s.clean, "{what}");
        }
        assert!(c.throughput_ratio.is_some() && c.p99_ratio.is_some());
    }

    assert!(report.calibration.as_ref().is_some_and(|c| c.clean()));

    let storage = report.storage.as_ref().expect("storage ceiling");
    assert!(storage.ceiling.batched_rows_per_sec > 0.0);
    assert!(storage.ceiling.single_rows_per_sec > 0.0);
    assert!(storage.percent_of_ceiling.is_some());
    assert!(storage.ceiling.read_rows_reads_per_sec > 0.0);
    assert!(storage.percent_of_read_rows.is_some());
    assert_eq!(storage.floor.len(), 2 * opts.floor_writers.len());
    for f in &storage.floor {
        assert!(f.run.clean(), "floor {} writers: {:?}", f.writers, f.run);
    }
    assert!(storage.floor_percent_of_ceiling.is_some());
    assert!(storage.percent_of_floor.is_some());

    assert_eq!(report.lease_scale.len(), opts.lease_points.len());
    for p in &report.lease_scale {
        assert!(p.reads.clean, "lease point {}: {:?}", p.target, p.reads);
        assert_eq!(p.rounds.len(), opts.rounds.max(1));
        assert_eq!(p.reads.rounds.len(), p.rounds.len());
        for r in &p.rounds {
            // Every run starts at its target: the previous run's leases
            // were deleted.
            assert_eq!(r.live_before, i64::try_from(p.target).unwrap());
            assert!(r.live_after > r.live_before);
            assert!(r.wal_bytes > 0.0);
        }
        assert!(p.wal_bytes_per_read > 0.0);
        assert!(p.rss_mib > 0.0);
    }
    assert_eq!(report.workload_scale.len(), opts.workload_points.len());
    for p in &report.workload_scale {
        assert!(
            p.reads.clean,
            "workload point {}: {:?}",
            p.workloads, p.reads
        );
        assert_eq!(p.reads.rounds.len(), opts.rounds.max(1));
    }

    assert_eq!(report.revocation.len(), 3, "every revocation method");
    for r in &report.revocation {
        assert!(
            r.status == 200 || r.status == 204,
            "{}: status {}",
            r.method,
            r.status
        );
        assert_eq!(
            r.leases,
            i64::try_from(opts.revoke_leases).unwrap(),
            "{}",
            r.method
        );
        assert_eq!(
            r.still_live_after, 0,
            "{}: leases still live after the revocation",
            r.method
        );
        assert!(
            r.replica_refused_after_ms.is_some(),
            "{}: the second replica never refused",
            r.method
        );
    }

    assert!(!report.machine.loadavg_end.is_empty());
    for section in [
        "Leash vs OpenBao",
        "Storage ceiling",
        "Lease scale",
        "Workload scale",
        "Revocation",
    ] {
        assert!(text.contains(section), "the report lacks {section}");
    }
}
