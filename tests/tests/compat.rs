//! Vault-client compatibility: the real clients workloads use — the `bao`
//! CLI (same Go `api` package as the `vault` CLI), hvac (Python),
//! node-vault (Node.js) and vaultrs (Rust) — run their usual flows against
//! a Leash broker on a fresh PostgreSQL database, and every value and
//! status they observe is checked against the Vault HTTP API contract
//! (`shared/reference/vault-compat.md`).
//!
//! The CLI, hvac and node-vault run as subprocesses (scripts in
//! `tests/compat/`), from the project-local `.tools/` that
//! `scripts/install-test-tools` fills. Each script prints one JSON line per
//! call; the assertions are here. Each test collects every mismatch and
//! fails once, listing all of them with the flow's transcript.
//!
//! Known client quirks the flows document:
//! - `bao login -method=jwt` does not exist (no jwt login handler in the
//!   CLI): JWT login is `bao write auth/jwt/login role=… jwt=…`.
//! - node-vault's `kubernetesLogin({role, jwt})` posts to `/v1/auth//login`
//!   (its path template reads `kubernetesPath` from the call arguments);
//!   that must fail, and `kubernetesLogin({role, jwt, mount_point:
//!   'kubernetes'})` works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test bodies: failing loudly is their job

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use leash_tests::{Db, Options, SEEDED, TestBroker, repo_root};
use serde_json::{Value, json};

/// The workload every flow logs in as.
const ROLE: &str = "compat-app";

/// The compat policy set (issuer `dev`).
const COMPAT_APP: &str = r#"
name = "compat-app"
description = "Vault-client compatibility tests"

[login]
method = "jwt"
issuer = "dev"

[login.bound_claims]
sub = "compat-app"

[lease]
ttl = "5m"
max_ttl = "1h"

[[scope]]
path = "secret/compat/*"
capabilities = ["read", "list", "create", "update", "patch", "delete"]

[[scope]]
path = "secret/payments/*"
capabilities = ["read", "list"]

[[scope]]
path = "secret/payments/admin/*"
deny = true

# Each client's script probes refusals on purpose (a denied path, a missing
# one, a wrong method) within one session: allow more of them than the
# defaults, which would contain the identity half-way through.
[detection.scope_violations]
threshold = 50
[detection.enumeration]
distinct_paths = 50
lists = 50
"#;

/// A workload that may log in but has nothing under any mount (the CLI's
/// preflight must then be refused).
const COMPAT_NONE: &str = r#"
name = "compat-none"
description = "Logs in, may touch nothing"

[login]
method = "jwt"
issuer = "dev"

[login.bound_claims]
sub = "compat-none"
"#;

/// The compat workloads plus the repository's dev sample set.
fn policies() -> Vec<(String, String)> {
    let mut v = vec![
        ("compat-app.toml".to_string(), COMPAT_APP.to_string()),
        ("compat-none.toml".to_string(), COMPAT_NONE.to_string()),
    ];
    let dev = repo_root().join("policies/dev");
    for e in std::fs::read_dir(&dev).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            v.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    v
}

async fn broker() -> TestBroker {
    TestBroker::start_with(
        Db::Postgres,
        Options {
            policies: Some(policies()),
            ..Options::default()
        },
    )
    .await
}

fn seeded(path: &str) -> &'static str {
    SEEDED.iter().find(|(p, _, _)| *p == path).unwrap().2
}

// ----- tools and subprocesses -----

/// A file under `<repo>/.tools/`, which must exist.
fn tool(rel: &str) -> PathBuf {
    let p = repo_root().join(".tools").join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-tools",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/compat").join(name)
}

/// What a flow printed: its JSON lines by step name.
struct Flow {
    steps: BTreeMap<String, Value>,
    transcript: String,
}

