//! The guard in front of an external secret store: a short, bounded cache,
//! one upstream fetch for many concurrent misses, retries with jittered
//! backoff for idempotent reads, and a circuit breaker.
//!
//! The cache only spares the store: every read through Leash is still
//! decided, leased and audited by the broker. Entries are bounded in number
//! and bytes, expire after the mount's TTL (0 disables caching), and their
//! values are zeroised when evicted (`SecretData` zeroises on drop).
//!
//! Writes through Leash go through the breaker but are never retried (a
//! write is not idempotent: a timed-out one may have landed), and every
//! write or delete attempt drops the cached values of its path, whatever
//! its outcome. A patch reads its base from the store, never the cache.
//!
//! Must never happen: a cached value served for a grant that does not name
//! exactly that path; a failure cached (only successes are); an open
//! breaker turned into anything but `Unavailable` (fail closed); a write
//! retried.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use leash_domain::{Mutation, WriteRule};
use leash_policy::{Capability, Grant};
use serde::Serialize;

use crate::{
    BackendError, SecretBackend, SecretData, SecretVersion, VersionInfo, WRITE_CAPS, WriteOp,
    WritePath, Written, granted_path,
};

/// How a guard behaves.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// How long a value stays cached; zero disables the cache.
    pub cache_ttl: Duration,
    /// Most cached entries.
    pub max_entries: usize,
    /// Most cached bytes of secret data.
    pub max_bytes: usize,
    /// Extra attempts for a read that failed with `Unavailable`.
    pub retries: u32,
    /// First backoff; doubled each retry, with jitter.
    pub backoff: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses before letting one call through.
    pub breaker_cooldown: Duration,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(5),
            max_entries: 1024,
            max_bytes: 16 * 1024 * 1024,
            retries: 2,
            backoff: Duration::from_millis(50),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

/// What the operator sees of a guarded mount.
#[derive(Debug, Clone, Serialize)]
pub struct GuardStats {
    /// `up`, `down` (breaker open) or `probing` (half-open).
    pub state: &'static str,
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads that went upstream.
    pub cache_misses: u64,
    /// Calls made to the store, retries included.
    pub upstream_calls: u64,
    /// Calls that failed.
    pub upstream_failures: u64,
    /// Latency of the last successful call, in milliseconds.
    pub last_latency_ms: u64,
    /// Entries in the cache.
    pub cached_entries: usize,
}

type Key = (String, Option<u64>);

struct Entry {
    version: SecretVersion,
    bytes: usize,
    at: Instant,
}

#[derive(Default)]
struct Cache {
    map: HashMap<Key, Entry>,
    order: VecDeque<Key>,
    bytes: usize,
}

impl Cache {
    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.bytes;
            // Dropping the entry zeroises its value.
        }
    }

    fn evict_to(&mut self, max_entries: usize, max_bytes: usize) {
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
    }
}

enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// A guarded backend.
pub struct Guarded {
    inner: Arc<dyn SecretBackend>,
    settings: GuardSettings,
    cache: Mutex<Cache>,
    inflight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    breaker: Mutex<Breaker>,
    hits: AtomicU64,
    misses: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    last_latency_ms: AtomicU64,
    /// Bumped by every invalidation: a read that started before a write
    /// does not cache what it fetched.
    epoch: AtomicU64,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("mount", &self.inner.mount())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A jittered delay in `[d/2, d]`, from the OS random source.
fn jittered(d: Duration) -> Duration {
    let r: [u8; 2] = leash_domain::crypto::random_bytes().unwrap_or([0, 0]);
    let frac = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
    d.mul_f64(0.5 + frac / 2.0)
}

impl Guarded {
    /// Guards `inner`.
    pub fn new(inner: Arc<dyn SecretBackend>, settings: GuardSettings) -> Self {
        Self {
            inner,
            settings,
            cache: Mutex::new(Cache::default()),
            inflight: Mutex::new(HashMap::new()),
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_latency_ms: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    /// The counters and state.
    pub fn stats(&self) -> GuardStats {
        let state = match *lock(&self.breaker) {
            Breaker::Closed { .. } => "up",
            Breaker::Open { until } if until > Instant::now() => "down",
            Breaker::Open { .. } | Breaker::HalfOpen => "probing",
        };
        GuardStats {
            state,
            cache_hits: self.hits.load(Ordering::Relaxed),
            cache_misses: self.misses.load(Ordering::Relaxed),
            upstream_calls: self.calls.load(Ordering::Relaxed),
            upstream_failures: self.failures.load(Ordering::Relaxed),
            last_latency_ms: self.last_latency_ms.load(Ordering::Relaxed),
            cached_entries: lock(&self.cache).map.len(),
        }
    }

    /// Drops every cached value of `path` (after a write through Leash).
    pub fn invalidate(&self, path: &str) {
        let mut c = lock(&self.cache);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let keys: Vec<Key> = c.map.keys().filter(|(p, _)| p == path).cloned().collect();
        for k in &keys {
            c.remove(k);
        }
        c.order.retain(|k| k.0 != path);
    }

    fn admit(&self) -> Result<(), BackendError> {
        let mut b = lock(&self.breaker);
        match *b {
            Breaker::Closed { .. } | Breaker::HalfOpen => Ok(()),
            Breaker::Open { until } if Instant::now() >= until => {
                *b = Breaker::HalfOpen;
                Ok(())
            }
            Breaker::Open { .. } => Err(BackendError::Unavailable("circuit breaker open".into())),
        }
    }

    fn record(&self, ok: bool, started: Instant) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut b = lock(&self.breaker);
        if ok {
            self.last_latency_ms.store(
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            *b = Breaker::Closed { failures: 0 };
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        *b = match *b {
            Breaker::Closed { failures } if failures + 1 < self.settings.breaker_threshold => {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            _ => Breaker::Open {
                until: Instant::now() + self.settings.breaker_cooldown,
            },
        };
    }

    /// Calls the store through the breaker, retrying `Unavailable`.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        self.call_with(self.settings.retries, f).await
    }

    /// Calls the store through the breaker, once (writes).
    async fn call_once<T, Fut>(&self, f: Fut) -> Result<T, BackendError>
    where
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        let mut f = Some(f);
        self.call_with(0, || {
            let next = f.take();
            async move {
                match next {
                    Some(fut) => fut.await,
                    None => Err(BackendError::Upstream("a write is never retried".into())),
                }
            }
        })
        .await
    }

    async fn call_with<T, F, Fut>(&self, retries: u32, mut f: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        let mut delay = self.settings.backoff;
        let mut attempt = 0;
        loop {
            self.admit()?;
            let started = Instant::now();
            let r = f().await;
            let unavailable = matches!(r, Err(BackendError::Unavailable(_)));
            self.record(!unavailable, started);
            if !unavailable || attempt >= retries {
                return r;
            }
            attempt += 1;
            tokio::time::sleep(jittered(delay)).await;
            delay = delay.saturating_mul(2);
        }
    }

    fn cached(&self, key: &Key) -> Option<SecretVersion> {
        if self.settings.cache_ttl.is_zero() {
            return None;
        }
        let mut c = lock(&self.cache);
        let fresh = c
            .map
            .get(key)
            .map(|e| e.at.elapsed() < self.settings.cache_ttl)?;
        if !fresh {
            c.remove(key);
            return None;
        }
        c.map.get(key).map(|e| e.version.clone())
    }

    fn store(&self, key: Key, version: &SecretVersion, epoch: u64) {
        if self.settings.cache_ttl.is_zero() {
            return;
        }
        let bytes = version.data.as_ref().map_or(0, |d| d.expose_json().len()) + key.0.len();
        let mut c = lock(&self.cache);
        // Checked under the cache lock, which `invalidate` also holds.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        c.remove(&key);
        c.order.retain(|k| k != &key);
        c.bytes += bytes;
        c.map.insert(
            key.clone(),
            Entry {
                version: version.clone(),
                bytes,
                at: Instant::now(),
            },
        );
        c.order.push_back(key);
        c.evict_to(self.settings.max_entries, self.settings.max_bytes);
    }
}

#[async_trait]
impl SecretBackend for Guarded {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn mount(&self) -> &str {
        self.inner.mount()
    }

    fn kv_version(&self) -> u8 {
        self.inner.kv_version()
    }

    async fn read(
        &self,
        grant: &Grant,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        // The key is the path the grant names: a value is only ever served
        // for exactly the resource that was decided.
        let path = granted_path(
            grant,
            self.inner.mount(),
            &[Capability::Read, Capability::Patch],
        )?;
        if grant.capability() == Capability::Patch {
            // The base of a merge: always the store's current value.
            return self.call(|| self.inner.read(grant, version)).await;
        }
        let key: Key = (path.to_owned(), version);
        if let Some(v) = self.cached(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(v));
        }
        // One fetch for many concurrent misses of the same key.
        let gate = lock(&self.inflight).entry(key.clone()).or_default().clone();
        let _turn = gate.lock().await;
        if let Some(v) = self.cached(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(v));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let r = self.call(|| self.inner.read(grant, version)).await;
        if let Ok(Some(v)) = &r {
            self.store(key.clone(), v, epoch);
        }
        drop(_turn);
        let mut inflight = lock(&self.inflight);
        if Arc::strong_count(&gate) <= 2 {
            inflight.remove(&key);
        }
        r
    }

    async fn metadata(&self, grant: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        self.call(|| self.inner.metadata(grant)).await
    }

    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError> {
        self.call(|| self.inner.list(grant)).await
    }

    fn writes(&self, op: WriteOp) -> Result<WritePath, BackendError> {
        self.inner.writes(op)
    }

    async fn write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let path = granted_path(grant, self.inner.mount(), WRITE_CAPS)?;
        let r = self
            .call_once(self.inner.write(grant, data, rule, cas))
            .await;
        // Whatever happened (a failed write may still have landed), the
        // next read goes to the store.
        self.invalidate(path);
        r
    }

