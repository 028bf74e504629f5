//! The four cases containment must stop by default, against the real
//! `leash-broker serve` binary, two replicas on one PostgreSQL, with the
//! dev policies (which say nothing about detection):
//!
//! 1. a service account calling a path it never uses after hours;
//! 2. an AI agent reading secrets it was never approved for — refused
//!    inline, and a signed alert delivered (also after a crash of both
//!    replicas while the receiver was down);
//! 3. a CI token used from another host inside the workload's networks;
//! 4. enumeration spread over both replicas, alternating with normal reads.
//!
//! Each is contained on both replicas within a second of the answer to the
//! request that crossed the line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // real processes, real time

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use leash_client::LeashClient;
use leash_client::test_server::TestServer;
use leash_tests::procs::{Running, Setup, setup};
use leash_tests::{PgDatabase, eventually, raw_http_from};
use sha2::Sha256;

/// Within this, a revocation or a quarantine reaches the other replica.
const FAN_OUT: Duration = Duration::from_secs(1);

/// A policy for a writer that seeds the secrets the cases read.
const SEEDER: &str = r#"
name = "seeder"
[login]
method = "jwt"
issuer = "dev"
[login.bound_claims]
sub = "seeder"
[[scope]]
path = "secret/*"
capabilities = ["create", "update", "read"]
"#;

/// Two replicas of one configuration on one database.
struct Pair {
    s: Setup,
    _pg: PgDatabase,
    url: String,
    a: (Running, String),
    b: (Running, String),
}

impl Pair {
    /// Two replicas, with `extra_policies` beside the dev ones.
    async fn start(extra_policies: &[(&str, &str)]) -> Pair {
        Self::start_with(|s| {
            for (name, text) in extra_policies {
                std::fs::write(s.policies.join(name), text).unwrap();
            }
        })
        .await
    }

    /// Two replicas of the configuration `prepare` finishes.
    async fn start_with(prepare: impl FnOnce(&Setup)) -> Pair {
        let pg = PgDatabase::create().await;
        let s = setup("leash.postgres.toml").await;
        std::fs::write(s.policies.join("seeder.toml"), SEEDER).unwrap();
        prepare(&s);
        let pair = Self::serve(s, pg).await;
        pair.seed().await;
        pair
    }

    async fn serve(s: Setup, pg: PgDatabase) -> Pair {
        let url = pg.url.clone();
        let env = [("LEASH_STORE__URL", url.as_str())];
        let a = s.serve(&env).await;
        let b = s.serve(&env).await;
        Pair {
            s,
            _pg: pg,
            url,
            a,
            b,
        }
    }

    /// Kills both replicas (SIGKILL: a crash); the configuration and the
    /// database stay.
    fn crash(self) -> (Setup, PgDatabase) {
        drop(self.a);
        drop(self.b);
        (self.s, self._pg)
    }

    fn a(&self) -> LeashClient {
        LeashClient::new(&self.a.1).unwrap()
    }

    fn b(&self) -> LeashClient {
        LeashClient::new(&self.b.1).unwrap()
    }

    /// Logs `workload` in on `via` with `claims`.
    async fn login(
        &self,
        via: &LeashClient,
        workload: &str,
        claims: serde_json::Value,
    ) -> LeashClient {
        let jwt = self.jwt(workload, claims);
        let auth = via.jwt_login(workload, &jwt).await.unwrap();
        via.with_token(auth.client_token)
    }

    fn jwt(&self, sub: &str, claims: serde_json::Value) -> String {
        self.s
            .issuer
            .mint(
                sub,
                Duration::from_secs(600),
                claims.as_object().cloned().unwrap_or_default(),
                chrono::Utc::now(),
            )
            .unwrap()
    }

    async fn seed(&self) {
        let w = self.login(&self.a(), "seeder", serde_json::json!({})).await;
        for (path, value) in [
            ("payments/db", "pw-db"),
            ("ci/deploy-key", "pk-deploy"),
            ("reporting/warehouse", "pw-wh"),
        ] {
            let r = w
                .raw(
                    "POST",
                    &format!("/v1/secret/data/{path}"),
                    Some(serde_json::json!({"data": {"value": value}})),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "seeding {path}: {}", r.body);
        }
    }

    async fn sql_count(&self, query: &str) -> i64 {
        let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
        let n: i64 = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }

