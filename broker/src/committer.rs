//! Group commit: every request's audit event (and its lease, token or
//! revocation) is committed by one writer task that batches whatever
//! requests are waiting into one transaction and one fsync.
//!
//! A caller's reply is released only after the batch holding its unit has
//! committed. If the store cannot commit within the configured bound the
//! caller gets [`CommitError`], and the caller must answer 503 and hand
//! nothing out: no audit row, no secret.
//!
//! When a batch fails with a definite error (the transaction rolled back),
//! its units are retried one by one, so one bad unit cannot take the others
//! down with it. A batch that timed out is never retried: its transaction
//! may have committed, and a retry could record an event twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leash_domain::{CommitUnit, Committed};
use leash_store::{Store, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Why a unit was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store did not commit in time, failed, or the writer is gone.
    #[error("audit log unavailable")]
    Unavailable(#[source] Option<StoreError>),
}

struct Job {
    unit: CommitUnit,
    reply: oneshot::Sender<Result<Committed, CommitError>>,
}

/// Counters the operator can read.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Units committed.
    pub units: AtomicU64,
    /// Units that failed to commit.
    pub failures: AtomicU64,
}

/// A handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    timeout: Duration,
    stats: Arc<CommitStats>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the writer. `timeout` bounds both the wait for a place in the
    /// queue and the wait for the commit.
    ///
    /// `writers` batches may be in flight at once: each writer takes what
    /// is waiting when it is free. The store orders their audit rows.
    pub fn start(
        store: Arc<dyn Store>,
        max_batch: usize,
        writers: usize,
        timeout: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(8).max(64));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(CommitStats::default());
        for _ in 0..writers.max(1) {
            tokio::spawn(run(
                store.clone(),
                rx.clone(),
                max_batch.max(1),
                timeout,
                stats.clone(),
            ));
        }
        Self { tx, timeout, stats }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Commits one unit durably, waiting at most the configured timeout.
    pub async fn commit(&self, unit: CommitUnit) -> Result<Committed, CommitError> {
        let (reply, rx) = oneshot::channel();
        let job = Job { unit, reply };
        let wait = async {
            self.tx
                .send(job)
                .await
                .map_err(|_| CommitError::Unavailable(None))?;
            rx.await.map_err(|_| CommitError::Unavailable(None))?
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(CommitError::Unavailable(Some(StoreError::Unavailable(
                "audit commit timed out".into(),
            )))),
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    timeout: Duration,
    stats: Arc<CommitStats>,
) {
    let mut units: Vec<CommitUnit> = Vec::with_capacity(max_batch);
    let mut replies: Vec<oneshot::Sender<Result<Committed, CommitError>>> =
        Vec::with_capacity(max_batch);
    loop {
        {
            // One writer at a time takes a batch: the first waiting unit
            // and whatever else is already queued behind it.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut next = Some(first);
            while let Some(j) = next.take() {
                units.push(j.unit);
                replies.push(j.reply);
                if units.len() < max_batch {
                    next = rx.try_recv().ok();
                }
            }
        }
        // Callers that gave up no longer wait; their units are still
        // committed, because the request may already have been recorded as
        // seen by the caller's side (a timed-out reply is a 503 either way).
        match tokio::time::timeout(timeout, store.commit(&units)).await {
            Ok(Ok(done)) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.units.fetch_add(done.len() as u64, Ordering::Relaxed);
                for (reply, c) in replies.drain(..).zip(done) {
                    let _ = reply.send(Ok(c));
                }
            }
            Ok(Err(e)) if units.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, batch = units.len(), "audit batch rolled back; committing its units one by one");
                for (unit, reply) in units.iter().zip(replies.drain(..)) {
                    let r = match tokio::time::timeout(
                        timeout,
                        store.commit(std::slice::from_ref(unit)),
                    )
                    .await
                    {
                        Ok(Ok(mut d)) if d.len() == 1 => {
                            stats.batches.fetch_add(1, Ordering::Relaxed);
                            stats.units.fetch_add(1, Ordering::Relaxed);
                            d.pop().ok_or(CommitError::Unavailable(None))
                        }
                        Ok(Ok(_)) => Err(CommitError::Unavailable(None)),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "audit commit failed");
                            Err(CommitError::Unavailable(Some(e)))
                        }
                        Err(_) => Err(CommitError::Unavailable(None)),
                    };
                    if r.is_err() {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(r);
                }
            }
            outcome => {
                let n = units.len() as u64;
                stats.failures.fetch_add(n, Ordering::Relaxed);
                match outcome {
                    Ok(Err(e)) => tracing::error!(error = %e, batch = n, "audit commit failed"),
                    _ => tracing::error!(batch = n, "audit commit timed out"),
                }
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(CommitError::Unavailable(None)));
                }
            }
        }
        units.clear();
        replies.clear();
    }
}
