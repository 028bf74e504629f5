//! Leash against OpenBao: first the generator's own ceiling against a
//! trivial in-process server, then the same reads and JWT logins against
//! both servers at each connection count, in interleaved rounds (the
//! server that goes first alternates), summarised as medians.
//!
//! Must never happen: Leash or OpenBao measured before its probe request
//! succeeded, or one server's rounds all run before the other's (the load
//! of the machine would skew one side).

use serde_json::json;

use crate::bao::{ROLE, SECRET_PATH};
use crate::load::{self, RequestSpec};
use crate::options::Options;
use crate::phase::{Env, measure, note_problem, probe};
use crate::report::{Cell, Report, RunStats, Summary};

/// The generator against a trivial in-process server at the most
/// connections: its own ceiling on this machine.
pub(crate) async fn calibrate(
    opts: &Options,
    env: &Env,
    report: &mut Report,
) -> anyhow::Result<()> {
    let trivial = load::Trivial::start().await?;
    let spec = RequestSpec::get_with_token("/", "calibration")?;
    let c = opts.connections.iter().copied().max().unwrap_or(1);
    let r = measure(opts, env, std::process::id(), trivial.addr, &spec, c, 0).await?;
    say!(
        opts,
        "generator ceiling (trivial server, c={c}): {:.0}/s p99 {:.2} ms",
        r.throughput,
        r.p99_ms
    );
    note_problem(&mut report.problems, "calibration", &r);
    report.calibration = Some(r);
    drop(trivial);
    Ok(())
}

/// The comparison's interleaved rounds, into `report.compare`.
pub(crate) async fn run(opts: &Options, env: &Env, report: &mut Report) -> anyhow::Result<()> {
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
