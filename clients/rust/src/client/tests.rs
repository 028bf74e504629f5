//! Unit tests of [`LeashClient`] against the canned [`TestServer`].

use serde_json::json;

use crate::test_server::TestServer;
use crate::{ClientError, LeashClient};

const TOKEN: &str = "hvs.SUPER-SECRET-TOKEN";

fn envelope(fields: serde_json::Value) -> String {
    let mut env = json!({
        "request_id": "req-1", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": null, "wrap_info": null, "warnings": null, "auth": null
    });
    if let (Some(env), Some(fields)) = (env.as_object_mut(), fields.as_object()) {
        for (k, v) in fields {
            env.insert(k.clone(), v.clone());
        }
    }
    env.to_string()
}

fn auth_block() -> serde_json::Value {
    json!({
        "client_token": TOKEN, "accessor": "acc-1", "policies": ["app"],
        "token_policies": ["app"], "metadata": {"workload": "app"},
        "lease_duration": 3600, "renewable": true, "entity_id": "ent-1",
        "token_type": "service", "orphan": true, "mfa_requirement": null, "num_uses": 0
    })
}

fn client(server: &TestServer) -> LeashClient {
    LeashClient::new(&server.url()).unwrap().with_token(TOKEN)
}

#[test]
fn new_validates_the_address() {
    assert!(LeashClient::new("http://127.0.0.1:8200").is_ok());
    assert!(LeashClient::new("https://leash.example:8200/").is_ok());
    for bad in [
        "",
        "127.0.0.1:8200",
        "ftp://x",
        "http://",
        "http://h/?q=1",
        "http://u:p@h",
    ] {
        assert!(
            matches!(LeashClient::new(bad), Err(ClientError::InvalidAddress(_))),
            "{bad:?}"
        );
    }
    let c = LeashClient::new("http://127.0.0.1:8200/").unwrap();
    assert_eq!(c.addr(), "http://127.0.0.1:8200");
    assert_eq!(c.token(), None);
    assert_eq!(c.with_token("t").token(), Some("t"));
}

#[test]
fn debug_redacts_the_token() {
    let c = LeashClient::new("http://127.0.0.1:8200")
        .unwrap()
        .with_token(TOKEN);
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");
    assert!(dbg.contains("redacted"));
}

#[tokio::test]
async fn login_parses_auth_sends_no_token_and_redacts_debug() {
    let server = TestServer::canned(200, &envelope(json!({"auth": auth_block()}))).await;
    let auth = client(&server).jwt_login("app", "a.jwt.sig").await.unwrap();
    assert_eq!(auth.client_token, TOKEN);
    assert_eq!(auth.accessor, "acc-1");
    assert_eq!(auth.policies, vec!["app"]);
    assert_eq!(auth.lease_duration, 3600);
    assert!(auth.renewable && auth.orphan);
    assert_eq!(auth.token_type, "service");
    assert_eq!(
        auth.metadata
            .as_ref()
            .and_then(|m| m.get("workload"))
            .map(String::as_str),
        Some("app")
    );
    let dbg = format!("{auth:?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");
    assert!(dbg.contains("acc-1"));

    let req = server.last();
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/v1/auth/jwt/login");
    assert_eq!(req.header("x-vault-token"), None);
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.json(), json!({"role": "app", "jwt": "a.jwt.sig"}));
}

#[tokio::test]
async fn login_without_auth_is_a_decode_error() {
    let server = TestServer::canned(200, &envelope(json!({}))).await;
    let err = client(&server).jwt_login("app", "j").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn kv_read_parses_the_envelope_and_redacts_data() {
    let body = envelope(json!({
        "lease_id": "secret/data/app/db/abc", "lease_duration": 600, "renewable": true,
        "data": {
            "data": {"password": "hunter2-very-secret", "user": "app"},
            "metadata": {"created_time": "2024-01-01T00:00:00Z", "custom_metadata": null,
                         "deletion_time": "", "destroyed": false, "version": 3}
        }
    }));
    let server = TestServer::canned(200, &body).await;
    let s = client(&server)
        .kv_read("secret", "app/db", Some(3))
        .await
        .unwrap();
    assert_eq!(s.request_id, "req-1");
    assert_eq!(s.lease_id, "secret/data/app/db/abc");
    assert_eq!(s.lease_duration, 600);
    assert!(s.renewable);
    assert_eq!(s.data["password"], "hunter2-very-secret");
    assert_eq!(s.metadata.version, 3);
    assert_eq!(s.metadata.custom_metadata, None);
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("2 key(s)"), "{dbg}");

    let req = server.last();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/v1/secret/data/app/db?version=3");
    assert_eq!(req.header("x-vault-token"), Some(TOKEN));
}

