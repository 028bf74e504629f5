//! The compose stack's own configuration (`compose/leash.toml`), run as
//! processes: Leash on PostgreSQL in front of a real OpenBao (`bao server
//! -dev`) and a real AWS Secrets Manager emulator (`moto_server`). One
//! front door over both stores, each read decided, leased and audited; an
//! outage of a store answers 503 and hands nothing out, and Leash recovers
//! without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::time::Duration;

use leash_attest::DevIssuer;
use leash_broker::{App, Settings};
use leash_client::LeashClient;
use leash_domain::crypto::random_b64;
use leash_domain::{Clock, SystemClock};
use leash_tests::{Peer, PgDatabase, eventually, repo_root};
use serde_json::json;

async fn seed_bao(bao: &Peer, root: &str) {
    let http = reqwest::Client::new();
    for (path, data) in [
        (
            "payments/db",
            json!({"username": "payments", "password": "bao-pw-1"}),
        ),
        ("payments/api-key", json!({"key": "bao-key-1"})),
    ] {
        let r = http
            .put(format!("{}/v1/secret/data/{path}", bao.addr()))
            .header("X-Vault-Token", root)
            .json(&json!({ "data": data }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seed {path}: {}", r.status());
    }
}

async fn seed_moto(moto: &Peer) {
    // The Secrets Manager JSON protocol; moto reads the region from the
    // (unchecked) credential scope.
    let r = reqwest::Client::new()
        .post(moto.addr())
        .header("X-Amz-Target", "secretsmanager.CreateSecret")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261126/eu-central-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(json!({"Name": "prod/payments/card", "SecretString": "{\"api_key\":\"aws-key-1\"}"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "seed moto: {}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_front_door_over_openbao_and_aws() {
    let tools = repo_root().join(".tools/venv/bin");
    let root_token = format!("root-{}", random_b64(12).unwrap());
    let mut bao = Peer::start(
        tools.join("bao"),
        &[
            "server",
            "-dev",
            &format!("-dev-root-token-id={root_token}"),
            "-dev-listen-address=127.0.0.1:{port}",
        ],
        "http://127.0.0.1:{port}/v1/sys/health",
    )
    .await;
    let mut moto = Peer::start(
        tools.join("moto_server"),
        &["-H", "127.0.0.1", "-p", "{port}"],
        "http://127.0.0.1:{port}/moto-api/",
    )
    .await;
    seed_bao(&bao, &root_token).await;
    seed_moto(&moto).await;

    let pg = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    for k in ["hash.key", "builtin.key", "operator.token"] {
        std::fs::write(keys.join(k), random_b64(32).unwrap()).unwrap();
    }
    std::fs::write(keys.join("openbao.token"), &root_token).unwrap();
    std::fs::write(
        keys.join("aws-credentials"),
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let issuer = DevIssuer::load_or_create(keys).unwrap();
    let env = leash_tests::config_env(&pg.url, keys, &repo_root().join("compose/policies"));
    // The compose configuration, with the addresses of this machine's
    // processes in place of the compose service names.
    let mut settings = Settings::load(&repo_root().join("compose/leash.toml"), env).unwrap();
    settings.issuers = vec![issuer.issuer_config()];
    let vault = settings.mounts[0].vault.as_mut().unwrap();
    vault.address = bao.addr();
    vault.token_file = Some(keys.join("openbao.token"));
    vault.timeout = Duration::from_secs(2);
    settings.mounts[0].cache.breaker_cooldown = Duration::from_millis(500);
    let aws = settings.mounts[1].aws.as_mut().unwrap();
    aws.endpoint_url = Some(moto.addr());
    aws.credentials_file = Some(keys.join("aws-credentials"));

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = App::build(&settings, clock.clone()).await.unwrap();
    let addr = format!("http://{}", app.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let client = LeashClient::new(&addr).unwrap();
    let op = client.with_token(std::fs::read_to_string(keys.join("operator.token")).unwrap());
    let jwt = issuer
        .mint(
            "payments-api",
            Duration::from_secs(600),
            Default::default(),
            clock.now(),
        )
        .unwrap();
    let auth = client.jwt_login("payments-api", &jwt).await.unwrap();
    let w = client.with_token(auth.client_token);

    // OpenBao and AWS through one door, each under a lease.
    let s = w.kv_read("secret", "payments/db", None).await.unwrap();
    assert_eq!(s.data["password"], json!("bao-pw-1"));
    assert!(s.lease_id.starts_with("secret/data/payments/db/") && s.lease_duration == 300);
    let a = w.kv_read("aws", "prod/payments/card", None).await.unwrap();
    assert_eq!(a.data["api_key"], json!("aws-key-1"));
    assert!(a.lease_id.starts_with("aws/data/prod/payments/card/"));
    assert_eq!(
        w.kv_list("secret", "payments").await.unwrap(),
        vec!["api-key", "db"]
    );
    assert_eq!(
        w.kv_list("aws", "prod/payments").await.unwrap(),
        vec!["card"]
    );
    // Outside the scope: refused before any store is asked.
    assert_eq!(
        w.raw("GET", "/v1/aws/data/prod/other/x", None)
            .await
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        w.raw("GET", "/v1/secret/data/other", None)
            .await
            .unwrap()
            .status,
        403
    );
    // External stores are read-only through Leash.
    let r = w
        .raw(
            "PUT",
            "/v1/secret/data/payments/db",
            Some(json!({"data": {"x": "y"}})),
        )
        .await
        .unwrap();
    assert!(r.status == 403 || r.status == 405, "{}", r.status);

    // The cache spares the store; every read is still leased and audited.
    let again = w.kv_read("secret", "payments/db", None).await.unwrap();
    assert_ne!(again.lease_id, s.lease_id);
    let st = op
        .raw("GET", "/v1/leash/status", None)
        .await
        .unwrap()
        .json()
        .unwrap();
    let secret = st["data"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"] == "secret")
        .unwrap()
        .clone();
    assert_eq!(secret["kind"], json!("vault"));
    assert!(
        secret["health"]["cache_hits"].as_u64().unwrap() >= 1,
        "{secret}"
    );
    assert_eq!(secret["health"]["state"], json!("up"));

    // OpenBao goes down: an uncached read is 503, audited, nothing handed out.
    bao.stop();
    let leases_before = st["data"]["live_leases"].as_i64().unwrap();
    let r = w
        .raw("GET", "/v1/secret/data/payments/api-key", None)
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(!r.body.contains("bao-key"));
    assert_eq!(
        r.json().unwrap()["errors"],
        json!(["secret store unavailable"])
    );
    let st = op
        .raw("GET", "/v1/leash/status", None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        st["data"]["live_leases"].as_i64().unwrap(),
        leases_before,
        "no lease without a value"
    );
    // AWS is unaffected.
    w.kv_read("aws", "prod/payments/card", None).await.unwrap();

    // It comes back (dev mode: empty, so reseed): Leash recovers by itself.
    bao.restart().await;
    seed_bao(&bao, &root_token).await;
    assert!(
        eventually(Duration::from_secs(15), || {
            let w = w.clone();
            async move { w.kv_read("secret", "payments/api-key", None).await.is_ok() }
        })
        .await,
        "no recovery after OpenBao came back"
    );
    // With the AWS emulator down too: in scope is 503 (fail closed), out of
    // scope is still the same 403 (the store is never asked).
    moto.stop();
    let in_scope = w
        .raw("GET", "/v1/aws/data/prod/payments/other", None)
        .await
        .unwrap();
    assert_eq!(in_scope.status, 503);
    let outside = w
        .raw("GET", "/v1/aws/data/prod/other/x", None)
        .await
        .unwrap();
    assert_eq!(outside.status, 403);

    let events = op.audit_events(0, 1000).await.unwrap();
    assert!(
        events.iter().any(|e| e.status == 503
            && e.decision == "error"
            && e.path == "secret/payments/api-key")
    );
    assert!(op.audit_verify().await.unwrap().ok);
    let _ = stop.send(());
    let _ = server.await;
}