    async fn delete(&self, grant: &Grant) -> Result<(), BackendError> {
        let path = granted_path(grant, self.inner.mount(), &[Capability::Delete])?;
        let r = self.call_once(self.inner.delete(grant)).await;
        self.invalidate(path);
        r
    }

    async fn prepare_write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Mutation, BackendError> {
        let m = self
            .inner
            .prepare_write(grant, data, rule, cas, now)
            .await?;
        if let Ok(p) = granted_path(grant, self.inner.mount(), WRITE_CAPS) {
            self.invalidate(p);
        }
        Ok(m)
    }

    fn prepare_delete(
        &self,
        grant: &Grant,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Mutation, BackendError> {
        let m = self.inner.prepare_delete(grant, now)?;
        if let Ok(p) = granted_path(grant, self.inner.mount(), &[Capability::Delete]) {
            self.invalidate(p);
        }
        Ok(m)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixtures are stamped with the real time
mod tests {
    use super::*;
    use leash_policy::{canonicalize, unchecked_grant_for_tests};
    use std::sync::atomic::AtomicBool;

    /// An in-memory store that counts calls and can be switched off.
    struct Fake {
        calls: AtomicU64,
        down: AtomicBool,
        delay: Duration,
    }

    #[async_trait]
    impl SecretBackend for Fake {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn mount(&self) -> &str {
            "ext"
        }
        async fn read(
            &self,
            grant: &Grant,
            version: Option<u64>,
        ) -> Result<Option<SecretVersion>, BackendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(BackendError::Unavailable("down".into()));
            }
            let path = granted_path(grant, "ext", &[Capability::Read])?;
            let mut m = serde_json::Map::new();
            m.insert("path".into(), path.into());
            Ok(Some(SecretVersion {
                data: Some(SecretData::from_map(&m)?),
                version: version.unwrap_or(1),
                created_time: chrono::Utc::now(),
                deletion_time: None,
                destroyed: false,
            }))
        }
        async fn metadata(&self, _: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError> {
            Ok(None)
        }
        async fn list(&self, _: &Grant) -> Result<Vec<String>, BackendError> {
            Ok(vec![])
        }
    }

    fn fake(delay_ms: u64) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicU64::new(0),
            down: AtomicBool::new(false),
            delay: Duration::from_millis(delay_ms),
        })
    }

