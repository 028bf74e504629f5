//! `leash-broker dev`: zero configuration on a machine that has only Rust.
//!
//! Everything lives in one data directory (default `./.leash-dev`): an
//! embedded SQLite store, freshly generated keys (mode 0600), a development
//! JWT issuer, an editable copy of the sample policies, and a built-in store
//! seeded with sample secrets of random value. Nothing here is fit for
//! production: the keys sit next to the data they protect.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use leash_attest::DevIssuer;
use leash_backend::SecretData;
use leash_domain::Clock;
use leash_domain::crypto::random_b64;
use leash_policy::LoadContext;

use crate::app::App;
use crate::config::{
    AuditSettings, KeySettings, LeaseSettings, MountKind, MountSettings, OperatorSettings,
    PolicySettings, ServerSettings, Settings, StoreSettings,
};

/// The sample policy set, copied into the data directory on first start.
const DEV_POLICIES: &[(&str, &str)] = &[
    (
        "payments-api.toml",
        include_str!("../../policies/dev/payments-api.toml"),
    ),
    (
        "reporting-agent.toml",
        include_str!("../../policies/dev/reporting-agent.toml"),
    ),
    (
        "ci-deployer.toml",
        include_str!("../../policies/dev/ci-deployer.toml"),
    ),
];

/// The mount of the built-in store in dev mode.
pub const DEV_MOUNT: &str = "secret";

/// Writes `contents` to `path` with mode 0600 unless it exists.
fn write_private_once(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, contents)?;
    Ok(())
}

