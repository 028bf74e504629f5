//! The AWS Secrets Manager backend against a real moto server
//! (`scripts/install-moto` puts it in `.tools/venv`): value mapping,
//! versions, listing and its cache, grants, read-only refusals, upstream
//! refusals, an outage and the recovery after it. Credentials reach the
//! backend through the standard chain, from a credentials file the test
//! writes (the process environment is left alone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time // tests

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use chrono::Utc;
use leash_backend::{
    AwsBackend, AwsSettings, BackendError, SecretBackend, SecretData, WriteOp, WritePath,
};
use leash_domain::{NotApplied, WriteRule};
use leash_policy::{Capability, Grant, canonicalize, unchecked_grant_for_tests};

const REGION: &str = "us-east-1";

// --- moto ------------------------------------------------------------------

fn moto_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../.tools/venv/bin/moto_server")
}

/// A moto server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// On a free port (retrying when another process takes it first).
    fn start() -> Self {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(m) = Self::start_on(port, &[]) {
                return m;
            }
        }
        panic!("moto did not start on any free port");
    }

    /// On `port`, with extra environment for the server; `None` when it
    /// exits before it listens (port taken).
    fn start_on(port: u16, env: &[(&str, &str)]) -> Option<Self> {
        let bin = moto_bin();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/install-moto",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Werkzeug announces " * Running on http://127.0.0.1:<port>" once
        // *this* process has bound the port.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Running on") {
                    let _ = tx.send(());
                }
            }
        });
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return Some(moto);
            }
            if moto.child.try_wait().unwrap().is_some() {
                return None;
            }
        }
        moto.stop();
        panic!("moto did not become ready on port {port} within 20 s");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- helpers ---------------------------------------------------------------

/// A shared credentials file with a `leash-test` profile (dummy keys).
fn credentials_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("credentials");
    std::fs::write(
        &path,
        "[leash-test]\naws_access_key_id = AKIDLEASHTEST\naws_secret_access_key = leash-test-secret\n",
    )
    .unwrap();
    path
}

fn settings(url: &str, creds: &Path) -> AwsSettings {
    AwsSettings {
        region: REGION.into(),
        endpoint_url: Some(url.into()),
        prefix: None,
        timeout_secs: 5,
        list_cache_secs: 30,
        profile: Some("leash-test".into()),
        credentials_file: Some(creds.to_owned()),
    }
}

