//! The machine and its processes: children that are killed when their
//! guard drops, free ports, readiness polling, CPU and memory from `/proc`,
//! and the machine description printed with the report.
//!
//! Must never happen: a server process outliving the harness's guard for
//! it (every child is killed and reaped on drop, also on error paths).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

/// A child process, killed and reaped when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<ChildGuard> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails if it has exited, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            anyhow::bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Kills and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `url` until it answers with a status for which `ok` holds, the
/// child dies, or `within` passes.
pub async fn wait_http(
    http: &reqwest::Client,
    url: &str,
    child: &mut ChildGuard,
    within: Duration,
    ok: impl Fn(u16) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        child.check_alive()?;
        if let Ok(r) = http.get(url).send().await
            && ok(r.status().as_u16())
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{url} did not become ready within {within:?}; last lines of its log:\n{}",
                child.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clock ticks per second of `/proc/*/stat` times.
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU ticks of one process (0 if it is gone).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: fields start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// CPU ticks of every process whose command name is `comm` (PostgreSQL's
/// backends and helpers), summed.
pub fn cpu_ticks_by_name(comm: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let is = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end() == comm);
        if is {
            total += cpu_ticks(pid);
        }
    }
    total
}

/// Resident memory of a process, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> u64 {
    proc_kb(&format!("/proc/{pid}/status"), "VmRSS:") * 1024
}

fn proc_kb(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
}

/// CPU use (in cores) of the generator, a server and PostgreSQL over one
/// load run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// The harness process (the load generator while a run is on).
    pub generator: f64,
    /// The server under test.
    pub server: f64,
    /// All `postgres` processes.
    pub postgres: f64,
}

/// A CPU sample taken at the start of a run.
pub struct CpuSample {
    at: Instant,
    me: u64,
    server: u64,
    pg: u64,
    server_pid: u32,
}

impl CpuSample {
    /// Samples now.
    pub fn take(server_pid: u32) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            me: cpu_ticks(std::process::id()),
            server: cpu_ticks(server_pid),
            pg: cpu_ticks_by_name("postgres"),
            server_pid,
        }
    }

    /// The cores used since the sample.
    pub fn since(&self, tck: f64) -> CpuUse {
        let secs = self.at.elapsed().as_secs_f64().max(1e-6);
        let cores = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / tck / secs;
        CpuUse {
            generator: cores(self.me, cpu_ticks(std::process::id())),
            server: cores(self.server, cpu_ticks(self.server_pid)),
            postgres: cores(self.pg, cpu_ticks_by_name("postgres")),
        }
    }
}

/// What the numbers were measured on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal, in MiB.
    pub memory_mib: u64,
    /// The kernel release.
    pub kernel: String,
    /// `SELECT version()`.
    pub postgres_version: String,
    /// PostgreSQL durability settings (fsync, synchronous_commit, …).
    pub postgres_settings: String,
    /// OpenBao's version (`bao version`).
    pub openbao_version: String,
    /// `git describe` of the working tree, when available.
    pub leash_commit: String,
    /// The leash-broker binary measured.
    pub leash_binary: String,
    /// /proc/loadavg when the run started (other work on the machine
    /// skews every number).
    pub loadavg_start: String,
    /// /proc/loadavg when it ended.
    pub loadavg_end: String,
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    /// The parts of the description that come from /proc and git.
    pub fn local(repo: &Path, leash_binary: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let git = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            memory_mib: proc_kb("/proc/meminfo", "MemTotal:") / 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            leash_commit: git,
            leash_binary: leash_binary.display().to_string(),
            loadavg_start: loadavg(),
            ..Machine::default()
        }
    }
}