fn create_dir_private(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The settings of a dev broker in `data_dir`, creating keys, the dev
/// issuer and the sample policies on first use.
pub fn dev_settings(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<Settings> {
    create_dir_private(data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let keys = data_dir.join("keys");
    create_dir_private(&keys)?;
    for name in ["hash.key", "builtin.key", "operator.token"] {
        write_private_once(&keys.join(name), random_b64(32)?.as_bytes())?;
    }
    let issuer = DevIssuer::load_or_create(&keys).context("development issuer")?;
    let policies = data_dir.join("policies");
    if !policies.exists() {
        std::fs::create_dir_all(&policies)?;
        for (name, text) in DEV_POLICIES {
            std::fs::write(policies.join(name), text)?;
        }
    }
    Ok(Settings {
        server: ServerSettings {
            listen,
            ..ServerSettings::default()
        },
        store: StoreSettings {
            url: format!("sqlite:{}", data_dir.join("leash.db").display()),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        },
        keys: KeySettings {
            hash_key_file: keys.join("hash.key"),
            builtin_key_file: Some(keys.join("builtin.key")),
            allow_insecure_file_modes: false,
        },
        operator: OperatorSettings {
            token_file: keys.join("operator.token"),
        },
        policies: PolicySettings { dir: policies },
        audit: AuditSettings::default(),
        sessions: Default::default(),
        leases: LeaseSettings {
            reap_interval: Duration::from_secs(30),
            keep_expired_for: Duration::from_secs(600),
        },
        issuers: vec![issuer.issuer_config()],
        alerts: Default::default(),
        limits: Default::default(),
        mounts: vec![MountSettings {
            path: DEV_MOUNT.into(),
            kind: MountKind::Builtin(Default::default()),
            version: 2,
            cache: Default::default(),
            writable: None,
        }],
    })
}

/// Seeds the sample secrets if the dev mount is empty. Values are random.
pub async fn seed(app: &App, clock: &dyn Clock) -> anyhow::Result<()> {
    let Some(store) = app.builtin(DEV_MOUNT) else {
        return Ok(());
    };
    if !store.is_empty().await? {
        return Ok(());
    }
    let secret = |pairs: &[(&str, String)]| -> anyhow::Result<SecretData> {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect();
        Ok(SecretData::from_map(&map)?)
    };
    let r = || random_b64(18);
    let samples = [
        (
            "payments/db",
            secret(&[("username", "payments".into()), ("password", r()?)])?,
        ),
        ("payments/api-key", secret(&[("key", r()?)])?),
        (
            "payments/admin/root",
            secret(&[("username", "postgres".into()), ("password", r()?)])?,
        ),
        (
            "reporting/warehouse",
            secret(&[
                ("dsn", "postgres://reporting@warehouse/analytics".into()),
                ("password", r()?),
            ])?,
        ),
        ("ci/deploy-key", secret(&[("private_key", r()?)])?),
    ];
    for (path, data) in &samples {
        store.import(path, data, clock.now()).await?;
    }
    Ok(())
}

/// Mints a JWT for `workload` from the dev issuer, filling in the literal
/// values its policy binds (the first allowed value of each bound claim).
pub fn mint_token(
    data_dir: &Path,
    workload: &str,
    ttl: Duration,
    clock: &dyn Clock,
) -> anyhow::Result<String> {
    let keys = data_dir.join("keys");
    let issuer = DevIssuer::load_or_create(&keys)
        .context("development issuer (run `leash-broker dev` first)")?;
    let ctx = LoadContext {
        issuers: vec![DevIssuer::NAME.to_owned()],
    };
    let set = leash_policy::PolicySet::load_dir(&data_dir.join("policies"), &ctx).map_err(|p| {
        anyhow::anyhow!(
            "the dev policy set has problems:\n  {}",
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })?;
    let w = set.workload(workload).with_context(|| {
        format!(
            "no workload named {workload:?} in {}",
            data_dir.join("policies").display()
        )
    })?;
    let mut subject = workload.to_owned();
    let mut claims = serde_json::Map::new();
    for bound in w.login.jwt().map_or(&[][..], |j| &j.bound_claims) {
        let Some(value) = bound.values.first() else {
            continue;
        };
        if bound.claim == "sub" {
            subject = value.clone();
            continue;
        }
        set_claim(&mut claims, &bound.claim, value);
    }
    Ok(issuer.mint(&subject, ttl, claims, clock.now())?)
}

/// Sets a top-level claim, or a nested one named by a JSON pointer.
fn set_claim(claims: &mut serde_json::Map<String, serde_json::Value>, name: &str, value: &str) {
    let Some(pointer) = name.strip_prefix('/') else {
        claims.insert(name.to_owned(), value.into());
        return;
    };
    let parts: Vec<String> = pointer
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut cur = claims;
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert(p.clone(), value.into());
            return;
        }
        let next = cur
            .entry(p.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !next.is_object() {
            *next = serde_json::Value::Object(Default::default());
        }
        match next.as_object_mut() {
            Some(o) => cur = o,
            None => return,
        }
    }
}

/// How the walkthrough names the two binaries: next to this executable if
/// built there, else through cargo (run from the repository root).
fn commands() -> (String, String) {
    let exe = std::env::current_exe().ok();
    let broker = exe.as_ref().map_or_else(
        || "cargo run -q -p leash-broker --".to_owned(),
        |p| p.display().to_string(),
    );
    let cli = exe
        .as_ref()
        .and_then(|p| p.parent())
        .map(|d| d.join("leash"))
        .filter(|p| p.exists())
        .map_or_else(
            || "cargo run -q -p leash-cli --".to_owned(),
            |p| p.display().to_string(),
        );
    (broker, cli)
}

/// Quotes `s` for a POSIX shell when it holds anything but safe characters.
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn quote_program(p: &str) -> String {
    if p.starts_with("cargo run ") {
        p.to_owned()
    } else {
        sh(p)
    }
}

/// The banner printed at start: the operator token and the commands a
/// newcomer runs next.
pub fn walkthrough(data_dir: &Path, addr: SocketAddr, operator_token: &str) -> String {
    let (broker, cli) = commands();
    // Binaries found beside this one are quoted; the cargo fallback is
    // already a command line.
    let (broker, cli) = (quote_program(&broker), quote_program(&cli));
    let shown = data_dir.display();
    let dir = sh(&data_dir.display().to_string());
    let jwt = sh(&PathBuf::from(data_dir)
        .join("payments-api.jwt")
        .display()
        .to_string());
    format!(
        "Leash dev broker listening on http://{addr}\n\
         \x20 data directory: {shown} (SQLite store, keys, dev issuer, policies)\n\
         \x20 policies:       {shown}/policies — edit them, then `kill -HUP {pid}` to reload\n\
         \x20 operator token: {operator_token}\n\
         \n\
         Try it, in another terminal:\n\
         \n\
         export LEASH_ADDR=http://{addr}\n\
         # 1. mint a JWT for the sample workload payments-api, signed by the dev issuer\n\
         {broker} dev token --data-dir {dir} payments-api > {jwt}\n\
         # 2. log in with it: the JWT is checked against the workload's policy\n\
         export LEASH_TOKEN=$({cli} login jwt --role payments-api --jwt-file {jwt})\n\
         # 3. read a secret inside its scope: it comes with a lease\n\
         {cli} kv get secret/payments/db\n\
         # 4. reach outside its scope: refused (403), and audited\n\
         {cli} kv get secret/payments/admin/root\n\
         # 5. as the operator, read the audit log and verify its hash chain\n\
         LEASH_TOKEN={operator_token} {cli} audit list\n\
         LEASH_TOKEN={operator_token} {cli} audit verify\n",
        pid = std::process::id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(sh("/tmp/sp ace"), "'/tmp/sp ace'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh(""), "''");
        assert_eq!(
            quote_program("cargo run -q -p leash-cli --"),
            "cargo run -q -p leash-cli --"
        );
    }

    #[test]
    fn walkthrough_quotes_paths_with_spaces() {
        let w = walkthrough(
            Path::new("/tmp/sp ace/dev"),
            "127.0.0.1:8200".parse().unwrap(),
            "tok",
        );
        assert!(
            w.contains(
                "--data-dir '/tmp/sp ace/dev' payments-api > '/tmp/sp ace/dev/payments-api.jwt'"
            ),
            "{w}"
        );
    }
}