#[tokio::test]
async fn kv_read_encodes_segments() {
    let server = TestServer::canned(404, r#"{"errors":[]}"#).await;
    let c = client(&server);
    let err = c.kv_read("secret", "a b/c?d#e", None).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), "HTTP 404");
    assert_eq!(server.last().target, "/v1/secret/data/a%20b/c%3Fd%23e");
    // Traversal never reaches the network.
    let n = server.requests().len();
    for (m, p) in [
        ("secret", "../sys/x"),
        ("sec/ret", "x"),
        ("secret", ""),
        ("..", "x"),
    ] {
        let err = c.kv_read(m, p, None).await.unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidInput(_)),
            "{m} {p}: {err:?}"
        );
    }
    assert_eq!(server.requests().len(), n);
}

#[tokio::test]
async fn kv_list_uses_the_list_method_and_maps_404_to_empty() {
    let body = envelope(json!({"data": {"keys": ["a", "dir/"]}}));
    let server = TestServer::canned(200, &body).await;
    let keys = client(&server).kv_list("secret", "app/").await.unwrap();
    assert_eq!(keys, vec!["a", "dir/"]);
    let req = server.last();
    assert_eq!(req.method, "LIST");
    assert_eq!(req.target, "/v1/secret/metadata/app/");

    let server = TestServer::canned(404, r#"{"errors":[]}"#).await;
    let keys = client(&server).kv_list("secret", "").await.unwrap();
    assert!(keys.is_empty());
    assert_eq!(server.last().target, "/v1/secret/metadata/");

    let server = TestServer::canned(403, r#"{"errors":["permission denied"]}"#).await;
    let err = client(&server).kv_list("secret", "x").await.unwrap_err();
    assert!(err.is_permission_denied());
}

#[tokio::test]
async fn errors_map_to_api() {
    let server = TestServer::canned(403, r#"{"errors":["permission denied"]}"#).await;
    let err = client(&server).status().await.unwrap_err();
    match &err {
        ClientError::Api { status, errors } => {
            assert_eq!(*status, 403);
            assert_eq!(errors, &vec!["permission denied".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), "HTTP 403: permission denied");

    // A body that is not the Vault error shape is not echoed.
    let server = TestServer::canned(502, "<html>bad gateway secret-ish</html>").await;
    let err = client(&server).status().await.unwrap_err();
    assert_eq!(err.to_string(), "HTTP 502");

    // A success answer that breaks the contract is a decode error.
    let server = TestServer::canned(200, "not json").await;
    let err = client(&server).status().await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn connection_errors_are_http() {
    // Bind port 0, then free it: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = LeashClient::new(&format!("http://{addr}"))
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Http(_)), "{err:?}");
}

#[tokio::test]
async fn revokes_accept_204_and_send_ids_in_the_body() {
    let server = TestServer::canned(204, "").await;
    let c = client(&server);
    c.lease_revoke("secret/data/app/abc").await.unwrap();
    let req = server.last();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.target, "/v1/sys/leases/revoke");
    assert_eq!(req.json(), json!({"lease_id": "secret/data/app/abc"}));
    assert_eq!(req.header("x-vault-token"), Some(TOKEN));

    c.lease_revoke_prefix("secret/data/app").await.unwrap();
    assert_eq!(
        server.last().target,
        "/v1/sys/leases/revoke-prefix/secret/data/app"
    );

    c.token_revoke_self().await.unwrap();
    let req = server.last();
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/v1/auth/token/revoke-self");

    let server = TestServer::canned(202, "").await;
    client(&server).lease_revoke("x").await.unwrap();
}

#[tokio::test]
async fn a_204_where_an_envelope_is_expected_is_a_decode_error() {
    let server = TestServer::canned(204, "").await;
    let err = client(&server).token_lookup_self().await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn lease_lookup_and_renew() {
    let server = TestServer::canned(
        200,
        &envelope(json!({"data": {
            "id": "secret/data/app/abc", "issue_time": "2024-01-01T00:00:00Z",
            "expire_time": "2024-01-01T01:00:00Z", "last_renewal": null,
            "path": "secret/data/app", "renewable": true, "ttl": 3599
        }})),
    )
    .await;
    let info = client(&server)
        .lease_lookup("secret/data/app/abc")
        .await
        .unwrap();
    assert_eq!(info.id, "secret/data/app/abc");
    assert_eq!(info.ttl, 3599);
    assert_eq!(info.last_renewal, None);
    let req = server.last();
    assert_eq!(req.target, "/v1/sys/leases/lookup");
    assert_eq!(req.json(), json!({"lease_id": "secret/data/app/abc"}));

    let server = TestServer::canned(
        200,
        &envelope(json!({
            "lease_id": "secret/data/app/abc", "lease_duration": 7200, "renewable": true,
            "warnings": ["TTL of \"3h\" exceeded the effective max_ttl"]
        })),
    )
    .await;
    let r = client(&server)
        .lease_renew("secret/data/app/abc", Some(10800))
        .await
        .unwrap();
    assert_eq!(r.lease_id, "secret/data/app/abc");
    assert_eq!(r.lease_duration, 7200);
    assert!(r.renewable);
    assert_eq!(r.warnings.len(), 1);
    let req = server.last();
    assert_eq!(req.target, "/v1/sys/leases/renew");
    assert_eq!(
        req.json(),
        json!({"lease_id": "secret/data/app/abc", "increment": 10800})
    );

    let server = TestServer::canned(400, r#"{"errors":["lease not found"]}"#).await;
    let err = client(&server).lease_renew("nope", None).await.unwrap_err();
    assert_eq!(err.to_string(), "HTTP 400: lease not found");
    assert_eq!(server.last().json(), json!({"lease_id": "nope"}));
}

#[tokio::test]
async fn token_lookup_and_renew_self() {
    let server = TestServer::canned(
        200,
        &envelope(json!({"data": {
            "accessor": "acc-1", "creation_time": 1704067200, "creation_ttl": 3600,
            "display_name": "jwt-app", "entity_id": "ent-1", "expire_time": "2024-01-01T01:00:00Z",
            "explicit_max_ttl": 0, "id": TOKEN, "issue_time": "2024-01-01T00:00:00Z",
            "meta": {"workload": "app"}, "num_uses": 0, "orphan": true, "path": "auth/jwt/login",
            "policies": ["app"], "renewable": true, "ttl": 3500, "type": "service"
        }})),
    )
    .await;
    let info = client(&server).token_lookup_self().await.unwrap();
    assert_eq!(info.id, TOKEN);
    assert_eq!(info.ttl, 3500);
    assert_eq!(info.token_type, "service");
    let dbg = format!("{info:?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");
    let req = server.last();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/v1/auth/token/lookup-self");

    let server = TestServer::canned(200, &envelope(json!({"auth": auth_block()}))).await;
    let c = client(&server);
    let auth = c.token_renew_self(Some(60)).await.unwrap();
    assert_eq!(auth.lease_duration, 3600);
    let req = server.last();
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/v1/auth/token/renew-self");
    assert_eq!(req.json(), json!({"increment": 60}));
    c.token_renew_self(None).await.unwrap();
    assert_eq!(server.last().body, "");
}

#[tokio::test]
async fn health_returns_bare_json_for_any_status() {
    let server = TestServer::canned(503, r#"{"initialized":true,"sealed":false}"#).await;
    let (status, body) = client(&server).health().await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["initialized"], true);
    let req = server.last();
    assert_eq!(req.target, "/v1/sys/health");
    assert_eq!(req.header("x-vault-token"), None);
}

#[tokio::test]
async fn operator_calls() {
    let server = TestServer::start(|req| {
        let data = match req.target.split('?').next().unwrap_or_default() {
            "/v1/leash/status" => json!({
                "version": "0.1.0", "store": "sqlite", "store_ok": true, "workloads": 2,
                "live_tokens": 1, "live_leases": 3, "audit_events": 10, "audit_head_seq": 10
            }),
            "/v1/leash/leases/revoke" => json!({"revoked": 4}),
            "/v1/leash/audit" => json!({"events": [{
                "seq": 7, "request_id": "r7", "time": "2024-01-01T00:00:00.000001Z",
                "identity": null, "workload": "app", "peer": "127.0.0.1", "operation": "kv.read",
                "method": "GET", "path": "secret/data/app", "decision": "denied", "status": 403,
                "reason": "policy", "lease_ref": null, "attestation": {}
            }]}),
            "/v1/leash/audit/verify" => json!({"ok": false, "events": 9, "error": "row 5 changed"}),
            _ => return (404, r#"{"errors":[]}"#.to_owned()),
        };
        (200, envelope(json!({ "data": data })))
    })
    .await;
    let c = client(&server);

    let st = c.status().await.unwrap();
    assert_eq!(st.store, "sqlite");
    assert_eq!(st.audit_head_seq, Some(10));

    assert_eq!(c.admin_revoke_lease("l-1").await.unwrap(), 4);
    let req = server.last();
    assert_eq!(req.method, "POST");
    assert_eq!(req.json(), json!({"lease_id": "l-1"}));
    assert_eq!(c.admin_revoke_prefix("secret/").await.unwrap(), 4);
    assert_eq!(server.last().json(), json!({"prefix": "secret/"}));

    let events = c.audit_events(6, 50).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 7);
    assert_eq!(events[0].status, 403);
    assert_eq!(events[0].identity, None);
    assert_eq!(server.last().target, "/v1/leash/audit?after=6&limit=50");

    let v = c.audit_verify().await.unwrap();
    assert!(!v.ok);
    assert_eq!(v.error.as_deref(), Some("row 5 changed"));
    assert_eq!(v.head_seq, None);

    for req in server.requests() {
        assert_eq!(req.header("x-vault-token"), Some(TOKEN));
    }
}

#[tokio::test]
async fn raw_returns_any_status_and_checks_the_path() {
    let server = TestServer::canned(418, r#"{"errors":["teapot"]}"#).await;
    let c = client(&server);
    let r = c
        .raw("POST", "/v1/x?y=1", Some(json!({"a": 1})))
        .await
        .unwrap();
    assert_eq!(r.status, 418);
    assert_eq!(r.json().unwrap()["errors"][0], "teapot");
    assert!(r.headers.get("content-type").is_some());
    let req = server.last();
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/v1/x?y=1");
    assert_eq!(req.json(), json!({"a": 1}));
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("teapot"), "{dbg}");

    for bad in ["v1/x", "//evil.example/v1/x", "http://evil.example/"] {
        let err = c.raw("GET", bad, None).await.unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidInput(_)),
            "{bad}: {err:?}"
        );
    }
    assert!(c.raw("G ET", "/v1/x", None).await.is_err());
}

#[tokio::test]
async fn a_token_with_a_newline_is_refused_before_sending() {
    let server = TestServer::canned(200, "{}").await;
    let c = LeashClient::new(&server.url())
        .unwrap()
        .with_token("abc\r\nX-Evil: 1");
    let err = c.status().await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err:?}");
    assert!(!err.to_string().contains("abc"));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn containment_calls_send_what_the_broker_reads() {
    let detection = json!({
        "seq": 3, "id": "det_3", "at": "2024-01-01T00:00:00Z", "detector": "canary",
        "rule": "default", "workload": "app", "issuer": "i", "subject": "s",
        "summary": "decoy read", "evidence": ["r1"], "responses": ["revoke"],
        "dry_run": false, "paths": []
    });
    let d = detection.clone();
    let server = TestServer::start(move |req| {
        let data = match req.target.split('?').next().unwrap_or_default() {
            "/v1/leash/detections" => json!({"detections": [d.clone()], "next_after": 3}),
            "/v1/leash/detections/det_3" => d.clone(),
            "/v1/leash/identities" => json!({
                "workload": "app", "issuer": "i", "subject": "s", "quarantine": null,
                "history": [], "detections": [d.clone()]
            }),
            "/v1/leash/identities/quarantine" | "/v1/leash/identities/release" => {
                json!({"applied": 1})
            }
            _ => return (404, r#"{"errors":[]}"#.to_owned()),
        };
        (200, envelope(json!({ "data": data })))
    })
    .await;
    let c = client(&server);

    let page = c.detections(Some(2), 10).await.unwrap();
    assert_eq!(page.detections[0].id, "det_3");
    assert_eq!(page.next_after, Some(3));
    assert_eq!(
        server.last().target,
        "/v1/leash/detections?after=2&limit=10"
    );
    c.detections(None, 5).await.unwrap();
    assert_eq!(server.last().target, "/v1/leash/detections?limit=5");

    assert_eq!(c.detection("det_3").await.unwrap().unwrap().seq, 3);
    assert_eq!(c.detection("det_4").await.unwrap(), None);
    assert!(c.detection("a/b").await.is_ok(), "encoded as one segment");
    assert_eq!(server.last().target, "/v1/leash/detections/a%2Fb");
    assert!(c.detection("..").await.is_err());

    let who = leash_api::IdentityRef {
        workload: "app".into(),
        issuer: "https://issuer/x?y".into(),
        subject: "repo:o/r&x=1".into(),
    };
    let v = c.identity(&who).await.unwrap();
    assert_eq!(v.detections.len(), 1);
    assert_eq!(
        server.last().target,
        "/v1/leash/identities?workload=app&issuer=https%3A%2F%2Fissuer%2Fx%3Fy&subject=repo%3Ao%2Fr%26x%3D1"
    );

    let q = leash_api::QuarantineRequest {
        workload: "app".into(),
        issuer: "i".into(),
        subject: "s".into(),
        reason: Some("probing".into()),
        duration: Some("1h".into()),
    };
    assert_eq!(c.quarantine(&q).await.unwrap(), 1);
    let req = server.last();
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.json(),
        json!({"workload": "app", "issuer": "i", "subject": "s", "reason": "probing", "for": "1h"})
    );
    assert_eq!(c.release(&q.identity()).await.unwrap(), 1);
    assert_eq!(
        server.last().json(),
        json!({"workload": "app", "issuer": "i", "subject": "s"})
    );
    for req in server.requests() {
        assert_eq!(req.header("x-vault-token"), Some(TOKEN));
    }
}