/// A client of the test's own, for seeding.
fn seeder(url: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDSEED", "seed", None, None, "test"))
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

async fn put_string(c: &Client, name: &str, value: &str) {
    c.create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

fn grant(cap: Capability, path: &str) -> Grant {
    unchecked_grant_for_tests("w", cap, canonicalize(path).unwrap())
}

fn read_grant(path: &str) -> Grant {
    grant(Capability::Read, path)
}

fn json(d: &SecretData) -> serde_json::Value {
    serde_json::from_str(d.expose_json()).unwrap()
}

async fn read_json(b: &AwsBackend, path: &str, version: Option<u64>) -> (u64, serde_json::Value) {
    let v = b.read(&read_grant(path), version).await.unwrap().unwrap();
    (v.version, json(v.data.as_ref().unwrap()))
}

// --- tests -----------------------------------------------------------------

#[tokio::test]
async fn reads_values_versions_and_metadata() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    let c = seeder(&moto.url());
    put_string(
        &c,
        "prod/payments/db",
        r#"{"user":"app","password":"s3cr3t-json"}"#,
    )
    .await;
    put_string(&c, "prod/plain", "just-a-s3cr3t-string").await;
    put_string(&c, "prod/array", r#"["not","an","object"]"#).await;
    c.create_secret()
        .name("prod/cert")
        .secret_binary(Blob::new(vec![0u8, 159, 146, 150, 255]))
        .send()
        .await
        .unwrap();
    put_string(&c, "prod/rotated", r#"{"k":"one"}"#).await;
    for v in ["two", "three"] {
        c.put_secret_value()
            .secret_id("prod/rotated")
            .secret_string(format!(r#"{{"k":"{v}"}}"#))
            .send()
            .await
            .unwrap();
    }
    put_string(&c, "prod/doomed", "bye").await;
    c.delete_secret()
        .secret_id("prod/doomed")
        .send()
        .await
        .unwrap();
    c.create_secret().name("prod/novalue").send().await.unwrap();

    let b = AwsBackend::connect("aws", settings(&moto.url(), &creds))
        .await
        .unwrap();
    assert_eq!(b.kind(), "aws");
    assert_eq!(b.mount(), "aws");
    assert_eq!(b.kv_version(), 2);

    // JSON object, plain string, other JSON, binary.
    let (v, data) = read_json(&b, "aws/prod/payments/db", None).await;
    assert_eq!(v, 1);
    assert_eq!(
        data,
        serde_json::json!({"user": "app", "password": "s3cr3t-json"})
    );
    let (_, data) = read_json(&b, "aws/prod/plain", None).await;
    assert_eq!(data, serde_json::json!({"value": "just-a-s3cr3t-string"}));
    let (_, data) = read_json(&b, "aws/prod/array", None).await;
    assert_eq!(
        data,
        serde_json::json!({"value": r#"["not","an","object"]"#})
    );
    let (_, data) = read_json(&b, "aws/prod/cert", None).await;
    assert_eq!(data, serde_json::json!({"value_base64": "AJ+Slv8="}));

    // Versions: numbered in creation order, the current one highest.
    let (v, data) = read_json(&b, "aws/prod/rotated", None).await;
    assert_eq!((v, data), (3, serde_json::json!({"k": "three"})));
    let (v, data) = read_json(&b, "aws/prod/rotated", Some(1)).await;
    assert_eq!((v, data), (1, serde_json::json!({"k": "one"})));
    let (v, data) = read_json(&b, "aws/prod/rotated", Some(2)).await;
    assert_eq!((v, data), (2, serde_json::json!({"k": "two"})));
    let latest = b
        .read(&read_grant("aws/prod/rotated"), Some(3))
        .await
        .unwrap()
        .unwrap();
    assert!(latest.deletion_time.is_none() && !latest.destroyed);
    for n in [0, 4, u64::MAX] {
        assert!(
            b.read(&read_grant("aws/prod/rotated"), Some(n))
                .await
                .unwrap()
                .is_none(),
            "version {n}"
        );
    }
    let meta = b
        .metadata(&read_grant("aws/prod/rotated"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        meta.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        meta.iter()
            .all(|m| m.deletion_time.is_none() && !m.destroyed)
    );
    let age = Utc::now() - meta[2].created_time;
    assert!(age.num_seconds().abs() < 300, "created_time {age}");
    assert_eq!(
        b.metadata(&read_grant("aws/prod/plain"))
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );

    // Missing, scheduled for deletion, no value yet, a folder, a path AWS
    // cannot name: all "not found".
    for path in [
        "aws/prod/nope",
        "aws/prod/doomed",
        "aws/prod/novalue",
        "aws/prod/",
        "aws/prod/a,b",
    ] {
        assert!(
            b.read(&read_grant(path), None).await.unwrap().is_none(),
            "{path}"
        );
        assert!(
            b.read(&read_grant(path), Some(1)).await.unwrap().is_none(),
            "{path}"
        );
        assert!(
            b.metadata(&read_grant(path)).await.unwrap().is_none(),
            "{path}"
        );
    }

    // Grants: another mount, another capability.
    for g in [
        read_grant("secret/prod/plain"),
        read_grant("awsx/prod/plain"),
        read_grant("aws"),
        grant(Capability::List, "aws/prod/plain"),
        grant(Capability::Update, "aws/prod/plain"),
    ] {
        assert!(
            matches!(b.read(&g, None).await, Err(BackendError::GrantMismatch)),
            "{g:?}"
        );
    }
    assert!(matches!(
        b.metadata(&grant(Capability::Delete, "aws/prod/plain"))
            .await,
        Err(BackendError::GrantMismatch)
    ));
    assert!(matches!(
        b.list(&read_grant("aws/prod/")).await,
        Err(BackendError::GrantMismatch)
    ));

    // Read-only: writes, patches and deletes are refused without a call.
    let data = SecretData::from_map(&serde_json::Map::new()).unwrap();
    for cap in [Capability::Create, Capability::Update, Capability::Patch] {
        let r = b
            .prepare_write(
                &grant(cap, "aws/prod/plain"),
                &data,
                WriteRule::Any,
                None,
                Utc::now(),
            )
            .await;
        assert!(matches!(r, Err(BackendError::ReadOnly)), "{cap}");
    }
    assert!(matches!(
        b.read(&grant(Capability::Patch, "aws/prod/plain"), None)
            .await,
        Err(BackendError::ReadOnly)
    ));
    assert!(matches!(
        b.prepare_delete(&grant(Capability::Delete, "aws/prod/plain"), Utc::now()),
        Err(BackendError::ReadOnly)
    ));
    assert!(matches!(
        b.prepare_delete(&grant(Capability::Delete, "secret/prod/plain"), Utc::now()),
        Err(BackendError::GrantMismatch)
    ));
    assert!(matches!(
        b.prepare_write(
            &read_grant("aws/prod/plain"),
            &data,
            WriteRule::Any,
            None,
            Utc::now()
        )
        .await,
        Err(BackendError::GrantMismatch)
    ));
    // Nothing was written upstream.
    let still = c
        .get_secret_value()
        .secret_id("prod/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(still.secret_string(), Some("just-a-s3cr3t-string"));

    // Debug of what comes back never shows a value.
    for path in ["aws/prod/payments/db", "aws/prod/plain", "aws/prod/cert"] {
        let v = b.read(&read_grant(path), None).await.unwrap();
        let debug = format!("{v:?} {:?}", b);
        for needle in ["s3cr3t", "AJ+Slv8", "value_base64", "leash-test-secret"] {
            assert!(!debug.contains(needle), "{debug}");
        }
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}

#[tokio::test]
async fn prefix_and_listing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    let c = seeder(&moto.url());
    for name in [
        "team_a/app/db",
        "team_a/app/cache",
        "team_a/app/deep/er/x",
        "team_a/top",
        "teamXa/app/leak",   // `_` is not a wildcard
        "TEAM_A/app/case",   // nor is the match case-insensitive
        "team_a/app.old/y",  // a sibling folder, not a prefix of `app/`
        "team_a/appendix",   // a sibling leaf
        "team_a//empty-seg", // not a Leash path
        "other/z",
    ] {
        put_string(&c, name, "v").await;
    }

    let mut s = settings(&moto.url(), &creds);
    s.prefix = Some("team_a/".into());
    s.list_cache_secs = 1;
    let b = AwsBackend::connect("aws", s).await.unwrap();
    let list = |path: &'static str| {
        let b = &b;
        async move { b.list(&grant(Capability::List, path)).await.unwrap() }
    };

    assert_eq!(list("aws/").await, ["app.old/", "app/", "appendix", "top"]);
    assert_eq!(list("aws/app/").await, ["cache", "db", "deep/"]);
    assert_eq!(list("aws/app/deep/").await, ["er/"]);
    assert!(list("aws/nothing/").await.is_empty());
    // A folder named without its trailing slash is the same folder.
    assert_eq!(list("aws/app").await, ["cache", "db", "deep/"]);
    // Reads go through the prefix too.
    let (_, data) = read_json(&b, "aws/app/db", None).await;
    assert_eq!(data, serde_json::json!({"value": "v"}));
    assert!(
        b.read(&read_grant("aws/other/z"), None)
            .await
            .unwrap()
            .is_none()
    );

    // The cache: a secret created after a listing appears once it expires.
    put_string(&c, "team_a/app/new", "v").await;
    assert_eq!(list("aws/app/").await, ["cache", "db", "deep/"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if list("aws/app/").await == ["cache", "db", "deep/", "new"] {
            break;
        }
        assert!(Instant::now() < deadline, "the list cache never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without a prefix the root lists everything; no cache at all when
    // list_cache_secs is 0.
    let mut s = settings(&moto.url(), &creds);
    s.list_cache_secs = 0;
    let root = AwsBackend::connect("kv", s).await.unwrap();
    let all = root.list(&grant(Capability::List, "kv/")).await.unwrap();
    // Sorted bytewise, as Vault does: `X` (0x58) before `_` (0x5f).
    assert_eq!(all, ["TEAM_A/", "other/", "teamXa/", "team_a/"]);
    put_string(&c, "zz", "v").await;
    let all = root.list(&grant(Capability::List, "kv/")).await.unwrap();
    assert_eq!(all.last().map(String::as_str), Some("zz"));

    // Many secrets: pagination (moto pages at 100).
    for i in 0..120 {
        put_string(&c, &format!("bulk/s{i:03}"), "v").await;
    }
    let bulk = root
        .list(&grant(Capability::List, "kv/bulk/"))
        .await
        .unwrap();
    assert_eq!(bulk.len(), 120);
    assert_eq!(bulk[0], "s000");
    assert_eq!(bulk[119], "s119");
}

#[tokio::test]
async fn outage_refusal_and_recovery() {
    let mut moto = Moto::start();
    let port = moto.port;
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    put_string(&seeder(&moto.url()), "app/db", r#"{"p":"one"}"#).await;
    let mut s = settings(&moto.url(), &creds);
    s.timeout_secs = 3;
    s.list_cache_secs = 0;
    let b = AwsBackend::connect("aws", s).await.unwrap();
    assert_eq!(read_json(&b, "aws/app/db", None).await.0, 1);

    // Down: Unavailable, within the timeout, for every call.
    moto.stop();
    let started = Instant::now();
    let e = b.read(&read_grant("aws/app/db"), None).await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.to_string(), "secret store unavailable");
    assert!(matches!(
        b.metadata(&read_grant("aws/app/db")).await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(matches!(
        b.list(&grant(Capability::List, "aws/app/")).await,
        Err(BackendError::Unavailable(_))
    ));

    // Back, but refusing Leash's credentials (moto with IAM checks on):
    // an upstream refusal, not an outage, and no AWS text in it.
    let mut strict = restart(port, &[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let e = b.read(&read_grant("aws/app/db"), None).await.unwrap_err();
    match &e {
        BackendError::Upstream(m) => assert_eq!(m, "permission denied upstream"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.to_string(), "the secret store rejected the request");
    strict.stop();

    // Back for real (empty: reseed); the same backend recovers.
    let moto = restart(port, &[]);
    put_string(&seeder(&moto.url()), "app/db", r#"{"p":"again"}"#).await;
    let (v, data) = read_json(&b, "aws/app/db", None).await;
    assert_eq!((v, data), (1, serde_json::json!({"p": "again"})));
    assert_eq!(
        b.list(&grant(Capability::List, "aws/app/")).await.unwrap(),
        ["db"]
    );
}

/// Starts moto again on `port` (retrying briefly while the port is freed).
fn restart(port: u16, env: &[(&str, &str)]) -> Moto {
    for _ in 0..20 {
        if let Some(m) = Moto::start_on(port, env) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto did not restart on port {port}");
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    let mut s = settings(&url, &creds);
    s.timeout_secs = 1;
    let b = AwsBackend::connect("aws", s).await.unwrap();
    let started = Instant::now();
    let e = b.read(&read_grant("aws/x"), None).await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1800), "{took:?}");
    let e = b.list(&grant(Capability::List, "aws/")).await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    let parsed: AwsSettings = toml_like(r#"{"region": "eu-central-1"}"#);
    assert_eq!(parsed.timeout_secs, 10);
    assert_eq!(parsed.list_cache_secs, 30);
    assert!(parsed.prefix.is_none() && parsed.endpoint_url.is_none());
    assert!(
        serde_json::from_str::<AwsSettings>(r#"{"region": "eu-central-1", "secret_key": "x"}"#)
            .is_err()
    );

    let base = settings("http://127.0.0.1:9", &creds);
    let bad: Vec<(&str, Change)> = vec![
        ("empty region", Box::new(|s| s.region.clear())),
        ("odd region", Box::new(|s| s.region = "us east".into())),
        ("zero timeout", Box::new(|s| s.timeout_secs = 0)),
        ("huge timeout", Box::new(|s| s.timeout_secs = 10_000)),
        ("huge cache", Box::new(|s| s.list_cache_secs = 100_000)),
        (
            "% in prefix",
            Box::new(|s| s.prefix = Some("team%/".into())),
        ),
        (
            "space in prefix",
            Box::new(|s| s.prefix = Some("a b/".into())),
        ),
        (
            "ftp endpoint",
            Box::new(|s| s.endpoint_url = Some("ftp://x".into())),
        ),
        (
            "userinfo endpoint",
            Box::new(|s| s.endpoint_url = Some("https://u:p@x".into())),
        ),
        (
            "empty profile",
            Box::new(|s| s.profile = Some(String::new())),
        ),
        (
            "missing credentials file",
            Box::new(|s| s.credentials_file = Some("/nonexistent/creds".into())),
        ),
    ];
    for (what, change) in bad {
        let mut s = base.clone();
        change(&mut s);
        match AwsBackend::connect("aws", s).await {
            Err(BackendError::BadRequest(m)) => {
                assert!(m.starts_with("aws mount settings:"), "{what}: {m}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A `_` prefix is fine, and connecting sends nothing (port 9 is dead).
    let mut ok = base.clone();
    ok.prefix = Some("team_a/".into());
    AwsBackend::connect("aws", ok).await.unwrap();
}

type Change = Box<dyn Fn(&mut AwsSettings)>;

fn toml_like(json: &str) -> AwsSettings {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn unusable_credentials_are_an_upstream_refusal() {
    // The selected profile is not in the credentials file: the chain fails
    // before anything is sent (nothing listens on port 9 anyway).
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    let mut s = settings("http://127.0.0.1:9", &creds);
    s.profile = Some("absent".into());
    let b = AwsBackend::connect("aws", s).await.unwrap();
    for e in [
        b.read(&read_grant("aws/x"), None).await.map(|_| ()),
        b.metadata(&read_grant("aws/x")).await.map(|_| ()),
        b.list(&grant(Capability::List, "aws/")).await.map(|_| ()),
    ] {
        match e {
            Err(BackendError::Upstream(m)) => assert_eq!(m, "permission denied upstream"),
            other => panic!("{other:?}"),
        }
    }
}

fn data_of(v: serde_json::Value) -> SecretData {
    SecretData::from_map(v.as_object().unwrap()).unwrap()
}

#[tokio::test]
async fn writes_when_writable_with_cas_and_named_stages() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials_file(&dir);
    let c = seeder(&moto.url());
    put_string(&c, "prod/w/existing", r#"{"k":"v1"}"#).await;

    // Read-only by default: nothing reaches AWS.
    let ro = AwsBackend::connect("aws", settings(&moto.url(), &creds))
        .await
        .unwrap();
    assert!(matches!(
        ro.writes(WriteOp::Write),
        Err(BackendError::ReadOnly)
    ));
    let e = ro
        .write(
            &grant(Capability::Create, "aws/prod/w/new"),
            &data_of(serde_json::json!({"k": "x"})),
            WriteRule::Any,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::ReadOnly), "{e:?}");
    assert!(
        c.describe_secret()
            .secret_id("prod/w/new")
            .send()
            .await
            .is_err()
    );

    let b = AwsBackend::connect("aws", settings(&moto.url(), &creds))
        .await
        .unwrap()
        .with_writes(true);
    assert_eq!(b.writes(WriteOp::Write).unwrap(), WritePath::Upstream);
    // Deletes are refused with a reason, never sent.
    assert!(matches!(
        b.writes(WriteOp::Delete),
        Err(BackendError::Unsupported(_))
    ));

    // A new secret: CreateSecret, version 1, a JSON SecretString.
    let w = b
        .write(
            &grant(Capability::Create, "aws/prod/w/new"),
            &data_of(serde_json::json!({"user": "u", "password": "s3cr3t-new"})),
            WriteRule::CreateOnly,
            Some(0),
        )
        .await
        .unwrap();
    assert_eq!(w.version, 1);
    let up = c
        .get_secret_value()
        .secret_id("prod/w/new")
        .send()
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(up.secret_string().unwrap()).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"user": "u", "password": "s3cr3t-new"})
    );
    // Create-only on an existing secret does not apply.
    let e = b
        .write(
            &grant(Capability::Create, "aws/prod/w/existing"),
            &data_of(serde_json::json!({"k": "x"})),
            WriteRule::CreateOnly,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::AlreadyExists)),
        "{e:?}"
    );
    // An existing secret: PutSecretValue, with cas = the current number.
    let e = b
        .write(
            &grant(Capability::Update, "aws/prod/w/existing"),
            &data_of(serde_json::json!({"k": "x"})),
            WriteRule::Any,
            Some(2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::CasMismatch)),
        "{e:?}"
    );
    let w = b
        .write(
            &grant(Capability::Update, "aws/prod/w/existing"),
            &data_of(serde_json::json!({"k": "v2"})),
            WriteRule::UpdateOnly,
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(w.version, 2);
    assert_eq!(
        read_json(&b, "aws/prod/w/existing", None).await,
        (2, serde_json::json!({"k": "v2"}))
    );
    assert_eq!(
        read_json(&b, "aws/prod/w/existing", Some(1)).await,
        (1, serde_json::json!({"k": "v1"}))
    );
    // Update-only on a missing secret.
    let e = b
        .write(
            &grant(Capability::Update, "aws/prod/w/missing"),
            &data_of(serde_json::json!({"k": "x"})),
            WriteRule::UpdateOnly,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackendError::NotApplied(NotApplied::Missing)),
        "{e:?}"
    );

    // Stages by name: AWSCURRENT, AWSPREVIOUS and a custom label.
    let ids = c
        .list_secret_version_ids()
        .secret_id("prod/w/existing")
        .send()
        .await
        .unwrap();
    let previous = ids
        .versions()
        .iter()
        .find(|v| v.version_stages().iter().any(|s| s == "AWSPREVIOUS"))
        .and_then(|v| v.version_id())
        .unwrap()
        .to_owned();
    c.update_secret_version_stage()
        .secret_id("prod/w/existing")
        .version_stage("blue")
        .move_to_version_id(&previous)
        .send()
        .await
        .unwrap();
    let meta = b
        .metadata(&read_grant("aws/prod/w/existing"))
        .await
        .unwrap()
        .unwrap();
    let stages: Vec<(u64, Vec<String>)> = meta
        .iter()
        .map(|v| {
            let mut s = v.stages.clone();
            s.sort();
            (v.version, s)
        })
        .collect();
    assert_eq!(
        stages,
        vec![
            (1, vec!["AWSPREVIOUS".to_owned(), "blue".to_owned()]),
            (2, vec!["AWSCURRENT".to_owned()]),
        ]
    );
}
