//! Real Vault clients — the `bao` CLI and hvac — reading and writing
//! through Leash to external stores: mount `secret` backed by a real
//! OpenBao (`bao server -dev`) and mount `aws` backed by a real AWS
//! Secrets Manager emulator (moto), both made `writable` here (the compose
//! configuration ships them read-only). Each value, version and refusal is
//! checked as the client sees it, and the upstream store is read directly
//! to show it really changed. The faults: the store down during a write
//! (503, audited, nothing written) and the audit log down (nothing written
//! upstream).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use leash_client::{ClientError, LeashClient, RawResponse};
use leash_tests::{ExternalStack, ToolRun, bao_call, moto_call, repo_root, run_tool};
use serde_json::{Value, json};

/// The workload the clients log in as: everything under `clients/` in
/// both external mounts.
const CLIENTS_APP: &str = r#"
name = "clients-app"
[login]
method = "jwt"
issuer = "dev"
[login.bound_claims]
sub = "clients-app"
[lease]
ttl = "5m"
max_ttl = "1h"
[[scope]]
path = "secret/clients/*"
capabilities = ["read", "list", "create", "update", "patch", "delete"]
[[scope]]
path = "aws/clients/*"
capabilities = ["read", "list", "create", "update", "patch", "delete"]
"#;

async fn stack(writable: bool) -> ExternalStack {
    ExternalStack::start(&[("clients-app.toml", CLIENTS_APP)], |s| {
        for m in &mut s.mounts {
            if m.path != "builtin" {
                m.writable = Some(writable);
                m.cache.breaker_cooldown = Duration::from_millis(300);
            }
        }
    })
    .await
}

/// `bao <args>` against Leash with `token`.
async fn bao(s: &ExternalStack, token: &str, args: &[&str]) -> ToolRun {
    run_tool(
        &repo_root().join(".tools/venv/bin/bao"),
        args,
        &[
            ("BAO_ADDR", &s.addr),
            ("VAULT_ADDR", &s.addr),
            ("BAO_TOKEN", token),
            ("VAULT_TOKEN", token),
        ],
    )
    .await
}

/// An external store behind a Leash mount, read directly (not through
/// Leash) to show what a write really did upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// OpenBao (KV v2) behind mount `secret`.
    OpenBao,
    /// AWS Secrets Manager (moto) behind mount `aws`.
    Aws,
}

impl Upstream {
    const ALL: [Upstream; 2] = [Upstream::OpenBao, Upstream::Aws];

    /// The Leash mount in front of it.
    fn mount(self) -> &'static str {
        match self {
            Upstream::OpenBao => "secret",
            Upstream::Aws => "aws",
        }
    }

    /// The current data of `path` in the store itself; `None` when it
    /// holds none (never written, or its latest version deleted). Any
    /// other answer fails the test.
    async fn current(self, s: &ExternalStack, path: &str) -> Option<Value> {
        match self {
            Upstream::OpenBao => {
                let (status, v) = bao_get(s, path).await;
                match status {
                    200 => Some(v["data"]["data"].clone()),
                    404 => None,
                    _ => panic!("OpenBao {path}: {status} {v}"),
                }
            }
            Upstream::Aws => {
                let (status, v) =
                    moto_call(&s.moto, "GetSecretValue", json!({"SecretId": path})).await;
                if status == 200 {
                    return Some(
                        serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap(),
                    );
                }
                let kind = v["__type"].as_str().unwrap_or_default();
                assert!(
                    kind.contains("ResourceNotFound"),
                    "moto {path}: {status} {v}"
                );
                None
            }
        }
    }
}

/// `GET /v1/secret/data/<path>` on OpenBao itself, as root: (status, answer).
async fn bao_get(s: &ExternalStack, path: &str) -> (u16, Value) {
    bao_call(
        &s.bao,
        &s.root_token,
        "GET",
        &format!("secret/data/{path}"),
        None,
    )
    .await
}