    fn grant(path: &str) -> Grant {
        unchecked_grant_for_tests("w", Capability::Read, canonicalize(path).unwrap())
    }

    fn settings() -> GuardSettings {
        GuardSettings {
            cache_ttl: Duration::from_millis(300),
            backoff: Duration::from_millis(1),
            breaker_cooldown: Duration::from_millis(200),
            ..GuardSettings::default()
        }
    }

    #[tokio::test]
    async fn the_cache_spares_the_store_and_expires() {
        let f = fake(0);
        let g = Guarded::new(f.clone(), settings());
        for _ in 0..5 {
            let v = g.read(&grant("ext/a"), None).await.unwrap().unwrap();
            assert!(v.data.unwrap().expose_json().contains("\"a\""));
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        // Another path or version is another entry: never a value for a
        // resource the grant does not name.
        let v = g.read(&grant("ext/b"), None).await.unwrap().unwrap();
        assert!(v.data.unwrap().expose_json().contains("\"b\""));
        g.read(&grant("ext/a"), Some(2)).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(350)).await;
        g.read(&grant("ext/a"), None).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
        let s = g.stats();
        assert_eq!((s.cache_hits, s.cache_misses, s.state), (4, 4, "up"));
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_upstream_call() {
        let f = fake(50);
        let g = Arc::new(Guarded::new(f.clone(), settings()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(
                    async move { g.read(&grant("ext/hot"), None).await.unwrap().is_some() },
                )
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_disables_the_cache_and_bounds_hold() {
        let f = fake(0);
        let g = Guarded::new(
            f.clone(),
            GuardSettings {
                cache_ttl: Duration::ZERO,
                ..settings()
            },
        );
        g.read(&grant("ext/a"), None).await.unwrap();
        g.read(&grant("ext/a"), None).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        let g = Guarded::new(
            f.clone(),
            GuardSettings {
                max_entries: 3,
                ..settings()
            },
        );
        for p in ["ext/1", "ext/2", "ext/3", "ext/4", "ext/5"] {
            g.read(&grant(p), None).await.unwrap();
        }
        assert_eq!(g.stats().cached_entries, 3);
    }

    #[tokio::test]
    async fn failures_retry_then_open_the_breaker_which_recovers() {
        let f = fake(0);
        let g = Guarded::new(f.clone(), settings());
        f.down.store(true, Ordering::SeqCst);
        // One read: the first try and two retries.
        assert!(matches!(
            g.read(&grant("ext/a"), None).await,
            Err(BackendError::Unavailable(_))
        ));
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
        // Two more failures reach the threshold (5) and open the breaker.
        let _ = g.read(&grant("ext/a"), None).await;
        assert_eq!(g.stats().state, "down");
        let before = f.calls.load(Ordering::SeqCst);
        assert!(matches!(
            g.read(&grant("ext/a"), None).await,
            Err(BackendError::Unavailable(_))
        ));
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            before,
            "an open breaker fails fast"
        );
        // The store comes back; after the cooldown one probe closes it.
        f.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(g.read(&grant("ext/a"), None).await.unwrap().is_some());
        assert_eq!(g.stats().state, "up");
        // Failures are never cached.
        assert!(g.stats().upstream_failures >= 5);
    }
}
