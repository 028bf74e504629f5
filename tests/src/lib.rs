//! The end-to-end harness: starts a real Leash broker (in process, on port
//! 0) against a fresh PostgreSQL database or a fresh SQLite file, loaded
//! from the example configuration the repository ships, and drives it over
//! HTTP.
//!
//! PostgreSQL is reached at `LEASH_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); every broker gets its own
//! database, dropped when the broker is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time // a test harness: failing loudly is its job

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leash_attest::DevIssuer;
use leash_backend::{MountKind, SecretData};
use leash_broker::{App, Settings};
use leash_client::LeashClient;
use leash_domain::crypto::random_b64;
use leash_domain::{Clock, KeyedHasher, ManualClock};
use leash_store::{PoolOptions, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod procs;

/// The policy files (`*.toml`) of `dir`: (file name, TOML).
pub fn policy_files(dir: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
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

/// Runs `app` on a task until the returned sender fires (or is dropped):
/// its `http://127.0.0.1:PORT`, that sender and the task.
fn serve(
    app: App,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let addr = format!("http://{}", app.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop, server)
}

/// Which database a broker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A fresh PostgreSQL database.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// The admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("LEASH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh PostgreSQL database, dropped on drop.
#[derive(Debug)]
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// Creates a database with a unique name.
    pub async fn create() -> PgDatabase {
        use sqlx::Connection;
        let name = format!("leash_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL must be reachable at LEASH_TEST_PG_URL");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let base = pg_admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("bad LEASH_TEST_PG_URL"),
        };
        PgDatabase { url, name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A separate thread and runtime: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::Executor::execute(
                        &mut admin,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Options for [`TestBroker::start_with`].
pub struct Options {
    /// Policy files (name, TOML). Default: the repository's `policies/dev`.
    pub policies: Option<Vec<(String, String)>>,
    /// The clock; default: a manual clock at the current time.
    pub clock: Arc<ManualClock>,
    /// Audit commit bound.
    pub commit_timeout: Duration,
    /// Reaper period and retention.
    pub reap: Option<(Duration, Duration)>,
    /// Largest body.
    pub max_body: Option<usize>,
    /// Header-read timeout.
    pub header_read_timeout: Option<Duration>,
    /// Reuse this PostgreSQL database (another replica); default: a new one.
    pub shared_pg: Option<String>,
    /// Seed the sample secrets into `shared_pg` too (it is new, not
    /// another replica's).
    pub seed_shared_pg: bool,
    /// Reuse these keys (another replica).
    pub shared_keys: Option<PathBuf>,
    /// How long a cached token record is trusted (`[sessions] cache_ttl`).
    pub session_ttl: Option<Duration>,
    /// The detectors; default: the ones Leash ships.
    pub detectors: Option<leash_broker::detect::Detectors>,
    /// `[alerts]`; default: none.
    pub alerts: Option<leash_broker::config::AlertSettings>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policies: None,
            clock: Arc::new(ManualClock::new(chrono::Utc::now())),
            commit_timeout: Duration::from_secs(5),
            reap: None,
            max_body: None,
            header_read_timeout: None,
            shared_pg: None,
            seed_shared_pg: false,
            shared_keys: None,
            session_ttl: None,
            detectors: None,
            alerts: None,
        }
    }
}

/// The `LEASH_*` overrides an operator would set to run a shipped
/// configuration here: this database, these key files and policies, any
/// free port.
pub fn config_env(store_url: &str, keys: &Path, policy_dir: &Path) -> Vec<(String, String)> {
    let file = |name: &str| keys.join(name).display().to_string();
    vec![
        ("LEASH_STORE__URL".into(), store_url.to_owned()),
        ("LEASH_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("LEASH_KEYS__HASH_KEY_FILE".into(), file("hash.key")),
        ("LEASH_KEYS__BUILTIN_KEY_FILE".into(), file("builtin.key")),
        ("LEASH_OPERATOR__TOKEN_FILE".into(), file("operator.token")),
        (
            "LEASH_POLICIES__DIR".into(),
            policy_dir.display().to_string(),
        ),
    ]
}

/// The sample secrets every test broker is seeded with (path, key, value).
pub const SEEDED: &[(&str, &str, &str)] = &[
    ("payments/db", "password", "pw-payments-db-7Qx2"),
    ("payments/api-key", "key", "ak-payments-Zr81"),
    ("payments/admin/root", "password", "pw-admin-root-Kt55"),
    ("reporting/warehouse", "password", "pw-warehouse-Uu09"),
    ("ci/deploy-key", "private_key", "pk-deploy-Hh31"),
];

/// Generates a PostgreSQL and an SQLite test from one async fn taking a
/// [`Db`]: `dual!(name, …)` makes `postgres::name` and `sqlite::name`.
#[macro_export]
macro_rules! dual {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Db::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Db::Sqlite).await })*
        }
    };
}