/// The longest a client flow may run.
const FLOW_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs `program args` with a clean environment (PATH, a fresh HOME, and
/// `env`) and collects its JSON lines.
async fn run_flow(program: &Path, args: &[&Path], env: &[(&str, String)]) -> Flow {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let out = tokio::time::timeout(FLOW_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish within {FLOW_TIMEOUT:?}",
                program.display()
            )
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut steps = BTreeMap::new();
    for line in stdout.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(name) = v.get("step").and_then(Value::as_str)
        {
            steps.insert(name.to_string(), v);
        }
    }
    let transcript = format!(
        "exit: {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    Flow { steps, transcript }
}

// ----- soft assertions -----

static NULL: Value = Value::Null;
/// Stands for the value of a step that already failed: checks on it (and
/// on anything `at` finds under it) are skipped, so one failure is
/// reported once, not once per field.
static FAILED: Value = Value::Null;

fn failed(v: &Value) -> bool {
    std::ptr::eq(v, &FAILED)
}

/// Collects mismatches; `finish` fails the test listing all of them.
struct Checks {
    flow: &'static str,
    failures: std::cell::RefCell<Vec<String>>,
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    if failed(v) {
        return &FAILED;
    }
    v.pointer(pointer).unwrap_or(&NULL)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Checks {
    fn new(flow: &'static str) -> Self {
        Self {
            flow,
            failures: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn fail(&self, failure: impl Into<String>) {
        self.failures.borrow_mut().push(failure.into());
    }

    fn check(&self, what: impl Display, ok: bool, detail: impl Display) {
        if !ok {
            self.fail(format!("{what}: {detail}"));
        }
    }

    /// `got` must satisfy `ok` (described as `want`); skipped when `got`
    /// belongs to a step that already failed.
    fn pred(&self, what: impl Display, got: &Value, want: &str, ok: impl FnOnce(&Value) -> bool) {
        if !failed(got) && !ok(got) {
            self.fail(format!("{what}: want {want}, got {got}"));
        }
    }

    fn eq(&self, what: impl Display, got: &Value, want: Value) {
        let w = want.to_string();
        self.pred(what, got, &w, |g| *g == want);
    }

    fn contains(&self, what: impl Display, got: &str, needle: &str) {
        let ok = got.contains(needle);
        self.check(
            what,
            ok,
            format_args!("{got:?} does not contain {needle:?}"),
        );
    }

    fn nonempty_str(&self, what: impl Display, got: &Value) {
        self.pred(what, got, "a non-empty string", |g| {
            g.as_str().is_some_and(|s| !s.is_empty())
        });
    }

    fn is_str(&self, what: impl Display, got: &Value) {
        self.pred(what, got, "a string", Value::is_string);
    }

    fn is_int(&self, what: impl Display, got: &Value) {
        self.pred(what, got, "an integer", |g| g.is_u64() || g.is_i64());
    }

    fn is_array(&self, what: impl Display, got: &Value) {
        self.pred(what, got, "an array", Value::is_array);
    }

    fn int_in(&self, what: impl Display, got: &Value, lo: u64, hi: u64) {
        let want = format!("an integer in {lo}..={hi}");
        self.pred(what, got, &want, |g| {
            g.as_u64().is_some_and(|n| (lo..=hi).contains(&n))
        });
    }

    fn nonempty_array(&self, what: impl Display, got: &Value) {
        self.pred(what, got, "a non-empty array", |g| {
            g.as_array().is_some_and(|a| !a.is_empty())
        });
    }

    /// The Vault response envelope: all eight keys, typed.
    fn envelope(&self, what: &str, v: &Value) {
        if failed(v) {
            return;
        }
        for k in [
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "data",
            "wrap_info",
            "warnings",
            "auth",
        ] {
            self.check(
                format_args!("{what}: envelope"),
                v.get(k).is_some(),
                format_args!("key `{k}` missing in {v}"),
            );
        }
        self.is_str(format_args!("{what}: request_id"), at(v, "/request_id"));
        self.is_str(format_args!("{what}: lease_id"), at(v, "/lease_id"));
        self.is_int(
            format_args!("{what}: lease_duration"),
            at(v, "/lease_duration"),
        );
        self.pred(
            format_args!("{what}: renewable"),
            at(v, "/renewable"),
            "a boolean",
            Value::is_boolean,
        );
    }

    /// A login / renew-self `auth` block for `ROLE` with TTL `ttl`.
    fn auth_block(&self, what: &str, auth: &Value, ttl: u64) {
        self.auth_fields(what, auth, ttl);
        self.eq(
            format_args!("{what}: auth.token_type"),
            at(auth, "/token_type"),
            json!("service"),
        );
    }

    /// The `auth` fields the CLI prints (the Go api's `SecretAuth` has no
    /// `token_type`).
    fn auth_fields(&self, what: &str, auth: &Value, ttl: u64) {
        self.nonempty_str(
            format_args!("{what}: auth.client_token"),
            at(auth, "/client_token"),
        );
        self.is_str(format_args!("{what}: auth.accessor"), at(auth, "/accessor"));
        self.is_array(format_args!("{what}: auth.policies"), at(auth, "/policies"));
        self.is_array(
            format_args!("{what}: auth.token_policies"),
            at(auth, "/token_policies"),
        );
        self.pred(
            format_args!("{what}: auth.metadata"),
            at(auth, "/metadata"),
            "null or a string map",
            |m| {
                m.is_null()
                    || m.as_object()
                        .is_some_and(|m| m.values().all(Value::is_string))
            },
        );
        self.eq(
            format_args!("{what}: auth.lease_duration"),
            at(auth, "/lease_duration"),
            json!(ttl),
        );
        self.eq(
            format_args!("{what}: auth.renewable"),
            at(auth, "/renewable"),
            json!(true),
        );
        self.is_str(
            format_args!("{what}: auth.entity_id"),
            at(auth, "/entity_id"),
        );
        self.eq(
            format_args!("{what}: auth.orphan"),
            at(auth, "/orphan"),
            json!(true),
        );
    }

    /// A KV v2 leased read of `path` (under mount `secret`).
    fn leased_read(&self, what: &str, v: &Value, path: &str) {
        self.envelope(what, v);
        self.lease_fields(what, v, path);
    }

    /// The lease and version-metadata fields of a KV v2 read of `path`
    /// (what the CLI prints: its JSON output is the Go api's re-encoding,
    /// which drops null `wrap_info`/`auth`).
    fn lease_fields(&self, what: &str, v: &Value, path: &str) {
        let prefix = format!("secret/data/{path}/");
        self.pred(
            format_args!("{what}: lease_id"),
            at(v, "/lease_id"),
            &format!("`{prefix}<random>`"),
            |l| {
                l.as_str()
                    .is_some_and(|l| l.starts_with(&prefix) && l.len() > prefix.len() + 8)
            },
        );
        self.eq(
            format_args!("{what}: lease_duration"),
            at(v, "/lease_duration"),
            json!(300),
        );
        self.eq(
            format_args!("{what}: renewable"),
            at(v, "/renewable"),
            json!(true),
        );
        let m = at(v, "/data/metadata");
        self.is_str(
            format_args!("{what}: metadata.created_time"),
            at(m, "/created_time"),
        );
        self.eq(
            format_args!("{what}: metadata.deletion_time"),
            at(m, "/deletion_time"),
            json!(""),
        );
        self.eq(
            format_args!("{what}: metadata.destroyed"),
            at(m, "/destroyed"),
            json!(false),
        );
    }

    /// KV v2 write answer: version metadata.
    fn write_meta(&self, what: &str, data: &Value, version: u64) {
        self.eq(
            format_args!("{what}: version"),
            at(data, "/version"),
            json!(version),
        );
        self.is_str(
            format_args!("{what}: created_time"),
            at(data, "/created_time"),
        );
        self.eq(
            format_args!("{what}: deletion_time"),
            at(data, "/deletion_time"),
            json!(""),
        );
        self.eq(
            format_args!("{what}: destroyed"),
            at(data, "/destroyed"),
            json!(false),
        );
    }

    /// KV v2 metadata read `data` for a secret with versions 1..=`current`.
    fn metadata(&self, what: &str, d: &Value, current: u64) {
        if failed(d) {
            return;
        }
        self.eq(
            format_args!("{what}: current_version"),
            at(d, "/current_version"),
            json!(current),
        );
        self.eq(
            format_args!("{what}: cas_required"),
            at(d, "/cas_required"),
            json!(false),
        );
        self.eq(
            format_args!("{what}: delete_version_after"),
            at(d, "/delete_version_after"),
            json!("0s"),
        );
        self.is_int(format_args!("{what}: max_versions"), at(d, "/max_versions"));
        self.is_int(
            format_args!("{what}: oldest_version"),
            at(d, "/oldest_version"),
        );
        self.is_str(format_args!("{what}: created_time"), at(d, "/created_time"));
        self.is_str(format_args!("{what}: updated_time"), at(d, "/updated_time"));
        self.pred(
            format_args!("{what}: custom_metadata"),
            at(d, "/custom_metadata"),
            "null or a map",
            |m| m.is_null() || m.is_object(),
        );
        let want: Vec<String> = (1..=current).map(|n| n.to_string()).collect();
        self.pred(
            format_args!("{what}: versions"),
            at(d, "/versions"),
            &format!("keys {want:?}"),
            |v| {
                let mut keys: Vec<String> = v
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                keys.sort();
                keys == want
            },
        );
        for (n, ver) in at(d, "/versions").as_object().into_iter().flatten() {
            self.is_str(
                format_args!("{what}: versions.{n}.created_time"),
                at(ver, "/created_time"),
            );
            self.eq(
                format_args!("{what}: versions.{n}.deletion_time"),
                at(ver, "/deletion_time"),
                json!(""),
            );
            self.eq(
                format_args!("{what}: versions.{n}.destroyed"),
                at(ver, "/destroyed"),
                json!(false),
            );
        }
    }

    /// sys/health's bare body (no envelope).
    fn health(&self, what: &str, h: &Value) {
        if failed(h) {
            return;
        }
        self.eq(
            format_args!("{what}: initialized"),
            at(h, "/initialized"),
            json!(true),
        );
        self.eq(
            format_args!("{what}: sealed"),
            at(h, "/sealed"),
            json!(false),
        );
        self.eq(
            format_args!("{what}: standby"),
            at(h, "/standby"),
            json!(false),
        );
        self.eq(
            format_args!("{what}: performance_standby"),
            at(h, "/performance_standby"),
            json!(false),
        );
        self.is_str(format_args!("{what}: version"), at(h, "/version"));
        self.is_int(
            format_args!("{what}: server_time_utc"),
            at(h, "/server_time_utc"),
        );
        self.check(
            format_args!("{what}: no envelope"),
            h.get("request_id").is_none(),
            format_args!("{h}"),
        );
    }

    /// sys/seal-status's bare body.
    fn seal_status(&self, what: &str, s: &Value) {
        if failed(s) {
            return;
        }
        self.eq(
            format_args!("{what}: sealed"),
            at(s, "/sealed"),
            json!(false),
        );
        self.eq(
            format_args!("{what}: initialized"),
            at(s, "/initialized"),
            json!(true),
        );
        for k in ["t", "n", "progress"] {
            self.is_int(format_args!("{what}: {k}"), at(s, &format!("/{k}")));
        }
        self.is_str(format_args!("{what}: type"), at(s, "/type"));
    }

    fn finish(self, transcript: &str) {
        let failures = self.failures.into_inner();
        assert!(
            failures.is_empty(),
            "{}: {} mismatch(es) with the Vault contract:\n  - {}\n\n{transcript}",
            self.flow,
            failures.len(),
            failures.join("\n  - ")
        );
    }
}

/// Steps of the hvac and node-vault flows: `{"ok": true, "value"}` or an error.
impl Flow {
    fn step(&self, c: &Checks, name: &str) -> &Value {
        match self.steps.get(name) {
            Some(v) => v,
            None => {
                c.fail(format!("step `{name}` did not run"));
                &FAILED
            }
        }
    }

    /// The value of a step that must succeed.
    fn ok(&self, c: &Checks, name: &str) -> &Value {
        let s = self.step(c, name);
        if failed(s) {
            return &FAILED;
        }
        if s["ok"] == json!(true) {
            &s["value"]
        } else {
            c.fail(format!("{name}: expected success, got {s}"));
            &FAILED
        }
    }

    /// The record of a step that must fail.
    fn err(&self, c: &Checks, name: &str) -> &Value {
        let s = self.step(c, name);
        if failed(s) {
            return &FAILED;
        }
        if s["ok"] == json!(false) {
            s
        } else {
            c.fail(format!("{name}: expected an error, got {s}"));
            &FAILED
        }
    }

    /// A bao step that must exit 0: its parsed stdout.
    fn bao_ok(&self, c: &Checks, name: &str) -> &Value {
        let s = self.step(c, name);
        if failed(s) {
            return &FAILED;
        }
        if s["rc"] == json!(0) {
            &s["out"]
        } else {
            c.fail(format!(
                "bao {name}: exit {}, stderr {:?}",
                s["rc"],
                text(&s["err"])
            ));
            &FAILED
        }
    }

    /// A bao step that must fail with `needle` in its stderr.
    fn bao_err(&self, c: &Checks, name: &str, needle: &str) {
        let s = self.step(c, name);
        if failed(s) {
            return;
        }
        let err = text(&s["err"]);
        c.check(
            format_args!("bao {name}"),
            s["rc"] != json!(0) && err.contains(needle),
            format_args!(
                "want a failure mentioning {needle:?}, got exit {} stdout {} stderr {err:?}",
                s["rc"], s["out"]
            ),
        );
    }
}

/// hvac error records: `{"error": class, "errors": [...], "json": body}`.
fn hvac_err(c: &Checks, f: &Flow, name: &str, class: &str, needle: &str) {
    let e = f.err(c, name);
    if failed(e) {
        return;
    }
    c.eq(format_args!("{name}: exception"), &e["error"], json!(class));
    let msg = format!("{} {}", text(&e["errors"]), text(&e["message"]));
    c.contains(format_args!("{name}: message"), &msg, needle);
}

/// node-vault rejections: `{"message", "status", "body"}`.
fn node_err(c: &Checks, f: &Flow, name: &str, status: u16, message: &str) {
    let e = f.err(c, name);
    if failed(e) {
        return;
    }
    c.eq(
        format_args!("{name}: status"),
        at(e, "/status"),
        json!(status),
    );
    c.contains(
        format_args!("{name}: message"),
        &text(&e["message"]),
        message,
    );
}

/// Audit events (method, path, status) recorded so far.
async fn audit(b: &TestBroker) -> Vec<(String, String, u16)> {
    b.operator()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.method, e.path, e.status))
        .collect()
}

// ----- the flows -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_cli() {
    let bao = tool("venv/bin/bao");
    let b = broker().await;
    let path = "compat/app";
    let f = run_flow(
        Path::new("bash"),
        &[&script("bao_flow.sh")],
        &[
            ("BAO", bao.display().to_string()),
            ("BAO_ADDR", b.addr.clone()),
            ("COMPAT_JWT", b.jwt_with(ROLE, json!({}))),
            ("COMPAT_ROLE", ROLE.into()),
            ("COMPAT_PATH", path.into()),
            ("COMPAT_NONE_JWT", b.jwt_with("compat-none", json!({}))),
            ("COMPAT_NONE_ROLE", "compat-none".into()),
        ],
    )
    .await;
    let c = Checks::new("bao CLI");
    f.step(&c, "done");

    f.bao_err(&c, "login_method_jwt", "Unknown auth method: jwt");
    f.bao_err(&c, "login_bad_jwt", "Code: 400");
    let login = f.bao_ok(&c, "login");
    c.auth_fields("login", at(login, "/auth"), 300);
    let token = text(at(login, "/auth/client_token"));

    let v = f.bao_ok(&c, "kv_put_1");
    c.write_meta("kv put #1", at(v, "/data"), 1);
    let got = f.bao_ok(&c, "kv_get");
    c.lease_fields("kv get", got, path);
    c.eq(
        "kv get: data",
        at(got, "/data/data"),
        json!({"user": "u", "pass": "p1"}),
    );
    c.eq(
        "kv get: version",
        at(got, "/data/metadata/version"),
        json!(1),
    );
    let v = f.bao_ok(&c, "kv_put_2");
    c.write_meta("kv put #2", at(v, "/data"), 2);
    let v = f.bao_ok(&c, "kv_get_version_1");
    c.eq(
        "kv get -version=1: data",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p1"}),
    );
    c.eq(
        "kv get -version=1: version",
        at(v, "/data/metadata/version"),
        json!(1),
    );
    f.bao_err(
        &c,
        "kv_put_cas_mismatch",
        "check-and-set parameter did not match the current version",
    );
    let v = f.bao_ok(&c, "kv_get_mount_flag");
    c.eq(
        "kv get -mount: data",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p2"}),
    );
    f.bao_err(
        &c,
        "kv_get_missing",
        "No value found at secret/data/compat/app-nope",
    );
    let v = f.bao_ok(&c, "read_no_preflight");
    c.eq(
        "read secret/data/…: data",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p2"}),
    );
    let v = f.bao_ok(&c, "kv_list");
    c.eq("kv list", v, json!(["app"]));
    let v = f.bao_ok(&c, "list_generic");
    c.eq("list secret/metadata/compat", v, json!(["app"]));
    let v = f.bao_ok(&c, "kv_metadata_get");
    c.metadata("kv metadata get", at(v, "/data"), 2);

    let v = f.bao_ok(&c, "kv_patch");
    c.write_meta("kv patch", at(v, "/data"), 3);
    let v = f.bao_ok(&c, "kv_get_after_patch");
    c.eq(
        "kv get after patch",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p3"}),
    );

    let v = f.bao_ok(&c, "token_lookup");
    let d = at(v, "/data");
    c.eq("token lookup: id", at(d, "/id"), json!(token));
    c.eq(
        "token lookup: path",
        at(d, "/path"),
        json!("auth/jwt/login"),
    );
    c.eq("token lookup: type", at(d, "/type"), json!("service"));
    c.int_in("token lookup: ttl", at(d, "/ttl"), 1, 300);
    let v = f.bao_ok(&c, "token_renew");
    c.auth_fields("token renew", at(v, "/auth"), 300);
    let v = f.bao_ok(&c, "token_renew_30m");
    c.auth_fields("token renew -increment=30m", at(v, "/auth"), 1800);

    let v = f.bao_ok(&c, "seeded_kv_get");
    c.lease_fields("kv get secret/payments/db", v, "payments/db");
    c.eq(
        "kv get secret/payments/db",
        at(v, "/data/data/password"),
        json!(seeded("payments/db")),
    );
    let lease_id = text(at(v, "/lease_id"));
    let v = f.bao_ok(&c, "lease_lookup");
    c.eq("lease lookup: id", at(v, "/data/id"), json!(lease_id));
    c.int_in("lease lookup: ttl", at(v, "/data/ttl"), 1, 300);
    let v = f.bao_ok(&c, "lease_renew");
    c.eq("lease renew: lease_id", at(v, "/lease_id"), json!(lease_id));
    c.eq(
        "lease renew: lease_duration",
        at(v, "/lease_duration"),
        json!(300),
    );
    let v = f.bao_ok(&c, "lease_renew_10m");
    c.eq(
        "lease renew -increment=10m: lease_duration",
        at(v, "/lease_duration"),
        json!(600),
    );
    f.bao_ok(&c, "lease_revoke");
    f.bao_err(&c, "lease_lookup_after_revoke", "invalid lease");

    f.bao_ok(&c, "kv_delete");
    let v = f.bao_ok(&c, "kv_get_deleted");
    c.eq(
        "kv get after delete: data.data",
        at(v, "/data/data"),
        json!(null),
    );
    c.eq(
        "kv get after delete: version",
        at(v, "/data/metadata/version"),
        json!(3),
    );
    c.nonempty_str(
        "kv get after delete: deletion_time",
        at(v, "/data/metadata/deletion_time"),
    );

    f.bao_err(&c, "refusal_kv_get", "permission denied");
    f.bao_err(&c, "refusal_kv_get_missing", "permission denied");
    f.bao_err(&c, "refusal_kv_put", "permission denied");

    f.bao_ok(&c, "none_login");
    f.bao_err(&c, "none_kv_get", "Code: 403");

    let v = f.bao_ok(&c, "status");
    c.seal_status("status", v);
    c.eq("status: ha_enabled", at(v, "/ha_enabled"), json!(false));

    f.bao_ok(&c, "token_revoke_self");
    f.bao_err(&c, "kv_get_after_revoke", "permission denied");
    f.bao_err(&c, "token_lookup_after_revoke", "permission denied");

    // What went over the wire, from the broker's audit log: `kv patch` used
    // HTTP PATCH (not the GET+PUT fallback), `lease revoke` got its 202.
    let events = audit(&b).await;
    c.check(
        "kv patch on the wire",
        events
            .iter()
            .any(|(m, p, s)| m == "PATCH" && p.contains("compat/app") && *s == 200),
        format_args!("no PATCH …/compat/app answered 200 in the audit log: {events:?}"),
    );
    c.check(
        "lease revoke (sync:false) on the wire",
        events
            .iter()
            .any(|(m, p, s)| m == "PUT" && p.contains("sys/leases/revoke/") && *s == 202),
        format_args!("no PUT sys/leases/revoke/<id> answered 202: {events:?}"),
    );

    // The preflight the CLI depends on, byte for byte: `data.path` with a
    // trailing slash and `options.version` as the string "2".
    let w = b
        .client
        .jwt_login(ROLE, &b.jwt_with(ROLE, json!({})))
        .await
        .unwrap();
    let tok = w.client_token;
    let (st, body) = b
        .raw_http(
            "GET",
            "/v1/sys/internal/ui/mounts/secret/compat/app",
            &[("X-Vault-Token", &tok)],
            b"",
        )
        .await;
    let pre: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    c.eq("preflight: status", &json!(st), json!(200));
    c.eq(
        "preflight: data.path",
        at(&pre, "/data/path"),
        json!("secret/"),
    );
    c.eq("preflight: data.type", at(&pre, "/data/type"), json!("kv"));
    c.eq(
        "preflight: data.options.version",
        at(&pre, "/data/options/version"),
        json!("2"),
    );
    let (st, body) = b
        .raw_http(
            "GET",
            "/v1/sys/internal/ui/mounts/secret/compat/app",
            &[],
            b"",
        )
        .await;
    c.eq("preflight without a token: status", &json!(st), json!(403));
    c.eq(
        "preflight without a token: body",
        &serde_json::from_str(&body).unwrap_or(Value::Null),
        json!({"errors": ["permission denied"]}),
    );

    c.finish(&f.transcript);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hvac() {
    let python = tool("venv/bin/python");
    let b = broker().await;
    let path = "compat/hvac";
    let f = run_flow(
        &python,
        &[&script("hvac_flow.py")],
        &[
            ("VAULT_ADDR", b.addr.clone()),
            ("COMPAT_JWT", b.jwt_with(ROLE, json!({}))),
            ("COMPAT_ROLE", ROLE.into()),
            ("COMPAT_PATH", path.into()),
        ],
    )
    .await;
    let c = Checks::new("hvac");
    f.step(&c, "done");

    c.eq("no ambient token", f.ok(&c, "ambient_token"), json!(null));
    c.eq(
        "is_authenticated before login",
        f.ok(&c, "is_authenticated_before_login"),
        json!(false),
    );
    hvac_err(&c, &f, "login_bad_jwt", "InvalidRequest", "");
    hvac_err(&c, &f, "login_unknown_role", "InvalidRequest", "");
    let login = f.ok(&c, "jwt_login");
    c.envelope("jwt_login", login);
    c.auth_block("jwt_login", at(login, "/auth"), 300);
    c.eq(
        "jwt_login: top-level lease_duration",
        at(login, "/lease_duration"),
        json!(0),
    );
    c.eq("jwt_login: data", at(login, "/data"), json!(null));
    let token = text(at(login, "/auth/client_token"));
    c.eq(
        "login sets client.token",
        f.ok(&c, "token_set_by_login"),
        json!(true),
    );
    c.eq(
        "is_authenticated",
        f.ok(&c, "is_authenticated"),
        json!(true),
    );

    let v = f.ok(&c, "write_v1");
    c.envelope("create_or_update_secret", v);
    c.write_meta("create_or_update_secret #1", at(v, "/data"), 1);
    let v = f.ok(&c, "write_v2_cas");
    c.write_meta("create_or_update_secret cas=1", at(v, "/data"), 2);
    hvac_err(
        &c,
        &f,
        "write_cas_mismatch",
        "InvalidRequest",
        "check-and-set parameter did not match the current version",
    );

    let v = f.ok(&c, "read_latest");
    c.leased_read("read_secret_version", v, path);
    c.eq(
        "read_secret_version: data",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p2"}),
    );
    c.eq(
        "read_secret_version: version",
        at(v, "/data/metadata/version"),
        json!(2),
    );
    let v = f.ok(&c, "read_version_1");
    c.eq(
        "read_secret_version(version=1): data",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p1"}),
    );
    c.eq(
        "read_secret_version(version=1): version",
        at(v, "/data/metadata/version"),
        json!(1),
    );
    for name in ["read_version_99", "read_missing"] {
        hvac_err(&c, &f, name, "InvalidPath", "");
        let body = at(f.err(&c, name), "/json");
        c.eq(format_args!("{name}: body"), body, json!({"errors": []}));
    }
    let v = f.ok(&c, "read_seeded");
    c.leased_read("read payments/db", v, "payments/db");
    c.eq(
        "read payments/db",
        at(v, "/data/data/password"),
        json!(seeded("payments/db")),
    );
    let lease_id = text(at(v, "/lease_id"));

    let v = f.ok(&c, "list");
    c.envelope("list_secrets", v);
    c.eq("list_secrets(compat)", at(v, "/data/keys"), json!(["hvac"]));
    let v = f.ok(&c, "list_payments");
    c.eq(
        "list_secrets(payments)",
        at(v, "/data/keys"),
        json!(["admin/", "api-key", "db"]),
    );
    let v = f.ok(&c, "metadata");
    c.envelope("read_secret_metadata", v);
    c.metadata("read_secret_metadata", at(v, "/data"), 2);

    let v = f.ok(&c, "patch");
    c.write_meta("patch", at(v, "/data"), 3);
    let v = f.ok(&c, "read_after_patch");
    c.eq(
        "read after patch",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p3"}),
    );

    c.eq("lease_id step", f.ok(&c, "lease_id"), json!(lease_id));
    let v = f.ok(&c, "lease_lookup");
    c.envelope("read_lease", v);
    let d = at(v, "/data");
    c.eq("read_lease: id", at(d, "/id"), json!(lease_id));
    c.eq(
        "read_lease: path",
        at(d, "/path"),
        json!("secret/data/payments/db"),
    );
    c.eq("read_lease: renewable", at(d, "/renewable"), json!(true));
    c.int_in("read_lease: ttl", at(d, "/ttl"), 1, 300);
    c.is_str("read_lease: issue_time", at(d, "/issue_time"));
    c.is_str("read_lease: expire_time", at(d, "/expire_time"));
    let v = f.ok(&c, "lease_renew_60");
    c.envelope("renew_lease(60)", v);
    c.eq(
        "renew_lease(60): lease_id",
        at(v, "/lease_id"),
        json!(lease_id),
    );
    c.eq(
        "renew_lease(60): lease_duration",
        at(v, "/lease_duration"),
        json!(60),
    );
    c.eq(
        "renew_lease(60): renewable",
        at(v, "/renewable"),
        json!(true),
    );
    c.eq("renew_lease(60): data", at(v, "/data"), json!(null));
    let v = f.ok(&c, "lease_renew_capped");
    c.eq(
        "renew_lease(100000): capped at max_ttl",
        at(v, "/lease_duration"),
        json!(3600),
    );
    c.nonempty_array("renew_lease(100000): warnings", at(v, "/warnings"));
    c.eq(
        "revoke_lease",
        f.ok(&c, "lease_revoke"),
        json!({"status": 204, "body": ""}),
    );
    hvac_err(
        &c,
        &f,
        "lease_lookup_after_revoke",
        "InvalidRequest",
        "invalid lease",
    );
    hvac_err(
        &c,
        &f,
        "lease_renew_after_revoke",
        "InvalidRequest",
        "lease not found",
    );

    c.eq(
        "delete_latest_version_of_secret",
        f.ok(&c, "delete_latest"),
        json!({"status": 204, "body": ""}),
    );
    hvac_err(&c, &f, "read_deleted_raises", "InvalidPath", "");
    let v = f.ok(&c, "read_deleted");
    c.envelope("read deleted version (raise_on_deleted_version=False)", v);
    c.eq(
        "read deleted version: data.data",
        at(v, "/data/data"),
        json!(null),
    );
    c.eq(
        "read deleted version: version",
        at(v, "/data/metadata/version"),
        json!(3),
    );
    c.nonempty_str(
        "read deleted version: deletion_time",
        at(v, "/data/metadata/deletion_time"),
    );
    let v = f.ok(&c, "read_deleted_version_2");
    c.eq(
        "read version 2 after deleting 3",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p2"}),
    );

    for name in [
        "refusal_existing",
        "refusal_missing",
        "refusal_other_tree",
        "refusal_write",
        "refusal_list",
    ] {
        hvac_err(&c, &f, name, "Forbidden", "permission denied");
        let body = at(f.err(&c, name), "/json");
        c.eq(
            format_args!("{name}: body"),
            body,
            json!({"errors": ["permission denied"]}),
        );
    }

    let v = f.ok(&c, "lookup_self");
    c.envelope("lookup_self", v);
    let d = at(v, "/data");
    c.eq("lookup_self: id", at(d, "/id"), json!(token));
    c.eq("lookup_self: path", at(d, "/path"), json!("auth/jwt/login"));
    c.eq("lookup_self: type", at(d, "/type"), json!("service"));
    c.eq("lookup_self: orphan", at(d, "/orphan"), json!(true));
    c.eq("lookup_self: renewable", at(d, "/renewable"), json!(true));
    c.eq("lookup_self: num_uses", at(d, "/num_uses"), json!(0));
    c.eq(
        "lookup_self: creation_ttl",
        at(d, "/creation_ttl"),
        json!(300),
    );
    c.int_in("lookup_self: ttl", at(d, "/ttl"), 1, 300);
    c.is_str("lookup_self: expire_time", at(d, "/expire_time"));
    c.is_str("lookup_self: issue_time", at(d, "/issue_time"));
    c.is_str("lookup_self: entity_id", at(d, "/entity_id"));
    c.is_str("lookup_self: accessor", at(d, "/accessor"));
    c.is_str("lookup_self: display_name", at(d, "/display_name"));
    c.is_int("lookup_self: creation_time", at(d, "/creation_time"));
    c.is_int("lookup_self: explicit_max_ttl", at(d, "/explicit_max_ttl"));
    c.is_array("lookup_self: policies", at(d, "/policies"));
    let v = f.ok(&c, "renew_self_30m");
    c.envelope("renew_self(30m)", v);
    c.auth_block("renew_self(30m)", at(v, "/auth"), 1800);
    c.eq(
        "renew_self(30m): same token",
        at(v, "/auth/client_token"),
        json!(token),
    );
    let v = f.ok(&c, "renew_self_default");
    c.auth_block("renew_self()", at(v, "/auth"), 300);
    let v = f.ok(&c, "renew_self_capped");
    c.eq(
        "renew_self(100h): capped",
        at(v, "/auth/lease_duration"),
        json!(3600),
    );
    c.nonempty_array("renew_self(100h): warnings", at(v, "/warnings"));
    hvac_err(&c, &f, "renew_self_wrapped", "InvalidRequest", "wrapping");

    let v = f.ok(&c, "kubernetes_login");
    c.envelope("auth.kubernetes.login", v);
    c.auth_block("auth.kubernetes.login", at(v, "/auth"), 300);
    let v = f.ok(&c, "kubernetes_read");
    c.eq(
        "read with the kubernetes-login token",
        at(v, "/data/data/password"),
        json!(seeded("payments/db")),
    );
    hvac_err(&c, &f, "kubernetes_login_bad_jwt", "InvalidRequest", "");

    let v = f.ok(&c, "health_get");
    c.health("read_health_status(GET)", v);
    c.eq(
        "read_health_status() (HEAD)",
        f.ok(&c, "health_head"),
        json!({"status": 200, "body": ""}),
    );
    let v = f.ok(&c, "health_activecode");
    c.eq(
        "health ?activecode=299: status",
        at(v, "/status"),
        json!(299),
    );
    c.health("health ?activecode=299", at(v, "/body"));
    let v = f.ok(&c, "health_standbycode");
    c.health("health ?standbycode=299 (active: 200)", v);
    c.eq("is_sealed", f.ok(&c, "is_sealed"), json!(false));
    c.eq("is_initialized", f.ok(&c, "is_initialized"), json!(true));
    let v = f.ok(&c, "seal_status");
    c.seal_status("read_seal_status", v);
    let v = f.ok(&c, "leader");
    c.eq(
        "read_leader_status: ha_enabled",
        at(v, "/ha_enabled"),
        json!(false),
    );

    c.eq(
        "revoke_self",
        f.ok(&c, "revoke_self"),
        json!({"status": 204, "body": ""}),
    );
    c.eq(
        "is_authenticated after revoke",
        f.ok(&c, "is_authenticated_after_revoke"),
        json!(false),
    );
    hvac_err(
        &c,
        &f,
        "read_after_revoke",
        "Forbidden",
        "permission denied",
    );
    hvac_err(
        &c,
        &f,
        "lookup_self_after_revoke",
        "Forbidden",
        "permission denied",
    );

    c.finish(&f.transcript);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_vault() {
    let node_vault = tool("node/node_modules/node-vault");
    let b = broker().await;
    let path = "compat/node";
    let f = run_flow(
        Path::new("node"),
        &[&script("node_vault_flow.js")],
        &[
            ("NODE_VAULT", node_vault.display().to_string()),
            ("VAULT_ADDR", b.addr.clone()),
            ("COMPAT_JWT", b.jwt_with(ROLE, json!({}))),
            ("COMPAT_ROLE", ROLE.into()),
            ("COMPAT_PATH", path.into()),
        ],
    )
    .await;
    let c = Checks::new("node-vault");
    f.step(&c, "done");

    c.eq("no ambient token", f.ok(&c, "ambient_token"), json!(null));
    let login = f.ok(&c, "jwt_login");
    c.envelope("jwtLogin", login);
    c.auth_block("jwtLogin", at(login, "/auth"), 300);
    let token = text(at(login, "/auth/client_token"));
    c.eq(
        "jwtLogin sets the token",
        f.ok(&c, "token_set_by_login"),
        json!(true),
    );
    let e = f.err(&c, "jwt_login_bad");
    c.eq(
        "jwtLogin with a bad JWT: status",
        at(e, "/status"),
        json!(400),
    );

    let v = f.ok(&c, "write_v1");
    c.envelope("write", v);
    c.write_meta("write #1", at(v, "/data"), 1);
    let v = f.ok(&c, "write_v2_cas");
    c.write_meta("write cas=1", at(v, "/data"), 2);
    node_err(
        &c,
        &f,
        "write_cas_mismatch",
        400,
        "check-and-set parameter did not match the current version",
    );
    let v = f.ok(&c, "update_patch");
    c.write_meta("update (PATCH)", at(v, "/data"), 3);

    let v = f.ok(&c, "read_latest");
    c.leased_read("read", v, path);
    c.eq(
        "read: data",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p3"}),
    );
    c.eq("read: version", at(v, "/data/metadata/version"), json!(3));
    let v = f.ok(&c, "read_version_1");
    c.eq(
        "read ?version=1",
        at(v, "/data/data"),
        json!({"user": "u", "pass": "p1"}),
    );
    node_err(&c, &f, "read_missing", 404, "Status 404");
    let e = f.err(&c, "read_missing");
    c.eq("read missing: body", at(e, "/body"), json!({"errors": []}));
    let v = f.ok(&c, "read_seeded");
    c.leased_read("read payments/db", v, "payments/db");
    c.eq(
        "read payments/db",
        at(v, "/data/data/password"),
        json!(seeded("payments/db")),
    );
    let lease_id = text(at(v, "/lease_id"));

    let v = f.ok(&c, "list");
    c.eq("list (LIST)", at(v, "/data/keys"), json!(["node"]));
    let v = f.ok(&c, "list_get");
    c.eq("list (GET ?list=1)", at(v, "/data/keys"), json!(["node"]));
    let v = f.ok(&c, "list_payments_get");
    c.eq(
        "list payments (GET ?list=1)",
        at(v, "/data/keys"),
        json!(["admin/", "api-key", "db"]),
    );
    node_err(&c, &f, "list_missing", 404, "Status 404");

    for name in ["refusal_existing", "refusal_missing", "refusal_write"] {
        node_err(&c, &f, name, 403, "permission denied");
    }

    let v = f.ok(&c, "token_lookup_self");
    c.eq("tokenLookupSelf: id", at(v, "/data/id"), json!(token));
    c.eq(
        "tokenLookupSelf: type",
        at(v, "/data/type"),
        json!("service"),
    );
    c.int_in("tokenLookupSelf: ttl", at(v, "/data/ttl"), 1, 300);
    let v = f.ok(&c, "token_renew_self_30m");
    c.auth_block("tokenRenewSelf({increment:'30m'})", at(v, "/auth"), 1800);
    let v = f.ok(&c, "token_renew_self_none");
    c.auth_block("tokenRenewSelf() (no body)", at(v, "/auth"), 300);

    c.eq("lease_id step", f.ok(&c, "lease_id"), json!(lease_id));
    let v = f.ok(&c, "lease_renew_60");
    c.eq("renew: lease_id", at(v, "/lease_id"), json!(lease_id));
    c.eq("renew: lease_duration", at(v, "/lease_duration"), json!(60));
    c.eq("renew: renewable", at(v, "/renewable"), json!(true));
    f.ok(&c, "lease_revoke");
    node_err(&c, &f, "lease_renew_after_revoke", 400, "lease not found");

    f.ok(&c, "read_for_prefix_1");
    f.ok(&c, "read_for_prefix_2");
    f.ok(&c, "revoke_prefix");
    node_err(&c, &f, "lease_renew_after_prefix_1", 400, "lease not found");
    node_err(&c, &f, "lease_renew_after_prefix_2", 400, "lease not found");

    let v = f.ok(&c, "health");
    c.health("health", v);
    let v = f.ok(&c, "health_activecode");
    c.health("health ?activecode=299", v);
    let v = f.ok(&c, "status");
    c.seal_status("status", v);
    c.eq(
        "initialized",
        f.ok(&c, "initialized"),
        json!({"initialized": true}),
    );

    // `/v1/auth//login` (after any redirect to `/v1/auth/login`) is no login
    // route: a 4xx, never a token.
    let e = f.err(&c, "kubernetes_login_no_mount");
    c.int_in(
        "kubernetesLogin without mount_point: status",
        at(e, "/status"),
        400,
        499,
    );
    c.eq(
        "kubernetesLogin without mount_point gets no token",
        f.ok(&c, "kubernetes_login_no_mount_token"),
        json!(null),
    );
    let v = f.ok(&c, "kubernetes_login");
    c.auth_block(
        "kubernetesLogin(mount_point:'kubernetes')",
        at(v, "/auth"),
        300,
    );
    let v = f.ok(&c, "kubernetes_read");
    c.eq(
        "read with the kubernetes token",
        at(v, "/data/data/password"),
        json!(seeded("payments/db")),
    );

    f.ok(&c, "token_revoke_self");
    node_err(&c, &f, "read_after_revoke", 403, "permission denied");
    node_err(
        &c,
        &f,
        "token_lookup_self_after_revoke",
        403,
        "permission denied",
    );

    c.finish(&f.transcript);
    b.stop().await;
}

/// vaultrs errors as (status, errors, debug text). An error body becomes
/// `APIError`; any other non-2xx answer (such as the deleted-version 404
/// envelope) becomes rustify's `ServerResponseError`, whose code is read
/// from its debug form (rustify is not a dependency of its own here).
fn api_error(e: &vaultrs::error::ClientError) -> (Option<u16>, Vec<String>, String) {
    let dbg = format!("{e:?}");
    match e {
        vaultrs::error::ClientError::APIError { code, errors } => {
            (Some(*code), errors.clone(), dbg)
        }
        vaultrs::error::ClientError::RestClientError { .. } => {
            let code = dbg
                .split_once("ServerResponseError { code: ")
                .and_then(|(_, rest)| rest.split(|ch: char| !ch.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok());
            (code, Vec::new(), dbg)
        }
        _ => (None, Vec::new(), dbg),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs() {
    use vaultrs::api::ResponseWrapper;
    use vaultrs::api::kv2::requests::ReadSecretRequest;
    use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
    use vaultrs::{auth, kv2, sys, token};

    let b = broker().await;
    let c = Checks::new("vaultrs");
    let mut vc = VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(&b.addr)
            .token("")
            .timeout(Some(Duration::from_secs(10)))
            .build()
            .unwrap(),
    )
    .unwrap();
    let path = "compat/vaultrs";
    let secret = |pass: &str| {
        HashMap::from([
            ("user".to_string(), "u".to_string()),
            ("pass".to_string(), pass.to_string()),
        ])
    };

    let jwt = b.jwt_with(ROLE, json!({}));
    let login = auth::oidc::login(&vc, "jwt", &jwt, Some(ROLE.to_string())).await;
    let token = match login {
        Ok(a) => {
            c.check("login: client_token", !a.client_token.is_empty(), "empty");
            c.eq(
                "login: lease_duration",
                &json!(a.lease_duration),
                json!(300),
            );
            c.eq("login: renewable", &json!(a.renewable), json!(true));
            c.eq("login: token_type", &json!(a.token_type), json!("service"));
            c.eq("login: orphan", &json!(a.orphan), json!(true));
            a.client_token
        }
        Err(e) => {
            c.fail(format!("auth::oidc::login: {e:?}"));
            String::new()
        }
    };
    vc.set_token(&token);
    let bad = auth::oidc::login(&vc, "jwt", "not-a-jwt", Some(ROLE.to_string())).await;
    match bad {
        Ok(_) => c.fail("login with a bad JWT succeeded"),
        Err(e) => c.eq(
            "login with a bad JWT: status",
            &json!(api_error(&e).0),
            json!(400),
        ),
    }

    match kv2::set(&vc, "secret", path, &secret("p1")).await {
        Ok(m) => c.eq("kv2::set #1: version", &json!(m.version), json!(1)),
        Err(e) => c.fail(format!("kv2::set #1: {e:?}")),
    }
    match kv2::set(&vc, "secret", path, &secret("p2")).await {
        Ok(m) => {
            c.eq("kv2::set #2: version", &json!(m.version), json!(2));
            c.eq("kv2::set #2: destroyed", &json!(m.destroyed), json!(false));
        }
        Err(e) => c.fail(format!("kv2::set #2: {e:?}")),
    }
    match kv2::read::<HashMap<String, String>>(&vc, "secret", path).await {
        Ok(d) => c.eq("kv2::read", &json!(d), json!(secret("p2"))),
        Err(e) => c.fail(format!("kv2::read: {e:?}")),
    }
    match kv2::read_version::<HashMap<String, String>>(&vc, "secret", path, 1).await {
        Ok(d) => c.eq("kv2::read_version(1)", &json!(d), json!(secret("p1"))),
        Err(e) => c.fail(format!("kv2::read_version(1): {e:?}")),
    }
    match kv2::read::<HashMap<String, String>>(&vc, "secret", "payments/db").await {
        Ok(d) => c.eq(
            "kv2::read payments/db",
            &json!(d.get("password")),
            json!(seeded("payments/db")),
        ),
        Err(e) => c.fail(format!("kv2::read payments/db: {e:?}")),
    }
    match kv2::read::<HashMap<String, String>>(&vc, "secret", "compat/nope").await {
        Ok(d) => c.fail(format!("kv2::read of a missing secret returned {d:?}")),
        Err(e) => {
            let (code, errors, _) = api_error(&e);
            c.eq("kv2::read missing: status", &json!(code), json!(404));
            c.eq("kv2::read missing: errors", &json!(errors), json!([]));
        }
    }
    match kv2::read::<HashMap<String, String>>(&vc, "secret", "payments/admin/root").await {
        Ok(d) => c.fail(format!("kv2::read of a denied path returned {d:?}")),
        Err(e) => {
            let (code, errors, _) = api_error(&e);
            c.eq("kv2::read denied: status", &json!(code), json!(403));
            c.eq(
                "kv2::read denied: errors",
                &json!(errors),
                json!(["permission denied"]),
            );
        }
    }
    match kv2::list(&vc, "secret", "compat").await {
        Ok(keys) => c.eq("kv2::list", &json!(keys), json!(["vaultrs"])),
        Err(e) => c.fail(format!("kv2::list: {e:?}")),
    }
    match kv2::list(&vc, "secret", "payments").await {
        Ok(keys) => c.eq(
            "kv2::list payments",
            &json!(keys),
            json!(["admin/", "api-key", "db"]),
        ),
        Err(e) => c.fail(format!("kv2::list payments: {e:?}")),
    }
    match kv2::read_metadata(&vc, "secret", path).await {
        Ok(m) => {
            c.eq(
                "kv2::read_metadata: current_version",
                &json!(m.current_version),
                json!(2),
            );
            c.eq(
                "kv2::read_metadata: delete_version_after",
                &json!(m.delete_version_after),
                json!("0s"),
            );
            let mut vs: Vec<&String> = m.versions.keys().collect();
            vs.sort();
            c.eq(
                "kv2::read_metadata: versions",
                &json!(vs),
                json!(["1", "2"]),
            );
        }
        Err(e) => c.fail(format!("kv2::read_metadata: {e:?}")),
    }
    let cas = vaultrs::api::kv2::requests::SetSecretRequestOptions { cas: 1 };
    match kv2::set_with_options(&vc, "secret", path, &secret("x"), cas).await {
        Ok(m) => c.fail(format!(
            "kv2::set_with_options(cas=1) at version 2 succeeded: {m:?}"
        )),
        Err(e) => {
            let (code, errors, _) = api_error(&e);
            c.eq("kv2 cas mismatch: status", &json!(code), json!(400));
            c.eq(
                "kv2 cas mismatch: errors",
                &json!(errors),
                json!(["check-and-set parameter did not match the current version"]),
            );
        }
    }

    match token::lookup_self(&vc).await {
        Ok(t) => {
            c.eq("token::lookup_self: id", &json!(t.id), json!(token));
            c.eq(
                "token::lookup_self: path",
                &json!(t.path),
                json!("auth/jwt/login"),
            );
            c.eq("token::lookup_self: orphan", &json!(t.orphan), json!(true));
            c.int_in("token::lookup_self: ttl", &json!(t.ttl), 1, 300);
        }
        Err(e) => c.fail(format!("token::lookup_self: {e:?}")),
    }
    match token::renew_self(&vc, Some("30m")).await {
        Ok(a) => c.eq(
            "token::renew_self(30m)",
            &json!(a.lease_duration),
            json!(1800),
        ),
        Err(e) => c.fail(format!("token::renew_self(30m): {e:?}")),
    }
    match token::renew_self(&vc, None).await {
        Ok(a) => c.eq(
            "token::renew_self(None)",
            &json!(a.lease_duration),
            json!(300),
        ),
        Err(e) => c.fail(format!("token::renew_self(None): {e:?}")),
    }

    match sys::health(&vc).await {
        Ok(h) => {
            c.eq(
                "sys::health: initialized",
                &json!(h.initialized),
                json!(true),
            );
            c.eq("sys::health: sealed", &json!(h.sealed), json!(false));
            c.eq(
                "sys::health: performance_standby",
                &json!(h.performance_standby),
                json!(false),
            );
        }
        Err(e) => c.fail(format!("sys::health: {:?}", api_error(&e))),
    }
    match sys::status(&vc).await {
        Ok(s) => c.check(
            "sys::status",
            matches!(s, sys::ServerStatus::OK),
            format_args!("{s:?}"),
        ),
        Err(e) => c.fail(format!("sys::status: {:?}", api_error(&e))),
    }

    // Wrapping is not supported: the client must get an error, not silence.
    let req = ReadSecretRequest::builder()
        .mount("secret")
        .path(path)
        .build()
        .unwrap();
    match req.wrap(&vc).await {
        Ok(w) => c.fail(format!("wrap() succeeded: {:?}", w.info)),
        Err(e) => {
            let (code, errors, dbg) = api_error(&e);
            c.eq("wrap(): status", &json!(code), json!(400));
            c.contains("wrap(): message", &format!("{errors:?} {dbg}"), "wrapping");
        }
    }

    match kv2::delete_latest(&vc, "secret", path).await {
        Ok(()) => {}
        Err(e) => c.fail(format!("kv2::delete_latest: {e:?}")),
    }
    match kv2::read::<HashMap<String, String>>(&vc, "secret", path).await {
        Ok(d) => c.fail(format!("kv2::read after delete returned {d:?}")),
        Err(e) => c.eq(
            "kv2::read after delete: status",
            &json!(api_error(&e).0),
            json!(404),
        ),
    }
    match kv2::read_version::<HashMap<String, String>>(&vc, "secret", path, 1).await {
        Ok(d) => c.eq(
            "kv2::read_version(1) after deleting 2",
            &json!(d),
            json!(secret("p1")),
        ),
        Err(e) => c.fail(format!("kv2::read_version(1) after delete: {e:?}")),
    }

    match token::revoke_self(&vc).await {
        Ok(()) => {}
        Err(e) => c.fail(format!("token::revoke_self: {e:?}")),
    }
    match token::lookup_self(&vc).await {
        Ok(t) => c.fail(format!("token::lookup_self after revoke succeeded: {t:?}")),
        Err(e) => {
            let (code, errors, _) = api_error(&e);
            c.eq("lookup_self after revoke: status", &json!(code), json!(403));
            c.eq(
                "lookup_self after revoke: errors",
                &json!(errors),
                json!(["permission denied"]),
            );
        }
    }

    c.finish("");
    b.stop().await;
}