    /// Asserts `workload`'s identity is contained on both replicas: the
    /// sessions refused (on the other replica within [`FAN_OUT`]), a fresh
    /// login refused on both (unless `login_refused_anyway`), one active
    /// quarantine, every lease of it revoked.
    async fn assert_contained(
        &self,
        workload: &str,
        sessions: &[&LeashClient],
        claims: serde_json::Value,
    ) {
        for s in sessions {
            for replica in [self.a(), self.b()] {
                let token = s.token().unwrap().to_owned();
                let on = replica.with_token(token);
                let refused = eventually(FAN_OUT, || {
                    let on = on.clone();
                    async move { lookup(&on).await == 403 }
                })
                .await;
                assert!(
                    refused,
                    "{workload}'s session still live on {}",
                    replica.addr()
                );
            }
        }
        for replica in [self.a(), self.b()] {
            let err = replica
                .jwt_login(workload, &self.jwt(workload, claims.clone()))
                .await
                .expect_err("a quarantined identity cannot log in");
            assert_eq!(err.status(), Some(400), "{err}");
        }
        let q = self
            .sql_count(&format!(
                "SELECT count(*) FROM quarantines WHERE workload = '{workload}' AND released_at IS NULL"
            ))
            .await;
        assert_eq!(q, 1, "one quarantine of {workload}");
        let live = self
            .sql_count(&format!(
                "SELECT count(*) FROM leases WHERE workload = '{workload}' AND revoked_at IS NULL"
            ))
            .await;
        assert_eq!(live, 0, "every lease of {workload} revoked");
    }
}

async fn lookup(c: &LeashClient) -> u16 {
    c.raw("GET", "/v1/auth/token/lookup-self", None)
        .await
        .map(|r| r.status)
        .unwrap_or(0)
}