/// `PUT /v1/<mount>/data/clients/<name>` of `{"k": value}` through Leash.
async fn put_k(
    w: &LeashClient,
    up: Upstream,
    name: &str,
    value: &str,
) -> Result<RawResponse, ClientError> {
    let path = format!("/v1/{}/data/clients/{name}", up.mount());
    w.raw("PUT", &path, Some(json!({"data": {"k": value}})))
        .await
}

/// Whether a [`put_k`] succeeds (200) within `within`, retried.
async fn put_k_succeeds_within(
    w: &LeashClient,
    up: Upstream,
    name: &str,
    within: Duration,
) -> bool {
    leash_tests::eventually(within, || async move {
        put_k(w, up, name, "v").await.is_ok_and(|r| r.status == 200)
    })
    .await
}

/// Every audit event, page by page.
async fn all_events(s: &ExternalStack) -> Vec<leash_client::AuditEvent> {
    let mut out: Vec<leash_client::AuditEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        // Reading the log is audited too: stop at a short page.
        let page = s.operator.audit_events(after, 1000).await.unwrap();
        let last = page.len() < 1000;
        out.extend(page);
        if last {
            return out;
        }
    }
}

/// The audit events of one request id: (operation, status, decision).
async fn events_of(s: &ExternalStack, request_id: &str) -> Vec<(String, u16, String)> {
    all_events(s)
        .await
        .into_iter()
        .filter(|e| e.request_id == request_id)
        .map(|e| (e.operation, e.status, e.decision))
        .collect()
}

/// `k=v` arguments as the JSON object they write.
fn fields(kvs: &[&str]) -> Value {
    kvs.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), Value::from(v))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// What the `bao` CLI writes to one external store and reads back.
struct CliCase {
    upstream: Upstream,
    /// The secret's name under `clients/`.
    name: &'static str,
    /// Flags of the first put besides `-format=json`.
    create_flags: &'static [&'static str],
    /// The fields of version 1 and of version 2 (a put with `-cas=1`).
    v1: &'static [&'static str],
    v2: &'static [&'static str],
    /// A put with the stale `-cas=1` after version 2: refused.
    stale: &'static str,
    /// The field patched in as version 3.
    patch: &'static str,
    /// The data of version 3.
    v3: Value,
}

/// `bao kv <cmd> -mount=<mount> <rest>` with `token`.
async fn kv(s: &ExternalStack, token: &str, mount: &str, cmd: &[&str], rest: &[&str]) -> ToolRun {
    let mount = format!("-mount={mount}");
    let args: Vec<&str> = [&["kv"][..], cmd, &[mount.as_str()], rest].concat();
    bao(s, token, &args).await
}

