//! The compose stack's own configuration (`compose/leash.toml`), run as
//! processes: Leash on PostgreSQL in front of a real OpenBao (`bao server
//! -dev`) and a real AWS Secrets Manager emulator (`moto_server`). One
//! front door over both stores, each read decided, leased and audited; an
//! outage of a store answers 503 and hands nothing out, and Leash recovers
//! without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use leash_tests::{ExternalStack, bao_call, eventually, moto_call, policy_files, repo_root};
use serde_json::json;

async fn seed_bao(s: &ExternalStack) {
    for (path, data) in [
        (
            "payments/db",
            json!({"username": "payments", "password": "bao-pw-1"}),
        ),
        ("payments/api-key", json!({"key": "bao-key-1"})),
    ] {
        let (status, v) = bao_call(
            &s.bao,
            &s.root_token,
            "PUT",
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
        assert!((200..300).contains(&status), "seed {path}: {status} {v}");
    }
}

async fn seed_moto(s: &ExternalStack) {
    let secret =
        json!({"Name": "prod/payments/card", "SecretString": "{\"api_key\":\"aws-key-1\"}"});
    let (status, v) = moto_call(&s.moto, "CreateSecret", secret).await;
    assert!((200..300).contains(&status), "seed moto: {status} {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_front_door_over_openbao_and_aws() {
    // The compose configuration and policies, with the addresses of this
    // machine's processes in place of the compose service names.
    let policies = policy_files(&repo_root().join("compose/policies"));
    let policies: Vec<(&str, &str)> = policies
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let mut stack = ExternalStack::start(&policies, |settings| {
        settings.mounts[0].cache.breaker_cooldown = Duration::from_millis(500);
    })
    .await;
    seed_bao(&stack).await;
    seed_moto(&stack).await;
    let op = stack.operator.clone();
    let w = stack.client.with_token(stack.login("payments-api").await);

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
    stack.bao.stop();
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
    stack.bao.restart().await;
    seed_bao(&stack).await;
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
    stack.moto.stop();
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
    stack.stop().await;
}
