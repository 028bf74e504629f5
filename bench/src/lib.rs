//! `leash-bench`: the benchmark of issue 5. Starts OpenBao (raft storage,
//! file audit device, a policy-limited token, JWT auth) and Leash (the
//! release `leash-broker` on a fresh PostgreSQL database) on this machine,
//! drives the same read and login requests against both with one load
//! generator in interleaved rounds, then measures the storage ceiling, the
//! lease-scale and workload-scale curves and revocation, and reports.
//!
//! It is a benchmark, not a test: nothing here asserts a timing. What it
//! must never do is hide a failed request (see [`load`]) or leave a server
//! or a database behind (guards kill and drop them, also on error).

// The benchmark stamps its reports and seeded rows with the real time.
#![allow(clippy::disallowed_methods)]

pub mod bao;
pub mod floor;
pub mod leash;
pub mod load;
pub mod pg;
pub mod report;
pub mod sys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::bao::{Bao, ROLE, SECRET_PATH};
use crate::leash::{FIXED_WORKLOADS, Leash, LeashHome, MountChoice, REVOKE_ROLE};
use crate::load::{LoadConfig, RequestSpec};
use crate::report::{
    Cell, FloorRun, LeasePoint, LeaseRound, Report, Revocation, RunStats, Storage, Summary,
    WorkloadPoint,
};
use crate::sys::{CpuSample, Machine};

