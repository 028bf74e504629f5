//! Start-up: settings in, a listening broker out.
//!
//! [`App::build`] loads keys, connects to and migrates the store, loads the
//! issuers and the policy set (refusing to start on any problem), binds the
//! listener (port 0 allowed) and starts the audit writer and the lease
//! reaper. [`App::run_until_stopped`] serves until the shutdown future
//! resolves, reloading policies on SIGHUP: a bad set is refused and the last
//! good one stays in force.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use leash_attest::Issuers;
use leash_backend::mount::KeyError;
use leash_backend::{BuildContext, BuiltinBackend, Guarded, SecretBackend};
use leash_domain::crypto::label;
use leash_domain::{Clock, KeyedHasher};
use leash_policy::{LoadContext, PolicySet};
use leash_store::{PoolOptions, Store};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::committer::Committer;
use crate::config::Settings;
use crate::service::{Broker, PolicyHandle};
use crate::sessions::{SessionCache, follow_revocations};

/// A built, listening broker.
pub struct App {
    listener: TcpListener,
    broker: Arc<Broker>,
    policy_dir: std::path::PathBuf,
    issuer_names: Vec<String>,
    max_body: usize,
    header_read_timeout: std::time::Duration,
    builtins: HashMap<String, Arc<BuiltinBackend>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Reads a key file: base64 (standard or URL-safe) or hex text, else the
/// raw bytes. Warns when the file is readable by others.
pub fn read_key(path: &Path, what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?,
    );
    warn_if_exposed(path, what);
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    let decoded = text.and_then(|t| {
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .ok()
        }
    });
    Ok(Zeroizing::new(decoded.unwrap_or_else(|| raw.to_vec())))
}

/// Reads a one-line secret (a token) from a file.
pub fn read_secret_line(path: &Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let raw = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("{what}: cannot read {}", path.display()))?,
    );
    warn_if_exposed(path, what);
    let line = raw.trim();
    if line.len() < 24 {
        bail!(
            "{what}: {} must hold a token of at least 24 characters",
            path.display()
        );
    }
    Ok(Zeroizing::new(line.to_owned()))
}

fn warn_if_exposed(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), "{what} is readable by group or others; chmod 600 it");
        }
    }
}