/// A running broker.
pub struct TestBroker {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// A client without a token.
    pub client: LeashClient,
    /// The operator token.
    pub operator_token: String,
    /// The dev issuer, to mint JWTs.
    pub issuer: DevIssuer,
    /// The broker's clock.
    pub clock: Arc<ManualClock>,
    /// A direct handle on the broker's store (same database, same key).
    pub store: Arc<dyn Store>,
    /// The hash key.
    pub hasher: KeyedHasher,
    /// The store URL.
    pub store_url: String,
    /// The database kind.
    pub db: Db,
    /// The key directory (to start a replica with the same keys).
    pub keys_dir: PathBuf,
    /// The policy directory.
    pub policy_dir: PathBuf,
    /// Reloads the policy directory, as SIGHUP does.
    pub reloader: leash_broker::app::PolicyReloader,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _pg: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

/// Writes a fresh key to `path` (mode 0600, as `serve` requires), unless
/// one is there.
pub fn write_key(path: &Path) {
    if !path.exists() {
        write_secret(path, random_b64(32).unwrap());
    }
}

/// Writes a secret file (a key, a token, credentials) with mode 0600, as
/// `serve` requires.
pub fn write_secret(path: &Path, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl TestBroker {
    /// A broker on `db` with the default options.
    pub async fn start(db: Db) -> TestBroker {
        Self::start_with(db, Options::default()).await
    }

    /// A broker on `db`.
    pub async fn start_with(db: Db, opts: Options) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let keys = opts
            .shared_keys
            .clone()
            .unwrap_or_else(|| dir.path().join("keys"));
        std::fs::create_dir_all(&keys).unwrap();
        for k in ["hash.key", "builtin.key", "operator.token"] {
            write_key(&keys.join(k));
        }
        let issuer = DevIssuer::load_or_create(&keys).unwrap();
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        let policies = opts
            .policies
            .clone()
            .unwrap_or_else(|| policy_files(&repo_root().join("policies/dev")));
        for (name, text) in &policies {
            std::fs::write(policy_dir.join(name), text).unwrap();
        }

        let (pg, url, example) = match db {
            Db::Postgres => match &opts.shared_pg {
                Some(url) => (None, url.clone(), "leash.postgres.toml"),
                None => {
                    let pg = PgDatabase::create().await;
                    let url = pg.url.clone();
                    (Some(pg), url, "leash.postgres.toml")
                }
            },
            Db::Sqlite => (
                None,
                format!("sqlite:{}", dir.path().join("leash.db").display()),
                "leash.sqlite.toml",
            ),
        };
        // The shipped example configuration, with the environment overrides
        // an operator would use.
        let mut env = config_env(&url, &keys, &policy_dir);
        env.extend([(
            "LEASH_AUDIT__COMMIT_TIMEOUT".to_string(),
            format!("\"{}ms\"", opts.commit_timeout.as_millis()),
        )]);
        let mut settings =
            Settings::load(&repo_root().join("broker/examples").join(example), env).unwrap();
        settings.issuers = vec![issuer.issuer_config()];
        if let Some((every, keep)) = opts.reap {
            settings.leases.reap_interval = every;
            settings.leases.keep_expired_for = keep;
        }
        if let Some(m) = opts.max_body {
            settings.server.max_body_bytes = m;
        }
        if let Some(t) = opts.header_read_timeout {
            settings.server.header_read_timeout = t;
        }
        if let Some(t) = opts.session_ttl {
            settings.sessions.cache_ttl = t;
        }
        if let Some(a) = &opts.alerts {
            settings.alerts = a.clone();
        }

        let clock = opts.clock.clone();
        let detectors = opts
            .detectors
            .clone()
            .unwrap_or_else(leash_broker::detect::Detectors::builtin);
        let app = App::build_with(&settings, clock.clone() as Arc<dyn Clock>, detectors)
            .await
            .unwrap();
        if opts.shared_pg.is_none() || opts.seed_shared_pg {
            let builtin = app.builtin("secret").unwrap();
            for (path, key, value) in SEEDED {
                let mut m = serde_json::Map::new();
                m.insert((*key).into(), (*value).into());
                m.insert("owner".into(), "e2e".into());
                builtin
                    .import(path, &SecretData::from_map(&m).unwrap(), clock.now())
                    .await
                    .unwrap();
            }
        }
        let hasher =
            KeyedHasher::new(&leash_broker::app::read_key(&keys.join("hash.key"), "hash").unwrap())
                .unwrap();
        let store = leash_store::connect(&url, &PoolOptions::default(), hasher.clone())
            .await
            .unwrap();
        let reloader = app.policy_reloader();
        let (addr, stop, server) = serve(app);
        let operator_token = std::fs::read_to_string(keys.join("operator.token"))
            .unwrap()
            .trim()
            .to_owned();
        TestBroker {
            client: LeashClient::new(&addr).unwrap(),
            addr,
            operator_token,
            issuer,
            clock,
            store,
            hasher,
            store_url: url,
            db,
            keys_dir: keys,
            policy_dir,
            reloader,
            stop: Some(stop),
            server: Some(server),
            _pg: pg,
            _dir: dir,
        }
    }

    /// A JWT for `sub` from the dev issuer, valid two hours from the
    /// broker's clock, with extra claims.
    pub fn jwt_with(&self, sub: &str, claims: serde_json::Value) -> String {
        let map = claims.as_object().cloned().unwrap_or_default();
        self.issuer
            .mint(sub, Duration::from_secs(7200), map, self.clock.now())
            .unwrap()
    }

    /// A JWT for a sample workload (with the claims its policy binds).
    pub fn jwt(&self, workload: &str) -> String {
        let claims = if workload == "ci-deployer" {
            serde_json::json!({"environment": "production"})
        } else {
            serde_json::json!({})
        };
        self.jwt_with(workload, claims)
    }

    /// Logs `workload` in and returns a client holding its token.
    pub async fn login(&self, workload: &str) -> LeashClient {
        let auth = self
            .client
            .jwt_login(workload, &self.jwt(workload))
            .await
            .unwrap();
        self.client.with_token(auth.client_token)
    }

    /// A client with the operator token.
    pub fn operator(&self) -> LeashClient {
        self.client.with_token(self.operator_token.clone())
    }

    /// Audit events in the store right now.
    pub async fn audit_count(&self) -> i64 {
        self.store
            .stats(self.clock.now())
            .await
            .unwrap()
            .audit_events
    }

    /// Verifies the audit chain directly in the database.
    pub async fn verify_chain(&self) -> leash_broker::service::ChainReport {
        leash_broker::service::verify_audit_chain(self.store.as_ref(), &self.hasher)
            .await
            .unwrap()
    }

    /// Runs SQL directly against the broker's database (for tampering and
    /// fault injection), as the superuser on PostgreSQL.
    pub async fn sql(&self, statements: &[&str]) {
        use sqlx::Connection;
        match self.db {
            Db::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.store_url).await.unwrap();
                for s in statements {
                    sqlx::Executor::execute(&mut c, *s).await.unwrap();
                }
            }
            Db::Sqlite => {
                let path = self.store_url.trim_start_matches("sqlite:");
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{path}"))
                    .await
                    .unwrap();
                for s in statements {
                    sqlx::Executor::execute(&mut c, *s).await.unwrap();
                }
            }
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    /// Sends a request byte for byte (no client-side path normalisation)
    /// and returns (status, body).
    pub async fn raw_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        raw_http(&self.addr, method, path, headers, body).await
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Sends one HTTP/1.1 request over a fresh connection, exactly as given.
pub async fn raw_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let host = addr.trim_start_matches("http://");
    let s = tokio::net::TcpStream::connect(host).await.unwrap();
    send_raw(s, host, method, path, headers, body).await
}

/// [`raw_http`] from the local address `source` (another loopback address,
/// `127.0.0.2`, plays another host).
pub async fn raw_http_from(
    source: std::net::IpAddr,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let host = addr.trim_start_matches("http://");
    let target: std::net::SocketAddr = host.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    let s = socket.connect(target).await.unwrap();
    send_raw(s, host, method, path, headers, body).await
}

async fn send_raw(
    mut s: tokio::net::TcpStream,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The directory holding the built `leash-broker` and `leash` binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LEASH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    assert!(
        dir.join("leash-broker").exists() && dir.join("leash").exists(),
        "binaries not found in {}: run `cargo build --workspace --bins` first (the README's test command does)",
        dir.display()
    );
    dir
}

/// Polls `f` until it returns true, up to `within`.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real peer process (OpenBao, moto) on a free loopback port, killed on
/// drop.
pub struct Peer {
    child: Option<std::process::Child>,
    /// Its port.
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    health: String,
    dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Peer {
    /// Starts `program` with `args` (`{port}` replaced) and waits until
    /// `health` (`{port}` replaced) answers below 500, retrying on a port
    /// collision.
    pub async fn start(program: PathBuf, args: &[&str], health: &str) -> Peer {
        assert!(
            program.is_file(),
            "{} is missing: run scripts/install-test-tools and scripts/install-moto",
            program.display()
        );
        let mut peer = Peer {
            child: None,
            port: 0,
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            health: health.to_owned(),
            dir: tempfile::tempdir().unwrap(),
        };
        for _ in 0..5 {
            peer.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if peer.spawn().await {
                return peer;
            }
        }
        panic!("{} did not start", peer.program.display());
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn().await,
            "{} did not restart",
            self.program.display()
        );
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let log = std::fs::File::create(self.dir.path().join("peer.log")).unwrap();
        let child = std::process::Command::new(&self.program)
            .args(self.args.iter().map(|a| a.replace("{port}", &port)))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.health.replace("{port}", &port);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let up = eventually(Duration::from_secs(20), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() < 500)
            }
        })
        .await;
        if !up {
            self.stop();
        }
        up
    }

    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A real OpenBao dev server (`bao server -dev`) with `root_token`, on a
