//! [`History`]: the signals an attested subject left recently, on every
//! replica, read from the store once per request and only when a detector
//! asks (that is, on a refusal).
//!
//! Must never happen: an allowed request that reads the store here; a store
//! outage that makes a detector see an empty history and stay silent
//! without a log line.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leash_domain::detection::{Signal, Subject};
use leash_store::Store;
use tokio::sync::OnceCell;

/// At most this many signals are read for one decision: far above any
/// threshold a detector counts to.
const MAX_SIGNALS: u32 = 1000;

/// A subject's recent signals, read on first use.
pub struct History {
    source: Option<(Arc<dyn Store>, Subject)>,
    since: DateTime<Utc>,
    signals: OnceCell<Vec<Signal>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl History {
    /// The signals of `subject` in `store` since `now - window`.
    pub fn of(
        store: Arc<dyn Store>,
        subject: Subject,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Self {
        Self {
            source: Some((store, subject)),
            since: since(now, window),
            signals: OnceCell::new(),
        }
    }

    /// No history (a request with no attested subject, and unit tests).
    pub fn none() -> Self {
        Self::fixed(Vec::new())
    }

    /// Exactly `signals` (unit tests).
    pub fn fixed(signals: Vec<Signal>) -> Self {
        Self {
            source: None,
            since: DateTime::<Utc>::MIN_UTC,
            signals: OnceCell::new_with(Some(signals)),
        }
    }

    /// The signals, newest first (read from the store on the first call).
    /// A store that cannot answer gives none, logged: the request is
    /// refused anyway, and its own commit will fail the same way.
    pub async fn signals(&self) -> &[Signal] {
        self.signals
            .get_or_init(|| async {
                let Some((store, subject)) = &self.source else {
                    return Vec::new();
                };
                match store.signals(subject, self.since, MAX_SIGNALS).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "detection: signals could not be read");
                        Vec::new()
                    }
                }
            })
            .await
    }

    /// The signals at or after `since` of `kinds`, newest first.
    pub async fn recent<'a>(
        &'a self,
        since: DateTime<Utc>,
        kinds: &'a [&str],
    ) -> impl Iterator<Item = &'a Signal> + 'a {
        self.signals()
            .await
            .iter()
            .filter(move |s| s.at >= since && kinds.contains(&s.kind.as_str()))
    }
}

/// `now - window`, saturating.
pub(crate) fn since(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
