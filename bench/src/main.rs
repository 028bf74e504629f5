//! `leash-bench`: parses the flags, runs the benchmark (see the library),
//! prints the report and writes it as JSON. `scripts/bench` builds and
//! runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use leash_bench::Options;
use leash_bench::leash::MountChoice;

/// Leash and OpenBao side by side on this machine: the same reads and JWT
/// logins from one load generator, interleaved rounds, then the storage
/// ceiling, the lease- and workload-scale curves and revocation.
#[derive(Debug, Parser)]
#[command(name = "leash-bench", version)]
struct Cli {
    /// Short runs of every phase, the real scale points (about 2–3 minutes).
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// Tiny runs and scale points: checks that everything works, measures
    /// nothing worth reading.
    #[arg(long)]
    smoke: bool,
    /// Interleaved rounds of the comparison and of both scale curves (the
    /// report shows medians).
    #[arg(long)]
    rounds: Option<usize>,
    /// Measured seconds per run.
    #[arg(long)]
    duration: Option<f64>,
    /// Unmeasured warm-up seconds before each run.
    #[arg(long)]
    warmup: Option<f64>,
    /// Connection counts of the comparison, e.g. 1,16,64.
    #[arg(long, value_delimiter = ',')]
    connections: Option<Vec<usize>>,
    /// Live-lease points of the lease-scale curve, e.g. 10000,100000,1000000.
    #[arg(long, value_delimiter = ',')]
    lease_points: Option<Vec<u64>>,
    /// Declared-workload points of the workload-scale curve, e.g. 10,10000.
    #[arg(long, value_delimiter = ',')]
    workload_points: Option<Vec<usize>>,
    /// Leases of the identity whose revocation is timed.
    #[arg(long)]
    revoke_leases: Option<u64>,
    /// Where Leash's `secret/` mount reads from: `vault` (the same OpenBao,
    /// cached) or `builtin` (Leash's own store).
    #[arg(long, value_parser = ["vault", "builtin"])]
    mount: Option<String>,
    /// Skip the Leash/OpenBao comparison.
    #[arg(long)]
    skip_compare: bool,
    /// Skip the storage ceiling.
    #[arg(long)]
    skip_ceiling: bool,
    /// Skip both scale curves.
    #[arg(long)]
    skip_scale: bool,
    /// Writer counts of the floor server, e.g. 1,2,4
    #[arg(long, value_delimiter = ',')]
    floor_writers: Option<Vec<usize>>,
    /// Skip the lease-scale curve.
    #[arg(long)]
    skip_lease_scale: bool,
    /// Skip the workload-scale curve.
    #[arg(long)]
    skip_workload_scale: bool,
    /// Skip the revocation measurement.
    #[arg(long)]
    skip_revocation: bool,
    /// The JSON report (default: $CARGO_TARGET_DIR/leash-bench/report.json,
    /// or target/leash-bench/report.json); the text report goes next to it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The directory holding leash-broker (default: this binary's).
    #[arg(long, env = "LEASH_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// The bao binary (default: .tools/venv/bin/bao of the repository).
    #[arg(long, env = "LEASH_BENCH_BAO")]
    bao: Option<PathBuf>,
    /// PostgreSQL admin URL; fresh leash_bench_* databases are created on
    /// that server and dropped afterwards.
    #[arg(
        long,
        env = "LEASH_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

fn options(cli: &Cli) -> anyhow::Result<Options> {
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let bao = cli
        .bao
        .clone()
        .unwrap_or_else(|| leash_bench::repo_root().join(".tools/venv/bin/bao"));
    let mut o = Options::full(bin_dir, bao, cli.pg_url.clone());
    if cli.quick {
        o = o.quick();
    }
    if cli.smoke {
        o = o.smoke();
    }
    if let Some(r) = cli.rounds {
        o.rounds = r.max(1);
    }
    if let Some(d) = cli.duration {
        o.duration = secs(d);
    }
    if let Some(w) = cli.warmup {
        o.warmup = secs(w);
    }
    if let Some(c) = &cli.connections {
        o.connections = c.iter().copied().filter(|c| *c > 0).collect();
        if let Some(m) = o.connections.iter().max() {
            o.scale_connections = *m;
        }
    }
    if let Some(p) = &cli.lease_points {
        o.lease_points = p.clone();
    }
    if let Some(p) = &cli.workload_points {
        o.workload_points = p.clone();
    }
    if let Some(n) = cli.revoke_leases {
        o.revoke_leases = n.max(1);
    }
    if let Some(m) = &cli.mount {
        o.mount = if m == "builtin" {
            MountChoice::Builtin
        } else {
            MountChoice::Vault
        };
    }
    o.compare = !cli.skip_compare;
    o.ceiling = !cli.skip_ceiling;
    if let Some(w) = &cli.floor_writers {
        o.floor_writers = w.iter().copied().filter(|w| *w > 0).collect();
    }
    o.lease_scale = !(cli.skip_scale || cli.skip_lease_scale);
    o.workload_scale = !(cli.skip_scale || cli.skip_workload_scale);
    o.revocation = !cli.skip_revocation;
    o.progress = !cli.quiet;
    Ok(o)
}

fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("leash-bench").join("report.json")
}

async fn main_async(cli: Cli) -> anyhow::Result<ExitCode> {
    let opts = options(&cli)?;
    let out = cli.out.clone().unwrap_or_else(default_out);
    let report = tokio::select! {
        r = leash_bench::run(&opts) => r?,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run kills the servers and drops the databases.
            anyhow::bail!("interrupted");
        }
    };
    let text = report.render();
    println!("{text}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.with_extension("txt"), &text)?;
    eprintln!(
        "leash-bench: wrote {} and {}",
        out.display(),
        out.with_extension("txt").display()
    );
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        // The report is complete, but some requests failed.
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leash-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leash-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
