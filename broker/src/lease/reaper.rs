//! The reaper: deletes tokens and leases that expired or were revoked
//! longer ago than `keep_expired_for`, on an interval, in small batches,
//! and detection signals older than any detector's window can reach.
//!
//! Must never happen: a live token or lease deleted (the store's statements
//! select only rows dead before the cut-off); a signal deleted while a
//! window may still count it; a failure that stops the reaper for good (it
//! logs and tries again next time).

use std::sync::Arc;
use std::time::Duration;

use leash_domain::Clock;
use leash_store::Store;

/// How long a detection signal is kept: past the longest window a policy
/// may declare (`[detection]` windows are at most 24 h).
const KEEP_SIGNALS: chrono::Duration = chrono::Duration::hours(25);

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
            let now = clock.now();
            match store.reap(now - keep).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "reaped expired leases and tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lease reaper failed; will retry"),
            }
            match store.reap_signals(now - KEEP_SIGNALS).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "reaped old detection signals"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "signal reaper failed; will retry"),
            }
        }
    })
}
