//! The storage ceiling (how many audit-shaped rows this PostgreSQL commits
//! per second, see [`crate::pg::ceiling`]) and the floor server's runs (see
//! [`crate::floor`]), and where the comparison's Leash reads sit under both.
//!
//! Must never happen: a percentage computed against a ceiling or a floor
//! that measured nothing ([`percent`] gives none), or a floor run with
//! errors left out of the report's problems.

use crate::bao::SECRET_PATH;
use crate::floor;
use crate::load::RequestSpec;
use crate::options::Options;
use crate::pg;
use crate::phase::{Env, measure, note_problem, probe};
use crate::report::{FloorRun, Report, Storage};

/// Measures the ceiling and the floor, after the comparison (whose best
/// read throughput it places), into `report.storage`.
pub(crate) async fn run(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    say!(opts, "storage ceiling");
    let ceiling = pg::ceiling(
        &opts.pg_url,
        opts.ceiling_connections,
        opts.ceiling_single_connections,
        opts.ceiling_batch,
        opts.ceiling_duration,
    )
    .await?;
    let best = report
        .compare
        .iter()
        .filter(|c| c.workload == "read")
        .max_by_key(|c| c.connections);
    let reads = best.map(|c| c.leash.throughput);
    let rows_per_read = 2;
    let conns = opts.connections.iter().copied().max().unwrap_or(1);
    let floor = floor_runs(opts, env, conns).await?;
    for f in &floor {
        note_problem(
            &mut report.problems,
            &format!("floor ({} writers, pipelined {})", f.writers, f.pipelined),
            &f.run,
        );
    }
    let floor_best = floor
        .iter()
        .map(|f| f.run.throughput)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    let per_read_ceiling = ceiling.batched_rows_per_sec / f64::from(rows_per_read);
    report.storage = Some(Storage {
        percent_of_ceiling: reads.and_then(|r| percent(r, per_read_ceiling)),
        percent_of_read_rows: reads.and_then(|r| percent(r, ceiling.read_rows_reads_per_sec)),
        floor_percent_of_ceiling: floor_best.and_then(|f| percent(f, per_read_ceiling)),
        percent_of_floor: reads.zip(floor_best).and_then(|(r, f)| percent(r, f)),
        leash_reads_per_sec: reads,
        at_connections: best.map(|c| c.connections),
        rows_per_read,
        ceiling,
        floor_connections: conns,
        floor,
    });
    Ok(())
}

/// `part` as a percentage of `whole`, if `whole` was measured.
fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| 100.0 * part / whole)
}

/// The floor server (see [`floor`]) on a fresh scratch database, once per
/// writer count, at `connections`.
async fn floor_runs(
    opts: &Options,
    env: &Env,
    connections: usize,
) -> anyhow::Result<Vec<FloorRun>> {
    let spec = RequestSpec::get_with_token(&format!("/v1/secret/data/{SECRET_PATH}"), "floor")?;
    let mut out = Vec::new();
    let shapes = [false, true]
        .into_iter()
        .flat_map(|p| opts.floor_writers.iter().map(move |&w| (w, p)));
    for (writers, pipelined) in shapes {
        let db = pg::scratch_database(&opts.pg_url, "floor").await?;
        let server = floor::Floor::start(&db.url, writers, pipelined, FLOOR_MAX_BATCH).await?;
        probe(server.addr, &spec, "floor").await?;
        let run = measure(
            opts,
            env,
            std::process::id(),
            server.addr,
            &spec,
            connections,
            0,
        )
        .await?;
        say!(
            opts,
            "floor ({writers} writers{}, c={connections}): {:.0} reads/s p99 {:.2} ms",
            if pipelined { ", pipelined" } else { "" },
            run.throughput,
            run.p99_ms
        );
        drop(server);
        out.push(FloorRun {
            writers,
            pipelined,
            run,
        });
    }
    Ok(out)
}

/// The floor server's largest batch (Leash's default `audit.max_batch`).
const FLOOR_MAX_BATCH: usize = 256;