/// free loopback port.
pub async fn start_openbao(root_token: &str) -> Peer {
    Peer::start(
        repo_root().join(".tools/venv/bin/bao"),
        &[
            "server",
            "-dev",
            &format!("-dev-root-token-id={root_token}"),
            "-dev-listen-address=127.0.0.1:{port}",
        ],
        "http://127.0.0.1:{port}/v1/sys/health",
    )
    .await
}

/// A real AWS emulator (`moto_server`) on a free loopback port.
pub async fn start_moto() -> Peer {
    Peer::start(
        repo_root().join(".tools/venv/bin/moto_server"),
        &["-H", "127.0.0.1", "-p", "{port}"],
        "http://127.0.0.1:{port}/moto-api/",
    )
    .await
}

/// One Secrets Manager call on moto (JSON protocol, region
/// `eu-central-1`, which moto reads from the unchecked credential scope):
/// (status, answer).
pub async fn moto_call(
    moto: &Peer,
    target: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(moto.addr())
        .header("X-Amz-Target", format!("secretsmanager.{target}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261126/eu-central-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// One OpenBao API call with `token`: (status, answer).
pub async fn bao_call(
    bao: &Peer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", bao.addr()))
        .header("X-Vault-Token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The compose configuration (`compose/leash.toml`) run here, in process:
/// Leash on a fresh PostgreSQL database in front of a real OpenBao and a
/// real moto, with the addresses of this machine's processes in place of
/// the compose service names.
pub struct ExternalStack {
    /// The OpenBao dev server behind mount `secret`.
    pub bao: Peer,
    /// Its root token (also Leash's upstream token here).
    pub root_token: String,
    /// The AWS emulator behind mount `aws`.
    pub moto: Peer,
    /// `http://127.0.0.1:PORT` of Leash.
    pub addr: String,
    /// A client without a token.
    pub client: LeashClient,
    /// The operator's client.
    pub operator: LeashClient,
    /// The dev issuer, to mint JWTs.
    pub issuer: DevIssuer,
    /// The audit database's URL.
    pub store_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _pg: PgDatabase,
    _dir: tempfile::TempDir,
}

impl ExternalStack {
    /// Starts OpenBao, moto and Leash with the policy files `policies`
    /// (name, TOML); `tweak` may change the settings (e.g. `writable`).
    pub async fn start(
        policies: &[(&str, &str)],
        tweak: impl FnOnce(&mut Settings),
    ) -> ExternalStack {
        let root_token = format!("root-{}", random_b64(12).unwrap());
        let bao = start_openbao(&root_token).await;
        let moto = start_moto().await;
        let pg = PgDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir_all(&policy_dir).unwrap();
        for (name, text) in policies {
            std::fs::write(policy_dir.join(name), text).unwrap();
        }
        for k in ["hash.key", "builtin.key", "operator.token"] {
            write_secret(&keys.join(k), random_b64(32).unwrap());
        }
        write_secret(&keys.join("openbao.token"), &root_token);
        write_secret(
            &keys.join("aws-credentials"),
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        );
        let issuer = DevIssuer::load_or_create(&keys).unwrap();
        let env = config_env(&pg.url, &keys, &policy_dir);
        let mut settings = Settings::load(&repo_root().join("compose/leash.toml"), env).unwrap();
        settings.issuers = vec![issuer.issuer_config()];
        for m in &mut settings.mounts {
            if let MountKind::Vault(v) = &mut m.kind {
                v.address = bao.addr();
                v.token_file = Some(keys.join("openbao.token"));
                v.timeout = Duration::from_secs(2);
            }
            if let MountKind::Aws(a) = &mut m.kind {
                a.endpoint_url = Some(moto.addr());
                a.credentials_file = Some(keys.join("aws-credentials"));
                a.timeout_secs = 2;
            }
        }
        tweak(&mut settings);
        let clock: Arc<dyn Clock> = Arc::new(leash_domain::SystemClock);
        let app = App::build(&settings, clock).await.unwrap();
        let (addr, stop, server) = serve(app);
        let client = LeashClient::new(&addr).unwrap();
        let operator =
            client.with_token(std::fs::read_to_string(keys.join("operator.token")).unwrap());
        ExternalStack {
            bao,
            root_token,
            moto,
            addr,
            client,
            operator,
            issuer,
            store_url: pg.url.clone(),
            stop: Some(stop),
            server: Some(server),
            _pg: pg,
            _dir: dir,
        }
    }

    /// Logs in as `workload` (JWT `sub` = the workload name) and returns
    /// its token.
    pub async fn login(&self, workload: &str) -> String {
        let jwt = self
            .issuer
            .mint(
                workload,
                Duration::from_secs(600),
                Default::default(),
                chrono::Utc::now(),
            )
            .unwrap();
        self.client
            .jwt_login(workload, &jwt)
            .await
            .unwrap()
            .client_token
    }

    /// Stops Leash and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

impl Drop for ExternalStack {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A command-line tool's run: exit code, stdout, stderr.
#[derive(Debug)]
pub struct ToolRun {
    /// The exit code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ToolRun {
    /// Stdout as JSON; fails the test with the run's output otherwise.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Runs `program args` with a clean environment (PATH, a fresh HOME, and
/// `env`), bounded to 60 s.
pub async fn run_tool(program: &Path, args: &[&str], env: &[(&str, &str)]) -> ToolRun {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 60 s", program.display()))
        .unwrap();
    ToolRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A private PostgreSQL server, `initdb`'d into a temporary directory, that
/// a test may crash and restart (the machine's server is shared by every
/// test). Stopped (immediately) on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The directory of the PostgreSQL server programs: `LEASH_TEST_PG_BIN`,
/// or the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn pg_bindir() -> PathBuf {
    if let Ok(d) = std::env::var("LEASH_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs: set LEASH_TEST_PG_BIN")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb: set LEASH_TEST_PG_BIN")
        .1
}

/// initdb and the server refuse to run as root: as root, they run as the
/// `postgres` user.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn id_of(flag: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no `postgres` user to run PostgreSQL as"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl PgCluster {
    /// Creates and starts one on a free port.
    pub fn start() -> PgCluster {
        let bin = pg_bindir();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("leash-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            std::os::unix::fs::chown(dir.path(), Some(id_of("-u")), Some(id_of("-g"))).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PgCluster {
            dir,
            bin,
            as_postgres,
            port,
        };
        let data = c.data();
        c.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        c.resume();
        c
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `program` of the server's, as the `postgres` user when run as root.
    fn command(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = self.command(program);
        let out = cmd.args(args).output().unwrap();
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts the server (again): after [`PgCluster::crash`], it runs crash
    /// recovery from the WAL first. Returns once it accepts connections.
    /// The WAL writer wakes only every 10 s, so the WAL of a commit that
    /// did not wait for the disk stays in memory until something flushes
    /// it: a missing flush loses it in a crash, as it would under load.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
             -c wal_writer_delay=10s -c wal_writer_flush_after=0",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Crashes it: `pg_ctl stop -m immediate` makes every server process
    /// quit at once, without a checkpoint and without writing out the WAL
    /// still in shared memory; what was not flushed is gone.
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}
