//! The lease-scale curve: Leash read throughput and latency against the
//! number of live leases in the database (seeded directly, see
//! [`crate::pg::seed_leases`]), with the WAL each read writes and the
//! broker's resident memory.
//!
//! Must never happen: a run that does not start at its target (the previous
//! run's own leases are deleted before the next point), or a run measured
//! without the mid-window checkpoint every run pays once.

use std::time::{Duration, Instant};

use crate::bao::{ROLE, SECRET_PATH};
use crate::options::Options;
use crate::pg;
use crate::phase::{Env, note_problem, scale_run};
use crate::report::{LeasePoint, LeaseRound, Report, RunStats};

/// Read runs at each number of live leases, `opts.rounds` times: each
/// round on a fresh database, its points in ascending order (so rounds
/// interleave), and after each run the run's own leases deleted, so that
/// every run starts at its target.
pub(crate) async fn run(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let mut points = opts.lease_points.clone();
    points.sort_unstable();
    let mut runs: Vec<(Vec<RunStats>, Vec<LeaseRound>)> = vec![Default::default(); points.len()];
    for round in 0..opts.rounds.max(1) {
        let (db, leash, _) = env.leash(opts, &format!("leases{round}"), 10).await?;
        let (spec, reader) = env.leash_read(&leash).await?;
        // The seeded leases belong to another token of the same workload.
        let owner = leash.login(ROLE, &env.home.jwt(ROLE)?).await?;
        let mut conn = db.connect().await?;
        let mut next = 0i64;
        for (i, &target) in points.iter().enumerate() {
            let live = pg::live_leases(&mut conn).await?;
            let want = i64::try_from(target)?.saturating_sub(live);
            let seed_started = Instant::now();
            if want > 0 {
                say!(
                    opts,
                    "round {round}: seeding {want} leases (to {target} live)"
                );
                pg::seed_leases(
                    &mut conn,
                    &pg::SeedLeases {
                        accessor: &owner.accessor,
                        workload: ROLE,
                        path: &format!("secret/{SECRET_PATH}"),
                        lease_path: &format!("secret/data/{SECRET_PATH}"),
                        from: next,
                        count: want,
                        ttl: Duration::from_secs(7200),
                    },
                )
                .await?;
                next += want;
            }
            pg::settle_leases(&mut conn).await?;
            let seed_secs = seed_started.elapsed().as_secs_f64();
            let live_before = pg::live_leases(&mut conn).await?;
            let wal0 = pg::WalMark::now(&mut conn).await?;
            // A checkpoint in the middle of the measured window: PostgreSQL
            // checkpoints all the time in service, and after each one the
            // first change to every page writes the whole page to the WAL,
            // which costs more the more pages the reads dirty. Every run
            // pays it once, at the same moment.
            let checkpoint = {
                let mut c = db.connect().await?;
                let at = opts.warmup + opts.duration / 2;
                tokio::spawn(async move {
                    tokio::time::sleep(at).await;
                    sqlx::query("CHECKPOINT").execute(&mut c).await?;
                    anyhow::Ok(())
                })
            };
            let run = scale_run(opts, env, &leash, &spec, round).await?;
            checkpoint.await??;
            let wal1 = pg::WalMark::now(&mut conn).await?;
            let live_after = pg::live_leases(&mut conn).await?;
            let rss_mib = leash.rss_mib();
            say!(
                opts,
                "round {round}: {live_before} live leases: {:.0} reads/s p99 {:.2} ms, \
                 {:.0} WAL bytes/read, RSS {rss_mib:.1} MiB",
                run.throughput,
                run.p99_ms,
                (wal1.bytes - wal0.bytes) / run.ok.max(1) as f64,
            );
            note_problem(
                &mut report.problems,
                &format!("lease scale {target} round {round}"),
                &run,
            );
            let reads = run.ok;
            runs[i].0.push(run);
            runs[i].1.push(LeaseRound {
                live_before,
                live_after,
                seed_secs,
                reads,
                wal_bytes: wal1.bytes - wal0.bytes,
                wal_fpi: wal1.fpi - wal0.fpi,
                rss_mib,
            });
            pg::delete_leases_of(&mut conn, &reader.accessor).await?;
        }
    }
    for (target, (stats, rounds)) in points.into_iter().zip(runs) {
        report
            .lease_scale
            .push(LeasePoint::of(target, stats, rounds));
    }
    Ok(())
}