/// Loads the policy set, or every problem in it.
pub fn load_policies(dir: &Path, issuers: &[String]) -> Result<PolicySet, Vec<String>> {
    let ctx = LoadContext {
        issuers: issuers.to_vec(),
    };
    PolicySet::load_dir(dir, &ctx)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

/// Connects to the configured store.
pub async fn connect_store(
    settings: &Settings,
    hasher: &KeyedHasher,
) -> anyhow::Result<Arc<dyn Store>> {
    let opts = PoolOptions {
        max_connections: settings.store.max_connections,
        acquire_timeout: settings.store.acquire_timeout,
        statement_timeout: settings.store.statement_timeout,
    };
    leash_store::connect(&settings.store.url, &opts, hasher.clone())
        .await
        .context("cannot open the state store (store.url)")
}

impl App {
    /// Builds the broker described by `settings`.
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let key = read_key(&settings.keys.hash_key_file, "keys.hash_key_file")?;
        let hasher = KeyedHasher::new(&key).context("keys.hash_key_file")?;
        let store = connect_store(settings, &hasher).await?;
        store.migrate().await.context("applying migrations")?;

        let issuers = Issuers::load(&settings.issuers).context("issuers")?;
        let issuer_names = issuers.names();
        let policies =
            load_policies(&settings.policies.dir, &issuer_names).map_err(|problems| {
                anyhow::anyhow!("the policy set has problems:\n  {}", problems.join("\n  "))
            })?;

        let mut backends: HashMap<String, Arc<dyn SecretBackend>> = HashMap::new();
        let mut builtins = HashMap::new();
        let mut guards = HashMap::new();
        // Read only when a mount's kind asks for it (each builtin mount).
        let builtin_key = || -> Result<Zeroizing<Vec<u8>>, KeyError> {
            let file = settings
                .keys
                .builtin_key_file
                .as_deref()
                .context("keys.builtin_key_file is required by a builtin mount")?;
            Ok(read_key(file, "keys.builtin_key_file")?)
        };
        for m in &settings.mounts {
            let kind = m.kind.config();
            let ctx = BuildContext {
                mount: &m.path,
                kv_version: m.version,
                writable: m.writable(),
                store: &store,
                builtin_key: &builtin_key,
            };
            let backend = kind.build(&ctx).await?;
            // The built-in store's own handle, for seeding and import.
            let any: Arc<dyn Any + Send + Sync> = backend.clone();
            if let Ok(builtin) = any.downcast::<BuiltinBackend>() {
                builtins.insert(m.path.clone(), builtin);
            }
            let backend = if kind.guarded() {
                let guarded = Arc::new(Guarded::new(backend, m.cache.guard()));
                guards.insert(m.path.clone(), guarded.clone());
                guarded
            } else {
                backend
            };
            backends.insert(m.path.clone(), backend);
        }

        let operator_token =
            read_secret_line(&settings.operator.token_file, "operator.token_file")?;
        let operator = hasher.digest(label::OPERATOR, operator_token.as_bytes());

        let committer = Committer::start(
            store.clone(),
            settings.audit.max_batch,
            settings.audit.writers,
            settings.audit.commit_timeout,
        );
        let sessions = Arc::new(SessionCache::new(
            settings.sessions.cache_ttl,
            settings.sessions.cache_entries,
        ));
        let follower = tokio::spawn(follow_revocations(store.clone(), sessions.clone()));
        let broker = Arc::new(Broker {
            sessions,
            store: store.clone(),
            committer,
            policies: Arc::new(PolicyHandle::new(policies)),
            issuers,
            hasher,
            backends,
            clock: clock.clone(),
            operator,
            guards,
        });

        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.listen)",
                    settings.server.listen
                )
            })?;

        let reaper = {
            let store = store.clone();
            let every = settings
                .leases
                .reap_interval
                .max(std::time::Duration::from_millis(100));
            let keep = chrono::Duration::from_std(settings.leases.keep_expired_for)
                .unwrap_or(chrono::Duration::hours(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    match store.reap(clock.now() - keep).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(rows = n, "reaped expired leases and tokens")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "lease reaper failed; will retry"),
                    }
                }
            })
        };

        Ok(App {
            listener,
            broker,
            policy_dir: settings.policies.dir.clone(),
            issuer_names,
            max_body: settings.server.max_body_bytes,
            header_read_timeout: settings.server.header_read_timeout,
            builtins,
            tasks: vec![reaper, follower],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The built-in backend of `mount`, for seeding.
    pub fn builtin(&self, mount: &str) -> Option<Arc<BuiltinBackend>> {
        self.builtins.get(mount).cloned()
    }

    /// A handle that re-reads the policy directory (what SIGHUP does).
    pub fn policy_reloader(&self) -> PolicyReloader {
        PolicyReloader {
            broker: self.broker.clone(),
            dir: self.policy_dir.clone(),
            issuers: self.issuer_names.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let hup = spawn_sighup(
            self.broker.clone(),
            self.policy_dir.clone(),
            self.issuer_names.clone(),
        );
        crate::http::serve(
            self.listener,
            self.broker.clone(),
            self.max_body,
            self.header_read_timeout,
            shutdown,
        )
        .await;
        for t in self.tasks {
            t.abort();
        }
        if let Some(h) = hup {
            h.abort();
        }
        Ok(())
    }
}

/// Re-reads the policy directory on demand.
#[derive(Clone, Debug)]
pub struct PolicyReloader {
    broker: Arc<Broker>,
    dir: std::path::PathBuf,
    issuers: Vec<String>,
}

impl PolicyReloader {
    /// Loads the directory; on problems the current set stays in force and
    /// the problems are returned.
    pub fn reload(&self) -> Result<usize, Vec<String>> {
        reload(&self.broker, &self.dir, &self.issuers)
    }
}

fn reload(broker: &Broker, dir: &Path, issuers: &[String]) -> Result<usize, Vec<String>> {
    match load_policies(dir, issuers) {
        Ok(set) => {
            let n = set.len();
            broker.policies.replace(set);
            tracing::info!(workloads = n, "policy set reloaded");
            Ok(n)
        }
        Err(problems) => {
            broker.policies.reload_failed();
            for p in &problems {
                tracing::error!(problem = %p, "policy reload refused; the last good set stays in force");
            }
            Err(problems)
        }
    }
}

#[cfg(unix)]
fn spawn_sighup(
    broker: Arc<Broker>,
    dir: std::path::PathBuf,
    issuers: Vec<String>,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; policy reload by signal is off");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload(&broker, &dir, &issuers);
        }
    }))
}

#[cfg(not(unix))]
fn spawn_sighup(
    _: Arc<Broker>,
    _: std::path::PathBuf,
    _: Vec<String>,
) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
