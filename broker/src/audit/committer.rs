//! Group commit: every request's audit event (and its lease, token or
//! revocation) is committed by a writer task that batches whatever
//! requests are waiting into one transaction, and released by a flusher
//! task once the store says the batch is durable.
//!
//! A caller's reply is released only after the batch holding its unit has
//! committed and a [`Store::flush`] begun after that commit has returned.
//! The stores Leash ships make every commit durable before it returns
//! (PostgreSQL: `synchronous_commit = on` on every connection; SQLite:
//! `synchronous = FULL`), so their flush returns at once; a store that
//! defers durability to its flush is still answered correctly, and the
//! writers go on committing while its flush runs. If the store cannot
//! commit (or flush) within the configured bound the caller gets
//! [`CommitError`], and the caller must answer 503 and hand nothing out: no
//! audit row, no secret.
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

type Reply = oneshot::Sender<Result<Committed, CommitError>>;

struct Job {
    unit: CommitUnit,
    reply: Reply,
}

/// A batch committed but not yet known to be durable: its callers wait.
struct Unflushed {
    replies: Vec<Reply>,
    done: Vec<Committed>,
}

/// Counters the operator can read.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Transactions committed and flushed.
    pub batches: AtomicU64,
    /// Store flushes that released batches (one covers every batch
    /// committed while the previous one ran; with the shipped stores, whose
    /// commits are durable when they return, a flush waits for nothing).
    pub flushes: AtomicU64,
    /// Units committed and flushed.
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
    /// Starts the writers and the flusher. `timeout` bounds both the wait
    /// for a place in the queue and the wait for the durable commit.
    ///
    /// `writers` batches may be in flight at once: each writer takes what
    /// is waiting when it is free. The store orders their audit rows.
    pub fn start(
        store: Arc<dyn Store>,
        max_batch: usize,
        writers: usize,
        timeout: Duration,
    ) -> Self {
        let writers = writers.max(1);
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(8).max(64));
        let rx = Arc::new(Mutex::new(rx));
        // Bounded: when flushes stall, the writers stop taking batches and
        // the callers time out, rather than batches piling up in memory.
        let (flush_tx, flush_rx) = mpsc::channel(writers * 2);
        let stats = Arc::new(CommitStats::default());
        tokio::spawn(flusher(store.clone(), flush_rx, timeout, stats.clone()));
        for _ in 0..writers {
            tokio::spawn(run(
                store.clone(),
                rx.clone(),
                flush_tx.clone(),
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
    flush: mpsc::Sender<Unflushed>,
    max_batch: usize,
    timeout: Duration,
    stats: Arc<CommitStats>,
) {
    let mut units: Vec<CommitUnit> = Vec::with_capacity(max_batch);
    let mut replies: Vec<Reply> = Vec::with_capacity(max_batch);
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
        match tokio::time::timeout(timeout, store.commit_unflushed(&units)).await {
            Ok(Ok(done)) => {
                let batch = Unflushed {
                    replies: std::mem::replace(&mut replies, Vec::with_capacity(max_batch)),
                    done,
                };
                // If the flusher is gone, the replies drop with the batch
                // and their callers get `Unavailable`.
                let _ = flush.send(batch).await;
            }
            Ok(Err(e)) if units.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, batch = units.len(), "audit batch rolled back; committing its units one by one");
                for (unit, reply) in units.iter().zip(replies.drain(..)) {
                    // Rare: each one is flushed on its own.
                    let r = match tokio::time::timeout(
                        timeout,
                        store.commit(std::slice::from_ref(unit)),
                    )
                    .await
                    {
                        Ok(Ok(mut d)) if d.len() == 1 => {
                            stats.batches.fetch_add(1, Ordering::Relaxed);
                            stats.flushes.fetch_add(1, Ordering::Relaxed);
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

/// Releases committed batches once they are durable: takes every batch
/// committed so far, flushes once, then answers all of their callers. A
/// batch committed during a flush waits for the next one, which begins
/// after its commit returned. (Two flushes at once, so that such a batch
/// need not wait for the running one to end, measured no faster.) If a
/// flush fails, its callers get `Unavailable`: their rows may well be on
/// disk, but nothing is handed out on a commit not known to be durable.
async fn flusher(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Unflushed>,
    timeout: Duration,
    stats: Arc<CommitStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut ready = vec![first];
        while let Ok(more) = rx.try_recv() {
            ready.push(more);
        }
        let flushed = match tokio::time::timeout(timeout, store.flush()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "audit flush failed");
                false
            }
            Err(_) => {
                tracing::error!("audit flush timed out");
                false
            }
        };
        release(ready, flushed, &stats);
    }
}

/// Answers the callers of flushed (or not) batches.
fn release(ready: Vec<Unflushed>, flushed: bool, stats: &CommitStats) {
    if flushed {
        stats.flushes.fetch_add(1, Ordering::Relaxed);
    }
    for batch in ready {
        let n = batch.done.len() as u64;
        if flushed {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.units.fetch_add(n, Ordering::Relaxed);
            for (reply, c) in batch.replies.into_iter().zip(batch.done) {
                let _ = reply.send(Ok(c));
            }
        } else {
            stats.failures.fetch_add(n, Ordering::Relaxed);
            for reply in batch.replies {
                let _ = reply.send(Err(CommitError::Unavailable(None)));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixtures are stamped with the real time
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use leash_domain::audit::{AuditEvent, Decision, StoredEvent};
    use leash_domain::crypto::{Digest, KeyedHasher};
    use leash_domain::detection::{Quarantine, Signal, SignalStats, Subject};
    use leash_domain::records::{LeaseRecord, TokenRecord};
    use leash_store::{
        AlertAttempt, AuditLog, ClaimedAlert, DetectionRecord, Detections, KvStore, KvVersion,
        KvVersionMeta, Leases, PoolOptions, SqliteStore, StoreStats,
    };
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// A real (SQLite) store whose flushes wait for a permit, so a test
    /// can hold a batch between its commit and its flush.
    struct GatedFlush {
        inner: SqliteStore,
        gate: Semaphore,
        entered: AtomicUsize,
        flushes: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Store for GatedFlush {
        fn kind(&self) -> &'static str {
            self.inner.kind()
        }
        async fn migrate(&self) -> Result<(), StoreError> {
            self.inner.migrate().await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
        async fn commit_unflushed(&self, u: &[CommitUnit]) -> Result<Vec<Committed>, StoreError> {
            self.inner.commit_unflushed(u).await
        }
        async fn flush(&self) -> Result<(), StoreError> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            // Each permit lets one flush through.
            self.gate
                .acquire()
                .await
                .map_err(|_| StoreError::Unavailable("flush gate closed".into()))?
                .forget();
            self.flushes.fetch_add(1, Ordering::SeqCst);
            self.inner.flush().await
        }
        async fn subscribe(&self) -> Result<Option<leash_store::RevocationFeed>, StoreError> {
            self.inner.subscribe().await
        }
        async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
            self.inner.stats(now).await
        }
    }

    #[async_trait::async_trait]
    impl Leases for GatedFlush {
        async fn token(&self, h: &Digest) -> Result<Option<TokenRecord>, StoreError> {
            self.inner.token(h).await
        }
        async fn lease(&self, h: &Digest) -> Result<Option<LeaseRecord>, StoreError> {
            self.inner.lease(h).await
        }
        async fn reap(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
            self.inner.reap(before).await
        }
    }

    #[async_trait::async_trait]
    impl AuditLog for GatedFlush {
        async fn audit_events(&self, a: i64, l: u32) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.audit_events(a, l).await
        }
        async fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError> {
            self.inner.audit_head().await
        }
    }

    #[async_trait::async_trait]
    impl KvStore for GatedFlush {
        async fn kv_put(
            &self,
            m: &str,
            p: &str,
            s: &[u8],
            now: DateTime<Utc>,
        ) -> Result<u64, StoreError> {
            self.inner.kv_put(m, p, s, now).await
        }
        async fn kv_get(
            &self,
            m: &str,
            p: &str,
            v: Option<u64>,
        ) -> Result<Option<KvVersion>, StoreError> {
            self.inner.kv_get(m, p, v).await
        }
        async fn kv_versions(&self, m: &str, p: &str) -> Result<Vec<KvVersionMeta>, StoreError> {
            self.inner.kv_versions(m, p).await
        }
        async fn kv_list(&self, m: &str, f: &str) -> Result<Vec<String>, StoreError> {
            self.inner.kv_list(m, f).await
        }
    }

    #[async_trait::async_trait]
    impl Detections for GatedFlush {
        async fn signal_stats(
            &self,
            s: &Subject,
            t: DateTime<Utc>,
        ) -> Result<SignalStats, StoreError> {
            self.inner.signal_stats(s, t).await
        }
        async fn signals(
            &self,
            s: &Subject,
            t: DateTime<Utc>,
            l: u32,
        ) -> Result<Vec<Signal>, StoreError> {
            self.inner.signals(s, t, l).await
        }
        async fn active_quarantine(
            &self,
            s: &Subject,
            t: DateTime<Utc>,
        ) -> Result<Option<Quarantine>, StoreError> {
            self.inner.active_quarantine(s, t).await
        }
        async fn quarantines(&self, s: &Subject) -> Result<Vec<Quarantine>, StoreError> {
            self.inner.quarantines(s).await
        }
        async fn detections(
            &self,
            a: Option<i64>,
            l: u32,
        ) -> Result<Vec<DetectionRecord>, StoreError> {
            self.inner.detections(a, l).await
        }
        async fn detection(&self, id: &str) -> Result<Option<DetectionRecord>, StoreError> {
            self.inner.detection(id).await
        }
        async fn detections_of(
            &self,
            s: &Subject,
            l: u32,
        ) -> Result<Vec<DetectionRecord>, StoreError> {
            self.inner.detections_of(s, l).await
        }
        async fn claim_alerts(
            &self,
            t: DateTime<Utc>,
            c: std::time::Duration,
            l: u32,
        ) -> Result<Vec<ClaimedAlert>, StoreError> {
            self.inner.claim_alerts(t, c, l).await
        }
        async fn record_alert_attempt(
            &self,
            id: &str,
            a: &AlertAttempt,
        ) -> Result<bool, StoreError> {
            self.inner.record_alert_attempt(id, a).await
        }
        async fn reap_signals(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
            self.inner.reap_signals(before).await
        }
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            request_id: format!("req-{i}"),
            time: Utc::now(),
            identity: Some("acc".into()),
            workload: Some("w".into()),
            peer: "127.0.0.1".into(),
            operation: "kv.read".into(),
            method: "GET".into(),
            path: "secret/a".into(),
            decision: Decision::Allowed,
            status: 200,
            reason: "ok".into(),
            lease_ref: None,
            attestation: serde_json::json!({}),
        }
    }

    async fn gated(dir: &tempfile::TempDir) -> Arc<GatedFlush> {
        let hasher = KeyedHasher::new(&[7u8; 32]).unwrap();
        let inner = SqliteStore::open(&dir.path().join("t.db"), &PoolOptions::default(), hasher)
            .await
            .unwrap();
        inner.migrate().await.unwrap();
        Arc::new(GatedFlush {
            inner,
            gate: Semaphore::new(0),
            entered: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn no_reply_before_the_flush_after_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = gated(&dir).await;
        let c = Committer::start(store.clone(), 64, 2, Duration::from_secs(10));

        // The first unit commits; its flush is held at the gate.
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.commit(CommitUnit::event(event(0))).await }
        });
        wait_until(|| store.entered.load(Ordering::SeqCst) == 1).await;
        // More units commit while that flush waits: the writers do not.
        // (At most three batches: the queue to the flusher holds four.)
        let rest: Vec<_> = (1..=3)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.commit(CommitUnit::event(event(i))).await })
            })
            .collect();
        for _ in 0..400 {
            if store.audit_head().await.unwrap().map(|h| h.0) == Some(4) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(store.audit_head().await.unwrap().map(|h| h.0), Some(4));
        // Committed, every one of them, and not one caller answered.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished());
        assert!(rest.iter().all(|h| !h.is_finished()));
        assert_eq!(c.stats().units.load(Ordering::SeqCst), 0);

        // The held flush began before the others committed: it releases
        // the first unit only. The next flush releases the others.
        store.gate.add_permits(1);
        let r = first.await.unwrap().unwrap();
        assert_eq!(r.seq, 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rest.iter().all(|h| !h.is_finished()));
        store.gate.add_permits(10);
        let mut seqs = Vec::new();
        for h in rest {
            seqs.push(h.await.unwrap().unwrap().seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, vec![2, 3, 4]);
        let flushes = store.flushes.load(Ordering::SeqCst);
        assert!((2..=4).contains(&flushes), "{flushes} flushes");
        assert_eq!(c.stats().flushes.load(Ordering::SeqCst) as usize, flushes);
        assert_eq!(c.stats().units.load(Ordering::SeqCst), 4);
    }

    async fn wait_until(f: impl Fn() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("condition not reached in 5 s");
    }

    #[tokio::test]
    async fn a_failed_flush_answers_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let store = gated(&dir).await;
        let c = Committer::start(store.clone(), 64, 1, Duration::from_secs(10));
        let pending = tokio::spawn({
            let c = c.clone();
            async move { c.commit(CommitUnit::event(event(0))).await }
        });
        wait_until(|| store.entered.load(Ordering::SeqCst) == 1).await;
        // The flush fails: the row is in the table, but nothing is told.
        store.gate.close();
        assert!(matches!(
            pending.await.unwrap(),
            Err(CommitError::Unavailable(_))
        ));
        assert_eq!(c.stats().failures.load(Ordering::SeqCst), 1);
        assert_eq!(c.stats().units.load(Ordering::SeqCst), 0);
    }
}
