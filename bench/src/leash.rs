//! Leash as the benchmark runs it: the release `leash-broker serve` binary
//! with a generated configuration (PostgreSQL, the harness's JWT issuer, a
//! generated policy directory, the `secret/` mount), and the JWT issuer
//! both servers trust.
//!
//! Must never happen: a broker left running (its [`ChildGuard`] kills it),
//! or a key or token written anywhere but the harness's temporary
//! directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use leash_attest::DevIssuer;
use serde_json::{Value, json};

use crate::bao::{ROLE, SECRET_PATH};
use crate::sys::{ChildGuard, free_port, wait_http};

/// The workload whose leases the revocation measurement revokes.
pub const REVOKE_ROLE: &str = "bench-revoke";
/// The workload that writes the secret into a `builtin` mount.
pub const SEED_ROLE: &str = "bench-seeder";
/// Workloads every policy directory declares besides the fillers.
pub const FIXED_WORKLOADS: usize = 3;

/// Where Leash's `secret/` mount gets the value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountChoice {
    /// `kind = "vault"` in front of the same OpenBao, value cached for the run.
    Vault,
    /// `kind = "builtin"`: Leash's own encrypted store in PostgreSQL.
    Builtin,
}

impl MountChoice {
    /// How the report names it.
    pub fn describe(self) -> &'static str {
        match self {
            MountChoice::Vault => {
                "kind = \"vault\" (the same OpenBao, read with a read-only token), [mounts.cache] ttl = \"24h\": every measured read is a cache hit"
            }
            MountChoice::Builtin => {
                "kind = \"builtin\" (Leash's own store in PostgreSQL, one SELECT and an AES-GCM open per read)"
            }
        }
    }
}

/// Keys, the issuer and the directory every broker of the run shares.
pub struct LeashHome {
    /// The directory (inside the harness's temporary directory).
    pub dir: PathBuf,
    /// The JWT issuer both servers trust.
    pub issuer: DevIssuer,
    /// The operator token.
    pub operator_token: String,
    broker_bin: PathBuf,
}

/// The benchmark drives one identity from one address far faster than any
/// workload does, so it raises `[limits]` out of its way. The limits stay
/// on: every request still draws on its buckets, which is what the
/// benchmark measures.
const LIMITS: &str = "[limits]\n\
    logins_per_source = { per_second = 1e8, burst = 100000000 }\n\
    logins_per_identity = { per_second = 1e8, burst = 100000000 }\n\
    requests_per_source = { per_second = 1e8, burst = 100000000 }\n\
    requests_per_identity = { per_second = 1e8, burst = 100000000 }\n\n";

