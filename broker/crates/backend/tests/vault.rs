//! The OpenBao/Vault backend against a real OpenBao dev server (the `bao`
//! binary from `scripts/install-test-tools`): KV v2 and v1 reads, lists and
//! metadata, grants, read-only writes, token-file and AppRole auth with
//! renewal and re-login, revocation, an outage and recovery on the same
//! port, and no value or token in any `Debug` output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time // tests

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use leash_backend::vault::AppRoleAuth;
use leash_backend::{
    BackendError, SecretBackend, SecretData, SecretVersion, VaultBackend, VaultSettings, WriteOp,
    WritePath,
};
use leash_domain::{NotApplied, WriteRule};
use leash_policy::{Capability, Grant, canonicalize, unchecked_grant_for_tests};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// An OpenBao dev server, killed on drop
// ---------------------------------------------------------------------------

fn bao_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../.tools/venv/bin/bao");
    assert!(
        p.is_file(),
        "the OpenBao binary is missing at {}: run scripts/install-test-tools first",
        p.display()
    );
    p
}

fn random_hex() -> String {
    let b: [u8; 16] = leash_domain::crypto::random_bytes().unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Bao {
    child: Option<Child>,
    port: u16,
    root: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Bao {
    async fn start() -> Bao {
        let mut bao = Bao {
            child: None,
            port: 0,
            root: format!("root-{}", random_hex()),
            dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        for _ in 0..5 {
            bao.port = free_port();
            match bao.spawn().await {
                Ok(()) => return bao,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("bao server did not start:\n{log}"),
            }
        }
        panic!("no free port for bao after 5 attempts");
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `bao server -dev` on `self.port`; `Err(log)` if it exits or
    /// does not become healthy within 10 s.
    async fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join(format!("bao-{}.log", random_hex()));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(bao_binary())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={}", self.root),
                &format!("-dev-listen-address=127.0.0.1:{}", self.port),
            ])
            .env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("{}/v1/sys/health", self.addr());
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (dev mode: empty, same root token).
    async fn restart(&mut self) {
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn().await {
                Ok(()) => return,
                Err(log) => last = log,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("bao did not restart on port {}:\n{last}", self.port);
    }

    async fn api_as(
        &self,
        token: &str,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr()))
            .header("X-Vault-Token", token);
        if let Some(ns) = namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// A root call that must succeed.
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api_as(&self.root, None, method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} → {status} {v}"
        );
        v
    }

    async fn put_secret(&self, path: &str, data: Value) {
        self.api(
            "POST",
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
    }

    /// Seeds both KV mounts and a read policy. Idempotent on a fresh server.
    async fn seed(&self) {
        for v in 1..=3 {
            self.put_secret(
                "app/db",
                json!({"username": "app", "password": format!("S3CRET-db-{v}")}),
            )
            .await;
        }
        self.api(
            "POST",
            "secret/delete/app/db",
            Some(json!({"versions": [2]})),
        )
        .await;
        self.api(
            "POST",
            "secret/destroy/app/db",
            Some(json!({"versions": [1]})),
        )
        .await;
        self.put_secret(
            "app/config",
            json!({"nested": {"list": [1, "S3CRET-nested"], "flag": true}, "port": 5432}),
        )
        .await;
        self.put_secret("app/sub/deep/leaf", json!({"k": "S3CRET-leaf"}))
            .await;
        self.put_secret("app/gone", json!({"k": "S3CRET-gone"}))
            .await;
        self.api("DELETE", "secret/data/app/gone", None).await;
        self.put_secret("other/y", json!({"k": "S3CRET-other"}))
            .await;
        self.put_secret("denied/z", json!({"k": "S3CRET-denied"}))
            .await;

        self.api(
            "POST",
            "sys/mounts/kv1",
            Some(json!({"type": "kv", "options": {"version": "1"}})),
        )
        .await;
        self.api(
            "POST",
            "kv1/app/db",
            Some(json!({"username": "v1", "password": "S3CRET-v1"})),
        )
        .await;
        self.api("POST", "kv1/app/sub/x", Some(json!({"k": "S3CRET-v1-x"})))
            .await;

        let policy = r#"
            path "secret/data/*"     { capabilities = ["read"] }
            path "secret/metadata/*" { capabilities = ["read", "list"] }
            path "secret/data/denied/*" { capabilities = ["deny"] }
            path "kv1/*"             { capabilities = ["read", "list"] }
        "#;
        self.api(
            "PUT",
            "sys/policies/acl/leash-read",
            Some(json!({ "policy": policy })),
        )
        .await;
    }

    /// A token with the read policy.
    async fn token(&self, extra: Value) -> String {
        let mut body = json!({"policies": ["leash-read"], "ttl": "1h"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let v = self.api("POST", "auth/token/create", Some(body)).await;
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn settings(&self, mount: &str, kv_version: u8, token_file: PathBuf) -> VaultSettings {
        VaultSettings {
            address: self.addr(),
            mount: mount.into(),
            kv_version,
            namespace: None,
            ca_cert_file: None,
            token_file: Some(token_file),
            approle: None,
            insecure_allow_plaintext: false,
            timeout: Duration::from_secs(3),
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn grant(cap: Capability, path: &str) -> Grant {
    unchecked_grant_for_tests("w", cap, canonicalize(path).unwrap())
}

fn json_of(v: &SecretVersion) -> Value {
    serde_json::from_str(v.data.as_ref().expect("live version").expose_json()).unwrap()
}

async fn read(b: &VaultBackend, path: &str, version: Option<u64>) -> Option<SecretVersion> {
    b.read(&grant(Capability::Read, path), version)
        .await
        .unwrap_or_else(|e| panic!("read {path} {version:?}: {e:?}"))
}

async fn list(b: &VaultBackend, path: &str) -> Vec<String> {
    b.list(&grant(Capability::List, path))
        .await
        .unwrap_or_else(|e| panic!("list {path}: {e:?}"))
}

fn is_denied_upstream(e: &BackendError) -> bool {
    matches!(e, BackendError::Upstream(m) if m.starts_with("permission denied upstream"))
}

/// Everything logged on this thread (the test runtime is single-threaded),
/// at every level, including `vaultrs`/`rustify` internals.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(sub))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Fails if any secret marker or credential shows in `debug`.
fn assert_clean(debug: &str, secrets: &[&str]) {
    assert!(
        !debug.contains("S3CRET"),
        "a value leaked into Debug: {debug}"
    );
    for s in secrets {
        assert!(
            !debug.contains(s),
            "a credential leaked into Debug: {debug}"
        );
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn kv_reads_lists_metadata_grants_and_read_only() {
    let (logs, _guard) = Logs::capture();
    let bao = Bao::start().await;
    bao.seed().await;
    let token = bao.token(json!({})).await;
    let file = bao.write_file("token", &format!("{token}\n"));
    let settings = bao.settings("secret", 2, file.clone());
    assert_eq!(settings.namespace, None);
    let b = VaultBackend::connect("ext", 2, settings.clone())
        .await
        .unwrap();
    let mut debug = vec![format!("{settings:?}"), format!("{b:?}")];
    assert_eq!((b.kind(), b.mount(), b.kv_version()), ("vault", "ext", 2));
    b.ping().await.unwrap();

    // Latest, by version, deleted, destroyed, missing.
    let latest = read(&b, "ext/app/db", None).await.unwrap();
    assert_eq!(latest.version, 3);
    assert_eq!(
        json_of(&latest),
        json!({"username": "app", "password": "S3CRET-db-3"})
    );
    assert!(latest.deletion_time.is_none() && !latest.destroyed);
    assert!(latest.created_time <= Utc::now());
    let v3 = read(&b, "ext/app/db", Some(3)).await.unwrap();
    assert_eq!(json_of(&v3)["password"], "S3CRET-db-3");
    let v2 = read(&b, "ext/app/db", Some(2)).await.unwrap();
    assert!(v2.data.is_none() && v2.deletion_time.is_some() && !v2.destroyed);
    assert_eq!(v2.version, 2);
    let v1 = read(&b, "ext/app/db", Some(1)).await.unwrap();
    assert!(v1.data.is_none() && v1.deletion_time.is_none() && v1.destroyed);
    assert!(read(&b, "ext/app/db", Some(99)).await.is_none());
    assert!(read(&b, "ext/app/missing", None).await.is_none());
    assert!(read(&b, "ext/app/", None).await.is_none());
    let gone = read(&b, "ext/app/gone", None).await.unwrap();
    assert!(gone.data.is_none() && gone.deletion_time.is_some());
    let config = read(&b, "ext/app/config", None).await.unwrap();
    assert_eq!(
        json_of(&config),
        json!({"nested": {"list": [1, "S3CRET-nested"], "flag": true}, "port": 5432})
    );
    let leaf = read(&b, "ext/app/sub/deep/leaf", None).await.unwrap();
    assert_eq!(json_of(&leaf), json!({"k": "S3CRET-leaf"}));
    for v in [&latest, &v2, &v1, &gone, &config, &leaf] {
        debug.push(format!("{v:?}"));
    }

    // Lists: root, nested, missing.
    assert_eq!(list(&b, "ext/").await, ["app/", "denied/", "other/"]);
    assert_eq!(list(&b, "ext/app/").await, ["config", "db", "gone", "sub/"]);
    assert_eq!(list(&b, "ext/app/sub/").await, ["deep/"]);
    assert_eq!(list(&b, "ext/app/sub/deep/").await, ["leaf"]);
    assert!(list(&b, "ext/nope/").await.is_empty());

    // Metadata.
    let meta = b
        .metadata(&grant(Capability::Read, "ext/app/db"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        meta.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(meta[0].destroyed && meta[0].deletion_time.is_none());
    assert!(!meta[1].destroyed && meta[1].deletion_time.is_some());
    assert!(!meta[2].destroyed && meta[2].deletion_time.is_none());
    debug.push(format!("{meta:?}"));
    let none = b
        .metadata(&grant(Capability::Read, "ext/app/missing"))
        .await
        .unwrap();
    assert!(none.is_none());

    // A path the upstream policy denies: a refusal, not "missing".
    let e = b
        .read(&grant(Capability::Read, "ext/denied/z"), None)
        .await
        .unwrap_err();
    assert!(is_denied_upstream(&e), "{e:?}");
    debug.push(format!("{e:?} {e}"));

    // Grants for another mount or capability.
    for (g, what) in [
        (grant(Capability::Read, "secret/app/db"), "other mount"),
        (grant(Capability::List, "ext/app/db"), "list grant"),
        (grant(Capability::Update, "ext/app/db"), "update grant"),
    ] {
        let e = b.read(&g, None).await.unwrap_err();
        assert!(matches!(e, BackendError::GrantMismatch), "{what}: {e:?}");
    }
    let e = b
        .list(&grant(Capability::Read, "ext/app/"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::GrantMismatch), "{e:?}");
    let e = b
        .list(&grant(Capability::List, "extra/app/"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::GrantMismatch), "{e:?}");
    let e = b
        .metadata(&grant(Capability::List, "ext/app/db"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::GrantMismatch), "{e:?}");

    // Writes are refused (after the grant check).
    let data = SecretData::from_map(json!({"k": "S3CRET-write"}).as_object().unwrap()).unwrap();
    for cap in [Capability::Create, Capability::Update, Capability::Patch] {
        let e = b
            .prepare_write(
                &grant(cap, "ext/app/db"),
                &data,
                WriteRule::Any,
                None,
                Utc::now(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::ReadOnly), "{cap}: {e:?}");
    }
    let e = b
        .prepare_write(
            &grant(Capability::Update, "other/app/db"),
            &data,
            WriteRule::Any,
            None,
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::GrantMismatch), "{e:?}");
    let e = b
        .prepare_delete(&grant(Capability::Delete, "ext/app/db"), Utc::now())
        .unwrap_err();
    assert!(matches!(e, BackendError::ReadOnly), "{e:?}");
    let e = b
        .read(&grant(Capability::Patch, "ext/app/db"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::ReadOnly), "{e:?}");

    // KV v1 upstream, shown to clients as v2.
    let v1b = VaultBackend::connect("legacy", 2, bao.settings("kv1", 1, file))
        .await
        .unwrap();
    let r = read(&v1b, "legacy/app/db", None).await.unwrap();
    assert_eq!(r.version, 1);
    assert_eq!(
        json_of(&r),
        json!({"username": "v1", "password": "S3CRET-v1"})
    );
    assert!(read(&v1b, "legacy/app/db", Some(1)).await.is_some());
    assert!(read(&v1b, "legacy/app/db", Some(2)).await.is_none());
    assert!(read(&v1b, "legacy/app/missing", None).await.is_none());
    assert_eq!(list(&v1b, "legacy/").await, ["app/"]);
    assert_eq!(list(&v1b, "legacy/app/").await, ["db", "sub/"]);
    assert!(list(&v1b, "legacy/nope/").await.is_empty());
    let meta = v1b
        .metadata(&grant(Capability::Read, "legacy/app/db"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].version, 1);
    assert!(
        v1b.metadata(&grant(Capability::Read, "legacy/app/missing"))
            .await
            .unwrap()
            .is_none()
    );
    debug.push(format!("{r:?} {meta:?} {v1b:?}"));

    assert_clean(&debug.join("\n"), &[&token, &bao.root]);
    let logged = logs.text();
    // Our events and vaultrs/rustify internals, at TRACE, were captured.
    assert!(logged.contains("upstream read") && logged.contains("Sending Request"));
    assert_clean(&logged, &[&token, &bao.root]);
}

/// A data map for a write.
fn data_of(v: Value) -> leash_backend::SecretData {
    leash_backend::SecretData::from_map(v.as_object().unwrap()).unwrap()
}

#[tokio::test]
async fn writes_reach_the_store_only_when_writable() {
    let bao = Bao::start().await;
    bao.seed().await;
    let file = bao.write_file("root", &bao.root);
    let ro = VaultBackend::connect("ext", 2, bao.settings("secret", 2, file.clone()))
        .await
        .unwrap();
    assert!(matches!(
        ro.writes(WriteOp::Write),
        Err(BackendError::ReadOnly)
    ));
    let e = ro
        .write(
            &grant(Capability::Create, "ext/w/a"),
            &data_of(json!({"k": "S3CRET-no"})),
            WriteRule::Any,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::ReadOnly), "{e:?}");
    let (status, _) = bao
        .api_as(&bao.root, None, "GET", "secret/data/w/a", None)
        .await;
    assert_eq!(status, 404, "a read-only mount wrote upstream");

    let b = VaultBackend::connect("ext", 2, bao.settings("secret", 2, file.clone()))
        .await
        .unwrap()
        .with_writes(true);
    assert_eq!(b.writes(WriteOp::Write).unwrap(), WritePath::Upstream);
    assert_eq!(b.writes(WriteOp::Delete).unwrap(), WritePath::Upstream);
    let w = |cap, rule, cas, v: Value| {
        let b = &b;
        async move {
            b.write(&grant(cap, "ext/w/a"), &data_of(v), rule, cas)
                .await
        }
    };
    // Create-only through check-and-set 0; then it exists.
    let one = w(
        Capability::Create,
        WriteRule::CreateOnly,
        None,
        json!({"k": "S3CRET-1"}),
    )
    .await
    .unwrap();
    assert_eq!(one.version, 1);
    let e = w(
        Capability::Create,
        WriteRule::CreateOnly,
        None,
        json!({"k": "x"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::AlreadyExists)),
        "{e:?}"
    );
    // Check-and-set: the right version applies, a stale one does not.
    let two = w(
        Capability::Update,
        WriteRule::Any,
        Some(1),
        json!({"k": "S3CRET-2"}),
    )
    .await
    .unwrap();
    assert_eq!(two.version, 2);
    let e = w(
        Capability::Update,
        WriteRule::Any,
        Some(1),
        json!({"k": "x"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::CasMismatch)),
        "{e:?}"
    );
    // Update-only on a missing secret.
    let e = b
        .write(
            &grant(Capability::Update, "ext/w/missing"),
            &data_of(json!({"k": "x"})),
            WriteRule::UpdateOnly,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::Missing)),
        "{e:?}"
    );
    // Upstream holds what was written.
    let up = bao.api("GET", "secret/data/w/a", None).await;
    assert_eq!(up["data"]["data"], json!({"k": "S3CRET-2"}));
    assert_eq!(up["data"]["metadata"]["version"], 2);
    // A patch reads its base from a writable mount.
    let base = b
        .read(&grant(Capability::Patch, "ext/w/a"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(base.version, 2);
    // Delete: the latest version is soft-deleted upstream.
    b.delete(&grant(Capability::Delete, "ext/w/a"))
        .await
        .unwrap();
    let (status, gone) = bao
        .api_as(&bao.root, None, "GET", "secret/data/w/a", None)
        .await;
    assert_eq!(status, 404);
    assert!(gone["data"]["metadata"]["deletion_time"].as_str().unwrap() != "");

    // KV v1 upstream: write and delete, conditions checked first.
    let v1 = VaultBackend::connect("legacy", 1, bao.settings("kv1", 1, file))
        .await
        .unwrap()
        .with_writes(true);
    v1.write(
        &grant(Capability::Create, "legacy/w/b"),
        &data_of(json!({"k": "S3CRET-v1w"})),
        WriteRule::CreateOnly,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        bao.api("GET", "kv1/w/b", None).await["data"],
        json!({"k": "S3CRET-v1w"})
    );
    let e = v1
        .write(
            &grant(Capability::Create, "legacy/w/b"),
            &data_of(json!({"k": "x"})),
            WriteRule::CreateOnly,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::AlreadyExists)),
        "{e:?}"
    );
    v1.delete(&grant(Capability::Delete, "legacy/w/b"))
        .await
        .unwrap();
    let (status, _) = bao.api_as(&bao.root, None, "GET", "kv1/w/b", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn namespaces_are_sent_when_set() {
    let bao = Bao::start().await;
    bao.api("POST", "sys/namespaces/team1", None).await;
    let (status, v) = bao
        .api_as(
            &bao.root,
            Some("team1"),
            "POST",
            "sys/mounts/secret",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {v}");
    let (status, v) = bao
        .api_as(
            &bao.root,
            Some("team1"),
            "POST",
            "secret/data/app/db",
            Some(json!({"data": {"k": "S3CRET-team1"}})),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {v}");
    let file = bao.write_file("root", &bao.root);

    let mut settings = bao.settings("secret", 2, file);
    settings.namespace = Some("team1".into());
    let b = VaultBackend::connect("ns", 2, settings.clone())
        .await
        .unwrap();
    let r = read(&b, "ns/app/db", None).await.unwrap();
    assert_eq!(json_of(&r), json!({"k": "S3CRET-team1"}));

    // Without the namespace the same path is in the root namespace,
    // where there is no such secret.
    settings.namespace = None;
    let root = VaultBackend::connect("ns", 2, settings.clone())
        .await
        .unwrap();
    assert!(read(&root, "ns/app/db", None).await.is_none());

    // An unknown namespace is a configuration error, not "missing".
    settings.namespace = Some("nope".into());
    let e = VaultBackend::connect("ns", 2, settings).await.unwrap_err();
    assert!(matches!(e, BackendError::Upstream(_)), "{e:?}");
}

#[tokio::test]
async fn token_file_is_renewed_and_a_revoked_token_fails_closed() {
    let bao = Bao::start().await;
    bao.seed().await;
    let token = bao
        .token(json!({"ttl": "3s", "explicit_max_ttl": "60s", "renewable": true}))
        .await;
    let file = bao.write_file("token", &token);
    let b = VaultBackend::connect("ext", 2, bao.settings("secret", 2, file.clone()))
        .await
        .unwrap();
    let s = b.auth_status();
    assert_eq!((s.logins, s.renewals), (1, 0));
    assert!(s.renewable && s.expires_in.is_some());

    // Past the token's first TTL: alive only because Leash renewed it.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(read(&b, "ext/app/db", None).await.is_some());
    let s = b.auth_status();
    assert!(s.renewals >= 1, "{s:?}");
    assert_eq!(s.failures, 0, "{s:?}");

    // Revoked upstream: reads, lists and ping fail as refusals.
    bao.api("POST", "auth/token/revoke", Some(json!({"token": token})))
        .await;
    let e = b
        .read(&grant(Capability::Read, "ext/app/db"), None)
        .await
        .unwrap_err();
    assert!(is_denied_upstream(&e), "{e:?}");
    let e = b
        .list(&grant(Capability::List, "ext/app/"))
        .await
        .unwrap_err();
    assert!(is_denied_upstream(&e), "{e:?}");
    let e = b.ping().await.unwrap_err();
    assert!(is_denied_upstream(&e), "{e:?}");
    assert_clean(&format!("{e:?} {e} {b:?}"), &[&token]);

    // The operator rotates the file: the next refusal picks it up.
    let fresh = bao.token(json!({})).await;
    std::fs::write(&file, &fresh).unwrap();
    assert!(read(&b, "ext/app/db", None).await.is_some());
    assert_eq!(b.auth_status().logins, 2);

    // A revoked token at start is refused clearly.
    let dead = bao.token(json!({})).await;
    bao.api("POST", "auth/token/revoke", Some(json!({"token": dead})))
        .await;
    let dead_file = bao.write_file("dead", &dead);
    let e = VaultBackend::connect("ext", 2, bao.settings("secret", 2, dead_file))
        .await
        .unwrap_err();
    assert!(is_denied_upstream(&e), "{e:?}");
    assert_clean(&format!("{e:?}"), &[&dead]);
}

#[tokio::test]
async fn approle_logs_in_renews_and_logs_in_again() {
    let (logs, _guard) = Logs::capture();
    let bao = Bao::start().await;
    bao.seed().await;
    bao.api("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    bao.api(
        "POST",
        "auth/approle/role/leash",
        Some(json!({"token_policies": ["leash-read"], "token_ttl": "3s", "token_max_ttl": "5s"})),
    )
    .await;
    let role_id = bao
        .api("GET", "auth/approle/role/leash/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao
        .api("POST", "auth/approle/role/leash/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid_file = bao.write_file("secret-id", &format!("{secret_id}\n"));
    let settings = VaultSettings {
        token_file: None,
        approle: Some(AppRoleAuth {
            role_id: role_id.clone(),
            secret_id_file: sid_file,
            mount: "approle".into(),
        }),
        ..bao.settings("secret", 2, PathBuf::new())
    };
    let b = VaultBackend::connect("ext", 2, settings.clone())
        .await
        .unwrap();
    assert_eq!(b.auth_status().logins, 1);
    assert!(read(&b, "ext/app/db", None).await.is_some());

    // A policy denial is not a dead token: no login storm.
    for _ in 0..3 {
        let e = b
            .read(&grant(Capability::Read, "ext/denied/z"), None)
            .await
            .unwrap_err();
        assert!(is_denied_upstream(&e), "{e:?}");
    }
    assert_eq!(b.auth_status().logins, 1);

    // Renewed at ~2/3 TTL, then logged in again as max TTL (5 s) nears,
    // before any read fails.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let s = b.auth_status();
    assert!(s.renewals >= 1 && s.logins >= 2, "{s:?}");
    assert!(read(&b, "ext/app/db", None).await.is_some());
    let logins = b.auth_status().logins;

    // Every AppRole token revoked upstream: one re-login, then success.
    bao.api("PUT", "sys/leases/revoke-prefix/auth/approle/login", None)
        .await;
    let r = read(&b, "ext/app/db", None).await.unwrap();
    assert_eq!(json_of(&r)["password"], "S3CRET-db-3");
    assert!(b.auth_status().logins > logins);
    b.ping().await.unwrap();

    // A wrong secret id fails at connect, without printing it.
    let wrong = "0000-S3CRET-wrong-secret-id";
    let bad = VaultSettings {
        approle: Some(AppRoleAuth {
            role_id: role_id.clone(),
            secret_id_file: bao.write_file("wrong", wrong),
            mount: "approle".into(),
        }),
        ..settings.clone()
    };
    let e = VaultBackend::connect("ext", 2, bad).await.unwrap_err();
    assert!(matches!(e, BackendError::Upstream(_)), "{e:?}");
    assert_clean(
        &format!("{e:?} {e} {b:?} {settings:?} {:?}", b.auth_status()),
        &[&secret_id, wrong, &bao.root],
    );
    let logged = logs.text();
    assert!(
        logged.contains("new upstream token in use"),
        "capture works"
    );
    assert_clean(&logged, &[&secret_id, wrong, &bao.root]);
}

#[tokio::test]
async fn outage_is_unavailable_then_recovers_on_the_same_port() {
    let mut bao = Bao::start().await;
    bao.seed().await;
    let file = bao.write_file("root", &bao.root);
    let mut settings = bao.settings("secret", 2, file);
    settings.timeout = Duration::from_secs(2);
    let b = VaultBackend::connect("ext", 2, settings).await.unwrap();
    assert!(read(&b, "ext/app/db", None).await.is_some());

    bao.stop();
    let started = Instant::now();
    let e = b
        .read(&grant(Capability::Read, "ext/app/db"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    let e = b
        .list(&grant(Capability::List, "ext/app/"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    assert!(matches!(b.ping().await, Err(BackendError::Unavailable(_))));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Same port, fresh (dev mode) server: reseed; the same backend recovers.
    bao.restart().await;
    bao.seed().await;
    let r = read(&b, "ext/app/db", None).await.unwrap();
    assert_eq!(json_of(&r)["password"], "S3CRET-db-3");
    b.ping().await.unwrap();
}

#[tokio::test]
async fn a_silent_upstream_is_unavailable_within_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s.sometoken").unwrap();
    let settings: VaultSettings = serde_json::from_value(json!({
        "address": format!("http://127.0.0.1:{port}"),
        "mount": "secret",
        "token_file": file,
        "timeout": "1s",
    }))
    .unwrap();
    let started = Instant::now();
    let e = VaultBackend::connect("ext", 2, settings).await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn settings_are_parsed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s.abc").unwrap();
    let parse = |v: Value| serde_json::from_value::<VaultSettings>(v);

    let s = parse(json!({"address": "https://vault:8200", "mount": "secret", "token_file": token}))
        .unwrap();
    assert_eq!((s.kv_version, s.timeout), (2, Duration::from_secs(10)));
    assert_eq!(s.namespace, None);
    for (t, want) in [
        (json!("1m30s"), Duration::from_secs(90)),
        (json!("500ms"), Duration::from_millis(500)),
        (json!(7), Duration::from_secs(7)),
        (json!("12"), Duration::from_secs(12)),
    ] {
        let s = parse(json!({"address": "https://v", "mount": "m", "timeout": t})).unwrap();
        assert_eq!(s.timeout, want);
    }
    for bad in [
        json!({"address": "https://v", "mount": "m", "timeout": "ten"}),
        json!({"address": "https://v", "mount": "m", "timeout": -1}),
        json!({"address": "https://v", "mount": "m", "extra": 1}),
        json!({"address": "https://v", "mount": "m", "approle": {"role_id": "r", "secret_id_file": "/x", "what": 1}}),
    ] {
        assert!(parse(bad.clone()).is_err(), "{bad}");
    }
    let s = parse(json!({"address": "https://v", "mount": "m",
        "approle": {"role_id": "r", "secret_id_file": "/x"}}))
    .unwrap();
    assert_eq!(s.approle.as_ref().unwrap().mount, "approle");

    let base =
        parse(json!({"address": "http://127.0.0.1:1", "mount": "secret", "token_file": token}))
            .unwrap();
    let refused = |mutate: &dyn Fn(&mut VaultSettings)| {
        let mut s = base.clone();
        mutate(&mut s);
        s
    };
    let cases: Vec<(&str, VaultSettings)> = vec![
        (
            "plain http off loopback",
            refused(&|s| s.address = "http://vault:8200".into()),
        ),
        (
            "credentials in the address",
            refused(&|s| s.address = "https://u:pw@vault".into()),
        ),
        ("kv_version 3", refused(&|s| s.kv_version = 3)),
        ("bad mount", refused(&|s| s.mount = "../sys".into())),
        ("zero timeout", refused(&|s| s.timeout = Duration::ZERO)),
        ("no auth", refused(&|s| s.token_file = None)),
        (
            "both auths",
            refused(&|s| {
                s.approle = Some(AppRoleAuth {
                    role_id: "r".into(),
                    secret_id_file: token.clone(),
                    mount: "approle".into(),
                })
            }),
        ),
        (
            "missing token file",
            refused(&|s| s.token_file = Some(dir.path().join("nope"))),
        ),
        (
            "bad namespace",
            refused(&|s| s.namespace = Some("a\nb".into())),
        ),
    ];
    for (what, s) in cases {
        let debug = format!("{s:?}");
        assert!(!debug.contains("pw@"), "{debug}");
        let e = VaultBackend::connect("ext", 2, s).await.unwrap_err();
        assert!(matches!(e, BackendError::BadRequest(_)), "{what}: {e:?}");
    }
    let e = VaultBackend::connect("ext", 3, base.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::BadRequest(_)), "{e:?}");

    // An empty or unprintable token file is refused before any request.
    std::fs::write(&token, "\n").unwrap();
    let e = VaultBackend::connect("ext", 2, base.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::BadRequest(_)), "{e:?}");
    std::fs::write(&token, "s.a\u{7}b").unwrap();
    let e = VaultBackend::connect("ext", 2, base).await.unwrap_err();
    assert!(matches!(e, BackendError::BadRequest(_)), "{e:?}");
}
