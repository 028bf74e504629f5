//! The report's data model: what one invocation measured, and the JSON
//! report, which is these types serialised as they are (their fields, in
//! order, are its format). The medians and ratios are computed here, once;
//! the plain-text rendering is in `report/text.rs`.
//!
//! Must never happen: a run with errors or non-2xx answers counted as clean
//! ([`RunStats::clean`]), or a ratio computed from a run that served
//! nothing.

mod text;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::LoadOutcome;
use crate::pg::Ceiling;
use crate::sys::{CpuUse, Machine};

/// One load run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// Round number (0-based).
    pub round: usize,
    /// 2xx replies per second.
    pub throughput: f64,
    /// Latency quantiles of the 2xx replies, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// 2xx replies.
    pub ok: u64,
    /// Other statuses.
    pub non_2xx: BTreeMap<u16, u64>,
    /// Transport errors.
    pub errors: u64,
    /// Keep-alive connections the server closed.
    pub reconnects: u64,
    /// The measured window, seconds.
    pub window_secs: f64,
    /// CPU use over the run (cores).
    pub cpu: CpuUse,
    /// The first error or non-2xx status seen.
    pub first_problem: Option<String>,
}

impl RunStats {
    /// From a load outcome.
    pub fn from_outcome(round: usize, o: &LoadOutcome, cpu: CpuUse) -> RunStats {
        RunStats {
            round,
            throughput: o.throughput(),
            p50_ms: o.quantile_ms(0.50),
            p90_ms: o.quantile_ms(0.90),
            p99_ms: o.quantile_ms(0.99),
            max_ms: o.quantile_ms(1.0),
            ok: o.ok,
            non_2xx: o.non_2xx.clone(),
            errors: o.errors,
            reconnects: o.reconnects,
            window_secs: o.window.as_secs_f64(),
            cpu,
            first_problem: o.first_problem.clone(),
        }
    }

    /// Every request succeeded.
    pub fn clean(&self) -> bool {
        self.errors == 0 && self.non_2xx.values().sum::<u64>() == 0 && self.ok > 0
    }
}

/// One server's runs of one cell, and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Median over the rounds of the throughput.
    pub throughput: f64,
    /// Median p50, ms.
    pub p50_ms: f64,
    /// Median p99, ms.
    pub p99_ms: f64,
    /// Whether every round was clean.
    pub clean: bool,
    /// 2xx replies, all rounds.
    pub ok: u64,
    /// Non-2xx answers, all rounds.
    pub non_2xx: u64,
    /// Transport errors, all rounds.
    pub errors: u64,
    /// Median CPU use.
    pub cpu: CpuUse,
    /// Each round.
    pub rounds: Vec<RunStats>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Summary {
    /// The medians of `rounds`.
    pub fn of(rounds: Vec<RunStats>) -> Summary {
        let m = |f: fn(&RunStats) -> f64| median(rounds.iter().map(f).collect());
        Summary {
            throughput: m(|r| r.throughput),
            p50_ms: m(|r| r.p50_ms),
            p99_ms: m(|r| r.p99_ms),
            clean: rounds.iter().all(RunStats::clean),
            ok: rounds.iter().map(|r| r.ok).sum(),
            non_2xx: rounds.iter().map(|r| r.non_2xx.values().sum::<u64>()).sum(),
            errors: rounds.iter().map(|r| r.errors).sum(),
            cpu: CpuUse {
                generator: m(|r| r.cpu.generator),
                server: m(|r| r.cpu.server),
                postgres: m(|r| r.cpu.postgres),
            },
            rounds,
        }
    }
}

/// One workload at one connection count, both servers.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `read` or `login`.
    pub workload: String,
    /// Connections.
    pub connections: usize,
    /// Leash.
    pub leash: Summary,
    /// OpenBao.
    pub openbao: Summary,
    /// Leash throughput ÷ OpenBao throughput (None when OpenBao served
    /// nothing).
    pub throughput_ratio: Option<f64>,
    /// Leash p99 ÷ OpenBao p99.
    pub p99_ratio: Option<f64>,
}

impl Cell {
    /// Pairs the two summaries.
    pub fn new(workload: &str, connections: usize, leash: Summary, openbao: Summary) -> Cell {
        let ratio = |a: f64, b: f64| (b > 0.0 && a > 0.0).then(|| a / b);
        Cell {
            workload: workload.to_owned(),
            connections,
            throughput_ratio: ratio(leash.throughput, openbao.throughput),
            p99_ratio: ratio(leash.p99_ms, openbao.p99_ms),
            leash,
            openbao,
        }
    }
}

/// The storage ceiling and where Leash's reads sit under it.
#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    /// What PostgreSQL commits.
    pub ceiling: Ceiling,
    /// Rows Leash writes per read (lease + audit).
    pub rows_per_read: u32,
    /// The Leash read throughput compared (median, most connections).
    pub leash_reads_per_sec: Option<f64>,
    /// At how many connections.
    pub at_connections: Option<usize>,
    /// reads/s ÷ (batched ceiling ÷ rows per read), in percent.
    pub percent_of_ceiling: Option<f64>,
    /// reads/s ÷ the reads/s whose rows (lease + audit) PostgreSQL commits
    /// batched, in percent.
    pub percent_of_read_rows: Option<f64>,
    /// The floor server's runs (see `floor`), one per writer count.
    pub floor: Vec<FloorRun>,
    /// At how many connections they ran.
    pub floor_connections: usize,
    /// The floor's best reads/s ÷ (batched ceiling ÷ rows per read), in
    /// percent: what this machine allows a broker at best.
    pub floor_percent_of_ceiling: Option<f64>,
    /// Leash's reads/s ÷ the floor's best, in percent.
    pub percent_of_floor: Option<f64>,
}

