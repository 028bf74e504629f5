//! End-to-end tests of [`run`] against the canned test server: what goes
//! on the wire, what lands on stdout and stderr, and the exit code.

use clap::Parser;
use leash_client::test_server::TestServer;
use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "hvs.CLI-SECRET-TOKEN";

struct Outcome {
    exit: Exit,
    stdout: String,
    stderr: String,
}

async fn leash(
    server: &TestServer,
    args: &[&str],
    env_token: Option<&str>,
    stdin: &str,
) -> Outcome {
    let url = server.url();
    let argv = ["leash", "--addr", url.as_str()]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let exit = {
        let mut console = Console {
            stdout: Box::new(&mut out),
            stderr: Box::new(&mut err),
            stdin: Box::new(stdin.as_bytes()),
            env_token: env_token.map(str::to_owned),
        };
        run(cli, &mut console).await
    };
    Outcome {
        exit,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn envelope(fields: Value) -> String {
    let mut env = json!({
        "request_id": "req-1", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": null, "wrap_info": null, "warnings": null, "auth": null
    });
    for (k, v) in fields.as_object().unwrap() {
        env[k] = v.clone();
    }
    env.to_string()
}

fn auth_envelope() -> String {
    envelope(json!({"auth": {
        "client_token": TOKEN, "accessor": "acc-1", "policies": ["app"],
        "token_policies": ["app"], "metadata": {"workload": "app"},
        "lease_duration": 3600, "renewable": true, "entity_id": "ent-1",
        "token_type": "service", "orphan": true, "mfa_requirement": null, "num_uses": 0
    }}))
}

#[tokio::test]
async fn login_text_prints_only_the_token() {
    let server = TestServer::canned(200, &auth_envelope()).await;
    let o = leash(
        &server,
        &["login", "jwt", "--role", "app", "--jwt-file", "-"],
        Some("some-old-token"),
        "a.b.c\n",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    assert_eq!(o.stdout, format!("{TOKEN}\n"));
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.starts_with("hint: "));
    let req = server.last();
    assert_eq!(req.target, "/v1/auth/jwt/login");
    assert_eq!(req.header("x-vault-token"), None);
    assert_eq!(req.json(), json!({"role": "app", "jwt": "a.b.c"}));
}

#[tokio::test]
async fn login_json_prints_the_auth_block() {
    let server = TestServer::canned(200, &auth_envelope()).await;
    let o = leash(
        &server,
        &[
            "--output",
            "json",
            "login",
            "jwt",
            "--role",
            "app",
            "--jwt-file",
            "-",
        ],
        None,
        "a.b.c",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["client_token"], TOKEN);
    assert_eq!(v["lease_duration"], 3600);
    assert_eq!(o.stderr, "");
}

#[tokio::test]
async fn a_failed_login_exits_1() {
    let server = TestServer::canned(400, r#"{"errors":["login failed"]}"#).await;
    let o = leash(
        &server,
        &["login", "jwt", "--role", "app", "--jwt-file", "-"],
        None,
        "bad.jwt.value",
    )
    .await;
    assert_eq!(o.exit, Exit::Refused);
    assert_eq!(o.stdout, "");
    assert_eq!(o.stderr, "leash: HTTP 400: login failed\n");
    assert!(!o.stderr.contains("bad.jwt"));
}

#[tokio::test]
async fn no_token_is_a_usage_error_and_sends_nothing() {
    let server = TestServer::canned(200, "{}").await;
    let o = leash(&server, &["status"], None, "").await;
    assert_eq!(o.exit, Exit::Usage);
    assert!(o.stderr.starts_with("leash: no token"), "{}", o.stderr);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_token_comes_from_env_or_stdin() {
    let server = TestServer::canned(403, r#"{"errors":["permission denied"]}"#).await;
    let o = leash(&server, &["status"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Refused);
    assert_eq!(o.stderr, "leash: HTTP 403: permission denied\n");
    assert_eq!(server.last().header("x-vault-token"), Some(TOKEN));

    let o = leash(
        &server,
        &["--token-file", "-", "status"],
        Some("env-token"),
        "stdin-token\n",
    )
    .await;
    assert_eq!(o.exit, Exit::Refused);
    assert_eq!(server.last().header("x-vault-token"), Some("stdin-token"));
}

#[tokio::test]
async fn an_unreachable_broker_exits_2() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cli =
        Cli::try_parse_from(["leash", "--addr", &format!("http://{addr}"), "status"]).unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let exit = {
        let mut console = Console {
            stdout: Box::new(&mut out),
            stderr: Box::new(&mut err),
            stdin: Box::new(&b""[..]),
            env_token: Some(TOKEN.into()),
        };
        run(cli, &mut console).await
    };
    let err = String::from_utf8(err).unwrap();
    assert_eq!(exit, Exit::Usage);
    assert!(err.starts_with("leash: request failed"), "{err}");
    assert!(!err.contains(TOKEN));
    assert!(out.is_empty());
}

#[tokio::test]
async fn kv_get_and_list() {
    let server = TestServer::start(|req| {
        if req.method == "LIST" {
            return (404, r#"{"errors":[]}"#.into());
        }
        (
            200,
            envelope(json!({
                "lease_id": "secret/data/app/db/xyz", "lease_duration": 600, "renewable": true,
                "data": {"data": {"user": "app", "password": "pw"},
                         "metadata": {"created_time": "2024-01-01T00:00:00Z", "custom_metadata": null,
                                      "deletion_time": "", "destroyed": false, "version": 1}}
            })),
        )
    })
    .await;
    let o = leash(&server, &["kv", "get", "secret/app/db"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "lease_id: secret/data/app/db/xyz\nlease_duration: 600\npassword = pw\nuser = app\n"
    );
    assert_eq!(server.last().target, "/v1/secret/data/app/db");

    let o = leash(
        &server,
        &[
            "kv",
            "get",
            "secret/app/db",
            "--version",
            "1",
            "--output",
            "json",
        ],
        Some(TOKEN),
        "",
    )
    .await;
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["data"]["data"]["user"], "app");
    assert_eq!(v["lease_id"], "secret/data/app/db/xyz");
    assert_eq!(server.last().target, "/v1/secret/data/app/db?version=1");

    let o = leash(&server, &["kv", "list", "secret/app"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Ok);
    assert_eq!(o.stdout, "");
    assert_eq!(server.last().target, "/v1/secret/metadata/app");

    let n = server.requests().len();
    for bad in ["secret", "secret/", "/"] {
        let o = leash(&server, &["kv", "get", bad], Some(TOKEN), "").await;
        assert_eq!(o.exit, Exit::Usage, "{bad}");
    }
    let o = leash(&server, &["kv", "get", "secret/../sys"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Usage);
    assert_eq!(server.requests().len(), n);
}

#[tokio::test]
async fn lease_revoke_workload_and_operator() {
    let server = TestServer::start(|req| {
        if req.target.starts_with("/v1/leash/") {
            (200, envelope(json!({"data": {"revoked": 3}})))
        } else {
            (204, String::new())
        }
    })
    .await;
    let o = leash(
        &server,
        &["lease", "revoke", "secret/data/app/x"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    assert_eq!(o.stdout, "revoked\n");
    let req = server.last();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("PUT", "/v1/sys/leases/revoke")
    );

    leash(
        &server,
        &["lease", "revoke", "--prefix", "secret/data/app"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(
        server.last().target,
        "/v1/sys/leases/revoke-prefix/secret/data/app"
    );

    let o = leash(
        &server,
        &["lease", "revoke", "--operator", "--prefix", "secret/"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.stdout, "revoked 3 lease(s)\n");
    let req = server.last();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/leash/leases/revoke")
    );
    assert_eq!(req.json(), json!({"prefix": "secret/"}));

    let o = leash(
        &server,
        &["--output", "json", "lease", "revoke", "--operator", "l-1"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&o.stdout).unwrap(),
        json!({"revoked": 3})
    );
    assert_eq!(server.last().json(), json!({"lease_id": "l-1"}));
}

#[tokio::test]
async fn lease_renew_prints_warnings_on_stderr() {
    let server = TestServer::canned(
        200,
        &envelope(
            json!({"lease_id": "l-1", "lease_duration": 60, "renewable": true,
                         "warnings": ["capped at max TTL"]}),
        ),
    )
    .await;
    let o = leash(
        &server,
        &["lease", "renew", "l-1", "--increment", "9999"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok);
    assert!(o.stdout.contains("lease_duration  60\n"), "{}", o.stdout);
    assert_eq!(o.stderr, "warning: capped at max TTL\n");
    assert_eq!(
        server.last().json(),
        json!({"lease_id": "l-1", "increment": 9999})
    );
}

#[tokio::test]
async fn token_commands_never_print_the_token() {
    let server = TestServer::start(|req| match req.target.as_str() {
        "/v1/auth/token/lookup-self" => (
            200,
            envelope(json!({"data": {
                "accessor": "acc-1", "creation_time": 1, "creation_ttl": 3600, "display_name": "jwt-app",
                "entity_id": "e", "expire_time": null, "explicit_max_ttl": 0, "id": TOKEN,
                "issue_time": "2024-01-01T00:00:00Z", "meta": null, "num_uses": 0, "orphan": true,
                "path": "auth/jwt/login", "policies": ["app"], "renewable": true, "ttl": 100,
                "type": "service"
            }})),
        ),
        "/v1/auth/token/renew-self" => (200, auth_envelope()),
        _ => (204, String::new()),
    })
    .await;
    for output in ["text", "json"] {
        for cmd in [
            &["token", "lookup"][..],
            &["token", "renew"],
            &["token", "revoke"],
        ] {
            let args: Vec<&str> = ["--output", output].iter().chain(cmd).copied().collect();
            let o = leash(&server, &args, Some(TOKEN), "").await;
            assert_eq!(o.exit, Exit::Ok, "{args:?}: {}", o.stderr);
            assert!(!o.stdout.contains(TOKEN), "{args:?}: {}", o.stdout);
            assert!(!o.stderr.contains(TOKEN));
        }
    }
}

#[tokio::test]
async fn audit_list_lines() {
    let server = TestServer::canned(
        200,
        &envelope(json!({"data": {"events": [{
            "seq": 3, "request_id": "r", "time": "2024-01-01T00:00:00Z", "identity": "acc",
            "workload": "app", "peer": "127.0.0.1", "operation": "kv.read", "method": "GET",
            "path": "secret/data/app", "decision": "allowed", "status": 200, "reason": "ok",
            "lease_ref": "ab12", "attestation": {}
        }]}})),
    )
    .await;
    let o = leash(
        &server,
        &["audit", "list", "--after", "2", "--limit", "5"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok);
    assert_eq!(
        o.stdout,
        "3 2024-01-01T00:00:00Z allowed 200 kv.read secret/data/app app ok\n"
    );
    assert_eq!(server.last().target, "/v1/leash/audit?after=2&limit=5");
}

#[tokio::test]
async fn audit_verify_exit_codes() {
    let ok = TestServer::canned(
        200,
        &envelope(json!({"data": {"ok": true, "events": 4, "head_seq": 4}})),
    )
    .await;
    let o = leash(&ok, &["audit", "verify"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Ok);
    assert_eq!(o.stdout, "audit chain ok: 4 events, head seq 4\n");

    let broken = TestServer::canned(
        200,
        &envelope(json!({"data": {"ok": false, "events": 2, "error": "row 3 changed"}})),
    )
    .await;
    let o = leash(&broken, &["audit", "verify"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Refused);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        "leash: audit chain broken after checking 2 events: row 3 changed\n"
    );
    let o = leash(
        &broken,
        &["--output", "json", "audit", "verify"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Refused);
    assert_eq!(
        serde_json::from_str::<Value>(&o.stdout).unwrap()["ok"],
        false
    );

    let refused = TestServer::canned(403, r#"{"errors":["permission denied"]}"#).await;
    let o = leash(&refused, &["audit", "verify"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Usage);
    assert_eq!(o.stderr, "leash: HTTP 403: permission denied\n");
}

#[test]
fn split_mount_takes_the_first_segment() {
    assert_eq!(split_mount("secret/app/db").unwrap(), ("secret", "app/db"));
    assert_eq!(split_mount("/secret/app").unwrap(), ("secret", "app"));
    assert_eq!(split_mount("secret").unwrap(), ("secret", ""));
    assert!(split_mount("").is_err());
    assert!(split_mount("/").is_err());
}

#[test]
fn console_debug_redacts_the_env_token() {
    let console = Console {
        stdout: Box::new(std::io::sink()),
        stderr: Box::new(std::io::sink()),
        stdin: Box::new(std::io::empty()),
        env_token: Some(TOKEN.into()),
    };
    assert!(!format!("{console:?}").contains(TOKEN));
}

#[tokio::test]
async fn containment_commands_print_and_exit_as_documented() {
    let server = TestServer::start(
        |req| match req.target.split('?').next().unwrap_or_default() {
            "/v1/leash/detections" => (
                200,
                envelope(json!({"data": {"detections": [], "next_after": null}})),
            ),
            "/v1/leash/identities/quarantine" => (200, envelope(json!({"data": {"applied": 1}}))),
            "/v1/leash/identities/release" => (200, envelope(json!({"data": {"applied": 0}}))),
            "/v1/leash/identities" => (
                400,
                r#"{"errors":["give workload, issuer and subject"]}"#.into(),
            ),
            _ => (404, r#"{"errors":[]}"#.into()),
        },
    )
    .await;
    let who = ["--workload", "app", "--issuer", "i", "--subject", "s"];
    let with = |sub: &'static str, extra: &[&'static str]| {
        let mut v = vec!["identity", sub];
        v.extend(who);
        v.extend(extra);
        v
    };

    let o = leash(
        &server,
        &["detections", "list", "--output", "json"],
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&o.stdout).unwrap(),
        json!({"detections": [], "next_after": null})
    );
    let o = leash(&server, &["detections", "list"], Some(TOKEN), "").await;
    assert_eq!((o.exit, o.stdout.as_str()), (Exit::Ok, ""));

    let o = leash(&server, &["detections", "show", "det_x"], Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Refused);
    assert_eq!(o.stderr, "leash: no detection with id det_x\n");

    let o = leash(
        &server,
        &with("quarantine", &["--for", "1h"]),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    assert!(o.stdout.starts_with("quarantined"), "{}", o.stdout);
    assert_eq!(
        server.last().json(),
        json!({"workload": "app", "issuer": "i", "subject": "s", "for": "1h"})
    );
    let o = leash(
        &server,
        &with("release", &["--output", "json"]),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(o.exit, Exit::Ok, "{}", o.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&o.stdout).unwrap(),
        json!({"applied": 0})
    );

    let o = leash(&server, &with("show", &[]), Some(TOKEN), "").await;
    assert_eq!(o.exit, Exit::Refused);
    assert!(
        o.stderr.contains("give workload, issuer and subject"),
        "{}",
        o.stderr
    );
    assert!(!o.stdout.contains(TOKEN) && !o.stderr.contains(TOKEN));
}
