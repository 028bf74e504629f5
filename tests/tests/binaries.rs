//! The real binaries, end to end: `leash-broker dev` and the walkthrough it
//! prints, `check`, `keygen`, `serve` with SIGHUP reload and SIGTERM
//! shutdown, `migrate` and the offline `audit verify`, and the `leash` CLI
//! against a served broker.
//!
//! Every process is spawned on port 0 in its own temporary directory and
//! killed by a guard on drop, even when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time // test bodies: failing loudly is their job

use std::path::Path;

use leash_client::LeashClient;
use leash_tests::procs::*;
use leash_tests::{PgDatabase, eventually};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------

/// Splits the instrumented walkthrough's output at its `::cmd` markers.
struct Step {
    command: String,
    rc: i32,
    output: String,
    extra: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_walkthrough_works_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dev");
    let dev = |data: &Path| {
        let mut c = broker(&["dev", "--data-dir"]);
        c.arg(data).args(["--listen", "127.0.0.1:0"]);
        c
    };
    let mut p = Running::spawn(dev(&data));
    let out = p
        .stdout_until(|o| o.lines().any(|l| l.contains(" audit verify")))
        .await;

    let lines: Vec<&str> = out.lines().collect();
    let addr = lines[0]
        .strip_prefix("Leash dev broker listening on http://")
        .unwrap_or_else(|| panic!("banner: {out}"))
        .to_owned();
    let op_token = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("operator token: "))
        .unwrap_or_else(|| panic!("no operator token in {out}"))
        .trim()
        .to_owned();
    assert!(op_token.len() >= 24);
    let start = lines
        .iter()
        .position(|l| *l == "Try it, in another terminal:")
        .unwrap_or_else(|| panic!("no walkthrough in {out}"));
    assert_eq!(lines[start + 1], "", "a blank line after the heading");
    let end = lines
        .iter()
        .position(|l| l.contains(" audit verify"))
        .unwrap();
    let block = &lines[start + 2..=end];
    assert!(
        block.iter().all(|l| !l.trim().is_empty()),
        "no blank line inside the block: {block:?}"
    );

    // The block exactly as printed, one marker line after each command.
    let mut script = String::from("exec 2>&1\n");
    let mut commands = Vec::new();
    let mut step = 0;
    for l in block {
        script.push_str(l);
        script.push('\n');
        if let Some(c) = l.strip_prefix('#') {
            if let Some(n) = c.trim().split('.').next().and_then(|n| n.parse().ok()) {
                step = n;
            }
            continue;
        }
        let i = commands.len();
        commands.push((step, (*l).to_owned()));
        script.push_str(&format!(
            "echo \"::cmd {i} rc=$? toklen=${{#LEASH_TOKEN}}\"\n"
        ));
    }
    assert_eq!(
        commands.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 5],
        "the walkthrough's shape: {block:?}"
    );
    let mut bash = command(Path::new("bash"));
    bash.arg("-c").arg(&script).current_dir(tmp.path());
    let ran = run(bash).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");

    let mut steps: Vec<Step> = Vec::new();
    let mut acc = String::new();
    for l in ran.stdout.lines() {
        if let Some(m) = l.strip_prefix("::cmd ") {
            let mut parts = m.split(' ');
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(i, steps.len(), "{ran:?}");
            let rc = parts.next().unwrap().strip_prefix("rc=").unwrap();
            steps.push(Step {
                command: commands[i].1.clone(),
                rc: rc.parse().unwrap(),
                output: std::mem::take(&mut acc),
                extra: parts.next().unwrap().to_owned(),
            });
        } else {
            acc.push_str(l);
            acc.push('\n');
        }
    }
    assert_eq!(steps.len(), commands.len(), "{ran:?}");
    let show = |s: &Step| format!("`{}` → rc {}:\n{}", s.command, s.rc, s.output);

    // export LEASH_ADDR: the address the banner names.
    assert_eq!(steps[0].rc, 0, "{}", show(&steps[0]));
    assert!(steps[0].command.ends_with(&format!("http://{addr}")));

    // 1. a JWT in a file.
    let s = &steps[1];
    assert_eq!(s.rc, 0, "{}", show(s));
    let jwt_file = s.command.rsplit_once("> ").unwrap().1.trim();
    let jwt = std::fs::read_to_string(jwt_file).unwrap();
    let jwt = jwt.trim();
    assert!(!jwt.is_empty());
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    assert!(jwt.split('.').all(|p| !p.is_empty()));

    // 2. LEASH_TOKEN is set.
    let s = &steps[2];
    assert_eq!(s.rc, 0, "{}", show(s));
    let len: usize = s.extra.strip_prefix("toklen=").unwrap().parse().unwrap();
    assert!(len >= 40, "LEASH_TOKEN has {len} characters; {}", show(s));

    // 3. in scope: a secret under a lease.
    let s = &steps[3];
    assert_eq!(s.rc, 0, "{}", show(s));
    let lease = s
        .output
        .lines()
        .find_map(|l| l.strip_prefix("lease_id: "))
        .unwrap_or_else(|| panic!("no lease_id: {}", show(s)));
    assert!(
        lease.starts_with("secret/data/payments/db/") && lease.len() > 30,
        "{lease}"
    );
    let password = s
        .output
        .lines()
        .find_map(|l| l.strip_prefix("password = "))
        .unwrap_or_else(|| panic!("no password: {}", show(s)))
        .to_owned();
    assert!(!password.is_empty());

    // 4. out of scope: refused.
    let s = &steps[4];
    assert_eq!(s.rc, 1, "{}", show(s));
    assert!(s.output.contains("permission denied"), "{}", show(s));
    assert!(!s.output.contains("password"), "{}", show(s));

    // 5. the audit log, with the refusal in it, and its chain intact.
    let s = &steps[5];
    assert_eq!(s.rc, 0, "{}", show(s));
    let reads: Vec<&str> = s
        .output
        .lines()
        .filter(|l| l.contains(" kv.read "))
        .collect();
    assert!(
        reads
            .iter()
            .any(|l| l.contains(" allowed ") && l.contains("secret/payments/db")),
        "{}",
        show(s)
    );
    assert!(
        reads
            .iter()
            .any(|l| l.contains(" denied ") && l.contains("secret/payments/admin/root")),
        "{}",
        show(s)
    );
    let s = &steps[6];
    assert_eq!(s.rc, 0, "{}", show(s));
    assert!(s.output.contains("audit chain ok"), "{}", show(s));

    // The harness client, with a freshly minted dev token, reads the same value.
    let dev_token = || {
        let mut c = broker(&["dev", "token", "--data-dir"]);
        c.arg(&data).arg("payments-api");
        run(c)
    };
    let read_db = |addr: String, jwt: String| async move {
        let client = LeashClient::new(&format!("http://{addr}")).unwrap();
        let auth = client.jwt_login("payments-api", &jwt).await.unwrap();
        let s = client
            .with_token(auth.client_token)
            .kv_read("secret", "payments/db", None)
            .await
            .unwrap();
        s.data["password"].as_str().unwrap().to_owned()
    };
    let t = dev_token().await;
    assert_eq!(t.code, Some(0), "{t:?}");
    assert_eq!(
        read_db(addr.clone(), t.stdout.trim().to_owned()).await,
        password
    );
    let op = LeashClient::new(&format!("http://{addr}"))
        .unwrap()
        .with_token(op_token.clone());
    let before = op.audit_verify().await.unwrap();
    assert!(before.ok);

    p.terminate_cleanly().await;

    // Again on the same directory: same keys, same audit log, no reseed.
    let mut p2 = Running::spawn(dev(&data));
    let out2 = p2
        .stdout_until(|o| o.lines().any(|l| l.contains(" audit verify")))
        .await;
    let addr2 = out2
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Leash dev broker listening on http://"))
        .unwrap()
        .to_owned();
    let op_token2 = out2
        .lines()
        .find_map(|l| l.trim().strip_prefix("operator token: "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(op_token2, op_token, "the operator token is kept");
    let op = LeashClient::new(&format!("http://{addr2}"))
        .unwrap()
        .with_token(op_token);
    let after = op.audit_verify().await.unwrap();
    assert!(after.ok, "{after:?}");
    assert!(
        after.events > before.events,
        "the audit log is kept: {before:?} then {after:?}"
    );
    let events = op.audit_events(0, 1000).await.unwrap();
    assert_eq!(events[0].seq, 1);
    assert_eq!(events[0].operation, "auth.jwt.login");
    let t = dev_token().await;
    assert_eq!(t.code, Some(0), "{t:?}");
    assert_eq!(
        read_db(addr2, t.stdout.trim().to_owned()).await,
        password,
        "not reseeded"
    );
    p2.terminate_cleanly().await;
}

// ---------------------------------------------------------------------------

/// 1-based number of the first line of `text` equal to `line`.
fn line_no(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in\n{text}"))
        + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_file_line_reason() {
    let s = setup("leash.sqlite.toml").await;
    let check = || run(s.broker(&["check"], &[]));

    let r = check().await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("ok: 3 workloads"), "{r:?}");

    // (a) broken policies: each problem on its own `FILE:LINE: reason` line.
    let bad_scope = "\
name = \"bad-scope\"

[login]
method = \"jwt\"
issuer = \"dev\"

[login.bound_claims]
sub = \"bad-scope\"

[[scope]]
path = \"secret/*/x\"
capabilities = [\"read\"]
";
    let bad_key = "\
name = \"bad-key\"
colour = \"blue\"

[login]
method = \"jwt\"
issuer = \"dev\"

[[scope]]
path = \"secret/x/*\"
capabilities = [\"read\"]
";
    let scope_file = s.policies.join("bad-scope.toml");
    let key_file = s.policies.join("bad-key.toml");
    std::fs::write(&scope_file, bad_scope).unwrap();
    std::fs::write(&key_file, bad_key).unwrap();
    let r = check().await;
    assert_eq!(r.code, Some(1), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem: {r:?}");
    // Files in name order: bad-key before bad-scope.
    let key_prefix = format!(
        "{}:{}: ",
        key_file.display(),
        line_no(bad_key, "colour = \"blue\"")
    );
    assert!(lines[0].starts_with(&key_prefix), "{key_prefix} — {r:?}");
    assert!(lines[0].contains("colour"), "{r:?}");
    assert_eq!(
        lines[1],
        format!(
            "{}:{}: invalid scope path `secret/*/x`: `*` may only appear once, as the last character",
            scope_file.display(),
            line_no(bad_scope, "path = \"secret/*/x\"")
        ),
        "{r:?}"
    );
    std::fs::remove_file(&scope_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let r = check().await;
    assert_eq!(r.code, Some(0), "{r:?}");

    // (b) a TOML syntax error in the configuration, with its line.
    let good = std::fs::read_to_string(&s.config).unwrap();
    let n = line_no(&good, "max_body_bytes = 1048576");
    std::fs::write(
        &s.config,
        good.replace("max_body_bytes = 1048576", "max_body_bytes = = 1048576"),
    )
    .unwrap();
    let r = check().await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout.contains(&format!("leash.toml:{n}: ")),
        "line {n}: {r:?}"
    );
    // Its shape (one line) is checked last, so that the rest runs anyway.
    let syntax = r;
    std::fs::write(&s.config, &good).unwrap();

    // (c) a missing key file, named by its setting.
    std::fs::rename(s.keys.join("hash.key"), s.dir.path().join("hash.key.away")).unwrap();
    let r = check().await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("keys.hash_key_file"), "{r:?}");
    assert!(r.stdout.contains("hash.key"), "{r:?}");
    std::fs::rename(s.dir.path().join("hash.key.away"), s.keys.join("hash.key")).unwrap();

    // keygen: mode 0600, and never over an existing file.
    use std::os::unix::fs::PermissionsExt;
    for k in ["hash.key", "builtin.key", "operator.token"] {
        let mode = std::fs::metadata(s.keys.join(k))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{k}: {mode:o}");
    }
    let fresh = s.dir.path().join("fresh.key");
    let r = keygen(&fresh).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let key = std::fs::read_to_string(&fresh).unwrap();
    assert!(key.len() >= 43, "32 bytes in base64: {key:?}");
    let r = keygen(&fresh).await;
    assert_ne!(r.code, Some(0), "keygen must not overwrite: {r:?}");
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), key, "untouched");
    let r = keygen(&s.keys.join("operator.token")).await;
    assert_ne!(r.code, Some(0), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(s.keys.join("operator.token"))
            .unwrap()
            .trim(),
        s.operator_token
    );

    // Like every problem `check` prints: one `FILE:LINE: reason` line (the
    // parser's multi-line message must not spill onto lines of its own).
    assert_eq!(
        syntax.stdout.lines().count(),
        1,
        "one line per problem: {syntax:?}"
    );
    assert!(
        syntax
            .stdout
            .starts_with(&format!("{}:{n}: ", s.config.display())),
        "{syntax:?}"
    );
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reload_on_sighup_and_shutdown() {
    let s = setup("leash.sqlite.toml").await;
    let (mut p, addr) = s.serve(&[]).await;
    let client = LeashClient::new(&addr).unwrap();
    let op = client.with_token(s.operator_token.clone());
    let st = status_data(&op).await;
    assert_eq!(
        (&st["policy_generation"], &st["policy_reload_failures"]),
        (&json!(1), &json!(0)),
        "{st}"
    );

    let auth = client
        .jwt_login("reporting-agent", &s.jwt("reporting-agent"))
        .await
        .unwrap();
    let w = client.with_token(auth.client_token);
    // The built-in store is empty: in scope → 404 `{"errors":[]}`.
    let r = w
        .raw("GET", "/v1/secret/data/reporting/warehouse", None)
        .await
        .unwrap();
    assert_eq!((r.status, r.json().unwrap()), (404, json!({"errors": []})));
    assert_eq!(
        status_of(w.kv_read("secret", "payments/db", None).await),
        403
    );

    // A broken policy set is refused on SIGHUP; the last good one stays.
    let file = s.policies.join("reporting-agent.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("[[scope]]", "[[scope]]\nbogus = 1")).unwrap();
    p.signal("HUP");
    let op2 = op.clone();
    let failed = eventually(BOUND, || {
        let op = op2.clone();
        async move { status_data(&op).await["policy_reload_failures"] == json!(1) }
    })
    .await;
    assert!(failed, "{}\n{}", status_data(&op).await, p.stderr());
    assert!(
        p.stderr().contains("reporting-agent.toml:"),
        "the problem is logged with its file: {}",
        p.stderr()
    );
    let st = status_data(&op).await;
    assert_eq!(st["policy_generation"], json!(1), "{st}");
    assert_eq!(
        status_of(w.kv_read("secret", "reporting/warehouse", None).await),
        404,
        "the old policy still applies"
    );

    // A good change takes effect on SIGHUP.
    std::fs::write(
        &file,
        good.replace("secret/reporting/*", "secret/payments/*"),
    )
    .unwrap();
    p.signal("HUP");
    let reloaded = eventually(BOUND, || {
        let op = op2.clone();
        async move { status_data(&op).await["policy_generation"] == json!(2) }
    })
    .await;
    assert!(reloaded, "{}\n{}", status_data(&op).await, p.stderr());
    assert_eq!(
        status_of(w.kv_read("secret", "payments/db", None).await),
        404
    );
    assert_eq!(
        status_of(w.kv_read("secret", "reporting/warehouse", None).await),
        403
    );

    // The `leash` CLI against this server.
    let leash = |args: &[&str], token: &str| {
        let mut c = command(&cli_bin());
        c.args(args)
            .env("LEASH_ADDR", &addr)
            .env("LEASH_TOKEN", token);
        run(c)
    };
    let r = leash(&["status"], &s.operator_token).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let workloads = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("workloads"))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(workloads.trim(), "3", "{r:?}");
    assert!(!r.stdout.contains(&s.operator_token));
    let r = leash(&["status", "--output", "json"], &s.operator_token).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(v["workloads"], json!(3), "{v}");
    assert_eq!(v["store"], json!("sqlite"), "{v}");
    // A workload token is not an operator token.
    let r = leash(&["status"], w.token().unwrap()).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("permission denied"), "{r:?}");

    p.terminate_cleanly().await;
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_offline_audit_verify_on_postgres() {
    let pg = PgDatabase::create().await;
    let s = setup("leash.postgres.toml").await;
    let env = [("LEASH_STORE__URL", pg.url.as_str())];

    for _ in 0..2 {
        let r = run(s.broker(&["migrate"], &env)).await;
        assert_eq!(r.code, Some(0), "{r:?}");
        assert_eq!(r.stdout.trim(), "migrations applied (postgres)", "{r:?}");
    }

    let (mut p, addr) = s.serve(&env).await;
    let client = LeashClient::new(&addr).unwrap();
    let auth = client
        .jwt_login("payments-api", &s.jwt("payments-api"))
        .await
        .unwrap();
    let w = client.with_token(auth.client_token);
    assert_eq!(
        status_of(w.kv_read("secret", "payments/db", None).await),
        404
    );
    assert_eq!(
        status_of(w.kv_read("secret", "payments/admin/root", None).await),
        403
    );
    let op = client.with_token(s.operator_token.clone());
    let st = status_data(&op).await;
    assert_eq!(st["store"], json!("postgres"), "{st}");
    p.terminate_cleanly().await;

    // Offline: login, two reads, one status.
    let verify = || run(s.broker(&["audit", "verify"], &env));
    let r = verify().await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout.trim(),
        "audit chain ok: 4 events, head seq 4",
        "{r:?}"
    );

    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        for q in [
            "SET session_replication_role = replica",
            "UPDATE audit_events SET reason = 'x' WHERE seq = 2",
        ] {
            sqlx::Executor::execute(&mut c, q).await.unwrap();
        }
    }
    let r = verify().await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("BROKEN"), "{r:?}");
    assert!(r.stdout.contains("after 1 good events"), "{r:?}");
}