impl LeashHome {
    /// Creates keys (with `leash-broker keygen`) and the issuer in `dir`.
    pub fn create(broker_bin: &Path, dir: &Path) -> anyhow::Result<LeashHome> {
        anyhow::ensure!(
            broker_bin.is_file(),
            "{} is missing: build it (`cargo build --release -p leash-broker`, which scripts/bench does)",
            broker_bin.display()
        );
        let keys = dir.join("keys");
        let issuer = DevIssuer::load_or_create(&keys)?;
        for k in ["hash.key", "builtin.key", "operator.token"] {
            let out = Command::new(broker_bin)
                .arg("keygen")
                .arg("--out")
                .arg(keys.join(k))
                .output()
                .context("leash-broker keygen")?;
            anyhow::ensure!(
                out.status.success(),
                "leash-broker keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let operator_token = std::fs::read_to_string(keys.join("operator.token"))?
            .trim()
            .to_owned();
        Ok(LeashHome {
            dir: dir.to_owned(),
            issuer,
            operator_token,
            broker_bin: broker_bin.to_owned(),
        })
    }

    /// A JWT for `sub`, valid for two hours.
    pub fn jwt(&self, sub: &str) -> anyhow::Result<String> {
        Ok(self.issuer.mint(
            sub,
            Duration::from_secs(7200),
            serde_json::Map::new(),
            chrono::Utc::now(),
        )?)
    }

    /// The issuer's public key as a PEM SubjectPublicKeyInfo, for
    /// OpenBao's `jwt_validation_pubkeys`.
    pub fn issuer_pem(&self) -> anyhow::Result<String> {
        let jwks: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("keys/dev-issuer.jwks.json"))?)?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let coord = |k: &str| -> anyhow::Result<Vec<u8>> {
            let s = jwks["keys"][0][k].as_str().context("JWKS without x/y")?;
            let v = b64.decode(s)?;
            anyhow::ensure!(v.len() == 32, "P-256 coordinate of {} bytes", v.len());
            Ok(v)
        };
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04||x||y }
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ];
        der.extend(coord("x")?);
        der.extend(coord("y")?);
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk)?);
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Ok(pem)
    }

    /// Writes a policy directory `name` with the benchmark workloads and
    /// enough filler workloads to declare `total` in all.
    pub fn policies(&self, name: &str, total: usize) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let workload = |name: &str, scope: &str, caps: &str| {
            format!(
                "name = \"{name}\"\n\n[login]\nmethod = \"jwt\"\nissuer = \"{issuer}\"\n\
                 [login.bound_claims]\nsub = \"{name}\"\n\n[lease]\nttl = \"2h\"\nmax_ttl = \"2h\"\n\n\
                 [[scope]]\npath = \"{scope}\"\ncapabilities = [{caps}]\n",
                issuer = DevIssuer::NAME
            )
        };
        let read = "\"read\"";
        std::fs::write(
            dir.join(format!("{ROLE}.toml")),
            workload(ROLE, "secret/bench/*", read),
        )?;
        std::fs::write(
            dir.join(format!("{REVOKE_ROLE}.toml")),
            workload(REVOKE_ROLE, "secret/bench/*", read),
        )?;
        std::fs::write(
            dir.join(format!("{SEED_ROLE}.toml")),
            workload(SEED_ROLE, "secret/bench/*", "\"create\", \"update\""),
        )?;
        for i in 0..total.saturating_sub(FIXED_WORKLOADS) {
            let n = format!("filler-{i:05}");
            std::fs::write(
                dir.join(format!("{n}.toml")),
                workload(&n, &format!("secret/filler/{i:05}/*"), read),
            )?;
        }
        Ok(dir)
    }

    /// Writes the configuration `name.toml` for a broker on `store_url`
    /// (with [`LIMITS`]).
    pub fn config(
        &self,
        name: &str,
        store_url: &str,
        policy_dir: &Path,
        mount: MountChoice,
        bao_url: &str,
        upstream_token: &str,
    ) -> anyhow::Result<PathBuf> {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let keys = self.dir.join("keys");
        let k = |f: &str| q(&keys.join(f).display().to_string());
        let token_file = keys.join("openbao.token");
        std::fs::write(&token_file, upstream_token)?;
        // `serve` refuses a token file others can read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        }
        let mount_toml = match mount {
            MountChoice::Vault => format!(
                "[[mounts]]\npath = \"secret\"\nkind = \"vault\"\n[mounts.vault]\naddress = {}\n\
                 mount = \"secret\"\ntoken_file = {}\ntimeout = \"5s\"\n[mounts.cache]\nttl = \"24h\"\n",
                q(bao_url),
                k("openbao.token")
            ),
            MountChoice::Builtin => "[[mounts]]\npath = \"secret\"\nkind = \"builtin\"\n".into(),
        };
        let text = format!(
            "# Generated by leash-bench.\n[server]\nlisten = \"127.0.0.1:8200\"\n\n\
             [store]\nurl = {url}\nmax_connections = 16\n\n\
             [keys]\nhash_key_file = {hash}\nbuiltin_key_file = {builtin}\n\n\
             [operator]\ntoken_file = {op}\n\n[policies]\ndir = {pol}\n\n\
             [[issuers]]\nname = \"{name_}\"\nissuer = \"{iss}\"\naudiences = [\"{aud}\"]\n\
             algorithms = [\"ES256\"]\njwks_file = {jwks}\n\n{LIMITS}{mount_toml}",
            url = q(store_url),
            hash = k("hash.key"),
            builtin = k("builtin.key"),
            op = k("operator.token"),
            pol = q(&policy_dir.display().to_string()),
            name_ = DevIssuer::NAME,
            iss = DevIssuer::ISSUER,
            aud = DevIssuer::AUDIENCE,
            jwks = k("dev-issuer.jwks.json"),
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Starts `leash-broker serve --config CONFIG` on a free port and waits
    /// until it answers `sys/health` with 200.
    pub async fn start(&self, config: &Path, label: &str) -> anyhow::Result<Leash> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let mut cmd = Command::new(&self.broker_bin);
            cmd.arg("serve")
                .arg("--config")
                .arg(config)
                .env("LEASH_SERVER__LISTEN", format!("\"{addr}\""));
            let mut child = ChildGuard::spawn(
                &format!("leash-broker ({label})"),
                cmd,
                &self.dir.join(format!("leash-{label}.log")),
            )?;
            match wait_http(
                &http,
                &format!("http://{addr}/v1/sys/health"),
                &mut child,
                Duration::from_secs(120),
                |s| s == 200,
            )
            .await
            {
                Ok(()) => {
                    return Ok(Leash { child, addr, http });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("leash-broker did not start")))
    }
}

