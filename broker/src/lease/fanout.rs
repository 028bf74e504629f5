//! Revocation fan-out to this replica: the session cache — token records
//! the replica has read recently, so that a request does not read its token
//! from the database every time — and the task that evicts from it what any
//! replica revokes ([`follow_revocations`]).
//!
//! Owns: which cached record may be trusted, and for how long.
//! Must never happen: a cached record that lets through a token the
//! database says is revoked for longer than `ttl`; a record cached while the
//! replica cannot hear revocations (then every request reads the database).
//!
//! The cache is only ever trusted to *allow*. A record that is revoked or
//! expired by the cache's copy is re-read from the database (a renewal on
//! another replica may have extended it). Correctness rests on three
//! things, each enough for the bound it gives:
//! - the replica that revokes evicts the token before it replies;
//! - every other replica evicts it when PostgreSQL delivers the
//!   announcement committed with the revocation (milliseconds), and while
//!   the announcement connection is down nothing is cached at all;
//! - an entry is never used after `ttl` (default 1 s), whatever happened to
//!   the announcements.
//!
//! And a lease is only ever inserted while the database says its token is
//! live, so no secret is handed out on a revoked token even within that
//! window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leash_domain::crypto::Digest;
use leash_domain::detection::Subject;
use leash_domain::records::{Mutation, TokenRecord, TokenSelector};
use leash_store::{Revocation, Store};

struct Entry {
    record: Arc<TokenRecord>,
    cached_at: Instant,
}

/// Counters the operator can read.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Requests answered from the cache.
    pub hits: AtomicU64,
    /// Requests that read the database.
    pub misses: AtomicU64,
    /// Tokens evicted by a revocation.
    pub evictions: AtomicU64,
}

/// Recently read token records, keyed by token digest.
pub struct SessionCache {
    entries: Mutex<HashMap<Digest, Entry>>,
    ttl: Duration,
    capacity: usize,
    /// Whether revocations are heard (the feed is subscribed, or there is
    /// no other writer). Nothing is cached or trusted while false.
    listening: AtomicBool,
    /// Bumped by every eviction: a record read from the database before an
    /// eviction is not cached after it (it may be the revoked one).
    epoch: AtomicU64,
    stats: SessionStats,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache keeping at most `capacity` records, each for at most `ttl`.
    /// `ttl` zero or `capacity` zero disables it. It trusts nothing until
    /// [`SessionCache::set_listening`] says revocations are heard.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity,
            listening: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            stats: SessionStats::default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0 && self.listening.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Entry>> {
        // A panic while holding the lock cannot leave the map half-changed
        // in a way that matters: every operation is one map call.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Records currently cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether revocations are heard (and so whether the cache is in use).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// The cached record of `token`, if it may be trusted to allow at
    /// `now`: cached less than `ttl` ago and live by its own fields.
    pub fn get(&self, token: &Digest, now: DateTime<Utc>) -> Option<Arc<TokenRecord>> {
        if !self.enabled() {
            return None;
        }
        let map = self.lock();
        let e = map.get(token)?;
        (e.cached_at.elapsed() < self.ttl && e.record.is_live(now)).then(|| e.record.clone())
    }

    /// The epoch to pass to [`SessionCache::put`]; read it before reading
    /// the database.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a record read from the database after `epoch` was taken,
    /// unless an eviction happened since (the record may predate it).
    pub fn put(&self, record: Arc<TokenRecord>, epoch: u64, now: DateTime<Utc>) {
        if !self.enabled() || !record.is_live(now) {
            return;
        }
        let mut map = self.lock();
        // Checked under the lock evictions take, so an eviction either
        // happened before (and the epoch shows it) or comes after this.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if map.len() >= self.capacity && !map.contains_key(&record.hash) {
            let ttl = self.ttl;
            map.retain(|_, e| e.cached_at.elapsed() < ttl);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(
            record.hash,
            Entry {
                record,
                cached_at: Instant::now(),
            },
        );
    }

    /// Forgets `token`.
    pub fn evict(&self, token: &Digest) {
        self.evicting(|map| {
            map.remove(token);
        });
    }

    /// Forgets every token of `workload`.
    pub fn evict_workload(&self, workload: &str) {
        self.evicting(|map| map.retain(|_, e| e.record.workload != workload));
    }

    /// Forgets every token of `subject`.
    pub fn evict_subject(&self, subject: &Subject) {
        self.evicting(|map| map.retain(|_, e| !subject.matches(&e.record)));
    }

    /// Forgets every token of this issuer and subject, in any workload.
    pub fn evict_attestation(&self, issuer: &str, subject: &str) {
        self.evicting(|map| {
            map.retain(|_, e| !(e.record.issuer == issuer && e.record.subject == subject))
        });
    }

    /// Forgets what `m` revokes, if it revokes tokens (see
    /// [`revokes_tokens`]).
    pub fn evict_for(&self, m: &Mutation) {
        match m {
            Mutation::RevokeToken { token, .. } => self.evict(token),
            Mutation::RevokeTokens {
                selector: TokenSelector::Workload(w),
                ..
            } => self.evict_workload(w),
            Mutation::RevokeTokens {
                selector: TokenSelector::Accessor(a),
                ..
            } => self.evicting(|map| map.retain(|_, e| e.record.accessor != *a)),
            Mutation::RevokeTokens {
                selector: TokenSelector::Subject(s),
                ..
            } => self.evict_subject(s),
            Mutation::RevokeTokens {
                selector: TokenSelector::Attestation { issuer, subject },
                ..
            } => self.evict_attestation(issuer, subject),
            _ => {}
        }
    }

    /// Runs `forget` on the map under the lock, and bumps the epoch so that
    /// no read that started before is cached after.
    fn evicting(&self, forget: impl FnOnce(&mut HashMap<Digest, Entry>)) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        forget(&mut map);
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.clear();
    }

