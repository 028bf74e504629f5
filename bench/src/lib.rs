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
//!
//! [`run`] (here) sets up the harness and calls the phases in order; each
//! phase is one file under `phase/` ([`Options`] selects them). The servers
//! and tools they drive are [`bao`], [`leash`], [`pg`] (with the storage
//! ceiling), [`floor`], the load generator [`load`] and [`sys`]; what they
//! measured is the [`report`].

// The benchmark stamps its reports and seeded rows with the real time.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod progress;

pub mod bao;
pub mod floor;
pub mod leash;
pub mod load;
mod options;
pub mod pg;
mod phase;
pub mod report;
pub mod sys;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::leash::LeashHome;
use crate::phase::Env;
use crate::report::Report;
use crate::sys::Machine;

pub use crate::options::Options;

/// The repository this crate was built in (for `.tools/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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
        phase::compare::calibrate(opts, &env, &mut report).await?;
        phase::compare::run(opts, &env, &mut report).await?;
    }
    if opts.ceiling {
        phase::storage::run(opts, &env, &mut report).await?;
    }
    if opts.lease_scale {
        phase::lease_scale::run(opts, &env, &mut report).await?;
    }
    if opts.workload_scale {
        phase::workload_scale::run(opts, &env, &mut report).await?;
    }
    if opts.revocation {
        report.revocation = phase::revocation::run(opts, &env).await?;
    }
    report.machine.loadavg_end = sys::loadavg();
    report.wall_secs = started.elapsed().as_secs_f64();
    Ok(report)
}
