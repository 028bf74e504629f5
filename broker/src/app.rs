//! Start-up: settings in, a listening broker out.
//!
//! [`App::build`] refuses secret files others can read, raises the
//! open-file limit, loads keys, connects to and migrates the store, loads the
//! issuers and the policy set (refusing to start on any problem), binds the
//! listener (port 0 allowed) and starts the audit writer and the lease
//! reaper. [`App::run_until_stopped`] serves until the shutdown future
//! resolves, reloading policies on SIGHUP: a bad set is refused and the last
//! good one stays in force.
//!
//! Must never happen: a broker that starts with a problem in its keys
//! (unreadable, or readable by group or others unless allowed), store,
//! issuers, policies or mounts (each stops start-up with a message naming
//! it).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use leash_attest::Issuers;
use leash_backend::mount::KeyError;
use leash_backend::{BuildContext, BuiltinBackend, Guarded, SecretBackend};
use leash_domain::crypto::label;
use leash_domain::{Clock, KeyedHasher};
use leash_store::{PoolOptions, Store};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::attest::Sessions;
use crate::audit::Committer;
use crate::config::{ServerSettings, Settings};
use crate::detect::alert::{Deliverer, Target};
use crate::detect::{AlertTargets, Detectors};
use crate::files::{check_secret_file_modes, prepare_sqlite_files, raise_open_file_limit};
pub use crate::files::{read_key, read_secret_line};
use crate::lease::fanout::{SessionCache, follow_revocations};
use crate::lease::spawn_reaper;
use crate::policies::PolicyHandle;
pub use crate::policies::{PolicyReloader, load_policies};
use crate::service::{Broker, LoginMethods};

/// A built, listening broker.
pub struct App {
    listener: TcpListener,
    broker: Arc<Broker>,
    policy_dir: std::path::PathBuf,
    issuer_names: Vec<String>,
    server: ServerSettings,
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

/// Connects to the configured store (an SQLite file and its directory are
/// created private first).
pub async fn connect_store(
    settings: &Settings,
    hasher: &KeyedHasher,
) -> anyhow::Result<Arc<dyn Store>> {
    // SQLite creates its files with the umask's mode; create them private.
    prepare_sqlite_files(&settings.store.url)?;
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
    /// Builds the broker described by `settings`, with the detectors Leash
    /// ships.
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        Self::build_with(settings, clock, Detectors::builtin()).await
    }

    /// Builds the broker described by `settings`, with `detectors`.
    pub async fn build_with(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        detectors: Detectors,
    ) -> anyhow::Result<App> {
        check_secret_file_modes(settings)?;
        raise_open_file_limit(settings.server.max_connections);
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

        let (detectors, deliverer) = alerting(settings, detectors, &store, &clock)?;

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
        let policies = Arc::new(PolicyHandle::new(policies));
        let broker = Arc::new(Broker {
            sessions: Sessions::new(
                store.clone(),
                sessions,
                hasher.clone(),
                policies.clone(),
                operator,
            ),
            store: store.clone(),
            committer,
            policies,
            logins: LoginMethods::builtin(&issuers),
            hasher,
            backends,
            clock: clock.clone(),
            guards,
            detectors,
            connections: Default::default(),
            limits: crate::limits::Limiter::new(&settings.limits),
        });

        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.listen)",
                    settings.server.listen
                )
            })?;

        let mut tasks = Vec::new();
        if let Some(d) = deliverer {
            tasks.push(tokio::spawn(d.run()));
        }
        let reaper = spawn_reaper(
            store.clone(),
            clock,
            settings.leases.reap_interval,
            settings.leases.keep_expired_for,
        );

        Ok(App {
            listener,
            broker,
            policy_dir: settings.policies.dir.clone(),
            issuer_names,
            server: settings.server.clone(),
            builtins,
            tasks: tasks.into_iter().chain([reaper, follower]).collect(),
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
        PolicyReloader::new(
            self.broker.policies.clone(),
            self.policy_dir.clone(),
            self.issuer_names.clone(),
        )
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let hup = self.policy_reloader().on_sighup();
        crate::http::serve(self.listener, self.broker.clone(), &self.server, shutdown).await;
        for t in self.tasks {
            t.abort();
        }
        if let Some(h) = hup {
            h.abort();
        }
        Ok(())
    }
}

/// The detectors alerting the configured webhooks, and the worker that
/// delivers to them (none without webhooks).
fn alerting(
    settings: &Settings,
    detectors: Detectors,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Detectors, Option<Deliverer>)> {
    let hooks = &settings.alerts.webhooks;
    let detectors = detectors.alerting(AlertTargets::new(
        hooks.iter().map(|w| w.name.clone()).collect(),
    ));
    if hooks.is_empty() {
        return Ok((detectors, None));
    }
    let mut targets = HashMap::new();
    for w in hooks {
        let what = format!("alerts.webhooks.{}.secret_file", w.name);
        let key = read_key(&w.secret_file, &what)?;
        if key.len() < 16 {
            anyhow::bail!("{what}: the signing key must be at least 16 bytes");
        }
        targets.insert(
            w.name.clone(),
            Target {
                url: w.url.clone(),
                key,
                timeout: w.timeout,
            },
        );
    }
    let d = Deliverer::new(
        store.clone(),
        clock.clone(),
        targets,
        settings.alerts.clone(),
    )?;
    Ok((detectors, Some(d)))
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
