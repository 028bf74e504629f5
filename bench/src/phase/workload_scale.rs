//! The workload-scale curve: Leash read throughput and latency, start-up
//! time and resident memory against the number of workloads declared in
//! its policy directory.
//!
//! Must never happen: two points sharing a database or a broker (each run
//! starts its own Leash on a fresh database and policy directory).

use std::time::Instant;

use crate::leash::FIXED_WORKLOADS;
use crate::options::Options;
use crate::phase::{Env, note_problem, scale_run};
use crate::report::{Report, RunStats, WorkloadPoint};

/// Read runs at each number of declared workloads, `opts.rounds` times,
/// the points interleaved: each run on a fresh database and a Leash started
/// on a generated policy directory of that size.
pub(crate) async fn run(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let points: Vec<usize> = opts
        .workload_points
        .iter()
        .map(|&n| n.max(FIXED_WORKLOADS))
        .collect();
    let mut runs: Vec<(Vec<RunStats>, Vec<f64>, Vec<f64>)> = vec![Default::default(); points.len()];
    for round in 0..opts.rounds.max(1) {
        for (i, &n) in points.iter().enumerate() {
            let t0 = Instant::now();
            let (_db, leash, _) = env.leash(opts, &format!("workloads{n}r{round}"), n).await?;
            let startup_secs = t0.elapsed().as_secs_f64();
            let (spec, _) = env.leash_read(&leash).await?;
            let run = scale_run(opts, env, &leash, &spec, round).await?;
            let rss_mib = leash.rss_mib();
            say!(
                opts,
                "round {round}: {n} workloads: {:.0} reads/s p99 {:.2} ms",
                run.throughput,
                run.p99_ms
            );
            note_problem(
                &mut report.problems,
                &format!("workload scale {n} round {round}"),
                &run,
            );
            runs[i].0.push(run);
            runs[i].1.push(startup_secs);
            runs[i].2.push(rss_mib);
        }
    }
    for (n, (stats, startup, rss)) in points.into_iter().zip(runs) {
        report
            .workload_scale
            .push(WorkloadPoint::of(n, stats, startup, rss));
    }
    Ok(())
}