/// Which phases run and how long each load run lasts.
#[derive(Debug, Clone)]
pub struct Options {
    /// `full`, `quick` or `smoke` (for the report).
    pub mode: String,
    /// Interleaved rounds of the comparison.
    pub rounds: usize,
    /// Unmeasured warm-up before each run.
    pub warmup: Duration,
    /// Measured window of each run.
    pub duration: Duration,
    /// Connection counts of the comparison.
    pub connections: Vec<usize>,
    /// Connections of the scale curves.
    pub scale_connections: usize,
    /// Live-lease points of the lease-scale curve.
    pub lease_points: Vec<u64>,
    /// Declared-workload points of the workload-scale curve.
    pub workload_points: Vec<usize>,
    /// Leases of the identity the revocation measurement revokes.
    pub revoke_leases: u64,
    /// Measured window of each storage-ceiling measurement.
    pub ceiling_duration: Duration,
    /// Connections of the batched storage-ceiling measurement.
    pub ceiling_connections: usize,
    /// Connections of the one-row-per-transaction measurement.
    pub ceiling_single_connections: usize,
    /// Rows per transaction of the batched ceiling.
    pub ceiling_batch: usize,
    /// Run the Leash/OpenBao comparison.
    pub compare: bool,
    /// Run the storage ceiling.
    pub ceiling: bool,
    /// Writer counts of the floor server (measured after the ceiling, at
    /// the most connections, each committing durably and pipelined; the
    /// best counts).
    pub floor_writers: Vec<usize>,
    /// Run the lease-scale curve.
    pub lease_scale: bool,
    /// Run the workload-scale curve.
    pub workload_scale: bool,
    /// Run the revocation measurement.
    pub revocation: bool,
    /// Where Leash's `secret/` mount reads from.
    pub mount: MountChoice,
    /// The directory holding `leash-broker`.
    pub bin_dir: PathBuf,
    /// The `bao` binary.
    pub bao_bin: PathBuf,
    /// The PostgreSQL admin URL (databases are created next to it).
    pub pg_url: String,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Options {
    /// The default, full run (about 10–15 minutes on 2 cores).
    pub fn full(bin_dir: PathBuf, bao_bin: PathBuf, pg_url: String) -> Options {
        Options {
            mode: "full".into(),
            rounds: 3,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            connections: vec![1, 16, 64],
            scale_connections: 64,
            lease_points: vec![10_000, 100_000, 1_000_000],
            workload_points: vec![10, 10_000],
            revoke_leases: 100_000,
            ceiling_duration: Duration::from_secs(5),
            ceiling_connections: 4,
            ceiling_single_connections: 64,
            ceiling_batch: 256,
            compare: true,
            ceiling: true,
            floor_writers: vec![1, 2, 4],
            lease_scale: true,
            workload_scale: true,
            revocation: true,
            mount: MountChoice::Vault,
            bin_dir,
            bao_bin,
            pg_url,
            progress: true,
        }
    }

    /// Every phase, short runs, the real scale points (about 2–3 minutes).
    pub fn quick(self) -> Options {
        Options {
            mode: "quick".into(),
            rounds: 1,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(4),
            ceiling_duration: Duration::from_secs(3),
            lease_points: vec![10_000, 100_000, 1_000_000],
            ..self
        }
    }

    /// Every phase, tiny runs and scale points: checks the code path, not
    /// the numbers (CI's smoke test).
    pub fn smoke(self) -> Options {
        Options {
            mode: "smoke".into(),
            rounds: 1,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(800),
            connections: vec![1, 4],
            scale_connections: 4,
            lease_points: vec![100, 1_000],
            workload_points: vec![10, 50],
            revoke_leases: 1_000,
            ceiling_duration: Duration::from_millis(500),
            ceiling_connections: 2,
            ceiling_single_connections: 4,
            floor_writers: vec![1, 2],
            ..self
        }
    }

    fn load(&self, connections: usize) -> LoadConfig {
        LoadConfig {
            connections,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    fn broker_bin(&self) -> PathBuf {
        self.bin_dir.join("leash-broker")
    }

    fn settings_json(&self) -> serde_json::Value {
        json!({
            "rounds": self.rounds,
            "warmup_secs": self.warmup.as_secs_f64(),
            "duration_secs": self.duration.as_secs_f64(),
            "connections": self.connections,
            "scale_connections": self.scale_connections,
            "lease_points": self.lease_points,
            "workload_points": self.workload_points,
            "revoke_leases": self.revoke_leases,
            "ceiling": {"secs": self.ceiling_duration.as_secs_f64(), "batched_connections": self.ceiling_connections, "single_connections": self.ceiling_single_connections, "batch": self.ceiling_batch},
            "floor_writers": self.floor_writers,
        })
    }
}

/// The repository this crate was built in (for `.tools/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// When the first progress line was printed.
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Seconds since the first progress line.
fn elapsed() -> f64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

macro_rules! say {
    ($opts:expr, $($arg:tt)*) => {
        if $opts.progress {
            eprintln!("leash-bench [{:>6.1}s] {}", elapsed(), format_args!($($arg)*));
        }
    };
}

/// The harness's state shared by the phases.
struct Env {
    home: LeashHome,
    bao: Bao,
    tck: f64,
    _tmp: tempfile::TempDir,
}

impl Env {
    /// A Leash on a fresh database with `workloads` declared.
    async fn leash(
        &self,
        opts: &Options,
        label: &str,
        workloads: usize,
    ) -> anyhow::Result<(pg::Database, Leash, std::path::PathBuf)> {
        let db = pg::Database::create(&opts.pg_url, label).await?;
        let policies = self
            .home
            .policies(&format!("policies-{label}"), workloads)?;
        let config = self.home.config(
            label,
            &db.url,
            &policies,
            opts.mount,
            &self.bao.url(),
            &self.bao.upstream_token,
        )?;
        let leash = self.home.start(&config, label).await?;
        if opts.mount == MountChoice::Builtin {
            leash.seed_secret(&self.home).await?;
        }
        Ok((db, leash, config))
    }

    /// The read request against Leash with a fresh login of `role`.
    async fn leash_read(&self, leash: &Leash) -> anyhow::Result<(RequestSpec, leash::Login)> {
        let login = leash.login(ROLE, &self.home.jwt(ROLE)?).await?;
        let spec =
            RequestSpec::get_with_token(&format!("/v1/secret/data/{SECRET_PATH}"), &login.token)?;
        Ok((spec, login))
    }
}

/// Sends `spec` once and fails with the answer unless it is 2xx: a broken
/// setup stops the run before any number is taken.
async fn probe(addr: SocketAddr, spec: &RequestSpec, what: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut req = http.request(spec.method.clone(), format!("http://{addr}{}", spec.path));
    for (k, v) in &spec.headers {
        req = req.header(k.clone(), v.clone());
    }
    let r = req.body(spec.body.clone()).send().await?;
    let status = r.status();
    anyhow::ensure!(
        status.is_success(),
        "{what}: the probe request got {status}: {}",
        r.text().await.unwrap_or_default()
    );
    Ok(())
}

async fn measure(
    opts: &Options,
    env: &Env,
    pid: u32,
    addr: SocketAddr,
    spec: &RequestSpec,
    connections: usize,
    round: usize,
) -> anyhow::Result<RunStats> {
    let cpu = CpuSample::take(pid);
    let out = load::run(addr, spec, opts.load(connections)).await?;
    let cpu = cpu.since(env.tck);
    Ok(RunStats::from_outcome(round, &out, cpu))
}

/// A read run against `leash` at the scale curves' connection count.
async fn scale_run(
    opts: &Options,
    env: &Env,
    leash: &Leash,
    spec: &RequestSpec,
    round: usize,
) -> anyhow::Result<RunStats> {
    let c = opts.scale_connections;
    measure(opts, env, leash.child.pid(), leash.addr, spec, c, round).await
}

fn note_problem(problems: &mut Vec<String>, what: &str, r: &RunStats) {
    if !r.clean() {
        problems.push(format!(
            "{what}: {} ok, non-2xx {:?}, {} errors; first: {}",
            r.ok,
            r.non_2xx,
            r.errors,
            r.first_problem.as_deref().unwrap_or("-")
        ));
    }
}

/// Runs every selected phase and returns the report.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut machine = Machine::local(&repo_root(), &opts.broker_bin());
    let (pgv, pgs) = pg::describe(&opts.pg_url)
        .await
        .context("PostgreSQL does not answer (scripts/ensure-postgres starts it)")?;
    machine.postgres_version = pgv;
    machine.postgres_settings = pgs;

    let tmp = tempfile::Builder::new().prefix("leash-bench-").tempdir()?;
    let home = LeashHome::create(&opts.broker_bin(), &tmp.path().join("leash"))?;
    let bao_dir = tmp.path().join("openbao");
    std::fs::create_dir_all(&bao_dir)?;
    say!(
        opts,
        "starting OpenBao (raft, file audit) in {}",
        bao_dir.display()
    );
    let bao = bao::start(
        &opts.bao_bin,
        &bao_dir,
        leash_attest::DevIssuer::ISSUER,
        leash_attest::DevIssuer::AUDIENCE,
        &home.issuer_pem()?,
    )
    .await?;
    machine.openbao_version = bao.version.clone();
    let env = Env {
        home,
        bao,
        tck: sys::clk_tck(),
        _tmp: tmp,
    };

    let mut report = Report {
        mode: opts.mode.clone(),
        started_at,
        wall_secs: 0.0,
        machine,
        settings: opts.settings_json(),
        leash_mount: opts.mount.describe().into(),
        calibration: None,
        compare: Vec::new(),
        storage: None,
        lease_scale: Vec::new(),
        workload_scale: Vec::new(),
        revocation: Vec::new(),
        problems: Vec::new(),
    };

    if opts.compare {
        let trivial = load::Trivial::start().await?;
        let spec = RequestSpec::get_with_token("/", "calibration")?;
        let c = opts.connections.iter().copied().max().unwrap_or(1);
        let r = measure(opts, &env, std::process::id(), trivial.addr, &spec, c, 0).await?;
        say!(
            opts,
            "generator ceiling (trivial server, c={c}): {:.0}/s p99 {:.2} ms",
            r.throughput,
            r.p99_ms
        );
        note_problem(&mut report.problems, "calibration", &r);
        report.calibration = Some(r);
        drop(trivial);
        compare(opts, &env, &mut report).await?;
    }
    if opts.ceiling {
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
        let floor = floor_runs(opts, &env, conns).await?;
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
    }
    if opts.lease_scale {
        lease_scale(opts, &env, &mut report).await?;
    }
    if opts.workload_scale {
        workload_scale(opts, &env, &mut report).await?;
    }
    if opts.revocation {
        report.revocation = revocation(opts, &env).await?;
    }
    report.machine.loadavg_end = sys::loadavg();
    report.wall_secs = started.elapsed().as_secs_f64();
    Ok(report)
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

async fn compare(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let (_db, leash, _) = env.leash(opts, "compare", 10).await?;
    let (leash_read, _) = env.leash_read(&leash).await?;
    let jwt = env.home.jwt(ROLE)?;
    let login_body = json!({"role": ROLE, "jwt": jwt});
    let login = RequestSpec::post_json("/v1/auth/jwt/login", &login_body)?;
    let bao_read = RequestSpec::get_with_token(
        &format!("/v1/secret/data/{SECRET_PATH}"),
        &env.bao.read_token,
    )?;
    probe(leash.addr, &leash_read, "Leash read").await?;
    probe(leash.addr, &login, "Leash login").await?;
    probe(env.bao.addr, &bao_read, "OpenBao read").await?;
    probe(env.bao.addr, &login, "OpenBao login").await?;

    let workloads = [("read", &leash_read, &bao_read), ("login", &login, &login)];
    // runs[(workload, conns)] = (leash rounds, bao rounds)
    let mut runs: Vec<(String, usize, Vec<RunStats>, Vec<RunStats>)> = Vec::new();
    for (w, _, _) in &workloads {
        for &c in &opts.connections {
            runs.push(((*w).to_owned(), c, Vec::new(), Vec::new()));
        }
    }
    for round in 0..opts.rounds {
        let leash_first = round % 2 == 0;
        let mut i = 0;
        for (w, l_spec, b_spec) in &workloads {
            for &c in &opts.connections {
                for leash_turn in [leash_first, !leash_first] {
                    let (name, pid, addr, spec) = if leash_turn {
                        ("leash", leash.child.pid(), leash.addr, *l_spec)
                    } else {
                        ("openbao", env.bao.child.pid(), env.bao.addr, *b_spec)
                    };
                    let r = measure(opts, env, pid, addr, spec, c, round).await?;
                    say!(
                        opts,
                        "round {}/{} {w:<5} c={c:<3} {name:<7} {:>9.0}/s p50 {:>7.2} ms p99 {:>8.2} ms{}",
                        round + 1,
                        opts.rounds,
                        r.throughput,
                        r.p50_ms,
                        r.p99_ms,
                        if r.clean() { "" } else { "  NOT CLEAN" }
                    );
                    note_problem(
                        &mut report.problems,
                        &format!("round {} {w} c={c} {name}", round + 1),
                        &r,
                    );
                    if leash_turn {
                        runs[i].2.push(r);
                    } else {
                        runs[i].3.push(r);
                    }
                }
                i += 1;
            }
        }
    }
    for (w, c, l, b) in runs {
        report
            .compare
            .push(Cell::new(&w, c, Summary::of(l), Summary::of(b)));
    }
    Ok(())
}

/// Read runs at each number of live leases, `opts.rounds` times: each
/// round on a fresh database, its points in ascending order (so rounds
/// interleave), and after each run the run's own leases deleted, so that
/// every run starts at its target.
async fn lease_scale(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
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

/// Read runs at each number of declared workloads, `opts.rounds` times,
/// the points interleaved: each run on a fresh database and a Leash started
/// on a generated policy directory of that size.
async fn workload_scale(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
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

/// Live leases of the token with `accessor`.
async fn live_of(c: &mut sqlx::PgConnection, accessor: &str) -> anyhow::Result<i64> {
    let now = chrono::Utc::now().timestamp_micros();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM leases l JOIN tokens t ON t.hash = l.token_hash \
         WHERE t.accessor = $1 AND l.revoked_at IS NULL AND l.expires_at > $2",
    )
    .bind(accessor)
    .bind(now)
    .fetch_one(c)
    .await?;
    Ok(n)
}

/// How the second replica is asked whether the revocation reached it.
enum Probe {
    /// `auth/token/lookup-self` with the revoked token (refused: 403).
    Token { token: String },
    /// `sys/leases/lookup` of one revoked lease with its (live) token
    /// (refused: any 4xx).
    Lease { token: String, lease_id: String },
}

impl Probe {
    fn describe(&self) -> &'static str {
        match self {
            Probe::Token { .. } => "GET auth/token/lookup-self with the token, until 403",
            Probe::Lease { .. } => "PUT sys/leases/lookup of one of the leases, until 4xx",
        }
    }

    async fn status(&self, http: &reqwest::Client, base: &str) -> u16 {
        let req = match self {
            Probe::Token { token } => http
                .get(format!("{base}/v1/auth/token/lookup-self"))
                .header("X-Vault-Token", token),
            Probe::Lease { token, lease_id } => http
                .put(format!("{base}/v1/sys/leases/lookup"))
                .header("X-Vault-Token", token)
                .json(&json!({ "lease_id": lease_id })),
        };
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

/// An identity with `leases` live leases: one read through the API (its
/// lease id is returned) and the rest seeded, numbered from `from`.
async fn identity_with_leases(
    env: &Env,
    primary: &Leash,
    conn: &mut sqlx::PgConnection,
    leases: u64,
    from: i64,
) -> anyhow::Result<(leash::Login, String)> {
    let who = primary
        .login(REVOKE_ROLE, &env.home.jwt(REVOKE_ROLE)?)
        .await?;
    let r = primary
        .http()
        .get(format!("{}/v1/secret/data/{SECRET_PATH}", primary.url()))
        .header("X-Vault-Token", &who.token)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "the revocation identity cannot read: {}",
        r.status()
    );
    let body: serde_json::Value = r.json().await?;
    let lease_id = body["lease_id"]
        .as_str()
        .context("a read without lease_id")?
        .to_owned();
    if leases > 1 {
        pg::seed_leases(
            conn,
            &pg::SeedLeases {
                accessor: &who.accessor,
                workload: REVOKE_ROLE,
                path: &format!("secret/{SECRET_PATH}"),
                lease_path: &format!("secret/data/{SECRET_PATH}"),
                from,
                count: i64::try_from(leases - 1)?,
                ttl: Duration::from_secs(7200),
            },
        )
        .await?;
        pg::settle_leases(conn).await?;
    }
    Ok((who, lease_id))
}

/// Sends `revoke` to the primary while polling the replica with `probe`.
async fn timed_revocation(
    method: &str,
    primary: &Leash,
    replica: &Leash,
    conn: &mut sqlx::PgConnection,
    accessor: &str,
    probe: Probe,
    revoke: reqwest::RequestBuilder,
) -> anyhow::Result<Revocation> {
    let leases = live_of(conn, accessor).await?;
    let before = probe.status(replica.http(), &replica.url()).await;
    anyhow::ensure!(
        before == 200,
        "{method}: the replica refuses before the revocation ({before})"
    );
    let replica_probe = probe.describe().to_owned();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let http = replica.http().clone();
    let base = replica.url();
    let poller = tokio::spawn(async move {
        let _ = go_rx.await;
        let mut rtts = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let t = Instant::now();
            let s = probe.status(&http, &base).await;
            rtts.push(t.elapsed().as_secs_f64() * 1000.0);
            if (400..500).contains(&s) {
                return (Some(Instant::now()), rtts);
            }
        }
        (None, rtts)
    });
    let _ = go_tx.send(());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    let r = revoke.send().await?;
    let t1 = Instant::now();
    let status = r.status().as_u16();
    let still_live_after = live_of(conn, accessor).await?;
    let (refused_at, mut rtts) = poller.await?;
    rtts.sort_by(f64::total_cmp);
    let replica_poll_rtt_ms = rtts.get(rtts.len() / 2).copied().unwrap_or(0.0);
    let replica_refused_after_ms = refused_at.map(|at| {
        if at >= t1 {
            at.duration_since(t1).as_secs_f64() * 1000.0
        } else {
            -(t1.duration_since(at).as_secs_f64() * 1000.0)
        }
    });
    let _ = primary;
    Ok(Revocation {
        method: method.to_owned(),
        leases,
        still_live_after,
        status,
        revoke_ms: (t1 - t0).as_secs_f64() * 1000.0,
        replica_probe,
        replica_refused_after_ms,
        replica_poll_rtt_ms,
    })
}

async fn revocation(opts: &Options, env: &Env) -> anyhow::Result<Vec<Revocation>> {
    let (db, primary, config) = env.leash(opts, "revoke", 10).await?;
    let replica = env.home.start(&config, "revoke-replica").await?;
    let mut conn = db.connect().await?;
    let n = opts.revoke_leases.max(1);
    let mut out = Vec::new();

    // 1. The identity's token and every lease it holds.
    say!(opts, "revocation: {n} leases of one identity, by its token");
    let (who, _) = identity_with_leases(env, &primary, &mut conn, n, 0).await?;
    let revoke = primary
        .http()
        .post(format!("{}/v1/auth/token/revoke-self", primary.url()))
        .header("X-Vault-Token", &who.token);
    out.push(
        timed_revocation(
            "POST auth/token/revoke-self (the token and all its leases)",
            &primary,
            &replica,
            &mut conn,
            &who.accessor,
            Probe::Token {
                token: who.token.clone(),
            },
            revoke,
        )
        .await?,
    );

    // 2. The operator revokes one identity: its token and all its leases.
    say!(
        opts,
        "revocation: {n} leases of one identity, by the operator (accessor)"
    );
    let (who, _) = identity_with_leases(env, &primary, &mut conn, n, i64::try_from(n)?).await?;
    let revoke = primary
        .http()
        .post(format!("{}/v1/leash/leases/revoke", primary.url()))
        .header("X-Vault-Token", &env.home.operator_token)
        .json(&json!({ "accessor": who.accessor }));
    out.push(
        timed_revocation(
            "POST leash/leases/revoke {accessor} (operator: the token and all its leases)",
            &primary,
            &replica,
            &mut conn,
            &who.accessor,
            Probe::Token {
                token: who.token.clone(),
            },
            revoke,
        )
        .await?,
    );

    // 3. The operator revokes every lease under a prefix only this
    // identity holds live leases on (the others' are already revoked), as a
    // Vault client writes it: the secret's path and a slash.
    say!(
        opts,
        "revocation: {n} leases of one identity, by the operator (prefix)"
    );
    let (who, lease_id) =
        identity_with_leases(env, &primary, &mut conn, n, 2 * i64::try_from(n)?).await?;
    let revoke = primary
        .http()
        .post(format!("{}/v1/leash/leases/revoke", primary.url()))
        .header("X-Vault-Token", &env.home.operator_token)
        .json(&json!({ "prefix": format!("secret/data/{SECRET_PATH}/") }));
    out.push(
        timed_revocation(
            "POST leash/leases/revoke {prefix} (operator: the leases only)",
            &primary,
            &replica,
            &mut conn,
            &who.accessor,
            Probe::Lease {
                token: who.token.clone(),
                lease_id,
            },
            revoke,
        )
        .await?,
    );
    for r in &out {
        say!(
            opts,
            "{}: {} leases in {:.1} ms (status {}); replica refused {:?} ms after",
            r.method,
            r.leases,
            r.revoke_ms,
            r.status,
            r.replica_refused_after_ms
        );
    }
    drop(replica);
    Ok(out)
}