/// One run of the floor server.
#[derive(Debug, Clone, Serialize)]
pub struct FloorRun {
    /// Its writer tasks (transactions in flight at once).
    pub writers: usize,
    /// Writers commit without waiting for the disk; one flusher makes
    /// their batches durable before the replies.
    pub pipelined: bool,
    /// The read run.
    pub run: RunStats,
}

/// One point of the lease-scale curve.
#[derive(Debug, Clone, Serialize)]
pub struct LeasePoint {
    /// The target number of live leases.
    pub target: u64,
    /// The read runs, one per round, and their medians.
    pub reads: Summary,
    /// What each round found around its run (same order as
    /// `reads.rounds`).
    pub rounds: Vec<LeaseRound>,
    /// Median over the rounds of the WAL bytes PostgreSQL wrote per read.
    pub wal_bytes_per_read: f64,
    /// Median over the rounds of the full-page images per read.
    pub wal_fpi_per_read: f64,
    /// The most leash-broker held resident after any round, MiB.
    pub rss_mib: f64,
}

/// One round at one lease-scale point.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaseRound {
    /// Live leases when the measured run started.
    pub live_before: i64,
    /// Live leases after it (the run's own reads add leases; they are
    /// deleted before the next point).
    pub live_after: i64,
    /// Seconds spent seeding to the target, vacuuming and checkpointing.
    pub seed_secs: f64,
    /// Reads answered 2xx.
    pub reads: u64,
    /// WAL bytes PostgreSQL wrote during the run (cluster-wide).
    pub wal_bytes: f64,
    /// Full-page images in that WAL.
    pub wal_fpi: i64,
    /// leash-broker resident memory after the run, MiB.
    pub rss_mib: f64,
}

impl LeasePoint {
    /// The point at `target` from its rounds.
    pub fn of(target: u64, stats: Vec<RunStats>, rounds: Vec<LeaseRound>) -> LeasePoint {
        let per_read = |f: fn(&LeaseRound) -> f64| {
            median(
                rounds
                    .iter()
                    .map(|r| f(r) / r.reads.max(1) as f64)
                    .collect(),
            )
        };
        LeasePoint {
            target,
            reads: Summary::of(stats),
            wal_bytes_per_read: per_read(|r| r.wal_bytes),
            wal_fpi_per_read: per_read(|r| r.wal_fpi as f64),
            rss_mib: rounds.iter().map(|r| r.rss_mib).fold(0.0, f64::max),
            rounds,
        }
    }
}

/// One point of the workload-scale curve.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadPoint {
    /// Workloads declared in the policy directory.
    pub workloads: usize,
    /// Median over the rounds of the seconds from spawning leash-broker to
    /// its first 200 on sys/health.
    pub startup_secs: f64,
    /// The read runs, one per round, and their medians.
    pub reads: Summary,
    /// The most leash-broker held resident after any round, MiB.
    pub rss_mib: f64,
}

impl WorkloadPoint {
    /// The point at `workloads` from its rounds: each a run, its Leash's
    /// start-up seconds and its resident MiB after the run.
    pub fn of(workloads: usize, stats: Vec<RunStats>, startup: Vec<f64>, rss: Vec<f64>) -> Self {
        WorkloadPoint {
            workloads,
            startup_secs: median(startup),
            reads: Summary::of(stats),
            rss_mib: rss.into_iter().fold(0.0, f64::max),
        }
    }
}

/// Revoking one identity's leases, and when a second replica notices.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// How it was revoked.
    pub method: String,
    /// Live leases of the identity before.
    pub leases: i64,
    /// Of those, still live after the revoking call returned.
    pub still_live_after: i64,
    /// The revoking call's status.
    pub status: u16,
    /// From sending the revocation to its reply, ms.
    pub revoke_ms: f64,
    /// What the second replica is polled with, and what counts as refused.
    pub replica_probe: String,
    /// From the revocation's reply to the replica's first refusal, ms
    /// (negative if the replica refused first).
    pub replica_refused_after_ms: Option<f64>,
    /// The replica's poll interval (one request round trip), median ms.
    pub replica_poll_rtt_ms: f64,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `full`, `quick`, `smoke`.
    pub mode: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Wall time of the whole run, seconds.
    pub wall_secs: f64,
    /// The machine.
    pub machine: Machine,
    /// The settings that shaped the run.
    pub settings: serde_json::Value,
    /// The Leash mount reads are served from.
    pub leash_mount: String,
    /// The generator against a trivial in-process server (its own
    /// ceiling here, at the most connections).
    pub calibration: Option<RunStats>,
    /// Leash vs OpenBao.
    pub compare: Vec<Cell>,
    /// The storage ceiling.
    pub storage: Option<Storage>,
    /// Read p99 against live leases.
    pub lease_scale: Vec<LeasePoint>,
    /// Read p99 against declared workloads.
    pub workload_scale: Vec<WorkloadPoint>,
    /// Revocation, one entry per method.
    pub revocation: Vec<Revocation>,
    /// Runs that were not clean, and phases that failed.
    pub problems: Vec<String>,
}