/// The `bao` CLI's KV v2 flow on one mount: create, update with cas, a
/// stale cas refused, patch, get (latest and `-version=1`), metadata,
/// list, delete and a write outside the scope — each answer checked as
/// the CLI sees it and against the store itself.
async fn bao_cli_flow(s: &ExternalStack, t: &str, c: &CliCase) {
    let (up, m) = (c.upstream, c.upstream.mount());
    let path = format!("clients/{}", c.name);
    let p = path.as_str();

    let create = [&["-format=json"][..], c.create_flags, &[p], c.v1].concat();
    let put = kv(s, t, m, &["put"], &create).await;
    assert_eq!(put.json()["data"]["version"], 1);
    assert_eq!(up.current(s, p).await, Some(fields(c.v1)));
    let update = [&["-format=json", "-cas=1", p][..], c.v2].concat();
    let put = kv(s, t, m, &["put"], &update).await;
    assert_eq!(put.json()["data"]["version"], 2);
    assert_eq!(up.current(s, p).await, Some(fields(c.v2)));
    let stale = kv(s, t, m, &["put"], &["-cas=1", p, c.stale]).await;
    assert_ne!(stale.code, 0);
    assert!(stale.stderr.contains("check-and-set"), "{stale:?}");
    let patch = kv(s, t, m, &["patch"], &["-format=json", p, c.patch]).await;
    assert_eq!(patch.json()["data"]["version"], 3);
    // Upstream really holds version 3.
    assert_eq!(up.current(s, p).await, Some(c.v3.clone()));

    let get = kv(s, t, m, &["get"], &["-format=json", p]).await.json();
    assert_eq!(get["data"]["data"], c.v3);
    assert_eq!(get["data"]["metadata"]["version"], 3);
    let lease_prefix = format!("{m}/data/{p}/");
    assert!(
        get["lease_id"].as_str().unwrap().starts_with(&lease_prefix),
        "{get}"
    );
    let v1 = kv(s, t, m, &["get"], &["-format=json", "-version=1", p])
        .await
        .json();
    assert_eq!(v1["data"]["data"], fields(c.v1));
    let meta = kv(s, t, m, &["metadata", "get"], &["-format=json", p])
        .await
        .json();
    assert_eq!(meta["data"]["current_version"], 3);
    match up {
        Upstream::OpenBao => {
            assert_eq!(meta["data"]["versions"].as_object().unwrap().len(), 3);
            let (_, raw) = bao_get(s, p).await;
            assert_eq!(raw["data"]["metadata"]["version"], 3);
        }
        // Stages by name, in the metadata: stage → version.
        Upstream::Aws => assert_eq!(
            meta["data"]["custom_metadata"],
            json!({"AWSCURRENT": "3", "AWSPREVIOUS": "2"})
        ),
    }
    let list = kv(s, t, m, &["list"], &["-format=json", "clients"])
        .await
        .json();
    assert_eq!(list, json!([c.name]));

    let del = kv(s, t, m, &["delete"], &[p]).await;
    match up {
        // The latest version is soft-deleted upstream.
        Upstream::OpenBao => {
            assert_eq!(del.code, 0, "{del:?}");
            assert_eq!(up.current(s, p).await, None);
            let (status, raw) = bao_get(s, p).await;
            assert_eq!(status, 404);
            assert_ne!(raw["data"]["metadata"]["deletion_time"], "");
        }
        // Deleting an AWS secret through Leash is refused, and it stays.
        Upstream::Aws => {
            assert_ne!(del.code, 0);
            assert!(del.stderr.contains("not supported"), "{del:?}");
            assert_eq!(up.current(s, p).await, Some(c.v3.clone()));
        }
    }
    // Outside the scope: refused, and nothing reaches the store.
    let out = kv(s, t, m, &["put"], &["other/x", "k=v"]).await;
    assert_ne!(out.code, 0);
    assert_eq!(up.current(s, "other/x").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_cli_reads_and_writes_openbao_and_aws_through_leash() {
    let s = stack(true).await;
    let t = s.login("clients-app").await;

    let cases = [
        CliCase {
            upstream: Upstream::OpenBao,
            name: "db",
            create_flags: &[],
            v1: &["user=app", "password=pw-1"],
            v2: &["user=app", "password=pw-2"],
            stale: "password=never",
            patch: "password=pw-3",
            v3: json!({"user": "app", "password": "pw-3"}),
        },
        CliCase {
            upstream: Upstream::Aws,
            name: "api",
            create_flags: &["-cas=0"],
            v1: &["key=k1"],
            v2: &["key=k2"],
            stale: "key=never",
            patch: "extra=e",
            v3: json!({"key": "k2", "extra": "e"}),
        },
    ];
    for c in &cases {
        bao_cli_flow(&s, &t, c).await;
    }

    // Every external write: a decision event, then its outcome.
    let events = all_events(&s).await;
    let decisions: Vec<_> = events
        .iter()
        .filter(|e| e.operation == "kv.write" && e.status == 202)
        .collect();
    assert!(decisions.len() >= 5, "{decisions:?}");
    for d in decisions {
        let linked = events_of(&s, &d.request_id).await;
        assert_eq!(linked.len(), 2, "{linked:?}");
        assert_eq!(
            linked[0],
            ("kv.write".to_owned(), 202, "allowed".to_owned())
        );
        assert_eq!(linked[1].0, "kv.write.result");
    }
    for e in &events {
        for secret in ["pw-1", "pw-2", "pw-3", "k1", "k2", "never"] {
            assert!(
                !e.reason.contains(secret) && !e.path.contains(secret),
                "{e:?}"
            );
        }
    }
    assert!(s.operator.audit_verify().await.unwrap().ok);
    s.stop().await;
}

/// hvac's KV v2 flows against both stores, as one Python run.
const HVAC_FLOW: &str = r#"
import json, os, sys, hvac
c = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
kv = c.secrets.kv.v2
def step(name, f):
    try:
        out = f()
        print(json.dumps({"step": name, "ok": out}))
    except Exception as e:
        print(json.dumps({"step": name, "err": type(e).__name__, "msg": str(e)}))
for m in ["secret", "aws"]:
    step(m + ".create", lambda: kv.create_or_update_secret("clients/hv", {"a": "1"}, cas=0, mount_point=m)["data"]["version"])
    step(m + ".update", lambda: kv.create_or_update_secret("clients/hv", {"a": "2"}, cas=1, mount_point=m)["data"]["version"])
    step(m + ".stale", lambda: kv.create_or_update_secret("clients/hv", {"a": "x"}, cas=1, mount_point=m)["data"]["version"])
    step(m + ".patch", lambda: kv.patch("clients/hv", {"b": "3"}, mount_point=m)["data"]["version"])
    step(m + ".read", lambda: kv.read_secret_version("clients/hv", mount_point=m, raise_on_deleted_version=True)["data"])
    step(m + ".read1", lambda: kv.read_secret_version("clients/hv", version=1, mount_point=m, raise_on_deleted_version=True)["data"]["data"])
    step(m + ".meta", lambda: kv.read_secret_metadata("clients/hv", mount_point=m)["data"]["current_version"])
    step(m + ".list", lambda: kv.list_secrets("clients", mount_point=m)["data"]["keys"])
    step(m + ".delete", lambda: kv.delete_latest_version_of_secret("clients/hv", mount_point=m).status_code)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hvac_reads_and_writes_openbao_and_aws_through_leash() {
    let s = stack(true).await;
    let t = s.login("clients-app").await;
    let run = run_tool(
        &repo_root().join(".tools/venv/bin/python"),
        &["-c", HVAC_FLOW],
        &[("VAULT_ADDR", &s.addr), ("VAULT_TOKEN", &t)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let steps: std::collections::HashMap<String, Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["step"].as_str().unwrap().to_owned(), v))
        .collect();
    let ok = |name: &str| -> Value {
        let v = &steps[name];
        assert!(v.get("ok").is_some(), "{name}: {v} ({run:?})");
        v["ok"].clone()
    };
    for m in ["secret", "aws"] {
        assert_eq!(ok(&format!("{m}.create")), 1);
        assert_eq!(ok(&format!("{m}.update")), 2);
        let stale = &steps[&format!("{m}.stale")];
        assert_eq!(stale["err"], "InvalidRequest", "{stale}");
        assert!(stale["msg"].as_str().unwrap().contains("check-and-set"));
        assert_eq!(ok(&format!("{m}.patch")), 3);
        let read = ok(&format!("{m}.read"));
        assert_eq!(read["data"], json!({"a": "2", "b": "3"}));
        assert_eq!(read["metadata"]["version"], 3);
        assert_eq!(ok(&format!("{m}.read1")), json!({"a": "1"}));
        assert_eq!(ok(&format!("{m}.meta")), 3);
        assert_eq!(ok(&format!("{m}.list")), json!(["hv"]));
    }
    assert_eq!(ok("secret.delete"), 204);
    let aws_delete = &steps["aws.delete"];
    assert!(aws_delete.get("err").is_some(), "{aws_delete}");
    // Upstream: OpenBao's latest version is deleted; AWS holds the patch.
    assert_eq!(Upstream::OpenBao.current(&s, "clients/hv").await, None);
    let (_, v2) = bao_get(&s, "clients/hv?version=2").await;
    assert_eq!(v2["data"]["data"], json!({"a": "2"}));
    assert_eq!(
        Upstream::Aws.current(&s, "clients/hv").await,
        Some(json!({"a": "2", "b": "3"}))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mounts_refuse_writes_before_any_upstream_call() {
    let s = stack(false).await;
    let t = s.login("clients-app").await;
    let w = s.client.with_token(t.clone());
    for up in Upstream::ALL {
        let r = put_k(&w, up, "ro", "v").await.unwrap();
        assert_eq!(r.status, 405, "{up:?}: {}", r.body);
        assert!(r.body.contains("read-only"), "{}", r.body);
    }
    for up in Upstream::ALL {
        assert_eq!(up.current(&s, "clients/ro").await, None, "{up:?}");
    }
    s.stop().await;
}

/// A write to `up`'s mount while that store is down: 503 in the Vault
/// shape, no backend internals, audited as a decision and an error
/// outcome.
async fn write_while_down(s: &ExternalStack, w: &LeashClient, up: Upstream) {
    let m = up.mount();
    let r = put_k(w, up, "down", "pw-down").await.unwrap();
    assert_eq!(r.status, 503, "{m}: {}", r.body);
    assert_eq!(
        r.json().unwrap()["errors"],
        json!(["secret store unavailable"])
    );
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains("pw-down"));
    let rid = all_events(s)
        .await
        .into_iter()
        .rev()
        .find(|e| e.path == format!("{m}/clients/down"))
        .unwrap()
        .request_id;
    assert_eq!(
        events_of(s, &rid).await,
        vec![
            ("kv.write".to_owned(), 202, "allowed".to_owned()),
            ("kv.write.result".to_owned(), 503, "error".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_a_write_is_503_audited_and_writes_nothing() {
    let mut s = stack(true).await;
    let t = s.login("clients-app").await;
    let w = s.client.with_token(t.clone());

    // OpenBao down, then AWS too: each write is 503 in the Vault shape,
    // with no backend internals, audited as a decision and an error
    // outcome; never retried.
    s.bao.stop();
    write_while_down(&s, &w, Upstream::OpenBao).await;
    s.moto.stop();
    write_while_down(&s, &w, Upstream::Aws).await;
    // The stores come back: Leash recovers without a restart.
    s.moto.restart().await;
    s.bao.restart().await;
    assert!(
        put_k_succeeds_within(&w, Upstream::Aws, "up", Duration::from_secs(15)).await,
        "no recovery after moto came back"
    );

    assert!(s.operator.audit_verify().await.unwrap().ok);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_outage_writes_nothing_upstream() {
    let s = ExternalStack::start(&[("clients-app.toml", CLIENTS_APP)], |st| {
        st.audit.commit_timeout = Duration::from_millis(800);
        for m in &mut st.mounts {
            m.writable = Some(m.path != "builtin" || m.writable.unwrap_or(true));
        }
    })
    .await;
    let t = s.login("clients-app").await;
    let w = s.client.with_token(t);
    // Hold the audit chain's lock from outside, as a stuck database would.
    use sqlx::Connection;
    let mut blocker = sqlx::PgConnection::connect(&s.store_url).await.unwrap();
    sqlx::Executor::execute(&mut blocker, "BEGIN")
        .await
        .unwrap();
    sqlx::Executor::execute(
        &mut blocker,
        "LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    for up in Upstream::ALL {
        let r = put_k(&w, up, "noaudit", "pw-noaudit").await.unwrap();
        assert_eq!(r.status, 503, "{up:?}: {}", r.body);
        assert!(r.body.contains("audit"), "{}", r.body);
    }
    for up in Upstream::ALL {
        assert_eq!(
            up.current(&s, "clients/noaudit").await,
            None,
            "an unaudited write reached {up:?}"
        );
    }
    drop(blocker);
    // The audit log recovers; the write then goes through.
    assert!(
        put_k_succeeds_within(&w, Upstream::OpenBao, "noaudit", Duration::from_secs(10)).await,
        "no recovery after the audit log came back"
    );
    s.stop().await;
}
