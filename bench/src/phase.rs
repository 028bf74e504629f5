//! The measured phases, one file each under `phase/`, and what they share:
//! the harness state ([`Env`]: the Leash home, the running OpenBao, the
//! scratch directory), a Leash on a fresh database, the probe that stops a
//! broken setup, one measured load run, and the list of runs that were not
//! clean. [`crate::run`] calls the phases in order.
//!
//! Must never happen: a run with errors or non-2xx answers left out of the
//! report's problems (every load run of every phase goes through
//! [`note_problem`]), or a Leash or a database outliving the phase that
//! started it (they are guards, dropped when the phase returns).

pub(crate) mod compare;
pub(crate) mod lease_scale;
pub(crate) mod revocation;
pub(crate) mod storage;
pub(crate) mod workload_scale;

use std::net::SocketAddr;

use crate::bao::{Bao, ROLE, SECRET_PATH};
use crate::leash::{self, Leash, LeashHome, MountChoice};
use crate::load::{self, RequestSpec};
use crate::options::Options;
use crate::pg;
use crate::report::RunStats;
use crate::sys::CpuSample;

/// The harness's state shared by the phases.
pub(crate) struct Env {
    pub(crate) home: LeashHome,
    pub(crate) bao: Bao,
    pub(crate) tck: f64,
    pub(crate) _tmp: tempfile::TempDir,
}

impl Env {
    /// A Leash on a fresh database with `workloads` declared.
    pub(crate) async fn leash(
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
    pub(crate) async fn leash_read(
        &self,
        leash: &Leash,
    ) -> anyhow::Result<(RequestSpec, leash::Login)> {
        let login = leash.login(ROLE, &self.home.jwt(ROLE)?).await?;
        let spec =
            RequestSpec::get_with_token(&format!("/v1/secret/data/{SECRET_PATH}"), &login.token)?;
        Ok((spec, login))
    }
}

/// Sends `spec` once and fails with the answer unless it is 2xx: a broken
/// setup stops the run before any number is taken.
pub(crate) async fn probe(addr: SocketAddr, spec: &RequestSpec, what: &str) -> anyhow::Result<()> {
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

pub(crate) async fn measure(
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
pub(crate) async fn scale_run(
    opts: &Options,
    env: &Env,
    leash: &Leash,
    spec: &RequestSpec,
    round: usize,
) -> anyhow::Result<RunStats> {
    let c = opts.scale_connections;
    measure(opts, env, leash.child.pid(), leash.addr, spec, c, round).await
}

pub(crate) fn note_problem(problems: &mut Vec<String>, what: &str, r: &RunStats) {
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