/// A running broker.
pub struct Leash {
    /// The process.
    pub child: ChildGuard,
    /// Its listener.
    pub addr: SocketAddr,
    http: reqwest::Client,
}

/// A workload's token.
#[derive(Debug, Clone)]
pub struct Login {
    /// The token.
    pub token: String,
    /// Its accessor (the key for seeding leases in the database).
    pub accessor: String,
}

impl Leash {
    /// leash-broker's resident memory now, MiB.
    pub fn rss_mib(&self) -> f64 {
        crate::sys::rss_bytes(self.child.pid()) as f64 / (1024.0 * 1024.0)
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Logs `role` in with `jwt`.
    pub async fn login(&self, role: &str, jwt: &str) -> anyhow::Result<Login> {
        let r = self
            .http
            .post(format!("{}/v1/auth/jwt/login", self.url()))
            .json(&json!({"role": role, "jwt": jwt}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "Leash login {role}: {status} {body}");
        let get = |k: &str| {
            body["auth"][k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("login answer without auth.{k}"))
        };
        Ok(Login {
            token: get("client_token")?,
            accessor: get("accessor")?,
        })
    }

    /// One read of the benchmark secret with `token`: the status.
    pub async fn read_status(&self, token: &str) -> anyhow::Result<u16> {
        let r = self
            .http
            .get(format!("{}/v1/secret/data/{SECRET_PATH}", self.url()))
            .header("X-Vault-Token", token)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// Writes the benchmark secret through the API as the seeding
    /// workload (for a `builtin` mount).
    pub async fn seed_secret(&self, home: &LeashHome) -> anyhow::Result<()> {
        let seeder = self.login(SEED_ROLE, &home.jwt(SEED_ROLE)?).await?;
        let r = self
            .http
            .post(format!("{}/v1/secret/data/{SECRET_PATH}", self.url()))
            .header("X-Vault-Token", &seeder.token)
            .json(&json!({"data": {"username": "bench", "password": "bench-pw-0123456789"}}))
            .send()
            .await?;
        let status = r.status();
        anyhow::ensure!(
            status.is_success(),
            "seeding the builtin secret: {status} {}",
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// The operator's view (`/v1/leash/status`).
    pub async fn status(&self, operator_token: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}/v1/leash/status", self.url()))
            .header("X-Vault-Token", operator_token)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "leash status: {}", r.status());
        Ok(r.json().await?)
    }

    /// The shared HTTP client (setup calls, not the load).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
