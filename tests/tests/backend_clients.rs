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

/// The current SecretString of an AWS secret, read from moto directly.
async fn aws_upstream(s: &ExternalStack, name: &str) -> Value {
    let (status, v) = moto_call(&s.moto, "GetSecretValue", json!({"SecretId": name})).await;
    assert_eq!(status, 200, "{v}");
    serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap()
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

/// Whether moto holds no secret `name`.
async fn aws_missing(s: &ExternalStack, name: &str) -> bool {
    let (status, v) = moto_call(&s.moto, "DescribeSecret", json!({"SecretId": name})).await;
    status != 200
        && v["__type"]
            .as_str()
            .unwrap_or_default()
            .contains("ResourceNotFound")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_cli_reads_and_writes_openbao_and_aws_through_leash() {
    let s = stack(true).await;
    let t = s.login("clients-app").await;

    // --- OpenBao (KV v2) ---
    let put = bao(
        &s,
        &t,
        &[
            "kv",
            "put",
            "-format=json",
            "-mount=secret",
            "clients/db",
            "user=app",
            "password=pw-1",
        ],
    )
    .await;
    assert_eq!(put.json()["data"]["version"], 1);
    let put = bao(
        &s,
        &t,
        &[
            "kv",
            "put",
            "-format=json",
            "-mount=secret",
            "-cas=1",
            "clients/db",
            "user=app",
            "password=pw-2",
        ],
    )
    .await;
    assert_eq!(put.json()["data"]["version"], 2);
    let stale = bao(
        &s,
        &t,
        &[
            "kv",
            "put",
            "-mount=secret",
            "-cas=1",
            "clients/db",
            "password=never",
        ],
    )
    .await;
    assert_ne!(stale.code, 0);
    assert!(stale.stderr.contains("check-and-set"), "{stale:?}");
    let patch = bao(
        &s,
        &t,
        &[
            "kv",
            "patch",
            "-format=json",
            "-mount=secret",
            "clients/db",
            "password=pw-3",
        ],
    )
    .await;
    assert_eq!(patch.json()["data"]["version"], 3);
    let get = bao(
        &s,
        &t,
        &["kv", "get", "-format=json", "-mount=secret", "clients/db"],
    )
    .await
    .json();
    assert_eq!(
        get["data"]["data"],
        json!({"user": "app", "password": "pw-3"})
    );
    assert_eq!(get["data"]["metadata"]["version"], 3);
    assert!(
        get["lease_id"]
            .as_str()
            .unwrap()
            .starts_with("secret/data/clients/db/")
    );
    let v1 = bao(
        &s,
        &t,
        &[
            "kv",
            "get",
            "-format=json",
            "-mount=secret",
            "-version=1",
            "clients/db",
        ],
    )
    .await
    .json();
    assert_eq!(v1["data"]["data"]["password"], "pw-1");
    let meta = bao(
        &s,
        &t,
        &[
            "kv",
            "metadata",
            "get",
            "-format=json",
            "-mount=secret",
            "clients/db",
        ],
    )
    .await
    .json();
    assert_eq!(meta["data"]["current_version"], 3);
    assert_eq!(meta["data"]["versions"].as_object().unwrap().len(), 3);
    let list = bao(
        &s,
        &t,
        &["kv", "list", "-format=json", "-mount=secret", "clients"],
    )
    .await
    .json();
    assert_eq!(list, json!(["db"]));
    // Upstream really holds version 3.
    let (_, up) = bao_call(&s.bao, &s.root_token, "GET", "secret/data/clients/db", None).await;
    assert_eq!(
        up["data"]["data"],
        json!({"user": "app", "password": "pw-3"})
    );
    assert_eq!(up["data"]["metadata"]["version"], 3);
    // Delete: the latest version is soft-deleted upstream.
    let del = bao(&s, &t, &["kv", "delete", "-mount=secret", "clients/db"]).await;
    assert_eq!(del.code, 0, "{del:?}");
    let (status, up) = bao_call(&s.bao, &s.root_token, "GET", "secret/data/clients/db", None).await;
    assert_eq!(status, 404);
    assert_ne!(up["data"]["metadata"]["deletion_time"], "");
    // Outside the scope: refused, and nothing reaches the store.
    let out = bao(&s, &t, &["kv", "put", "-mount=secret", "other/x", "k=v"]).await;
    assert_ne!(out.code, 0);
    let (status, _) = bao_call(&s.bao, &s.root_token, "GET", "secret/data/other/x", None).await;
    assert_eq!(status, 404);

    // --- AWS Secrets Manager ---
    let put = bao(
        &s,
        &t,
        &[
            "kv",
            "put",
            "-format=json",
            "-mount=aws",
            "-cas=0",
            "clients/api",
            "key=k1",
        ],
    )
    .await;
    assert_eq!(put.json()["data"]["version"], 1);
    assert_eq!(aws_upstream(&s, "clients/api").await, json!({"key": "k1"}));
    let put = bao(
        &s,
        &t,
        &[
            "kv",
            "put",
            "-format=json",
            "-mount=aws",
            "-cas=1",
            "clients/api",
            "key=k2",
        ],
    )
    .await;
    assert_eq!(put.json()["data"]["version"], 2);
    let stale = bao(
        &s,
        &t,
        &[
            "kv",
            "put",
            "-mount=aws",
            "-cas=1",
            "clients/api",
            "key=never",
        ],
    )
    .await;
    assert_ne!(stale.code, 0);
    assert!(stale.stderr.contains("check-and-set"), "{stale:?}");
    let patch = bao(
        &s,
        &t,
        &[
            "kv",
            "patch",
            "-format=json",
            "-mount=aws",
            "clients/api",
            "extra=e",
        ],
    )
    .await;
    assert_eq!(patch.json()["data"]["version"], 3);
    assert_eq!(
        aws_upstream(&s, "clients/api").await,
        json!({"key": "k2", "extra": "e"})
    );
    let get = bao(
        &s,
        &t,
        &["kv", "get", "-format=json", "-mount=aws", "clients/api"],
    )
    .await
    .json();
    assert_eq!(get["data"]["data"], json!({"key": "k2", "extra": "e"}));
    assert_eq!(get["data"]["metadata"]["version"], 3);
    let v1 = bao(
        &s,
        &t,
        &[
            "kv",
            "get",
            "-format=json",
            "-mount=aws",
            "-version=1",
            "clients/api",
        ],
    )
    .await
    .json();
    assert_eq!(v1["data"]["data"], json!({"key": "k1"}));
    // Stages by name, in the metadata: stage → version.
    let meta = bao(
        &s,
        &t,
        &[
            "kv",
            "metadata",
            "get",
            "-format=json",
            "-mount=aws",
            "clients/api",
        ],
    )
    .await
    .json();
    assert_eq!(meta["data"]["current_version"], 3);
    assert_eq!(
        meta["data"]["custom_metadata"],
        json!({"AWSCURRENT": "3", "AWSPREVIOUS": "2"})
    );
    let list = bao(
        &s,
        &t,
        &["kv", "list", "-format=json", "-mount=aws", "clients"],
    )
    .await
    .json();
    assert_eq!(list, json!(["api"]));
    // Deleting an AWS secret through Leash is refused, and it stays.
    let del = bao(&s, &t, &["kv", "delete", "-mount=aws", "clients/api"]).await;
    assert_ne!(del.code, 0);
    assert!(del.stderr.contains("not supported"), "{del:?}");
    assert_eq!(
        aws_upstream(&s, "clients/api").await,
        json!({"key": "k2", "extra": "e"})
    );

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
    let (status, _) = bao_call(&s.bao, &s.root_token, "GET", "secret/data/clients/hv", None).await;
    assert_eq!(status, 404);
    let (_, v2) = bao_call(
        &s.bao,
        &s.root_token,
        "GET",
        "secret/data/clients/hv?version=2",
        None,
    )
    .await;
    assert_eq!(v2["data"]["data"], json!({"a": "2"}));
    assert_eq!(
        aws_upstream(&s, "clients/hv").await,
        json!({"a": "2", "b": "3"})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mounts_refuse_writes_before_any_upstream_call() {
    let s = stack(false).await;
    let t = s.login("clients-app").await;
    let w = s.client.with_token(t.clone());
    for (path, body) in [
        ("/v1/secret/data/clients/ro", json!({"data": {"k": "v"}})),
        ("/v1/aws/data/clients/ro", json!({"data": {"k": "v"}})),
    ] {
        let r = w.raw("PUT", path, Some(body)).await.unwrap();
        assert_eq!(r.status, 405, "{}", r.body);
        assert!(r.body.contains("read-only"), "{}", r.body);
    }
    let (status, _) = bao_call(&s.bao, &s.root_token, "GET", "secret/data/clients/ro", None).await;
    assert_eq!(status, 404);
    assert!(aws_missing(&s, "clients/ro").await, "no such secret in AWS");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_a_write_is_503_audited_and_writes_nothing() {
    let mut s = stack(true).await;
    let t = s.login("clients-app").await;
    let w = s.client.with_token(t.clone());

    // OpenBao down: 503 in the Vault shape, no backend internals, audited
    // as a decision and an error outcome; never retried.
    s.bao.stop();
    let r = w
        .raw(
            "PUT",
            "/v1/secret/data/clients/down",
            Some(json!({"data": {"k": "pw-down"}})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.json().unwrap()["errors"],
        json!(["secret store unavailable"])
    );
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains("pw-down"));
    let rid = all_events(&s)
        .await
        .into_iter()
        .rev()
        .find(|e| e.path == "secret/clients/down")
        .unwrap()
        .request_id;
    assert_eq!(
        events_of(&s, &rid).await,
        vec![
            ("kv.write".to_owned(), 202, "allowed".to_owned()),
            ("kv.write.result".to_owned(), 503, "error".to_owned()),
        ]
    );
    // AWS down too: the same.
    s.moto.stop();
    let r = w
        .raw(
            "PUT",
            "/v1/aws/data/clients/down",
            Some(json!({"data": {"k": "pw-down"}})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    let rid = all_events(&s)
        .await
        .into_iter()
        .rev()
        .find(|e| e.path == "aws/clients/down")
        .unwrap()
        .request_id;
    assert_eq!(
        events_of(&s, &rid).await,
        vec![
            ("kv.write".to_owned(), 202, "allowed".to_owned()),
            ("kv.write.result".to_owned(), 503, "error".to_owned()),
        ]
    );
    // The stores come back: Leash recovers without a restart.
    s.moto.restart().await;
    s.bao.restart().await;
    assert!(
        leash_tests::eventually(Duration::from_secs(15), || {
            let w = w.clone();
            async move {
                w.raw(
                    "PUT",
                    "/v1/aws/data/clients/up",
                    Some(json!({"data": {"k": "v"}})),
                )
                .await
                .is_ok_and(|r| r.status == 200)
            }
        })
        .await,
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
    for path in [
        "/v1/secret/data/clients/noaudit",
        "/v1/aws/data/clients/noaudit",
    ] {
        let r = w
            .raw("PUT", path, Some(json!({"data": {"k": "pw-noaudit"}})))
            .await
            .unwrap();
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(r.body.contains("audit"), "{}", r.body);
    }
    let (status, _) = bao_call(
        &s.bao,
        &s.root_token,
        "GET",
        "secret/data/clients/noaudit",
        None,
    )
    .await;
    assert_eq!(status, 404, "an unaudited write reached OpenBao");
    assert!(
        aws_missing(&s, "clients/noaudit").await,
        "an unaudited write reached AWS"
    );
    drop(blocker);
    // The audit log recovers; the write then goes through.
    assert!(
        leash_tests::eventually(Duration::from_secs(10), || {
            let w = w.clone();
            async move {
                w.raw(
                    "PUT",
                    "/v1/secret/data/clients/noaudit",
                    Some(json!({"data": {"k": "v"}})),
                )
                .await
                .is_ok_and(|r| r.status == 200)
            }
        })
        .await
    );
    s.stop().await;
}
