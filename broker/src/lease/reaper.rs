//! The reaper: deletes tokens and leases that expired or were revoked
//! longer ago than `keep_expired_for`, on an interval, in small batches.
//!
//! Must never happen: a live token or lease deleted (the store's statements
//! select only rows dead before the cut-off); a failure that stops the
//! reaper for good (it logs and tries again next time).

use std::sync::Arc;
use std::time::Duration;

use leash_domain::Clock;
use leash_store::Store;

/// Starts the reaper: every `every` (at least 100 ms), deletes what died
/// before `now - keep`.
pub fn spawn_reaper(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
    keep: Duration,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_millis(100));
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::hours(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match store.reap(clock.now() - keep).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "reaped expired leases and tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lease reaper failed; will retry"),
            }
        }
    })
}
