//! A bounded map split over independently locked shards, for the per-key
//! state the request path keeps in memory (rate-limit buckets, the volume
//! detector's counts): requests of different keys rarely meet on one lock,
//! and no key set an attacker can make up grows it without bound.
//!
//! Must never happen: a global lock on the request path; more than
//! `capacity` entries (a full shard evicts before it inserts); a poisoned
//! shard refusing service (it only ever held counts, which carry on).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;

/// Shards of every map: enough that two cores rarely contend.
const SHARDS: usize = 32;

/// The map.
#[derive(Debug)]
pub(crate) struct Sharded<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    /// Picks the shard: keyed per process, so a caller cannot aim many keys
    /// at one shard.
    hasher: RandomState,
    per_shard: usize,
}

impl<K: Eq + Hash + Clone, V> Sharded<K, V> {
    /// A map holding at most about `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Runs `f` on the entry of `key`, made by `make` if there is none.
    /// Inserting into a full shard first runs `evict` on it, which must
    /// remove at least one entry for the bound to hold (when it removes
    /// none, the shard's first entry goes).
    pub(crate) fn with<R>(
        &self,
        key: &K,
        make: impl FnOnce() -> V,
        evict: impl FnOnce(&mut HashMap<K, V>),
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = map.get_mut(key) {
            return f(v);
        }
        if map.len() >= self.per_shard {
            evict(&mut map);
            if map.len() >= self.per_shard
                && let Some(k) = map.keys().next().cloned()
            {
                map.remove(&k);
            }
        }
        f(map.entry(key.clone()).or_insert_with(make))
    }

    /// How many entries the map holds (locks every shard in turn).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_whatever_evict_does() {
        let m: Sharded<u32, u32> = Sharded::new(64);
        for k in 0..10_000 {
            m.with(&k, || 0, |_| {}, |v| *v += 1);
        }
        assert!(m.len() <= 64, "{} entries", m.len());
        // An entry present is found, not made again.
        m.with(&7_000_000, || 5, |_| {}, |_| ());
        assert_eq!(m.with(&7_000_000, || 0, |_| {}, |v| *v), 5);
    }
}