    /// Says whether revocations are heard. Either way the cache is cleared:
    /// when starting to listen, announcements before now were missed; when
    /// stopping, none will be heard.
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::SeqCst);
        self.clear();
    }

    /// Applies a revocation announcement.
    pub fn apply(&self, r: &Revocation) {
        match r {
            Revocation::Token(d) => self.evict(d),
            Revocation::Workload(w) => self.evict_workload(w),
            Revocation::Subject(s) => self.evict_subject(s),
            Revocation::Attestation { issuer, subject } => self.evict_attestation(issuer, subject),
            Revocation::Unknown => self.clear(),
        }
    }

    /// Counts a hit or a miss.
    pub(crate) fn count(&self, hit: bool) {
        let c = if hit {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether `m` revokes tokens, so that the replica committing it must evict
/// them from its cache before it replies.
pub fn revokes_tokens(m: &Mutation) -> bool {
    matches!(
        m,
        Mutation::RevokeToken { .. } | Mutation::RevokeTokens { .. }
    )
}

/// Keeps `cache` listening to the revocations `store` announces, for as
/// long as the task runs: subscribes, evicts on every announcement, and on
/// a lost subscription stops trusting the cache until it has subscribed
/// again.
pub async fn follow_revocations(store: Arc<dyn Store>, cache: Arc<SessionCache>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.subscribe().await {
            Ok(None) => {
                // No other writer: this process evicts what it revokes.
                cache.set_listening(true);
                return;
            }
            Ok(Some(mut feed)) => {
                cache.set_listening(true);
                tracing::info!("session cache: listening for revocations");
                backoff = Duration::from_millis(100);
                let e = loop {
                    match feed.next().await {
                        Ok(r) => cache.apply(&r),
                        Err(e) => break e,
                    }
                };
                cache.set_listening(false);
                tracing::warn!(error = %e, "session cache off: revocation feed lost; resubscribing");
            }
            Err(e) => {
                cache.set_listening(false);
                tracing::warn!(error = %e, "session cache off: cannot subscribe to revocations");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixtures are stamped with the real time
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(n: u8, now: DateTime<Utc>) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            hash: Digest([n; 32]),
            accessor: format!("acc{n}"),
            workload: "w".into(),
            auth_path: "auth/jwt/login".into(),
            issuer: "i".into(),
            subject: "s".into(),
            source: "10.0.0.1".into(),
            meta: BTreeMap::new(),
            created_at: now,
            expires_at: now + chrono::Duration::seconds(60),
            max_expires_at: now + chrono::Duration::seconds(600),
            ttl_secs: 60,
            renewable: true,
            revoked_at: None,
        })
    }

    fn cache(ttl_ms: u64, cap: usize) -> SessionCache {
        let c = SessionCache::new(Duration::from_millis(ttl_ms), cap);
        c.set_listening(true);
        c
    }

    #[test]
    fn nothing_is_cached_or_trusted_while_not_listening() {
        let now = Utc::now();
        let c = SessionCache::new(Duration::from_secs(10), 10);
        let r = record(1, now);
        c.put(r.clone(), c.epoch(), now);
        assert!(c.get(&r.hash, now).is_none());
        c.set_listening(true);
        c.put(r.clone(), c.epoch(), now);
        assert!(c.get(&r.hash, now).is_some());
        c.set_listening(false);
        assert!(c.get(&r.hash, now).is_none());
        c.set_listening(true);
        assert!(c.get(&r.hash, now).is_none(), "cleared on resubscribe");
    }

    #[test]
    fn a_read_that_started_before_an_eviction_is_not_cached() {
        let now = Utc::now();
        let c = cache(10_000, 10);
        let r = record(1, now);
        let epoch = c.epoch();
        // The revocation is announced while the database read is in flight.
        c.apply(&Revocation::Token(r.hash));
        c.put(r.clone(), epoch, now);
        assert!(c.get(&r.hash, now).is_none());
        c.put(r.clone(), c.epoch(), now);
        assert!(c.get(&r.hash, now).is_some());
        c.apply(&Revocation::Token(r.hash));
        assert!(c.get(&r.hash, now).is_none());
    }

    #[test]
    fn entries_expire_after_the_ttl_and_dead_records_are_not_trusted() {
        let now = Utc::now();
        let c = cache(50, 10);
        let r = record(1, now);
        c.put(r.clone(), c.epoch(), now);
        assert!(c.get(&r.hash, now).is_some());
        // By its own expiry, the cached copy is dead: re-read instead.
        assert!(
            c.get(&r.hash, now + chrono::Duration::seconds(61))
                .is_none()
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get(&r.hash, now).is_none());
        let mut revoked = (*record(2, now)).clone();
        revoked.revoked_at = Some(now);
        let revoked = Arc::new(revoked);
        c.put(revoked.clone(), c.epoch(), now);
        assert!(c.get(&revoked.hash, now).is_none());
    }

    #[test]
    fn size_is_bounded_and_unknown_announcements_clear() {
        let now = Utc::now();
        let c = cache(10_000, 3);
        for n in 0..10 {
            c.put(record(n, now), c.epoch(), now);
            assert!(c.len() <= 3);
        }
        c.apply(&Revocation::Unknown);
        assert!(c.is_empty());
        let off = SessionCache::new(Duration::ZERO, 10);
        off.set_listening(true);
        off.put(record(1, now), off.epoch(), now);
        assert!(off.is_empty());
    }
}
