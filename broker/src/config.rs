//! Typed settings: defaults → a commented TOML file → `LEASH_` environment
//! variables. A missing or bad setting stops start-up with a message that
//! names it (and, for the file, its line).
//!
//! Environment overrides use `__` for nesting: `LEASH_STORE__URL`,
//! `LEASH_SERVER__LISTEN`, `LEASH_AUDIT__COMMIT_TIMEOUT`. Values are read as
//! TOML scalars (`16`, `true`, `"5s"`) and otherwise as strings. Relative
//! paths in the file are relative to the file's directory.
//!
//! Secrets (the hash key, the built-in store key, the operator token) are
//! never in the file itself: the file names files that hold them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leash_attest::IssuerConfig;
use leash_backend::{MountCommon, MountRefusal};
use serde::Deserialize;

mod alerts;
mod limits;
mod mounts;
mod server;

pub use self::alerts::{AlertSettings, WebhookSettings};
pub use self::limits::{LimitSettings, RateSetting};
pub use self::mounts::MountSettings;
pub use self::server::ServerSettings;
pub use leash_backend::{MountKind, MountKindName};

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file (with overrides) does not parse or a value is wrong.
    #[error("{file}:{line}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line, 0 when unknown (an environment override).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// All settings of `leash-broker serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerSettings,
    /// Where Leash keeps its state.
    pub store: StoreSettings,
    /// Key files.
    pub keys: KeySettings,
    /// The operator credential.
    pub operator: OperatorSettings,
    /// The policy set.
    pub policies: PolicySettings,
    /// The audit writer.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Lease housekeeping.
    #[serde(default)]
    pub leases: LeaseSettings,
    /// The session cache.
    #[serde(default)]
    pub sessions: SessionSettings,
    /// JWT issuers workloads log in with.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Secret mounts.
    #[serde(default)]
    pub mounts: Vec<MountSettings>,
    /// `[alerts]`: where detections are delivered.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// `[limits]`: rate limits per source address and per identity.
    #[serde(default)]
    pub limits: LimitSettings,
}

/// `[store]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://…` or `sqlite:PATH`. May hold a password: never logged.
    pub url: String,
    /// Pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Longest wait for a pooled connection.
    #[serde(default = "default_acquire_timeout", with = "duration_str")]
    pub acquire_timeout: Duration,
    /// Longest a single statement may run.
    #[serde(default = "default_statement_timeout", with = "duration_str")]
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.url.split(':').next().unwrap_or("");
        f.debug_struct("StoreSettings")
            .field("url", &format_args!("{scheme}:<redacted>"))
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

fn default_max_connections() -> u32 {
    16
}
fn default_acquire_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `[keys]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// At least 32 random bytes: keys the digests of tokens and lease ids
    /// and the audit hash chain.
    pub hash_key_file: PathBuf,
    /// Exactly 32 random bytes: seals values of the built-in store.
    pub builtin_key_file: Option<PathBuf>,
    /// Start even when a key or token file the configuration names is
    /// readable by group or others (with a warning). Off: `serve` refuses.
    #[serde(default)]
    pub allow_insecure_file_modes: bool,
}

/// `[operator]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSettings {
    /// A file holding the operator token (one line).
    pub token_file: PathBuf,
}

/// `[policies]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// The directory of workload policy files.
    pub dir: PathBuf,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Longest a request waits for its audit row to commit before it fails
    /// with 503 and nothing is handed out.
    #[serde(with = "duration_str")]
    pub commit_timeout: Duration,
    /// Most requests committed in one transaction.
    pub max_batch: usize,
    /// Batches being committed at once. One is best with PostgreSQL: the
    /// writer never waits for the disk (the flusher does), and one writer
    /// can chain each batch from the head its last one left, writing it in
    /// one statement; a second writer's batches would race it for the head.
    pub writers: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            commit_timeout: Duration::from_secs(5),
            max_batch: 256,
            writers: 1,
        }
    }
}

/// `[leases]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// How often expired leases and tokens are reaped.
    #[serde(with = "duration_str")]
    pub reap_interval: Duration,
    /// How long expired or revoked rows are kept before reaping.
    #[serde(with = "duration_str")]
    pub keep_expired_for: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            reap_interval: Duration::from_secs(60),
            keep_expired_for: Duration::from_secs(3600),
        }
    }
}

/// `[sessions]`: how long a replica may trust a token record it read,
/// instead of reading it again. Revocations evict at once (the revoking
/// replica before it replies, the others on PostgreSQL's announcement);
/// `cache_ttl` bounds the trust even if an announcement is lost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// Longest a cached token record is trusted; `0` disables the cache.
    #[serde(with = "duration_str")]
    pub cache_ttl: Duration,
    /// Most token records cached.
    pub cache_entries: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(1),
            cache_entries: 100_000,
        }
    }
}

