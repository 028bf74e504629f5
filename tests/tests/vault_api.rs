//! The Vault HTTP API contract, request by request, as
//! `shared/reference/vault-compat.md` records it from a real server: the
//! shapes, types and status codes real clients depend on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use leash_tests::{Db, TestBroker};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_endpoints_are_unauthenticated_and_honour_overrides() {
    let b = TestBroker::start(Db::Sqlite).await;
    let before = b.audit_count().await;
    let r = b.client.raw("GET", "/v1/sys/health", None).await.unwrap();
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    assert_eq!(
        (v["initialized"].clone(), v["sealed"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        v["performance_standby"],
        json!(false),
        "vaultrs requires it"
    );
    assert!(v["server_time_utc"].is_i64());
    assert_eq!(
        b.client
            .raw("GET", "/v1/sys/health?activecode=299", None)
            .await
            .unwrap()
            .status,
        299
    );
    assert_eq!(
        b.client
            .raw(
                "GET",
                "/v1/sys/health?standbyok=true&perfstandbyok=true",
                None
            )
            .await
            .unwrap()
            .status,
        200
    );
    let head = b.client.raw("HEAD", "/v1/sys/health", None).await.unwrap();
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let r = b
        .client
        .raw("GET", "/v1/sys/seal-status", None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (r["sealed"].clone(), r["t"].clone(), r["n"].clone()),
        (json!(false), json!(1), json!(1))
    );
    assert_eq!(
        b.client
            .raw("GET", "/v1/sys/leader", None)
            .await
            .unwrap()
            .json()
            .unwrap(),
        json!({"ha_enabled": false})
    );
    assert_eq!(
        b.client
            .raw("GET", "/v1/sys/init", None)
            .await
            .unwrap()
            .json()
            .unwrap(),
        json!({"initialized": true})
    );
    // A trailing `?` with nothing after it (vaultrs).
    assert_eq!(
        b.client
            .raw("GET", "/v1/sys/health?", None)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(b.audit_count().await, before, "Vault's unaudited list");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_preflight_answers_what_the_cli_needs() {
    let b = TestBroker::start(Db::Sqlite).await;
    let w = b.login("payments-api").await;
    // Any path under a mount the workload has a scope in, even outside it.
    for p in ["secret/payments/db", "secret/other/x", "secret"] {
        let r = w
            .raw("GET", &format!("/v1/sys/internal/ui/mounts/{p}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{p}");
        let v = r.json().unwrap();
        assert_eq!(v["data"]["path"], json!("secret/"));
        assert_eq!(
            v["data"]["options"]["version"],
            json!("2"),
            "a string: the CLI panics on a number"
        );
        assert_eq!(v["data"]["type"], json!("kv"));
        assert_eq!(v["lease_id"], json!(""));
    }
    // A mount that does not exist: 403 with the CLI's message, never 404
    // (a 404 would silently downgrade the CLI to KV v1 paths).
    let r = w
        .raw("GET", "/v1/sys/internal/ui/mounts/kv1/app/db", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("preflight capability check returned 403"),
        "{}",
        r.body
    );
    // No token: plain permission denied.
    let r = b
        .client
        .raw("GET", "/v1/sys/internal/ui/mounts/secret/x", None)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json().unwrap()),
        (403, json!({"errors": ["permission denied"]}))
    );
    // The listing shows the usable mounts.
    let v = w
        .raw("GET", "/v1/sys/internal/ui/mounts", None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["data"]["secret"]["secret/"]["options"]["version"],
        json!("2")
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_metadata_read() {
    let b = TestBroker::start(Db::Postgres).await;
    let w = b.login("payments-api").await;
    let r = w
        .raw("GET", "/v1/secret/metadata/payments/db", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json().unwrap()["data"].clone();
    assert_eq!(d["current_version"], json!(1));
    assert_eq!(d["oldest_version"], json!(1));
    assert_eq!(d["delete_version_after"], json!("0s"));
    assert_eq!(d["cas_required"], json!(false));
    assert_eq!(d["custom_metadata"], json!(null));
    assert!(d["versions"]["1"]["created_time"].is_string());
    assert_eq!(d["versions"]["1"]["destroyed"], json!(false));
    assert!(!r.body.contains("pw-"), "metadata never carries a value");
    // Outside the scope: the same 403 as a read, whether or not it exists.
    for p in ["payments/admin/root", "payments/admin/none"] {
        let r = w
            .raw("GET", &format!("/v1/secret/metadata/{p}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{p}");
    }
    let r = w
        .raw("GET", "/v1/secret/metadata/payments/none", None)
        .await
        .unwrap();
    assert_eq!((r.status, r.json().unwrap()), (404, json!({"errors": []})));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_with_empty_segments_redirect_and_unknown_auth_is_403() {
    let b = TestBroker::start(Db::Sqlite).await;
    let w = b.login("payments-api").await;
    let tok = w.token().unwrap().to_owned();
    let (status, _) = b
        .raw_http(
            "GET",
            "/v1/secret/data/payments//admin/root?version=1",
            &[("X-Vault-Token", &tok)],
            b"",
        )
        .await;
    assert_eq!(status, 307);
    let raw = raw_response(&b, "GET", "/v1/secret/data//payments/db?version=1", &tok).await;
    assert!(
        raw.contains("location: /v1/secret/data/payments/db?version=1"),
        "{raw}"
    );
    // node-vault's kubernetesLogin bug: `auth//login` → `auth/login` → 403.
    let raw = raw_response(&b, "POST", "/v1/auth//login", "").await;
    assert!(raw.contains("location: /v1/auth/login"), "{raw}");
    let r = b
        .client
        .raw(
            "POST",
            "/v1/auth/login",
            Some(json!({"role": "x", "jwt": "y"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = b
        .client
        .raw("POST", "/v1/auth/approle-nope/login", Some(json!({})))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json().unwrap()),
        (403, json!({"errors": ["permission denied"]}))
    );
    b.stop().await;
}

async fn raw_response(b: &TestBroker, method: &str, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = b.addr.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Vault-Token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_login_path_and_legacy_revoke_prefix() {
    let b = TestBroker::start(Db::Sqlite).await;
    let jwt = b.jwt_with(
        "payments-api",
        json!({"kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "payments-sa", "uid": "u-1"}}}),
    );
    let r = b
        .client
        .raw(
            "POST",
            "/v1/auth/kubernetes/login",
            Some(json!({"role": "payments-api", "jwt": jwt})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json().unwrap();
    let meta = &v["auth"]["metadata"];
    assert_eq!(meta["service_account_name"], json!("payments-sa"));
    assert_eq!(meta["service_account_namespace"], json!("payments"));
    assert_eq!(meta["service_account_uid"], json!("u-1"));
    assert_eq!(
        v["auth"]["entity_id"].as_str().map(str::is_empty),
        Some(false)
    );
    let w = b
        .client
        .with_token(v["auth"]["client_token"].as_str().unwrap());
    let look = w
        .raw("GET", "/v1/auth/token/lookup-self", None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(look["data"]["path"], json!("auth/kubernetes/login"));
    assert_eq!(look["data"]["id"], json!(w.token().unwrap()));

    // node-vault's revokePrefix: PUT /v1/sys/revoke-prefix/<p>.
    let s = w.kv_read("secret", "payments/db", None).await.unwrap();
    let r = w
        .raw(
            "PUT",
            "/v1/sys/revoke-prefix/secret/data/payments/",
            Some(json!({})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(w.lease_lookup(&s.lease_id).await.is_err());
    b.stop().await;
}

fn policy(name: &str, scopes: &str) -> (String, String) {
    (
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"{name}\"\n[lease]\nttl = \"5m\"\nmax_ttl = \"1h\"\n{scopes}"
        ),
    )
}

fn writer_policies() -> Vec<(String, String)> {
    vec![
        policy(
            "kv-writer",
            "[[scope]]\npath = \"secret/app/*\"\ncapabilities = [\"read\", \"list\", \"create\", \"update\", \"patch\", \"delete\"]\n\
             [[scope]]\npath = \"secret/app/locked/*\"\ndeny = true\n",
        ),
        policy(
            "kv-creator",
            "[[scope]]\npath = \"secret/drop/*\"\ncapabilities = [\"create\"]\n",
        ),
        policy(
            "kv-updater",
            "[[scope]]\npath = \"secret/drop/*\"\ncapabilities = [\"update\", \"read\"]\n",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_v2_writes_check_and_set_patch_and_delete() {
    for db in [Db::Postgres, Db::Sqlite] {
        let b = TestBroker::start_with(
            db,
            leash_tests::Options {
                policies: Some(writer_policies()),
                ..Default::default()
            },
        )
        .await;
        let w = b.login("kv-writer").await;
        let put = |body: serde_json::Value| {
            let w = w.clone();
            async move {
                w.raw("PUT", "/v1/secret/data/app/x", Some(body))
                    .await
                    .unwrap()
            }
        };
        let r = put(json!({"data": {"a": "1", "keep": "k"}, "options": {}})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json().unwrap();
        assert_eq!(v["data"]["version"], json!(1));
        assert_eq!(
            (
                v["data"]["deletion_time"].clone(),
                v["data"]["destroyed"].clone()
            ),
            (json!(""), json!(false))
        );
        assert!(v["data"]["created_time"].is_string());
        assert_eq!(v["lease_id"], json!(""));

        // Check-and-set.
        let r = put(json!({"data": {"a": "2"}, "options": {"cas": 0}})).await;
        assert_eq!(
            (r.status, r.json().unwrap()),
            (
                400,
                json!({"errors": ["check-and-set parameter did not match the current version"]})
            )
        );
        let r = put(json!({"data": {"a": "2", "keep": "k"}, "options": {"cas": 1}})).await;
        assert_eq!(r.json().unwrap()["data"]["version"], json!(2));
        assert_eq!(
            put(json!({"data": {"a": "3"}, "options": {"cas": 1}}))
                .await
                .status,
            400
        );

        // Merge patch (null removes a key), with the CLI's content type.
        let (status, body) = b
            .raw_http(
                "PATCH",
                "/v1/secret/data/app/x",
                &[
                    ("X-Vault-Token", w.token().unwrap()),
                    ("Content-Type", "application/merge-patch+json"),
                ],
                br#"{"data":{"b":"new","a":null},"options":{}}"#,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let s = w.kv_read("secret", "app/x", None).await.unwrap();
        assert_eq!(
            serde_json::Value::Object(s.data.clone()),
            json!({"b": "new", "keep": "k"})
        );
        assert_eq!(s.metadata.version, 3);
        assert!(
            !s.lease_id.is_empty(),
            "a write does not change how reads are leased"
        );
        assert_eq!(
            w.kv_read("secret", "app/x", Some(1)).await.unwrap().data["a"],
            json!("1")
        );

        // Delete: the latest version is soft-deleted; older ones stay.
        let r = w
            .raw("DELETE", "/v1/secret/data/app/x", None)
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        let r = w.raw("GET", "/v1/secret/data/app/x", None).await.unwrap();
        assert_eq!(r.status, 404);
        let v = r.json().unwrap();
        assert_eq!(
            v["data"]["data"],
            json!(null),
            "Vault's deleted-version envelope"
        );
        assert!(
            !v["data"]["metadata"]["deletion_time"]
                .as_str()
                .unwrap()
                .is_empty()
        );
        assert_eq!(v["data"]["metadata"]["version"], json!(3));
        assert_eq!(
            w.kv_read("secret", "app/x", Some(2)).await.unwrap().data["a"],
            json!("2")
        );
        let m = w
            .raw("GET", "/v1/secret/metadata/app/x", None)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(m["data"]["current_version"], json!(3));
        assert!(
            !m["data"]["versions"]["3"]["deletion_time"]
                .as_str()
                .unwrap()
                .is_empty()
        );
        // Patching a deleted latest version is a 404, as in Vault.
        assert_eq!(
            w.raw(
                "PATCH",
                "/v1/secret/data/app/x",
                Some(json!({"data": {"c": "1"}}))
            )
            .await
            .unwrap()
            .status,
            404
        );

        // Bad bodies and refusals.
        for body in [
            json!({}),
            json!({"data": "str"}),
            json!({"data": {"a": 1}, "options": {"cas": "x"}}),
        ] {
            assert_eq!(put(body).await.status, 400);
        }
        let r = w
            .raw(
                "PUT",
                "/v1/secret/data/app/locked/k",
                Some(json!({"data": {"a": "1"}})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 403);
        let r = w
            .raw(
                "PUT",
                "/v1/secret/data/payments/db",
                Some(json!({"data": {"a": "1"}})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 403);

        // Every write is audited, without its value.
        let events = b.store.audit_events(0, 1000).await.unwrap();
        let ops: Vec<_> = events
            .iter()
            .map(|e| (e.event.operation.as_str(), e.event.status))
            .collect();
        assert!(
            ops.contains(&("kv.write", 200))
                && ops.contains(&("kv.patch", 200))
                && ops.contains(&("kv.delete", 204))
        );
        assert!(
            ops.contains(&("kv.write", 400)),
            "a CAS mismatch is recorded as a refusal"
        );
        let dump = serde_json::to_string(&events).unwrap();
        assert!(
            !dump.contains("\"new\"") && !dump.contains("keep"),
            "no values in the audit log"
        );
        assert!(b.verify_chain().await.ok);
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_update_are_separate_capabilities() {
    let b = TestBroker::start_with(
        Db::Postgres,
        leash_tests::Options {
            policies: Some(writer_policies()),
            ..Default::default()
        },
    )
    .await;
    let creator = b.login("kv-creator").await;
    let updater = b.login("kv-updater").await;
    let body = json!({"data": {"k": "v"}});
    assert_eq!(
        updater
            .raw("POST", "/v1/secret/data/drop/a", Some(body.clone()))
            .await
            .unwrap()
            .status,
        403,
        "update-only cannot create"
    );
    assert_eq!(
        creator
            .raw("POST", "/v1/secret/data/drop/a", Some(body.clone()))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        creator
            .raw("POST", "/v1/secret/data/drop/a", Some(body.clone()))
            .await
            .unwrap()
            .status,
        403,
        "create-only cannot overwrite"
    );
    let r = updater
        .raw("POST", "/v1/secret/data/drop/a", Some(body.clone()))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json().unwrap()["data"]["version"].clone()),
        (200, json!(2))
    );
    // The creator cannot read what it wrote; the updater can.
    assert_eq!(
        creator
            .raw("GET", "/v1/secret/data/drop/a", None)
            .await
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        updater
            .kv_read("secret", "drop/a", None)
            .await
            .unwrap()
            .data["k"],
        json!("v")
    );
    assert_eq!(
        creator
            .raw("DELETE", "/v1/secret/data/drop/a", None)
            .await
            .unwrap()
            .status,
        403
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_v1_mount() {
    let b = TestBroker::start_with(
        Db::Sqlite,
        leash_tests::Options {
            policies: Some(vec![policy(
                "kv1-app",
                "[[scope]]\npath = \"kv/app/*\"\ncapabilities = [\"read\", \"list\", \"create\", \"update\", \"delete\"]\n",
            )]),
            ..Default::default()
        },
    )
    .await;
    let w = b.login("kv1-app").await;
    // The preflight tells the CLI this mount is v1.
    let p = w
        .raw("GET", "/v1/sys/internal/ui/mounts/kv/app/x", None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (
            p["data"]["path"].clone(),
            p["data"]["options"]["version"].clone()
        ),
        (json!("kv/"), json!("1"))
    );

    let r = w
        .raw(
            "PUT",
            "/v1/kv/app/x",
            Some(json!({"user": "u", "pass": "p1"})),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = w.raw("GET", "/v1/kv/app/x", None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json().unwrap();
    assert_eq!(
        v["data"],
        json!({"user": "u", "pass": "p1"}),
        "flat data, no metadata"
    );
    assert!(v["lease_id"].as_str().unwrap().starts_with("kv/app/x/"));
    assert_eq!(
        (v["lease_duration"].clone(), v["renewable"].clone()),
        (json!(300), json!(true))
    );
    let lease_id = v["lease_id"].as_str().unwrap().to_owned();
    w.lease_renew(&lease_id, Some(60)).await.unwrap();

    w.raw("POST", "/v1/kv/app/sub/y", Some(json!({"k": "v"})))
        .await
        .unwrap();
    for (m, q) in [("LIST", ""), ("GET", "?list=true")] {
        let r = w.raw(m, &format!("/v1/kv/app{q}"), None).await.unwrap();
        assert_eq!(
            r.json().unwrap()["data"]["keys"],
            json!(["sub/", "x"]),
            "{m}{q}"
        );
    }
    assert_eq!(
        w.raw("DELETE", "/v1/kv/app/x", None).await.unwrap().status,
        204
    );
    let r = w.raw("GET", "/v1/kv/app/x", None).await.unwrap();
    assert_eq!((r.status, r.json().unwrap()), (404, json!({"errors": []})));
    assert_eq!(
        w.raw("GET", "/v1/kv/other", None).await.unwrap().status,
        403
    );
    assert_eq!(
        w.raw("PATCH", "/v1/kv/app/x", Some(json!({"a": "b"})))
            .await
            .unwrap()
            .status,
        405
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_is_cidr_bound_and_says_nothing_about_why_it_failed() {
    use sha2::Digest;
    let secret = "s3cret-id-9f2c1e7a";
    let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    let role = |name: &str, cidr: &str| {
        (
            format!("{name}.toml"),
            format!(
                "name = \"{name}\"\n[login]\nmethod = \"approle\"\nrole_id = \"{name}-id\"\nsecret_id_sha256 = \"{digest}\"\n\
                 bound_cidrs = [\"{cidr}\"]\n[lease]\nttl = \"5m\"\nmax_ttl = \"1h\"\n\
                 [[scope]]\npath = \"secret/payments/*\"\ncapabilities = [\"read\"]\n"
            ),
        )
    };
    let b = TestBroker::start_with(
        Db::Sqlite,
        leash_tests::Options {
            policies: Some(vec![
                role("batch", "127.0.0.1/32"),
                role("far-away", "10.0.0.0/8"),
            ]),
            ..Default::default()
        },
    )
    .await;
    let login = |role_id: &str, secret_id: &str| {
        let c = b.client.clone();
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        async move {
            c.raw("POST", "/v1/auth/approle/login", Some(body))
                .await
                .unwrap()
        }
    };
    let r = login("batch-id", secret).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json().unwrap();
    assert_eq!(v["auth"]["metadata"], json!({"role_name": "batch"}));
    let w = b
        .client
        .with_token(v["auth"]["client_token"].as_str().unwrap());
    w.kv_read("secret", "payments/db", None).await.unwrap();

    // Wrong secret, unknown role, right secret from outside the CIDRs: one
    // answer for all, the precise reason only in the audit log.
    let invalid = json!({"errors": ["invalid role or secret ID"]});
    for (role_id, secret_id) in [
        ("batch-id", "wrong"),
        ("nobody", secret),
        ("far-away-id", secret),
    ] {
        let r = login(role_id, secret_id).await;
        assert_eq!(
            (r.status, r.json().unwrap()),
            (400, invalid.clone()),
            "{role_id}"
        );
    }
    let reasons: Vec<String> = b
        .store
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.operation == "auth.approle.login" && e.event.status == 400)
        .map(|e| e.event.reason)
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("secret_id does not match"))
    );
    assert!(reasons.iter().any(|r| r.contains("unknown role_id")));
    assert!(reasons.iter().any(|r| r.contains("bound_cidrs")));
    let dump = serde_json::to_string(&b.store.audit_events(0, 100).await.unwrap()).unwrap();
    assert!(!dump.contains(secret), "the secret id is never recorded");
    // A JWT login cannot be used for an AppRole workload.
    let r = b
        .client
        .raw(
            "POST",
            "/v1/auth/jwt/login",
            Some(json!({"role": "batch", "jwt": b.jwt("batch")})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = TestBroker::start_with(
        Db::Sqlite,
        leash_tests::Options {
            header_read_timeout: Some(std::time::Duration::from_millis(800)),
            ..Default::default()
        },
    )
    .await;
    let host = b.addr.trim_start_matches("http://").to_owned();
    // Slowloris: half a request, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&host).await.unwrap();
    slow.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "the server held a slow-header connection open"
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(500)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    // Well-behaved keep-alive clients are unaffected.
    for _ in 0..3 {
        assert_eq!(
            b.client
                .raw("GET", "/v1/sys/health", None)
                .await
                .unwrap()
                .status,
            200
        );
    }
    let w = b.login("payments-api").await;
    w.kv_read("secret", "payments/db", None).await.unwrap();
    b.stop().await;
}
