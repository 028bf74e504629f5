//! The policy set in force: loaded from the policy directory, swapped whole
//! on reload (SIGHUP or a [`PolicyReloader`]), read by every request.
//!
//! Must never happen: a request decided against a half-loaded set; a set
//! with any problem put in force (the last good one stays, and the refused
//! reload is counted and logged with every problem).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use leash_policy::{LoadContext, PolicySet};

/// The policy set in force, swapped whole on reload.
#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<Arc<PolicySet>>,
    generation: AtomicU64,
    failed_reloads: AtomicU64,
}

impl PolicyHandle {
    /// Starts with `set` as generation 1.
    pub fn new(set: PolicySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(1),
            failed_reloads: AtomicU64::new(0),
        }
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current
            .read()
            .map_or_else(|e| e.into_inner().clone(), |g| g.clone())
    }

    /// Installs a new set.
    pub fn replace(&self, set: PolicySet) {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        *g = Arc::new(set);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a refused reload.
    pub fn reload_failed(&self) {
        self.failed_reloads.fetch_add(1, Ordering::SeqCst);
    }

    /// (generation, failed reloads).
    pub fn counters(&self) -> (u64, u64) {
        (
            self.generation.load(Ordering::SeqCst),
            self.failed_reloads.load(Ordering::SeqCst),
        )
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

/// Re-reads the policy directory on demand.
#[derive(Clone, Debug)]
pub struct PolicyReloader {
    handle: Arc<PolicyHandle>,
    dir: PathBuf,
    issuers: Vec<String>,
}

impl PolicyReloader {
    /// Reloads `dir` (whose policies may name `issuers`) into `handle`.
    pub fn new(handle: Arc<PolicyHandle>, dir: PathBuf, issuers: Vec<String>) -> Self {
        Self {
            handle,
            dir,
            issuers,
        }
    }

    /// Loads the directory; on problems the current set stays in force and
    /// the problems are returned.
    pub fn reload(&self) -> Result<usize, Vec<String>> {
        match load_policies(&self.dir, &self.issuers) {
            Ok(set) => {
                let n = set.len();
                self.handle.replace(set);
                tracing::info!(workloads = n, "policy set reloaded");
                Ok(n)
            }
            Err(problems) => {
                self.handle.reload_failed();
                for p in &problems {
                    tracing::error!(problem = %p, "policy reload refused; the last good set stays in force");
                }
                Err(problems)
            }
        }
    }

    /// Reloads on every SIGHUP, for as long as the task runs; `None` where
    /// the signal cannot be listened for.
    #[cfg(unix)]
    pub fn on_sighup(self) -> Option<tokio::task::JoinHandle<()>> {
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
                let _ = self.reload();
            }
        }))
    }

    /// Reloads on every SIGHUP: not on this platform.
    #[cfg(not(unix))]
    pub fn on_sighup(self) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}