/// `[mounts.cache]`: caching, retries and the circuit breaker of an
/// external store (`vault`, `aws`). The built-in store is Leash's own
/// database and is not cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// How long a value is cached; `0` disables the cache.
    #[serde(with = "duration_str")]
    pub ttl: Duration,
    /// Most cached secrets.
    pub max_entries: usize,
    /// Most cached bytes of secret data.
    pub max_bytes: usize,
    /// Extra attempts for a read that failed because the store was unavailable.
    pub retries: u32,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the open breaker refuses before one probe.
    #[serde(with = "duration_str")]
    pub breaker_cooldown: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        let g = leash_backend::GuardSettings::default();
        Self {
            ttl: g.cache_ttl,
            max_entries: g.max_entries,
            max_bytes: g.max_bytes,
            retries: g.retries,
            breaker_threshold: g.breaker_threshold,
            breaker_cooldown: g.breaker_cooldown,
        }
    }
}

impl CacheSettings {
    /// The guard settings these describe.
    pub fn guard(&self) -> leash_backend::GuardSettings {
        leash_backend::GuardSettings {
            cache_ttl: self.ttl,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            retries: self.retries,
            breaker_threshold: self.breaker_threshold.max(1),
            breaker_cooldown: self.breaker_cooldown,
            ..leash_backend::GuardSettings::default()
        }
    }
}

impl Settings {
    /// Loads `file`, then applies `LEASH_*__*` overrides from `env`.
    pub fn load(
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let invalid = |line: usize, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            line,
            reason,
        };
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| {
            invalid(
                line_of(&text, e.span().map(|s| s.start)),
                one_line(e.message()),
            )
        })?;
        let overridden = apply_env(&mut doc, env).map_err(|r| invalid(0, r))?;
        let mut settings: Settings = Settings::deserialize(toml::Value::Table(doc.clone()))
            .map_err(|e| {
                // Re-parse the original text for a line number when the problem
                // is in the file rather than in an override.
                let line = if overridden {
                    0
                } else {
                    toml::from_str::<Settings>(&text)
                        .err()
                        .and_then(|e| e.span())
                        .map_or(0, |s| line_of(&text, Some(s.start)))
                };
                invalid(line, one_line(e.message()))
            })?;
        let base = file.parent().unwrap_or(Path::new("."));
        settings.resolve_paths(base);
        settings.validate().map_err(|r| invalid(0, r))?;
        Ok(settings)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.keys.hash_key_file);
        if let Some(p) = self.keys.builtin_key_file.as_mut() {
            fix(p);
        }
        fix(&mut self.operator.token_file);
        fix(&mut self.policies.dir);
        for w in &mut self.alerts.webhooks {
            fix(&mut w.secret_file);
        }
        for m in &mut self.mounts {
            for p in m.kind.config_mut().paths_mut() {
                fix(p);
            }
        }
        for i in &mut self.issuers {
            if let Some(p) = i.jwks_file.as_mut() {
                fix(p);
            }
            for p in &mut i.public_key_files {
                fix(p);
            }
        }
        if let Some(rest) = self.store.url.strip_prefix("sqlite:") {
            let rest = rest.trim_start_matches("//");
            let p = Path::new(rest);
            if p.is_relative() {
                self.store.url = format!("sqlite:{}", base.join(p).display());
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for m in &self.mounts {
            let ok = !m.path.is_empty()
                && m.path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(format!(
                    "mounts: invalid mount path {:?} (letters, digits, - and _ only)",
                    m.path
                ));
            }
            if ["sys", "auth", "leash", "identity", "cubbyhole"].contains(&m.path.as_str()) {
                return Err(format!("mounts: {:?} is reserved", m.path));
            }
            if !seen.insert(m.path.clone()) {
                return Err(format!("mounts: {:?} is declared twice", m.path));
            }
            if !matches!(m.version, 1 | 2) {
                return Err(format!(
                    "mounts: {:?} has version {}; KV versions are 1 and 2",
                    m.path, m.version
                ));
            }
            // The section fits the kind already (checked as it was read);
            // the kind checks the rest.
            let common = MountCommon {
                kv_version: m.version,
                writable: m.writable,
                builtin_key_file: self.keys.builtin_key_file.is_some(),
            };
            match m.kind.config().check(&common) {
                Ok(()) => {}
                Err(MountRefusal::Shape) => return Err(mounts::misfit(&m.path, m.kind.name())),
                Err(MountRefusal::Other(why)) => return Err(format!("mounts: {:?} {why}", m.path)),
            }
        }
        if self.audit.writers == 0 || self.audit.writers > 64 {
            return Err("audit.writers must be between 1 and 64".into());
        }
        if self.audit.max_batch == 0 {
            return Err("audit.max_batch must be at least 1".into());
        }
        self.server.validate()?;
        self.limits.check()?;
        self.alerts.check()
    }
}

