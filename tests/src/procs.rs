//! Real processes for the end-to-end tests: the `leash-broker` and `leash`
//! binaries spawned on port 0 in temporary directories, their output
//! collected as it comes, killed by a guard on drop even when an assertion
//! fails; and a configuration directory built the way an operator would
//! ([`Setup`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is its job
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leash_attest::DevIssuer;
use leash_client::LeashClient;
use serde_json::Value;

use crate::{bin_dir, eventually, repo_root};

/// The bound on anything a test waits for.
pub const BOUND: Duration = Duration::from_secs(20);

pub fn broker_bin() -> PathBuf {
    bin_dir().join("leash-broker")
}

pub fn cli_bin() -> PathBuf {
    bin_dir().join("leash")
}

/// Removes terminal colour sequences (`ESC [ ... m`) from log text.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A command that inherits no `LEASH_*` variable from the test environment.
pub fn command(program: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LEASH_") {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// A spawned process: its output collected as it comes, killed on drop.
pub struct Running {
    what: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

pub fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            b.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    buf
}

impl Running {
    pub fn spawn(mut cmd: std::process::Command) -> Running {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Running {
            what,
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Standard error without colour sequences.
    pub fn stderr(&self) -> String {
        strip_ansi(&self.stderr.lock().unwrap())
    }

    /// Waits (bounded) until `done` holds for stdout; returns stdout.
    pub async fn stdout_until(&self, done: impl Fn(&str) -> bool) -> String {
        let ok = eventually(BOUND, || {
            let ok = done(&self.stdout());
            async move { ok }
        })
        .await;
        assert!(
            ok,
            "{}: stdout never complete.\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Waits (bounded) until `done` holds for stderr; returns stderr.
    pub async fn stderr_until(&self, done: impl Fn(&str) -> bool) -> String {
        let ok = eventually(BOUND, || {
            let ok = done(&self.stderr());
            async move { ok }
        })
        .await;
        assert!(
            ok,
            "{}: stderr never complete.\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }

    /// Sends a signal with `kill -SIG PID`.
    pub fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        let mut status = None;
        let exited = eventually(BOUND, || {
            if status.is_none() {
                status = child.try_wait().unwrap();
            }
            let done = status.is_some();
            async move { done }
        })
        .await;
        assert!(
            exited,
            "{} did not exit within {BOUND:?}.\nstderr:\n{}",
            self.what,
            self.stderr()
        );
        // The readers see the end of the pipes once the process is gone.
        let _ = eventually(Duration::from_secs(2), || {
            let done = Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1;
            async move { done }
        })
        .await;
        status.unwrap()
    }

    /// SIGTERM, then a clean exit (status 0) within the bound.
    pub async fn terminate_cleanly(&mut self) {
        self.signal("TERM");
        let st = self.exit().await;
        assert!(
            st.success(),
            "{} exited with {st} after SIGTERM.\nstderr:\n{}",
            self.what,
            self.stderr()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished command.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion (bounded; killed on timeout).
pub async fn run(cmd: std::process::Command) -> Ran {
    let mut p = Running::spawn(cmd);
    let st = p.exit().await;
    Ran {
        code: st.code(),
        stdout: p.stdout(),
        stderr: p.stderr(),
    }
}

pub fn broker(args: &[&str]) -> std::process::Command {
    let mut c = command(&broker_bin());
    c.args(args);
    c
}

/// `leash-broker keygen --out FILE`.
pub async fn keygen(out: &Path) -> Ran {
    let mut c = broker(&["keygen", "--out"]);
    c.arg(out);
    run(c).await
}

/// A configuration directory built the way an operator would: keys from
/// `keygen`, the dev issuer's JWKS, a copy of the sample policies, and the
/// shipped example configuration with its relative paths fixed.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub keys: PathBuf,
    pub policies: PathBuf,
    pub issuer: DevIssuer,
    pub operator_token: String,
}

pub async fn setup(example: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for k in ["hash.key", "builtin.key", "operator.token"] {
        let r = keygen(&keys.join(k)).await;
        assert_eq!(r.code, Some(0), "keygen {k}: {r:?}");
    }
    let issuer = DevIssuer::load_or_create(&keys).unwrap();
    assert!(keys.join("dev-issuer.jwks.json").is_file());

    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for e in std::fs::read_dir(repo_root().join("policies/dev")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, policies.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.path().join("state")).unwrap();

    let text = std::fs::read_to_string(repo_root().join("broker/examples").join(example)).unwrap();
    let from = "dir = \"../../policies/dev\"";
    assert!(text.contains(from), "{example} changed shape");
    let config = dir.path().join("leash.toml");
    std::fs::write(&config, text.replace(from, "dir = \"policies\"")).unwrap();
    let operator_token = std::fs::read_to_string(keys.join("operator.token"))
        .unwrap()
        .trim()
        .to_owned();
    Setup {
        dir,
        config,
        keys,
        policies,
        issuer,
        operator_token,
    }
}

impl Setup {
    /// `leash-broker SUBCOMMAND... --config F` with `env`.
    pub fn broker(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let mut c = broker(args);
        c.arg("--config").arg(&self.config);
        c.envs(env.iter().copied());
        c
    }

    /// A JWT for `sub` from the dev issuer whose JWKS the config names.
    pub fn jwt(&self, sub: &str) -> String {
        self.issuer
            .mint(
                sub,
                Duration::from_secs(600),
                serde_json::Map::new(),
                chrono::Utc::now(),
            )
            .unwrap()
    }

    /// `serve` on port 0; returns the process and `http://ADDR`.
    pub async fn serve(&self, env: &[(&str, &str)]) -> (Running, String) {
        let mut env = env.to_vec();
        env.push(("LEASH_SERVER__LISTEN", "127.0.0.1:0"));
        let p = Running::spawn(self.broker(&["serve"], &env));
        let log = p
            .stderr_until(|e| e.lines().any(|l| l.contains("leash-broker listening")))
            .await;
        let line = log
            .lines()
            .find(|l| l.contains("leash-broker listening"))
            .unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {line:?}"));
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        let port: u16 = addr["127.0.0.1:".len()..].parse().unwrap();
        assert_ne!(port, 0);
        (p, format!("http://{addr}"))
    }
}

/// Status code of an error, or 200.
pub fn status_of<T>(r: Result<T, leash_client::ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or_else(|| panic!("no status: {e}")),
    }
}

/// `GET /v1/leash/status` as the operator: its `data`.
pub async fn status_data(op: &LeashClient) -> Value {
    let r = op.raw("GET", "/v1/leash/status", None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().unwrap()["data"].clone()
}