async fn read(c: &LeashClient, path: &str) -> u16 {
    c.raw("GET", &format!("/v1/secret/data/{path}"), None)
        .await
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enumeration_spread_over_two_replicas_is_contained() {
    let p = Pair::start(&[]).await;
    let on_a = p.login(&p.a(), "payments-api", serde_json::json!({})).await;
    let on_b = p.b().with_token(on_a.token().unwrap().to_owned());
    assert_eq!(read(&on_a, "payments/db").await, 200);
    // Probes alternate replicas, each followed by a normal read: no
    // replica alone sees more than two.
    let probes = [
        "reporting/warehouse",
        "ci/deploy-key",
        "hr/salaries",
        "payments/admin/root",
    ];
    let started = std::time::Instant::now();
    for (i, probe) in probes.iter().enumerate() {
        let (probe_on, normal_on) = if i.is_multiple_of(2) {
            (&on_a, &on_b)
        } else {
            (&on_b, &on_a)
        };
        assert_eq!(read(probe_on, probe).await, 403);
        if i + 1 < probes.len() {
            assert_eq!(read(normal_on, "payments/db").await, 200, "probe {i}");
        }
    }
    p.assert_contained("payments-api", &[&on_a], serde_json::json!({}))
        .await;
    eprintln!(
        "enumeration over two replicas contained in {:?}",
        started.elapsed()
    );
    let paths: String = {
        let pool = sqlx::PgPool::connect(&p.url).await.unwrap();
        let v: String =
            sqlx::query_scalar("SELECT paths FROM detections WHERE detector = 'enumeration'")
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        v
    };
    for probe in probes {
        assert!(paths.contains(&format!("secret/{probe}")), "{paths}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_token_from_another_host_is_revoked_for_its_own_host_too() {
    let p = Pair::start(&[]).await;
    let claims = serde_json::json!({"environment": "production"});
    let ci = p.login(&p.a(), "ci-deployer", claims.clone()).await;
    let lease = ci.kv_read("secret", "ci/deploy-key", None).await.unwrap();
    assert!(!lease.lease_id.is_empty());
    // The same token from another host (inside 127/8), on the other replica.
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (st, body) = raw_http_from(
        other,
        &p.b.1,
        "GET",
        "/v1/secret/data/ci/deploy-key",
        &[("X-Vault-Token", ci.token().unwrap())],
        b"",
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(!body.contains("pk-deploy"));
    p.assert_contained("ci-deployer", &[&ci], claims).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reading_unapproved_secrets_is_refused_and_alerted_even_across_a_crash() {
    // The receiver fails at first: the alert waits in the outbox, retried.
    let up = Arc::new(AtomicBool::new(false));
    let gate = up.clone();
    let receiver = TestServer::start(move |_| {
        if gate.load(Ordering::SeqCst) {
            (200, "{}".into())
        } else {
            (503, "down".into())
        }
    })
    .await;
    let key = [7u8; 32];
    let config = format!(
        "\n[alerts]\nfirst_backoff = \"200ms\"\nmax_backoff = \"1s\"\npoll_interval = \"100ms\"\n\n[[alerts.webhooks]]\nname = \"soc\"\nurl = \"{}/leash\"\nsecret_file = \"keys/alert-soc.key\"\ntimeout = \"2s\"\n",
        receiver.url()
    );
    let p = Pair::start_with(|s| {
        let file = s.keys.join("alert-soc.key");
        std::fs::write(&file, base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
        set_mode(&file);
        let mut text = std::fs::read_to_string(&s.config).unwrap();
        text.push_str(&config);
        std::fs::write(&s.config, text).unwrap();
    })
    .await;

    let agent = p
        .login(&p.a(), "reporting-agent", serde_json::json!({}))
        .await;
    assert_eq!(read(&agent, "reporting/warehouse").await, 200);
    // Every read it was never approved for is refused, inline.
    for path in [
        "payments/db",
        "ci/deploy-key",
        "payments/api-key",
        "hr/salaries",
    ] {
        assert_eq!(read(&agent, path).await, 403, "{path}");
    }
    assert_eq!(read(&agent, "reporting/warehouse").await, 403, "contained");
    p.assert_contained("reporting-agent", &[&agent], serde_json::json!({}))
        .await;
    let tried = eventually(Duration::from_secs(10), || {
        let n = receiver.requests().len();
        async move { n >= 1 }
    })
    .await;
    assert!(
        tried,
        "the first attempt is made while the receiver is down"
    );

    // Both replicas crash; the receiver comes back; one replica restarts.
    let (s, pg) = p.crash();
    up.store(true, Ordering::SeqCst);
    let failed = receiver.requests().len();
    let p = Pair::serve(s, pg).await;
    let delivered = eventually(Duration::from_secs(15), || {
        let n = receiver.requests().len();
        async move { n > failed }
    })
    .await;
    assert!(
        delivered,
        "the alert committed before the crash is delivered after restart"
    );
    let all = receiver.requests();
    let r = all[failed].clone();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let delivery = r.header("x-leash-delivery").unwrap().to_owned();
    assert!(
        all[..failed]
            .iter()
            .all(|x| x.header("x-leash-delivery") == Some(delivery.as_str())),
        "every attempt carries the same delivery id"
    );
    // The signature is HMAC-SHA256 over the exact bytes, with the key the
    // file holds (base64, decoded as every key file is).
    let sig = r.header("x-leash-signature").unwrap().to_owned();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(r.body.as_bytes());
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let body = r.json();
    assert_eq!(body["kind"], "leash.detection");
    assert_eq!(body["delivery_id"], delivery.as_str());
    assert_eq!(body["detection"]["subject"]["workload"], "reporting-agent");
    assert!(!r.body.contains("pw-"), "no secret in an alert");
    // Delivered once: nothing more arrives for it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.requests().len(),
        failed + 1,
        "one successful delivery"
    );
    let attempts = p.sql_count("SELECT count(*) FROM alert_attempts").await;
    assert_eq!(attempts, (failed + 1) as i64, "every attempt recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_calling_an_admin_path_after_hours_is_contained() {
    // Its window ends at the next minute boundary at least 10 s away: log
    // in inside it, then call after it.
    let now = chrono::Utc::now();
    let mut end = now + chrono::Duration::seconds(70);
    end = end - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&end)));
    if chrono::Timelike::hour(&end) == 0 && chrono::Timelike::minute(&end) == 0 {
        eprintln!("skipped: the window would cross midnight");
        return;
    }
    let policy = format!(
        r#"
name = "nightly-report"
[login]
method = "jwt"
issuer = "dev"
[login.bound_claims]
sub = "nightly-report"
[conditions]
[[conditions.time_windows]]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "{}"
[[scope]]
path = "secret/reporting/*"
capabilities = ["read"]
"#,
        end.format("%H:%M")
    );
    let p = Pair::start(&[("nightly-report.toml", &policy)]).await;
    let svc = p
        .login(&p.a(), "nightly-report", serde_json::json!({}))
        .await;
    assert_eq!(read(&svc, "reporting/warehouse").await, 200);
    let wait = (end - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(wait).await;
    // After hours, an admin path it never uses, on the other replica.
    let on_b = p.b().with_token(svc.token().unwrap().to_owned());
    let r = on_b
        .raw("GET", "/v1/secret/data/payments/admin/root", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    for replica in [p.a(), p.b()] {
        let on = replica.with_token(svc.token().unwrap().to_owned());
        assert!(
            eventually(FAN_OUT, || {
                let on = on.clone();
                async move { lookup(&on).await == 403 }
            })
            .await
        );
    }
    let q = p
        .sql_count("SELECT count(*) FROM quarantines WHERE workload = 'nightly-report' AND released_at IS NULL")
        .await;
    assert_eq!(q, 1);
    let d = p
        .sql_count("SELECT count(*) FROM detections WHERE detector = 'off_hours'")
        .await;
    assert_eq!(d, 1);
}

fn set_mode(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