/// Parser messages can span lines; a problem report is one line.
fn one_line(msg: &str) -> String {
    msg.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn line_of(text: &str, offset: Option<usize>) -> usize {
    offset.map_or(0, |o| text[..o.min(text.len())].matches('\n').count() + 1)
}

/// Applies `LEASH_A__B=value` as `a.b = value`. Returns whether anything
/// was applied.
fn apply_env(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<bool, String> {
    let mut applied = false;
    for (key, value) in env {
        let Some(rest) = key.strip_prefix("LEASH_") else {
            continue;
        };
        if !rest.contains("__") {
            // LEASH_ADDR, LEASH_TOKEN and friends belong to the CLI.
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!("environment variable {key}: empty path segment"));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let mut table = &mut *doc;
        for p in &parts[..parts.len() - 1] {
            let entry = table
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry
                .as_table_mut()
                .ok_or_else(|| format!("environment variable {key}: {p} is not a table"))?;
        }
        if let Some(last) = parts.last() {
            table.insert(last.clone(), parsed);
        }
        applied = true;
    }
    Ok(applied)
}

/// Durations in settings: the one grammar of `leash_domain::duration`
/// (`"30s"`, `"250ms"`, `"1h30m"`, or integer seconds).
pub mod duration_str {
    use std::time::Duration;

    use serde::Deserializer;

    /// Parses a duration.
    pub fn parse(s: &str) -> Option<Duration> {
        leash_domain::parse_duration(s).ok()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        leash_domain::duration::serde_str::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[store]
url = "sqlite:state/leash.db"
[keys]
hash_key_file = "keys/hash.key"
builtin_key_file = "keys/builtin.key"
[operator]
token_file = "keys/operator.token"
[policies]
dir = "policies"
[[mounts]]
path = "secret"
kind = "builtin"
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leash.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn minimal_file_loads_with_defaults_and_relative_paths() {
        let (dir, p) = write(MINIMAL);
        let s = Settings::load(&p, Vec::new()).unwrap();
        assert_eq!(s.server.listen.port(), 8200);
        assert_eq!(s.audit.commit_timeout, Duration::from_secs(5));
        assert_eq!(s.policies.dir, dir.path().join("policies"));
        assert_eq!(
            s.store.url,
            format!("sqlite:{}", dir.path().join("state/leash.db").display())
        );
    }

    #[test]
    fn env_overrides_nested_keys() {
        let (_d, p) = write(MINIMAL);
        let env = vec![
            (
                "LEASH_STORE__URL".to_string(),
                "postgres://u@h/db".to_string(),
            ),
            ("LEASH_AUDIT__MAX_BATCH".to_string(), "7".to_string()),
            (
                "LEASH_SERVER__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            ("LEASH_TOKEN".to_string(), "ignored".to_string()),
        ];
        let s = Settings::load(&p, env).unwrap();
        assert_eq!(s.store.url, "postgres://u@h/db");
        assert_eq!(s.audit.max_batch, 7);
        assert_eq!(s.server.listen.port(), 0);
        assert!(!format!("{:?}", s.store).contains("u@h"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let (_d, p) = write(&format!("{MINIMAL}\n[server]\nlisten = 12\n"));
        let e = Settings::load(&p, Vec::new()).unwrap_err().to_string();
        assert!(e.contains("leash.toml:") && !e.contains(":0:"), "{e}");
        let (_d, p) = write(&format!("{MINIMAL}\nbogus = 1\n"));
        let e = Settings::load(&p, Vec::new()).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let (_d, p) = write("[store\n");
        let e = Settings::load(&p, Vec::new()).unwrap_err().to_string();
        assert!(e.contains("leash.toml:1:"), "{e}");
        assert!(!e.contains('\n'), "one line per problem: {e}");
    }

    #[test]
    fn bad_mounts_are_refused() {
        let (_d, p) = write(&MINIMAL.replace("path = \"secret\"", "path = \"sys\""));
        assert!(Settings::load(&p, Vec::new()).is_err());
        let (_d, p) = write(&MINIMAL.replace("path = \"secret\"", "path = \"a/b\""));
        assert!(Settings::load(&p, Vec::new()).is_err());
    }

    #[test]
    fn shipped_configs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for f in [
            "broker/examples/leash.postgres.toml",
            "broker/examples/leash.sqlite.toml",
            "compose/leash.toml",
        ] {
            let s =
                Settings::load(&root.join(f), Vec::new()).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(!s.mounts.is_empty(), "{f}");
        }
        let compose = Settings::load(&root.join("compose/leash.toml"), Vec::new()).unwrap();
        let kinds: Vec<_> = compose.mounts.iter().map(|m| m.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                MountKindName::Vault,
                MountKindName::Aws,
                MountKindName::Builtin
            ]
        );
        assert!(
            matches!(&compose.mounts[0].kind, MountKind::Vault(v) if v.insecure_allow_plaintext)
        );
    }

    #[test]
    fn mount_sections_must_fit_their_kind() {
        let (_d, p) = write(&MINIMAL.replace("kind = \"builtin\"", "kind = \"vault\""));
        assert!(
            Settings::load(&p, Vec::new())
                .unwrap_err()
                .to_string()
                .contains("needs exactly its own section")
        );
        let (_d, p) = write(&format!(
            "{MINIMAL}\n[mounts.aws]\nregion = \"eu-central-1\"\n"
        ));
        assert!(Settings::load(&p, Vec::new()).is_err());
    }

    #[test]
    fn durations_parse() {
        use duration_str::parse;
        assert_eq!(parse("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("5x"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("m"), None);
    }
}
