//! Rate limits (`[limits]`): a token bucket per source address and per
//! identity, for logins and for every other audited request.
//!
//! Buckets live in memory, per replica, shared-nothing: a replica behind a
//! load balancer that spreads a caller over N replicas lets it through at up
//! to N times the configured rate (the bound the configuration reference
//! states). An identity is the workload, issuer and subject a login attested
//! — every token of one identity draws on one bucket, so logging in again
//! does not buy a fresh one. IPv6 sources are counted per /64, the block one
//! host is usually given, so a host cannot step through its own addresses
//! to escape its bucket.
//!
//! Must never happen: a global lock on the request path (each map is
//! sharded); memory an attacker can grow without bound (each map holds at
//! most [`MAX_TRACKED`] keys, full buckets evicted first — a full bucket is
//! exactly what a new key gets); a limited request that still reaches the
//! store or a signature check.

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::{LimitSettings, RateSetting};
use crate::sharded::Sharded;

/// Keys tracked at most by each limit.
pub const MAX_TRACKED: usize = 100_000;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.logins_per_source`
    LoginsPerSource,
    /// `limits.logins_per_identity`
    LoginsPerIdentity,
    /// `limits.requests_per_source`
    RequestsPerSource,
    /// `limits.requests_per_identity`
    RequestsPerIdentity,
}

impl Limit {
    /// The setting's name, as the configuration and the audit log spell it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::LoginsPerSource => "logins_per_source",
            Limit::LoginsPerIdentity => "logins_per_identity",
            Limit::RequestsPerSource => "requests_per_source",
            Limit::RequestsPerIdentity => "requests_per_identity",
        }
    }

    /// What the caller reads: what it sent too much of, and from whom.
    pub fn shown(self) -> &'static str {
        match self {
            Limit::LoginsPerSource => "too many logins from this address",
            Limit::LoginsPerIdentity => "too many logins of this identity",
            Limit::RequestsPerSource => "too many requests from this address",
            Limit::RequestsPerIdentity => "too many requests of this identity",
        }
    }
}

/// A request over its limit: which one, and when the bucket holds a token
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit.
    pub limit: Limit,
    /// When to retry, in whole seconds (at least 1): `Retry-After`.
    pub retry_after_secs: u64,
}

/// One bucket: the tokens it held at `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A rate and the buckets drawing on it, by key.
#[derive(Debug)]
struct Buckets<K> {
    limit: Limit,
    per_second: f64,
    burst: f64,
    map: Sharded<K, Bucket>,
    refused: AtomicU64,
}

impl<K: Eq + std::hash::Hash + Clone> Buckets<K> {
    fn new(limit: Limit, rate: RateSetting) -> Self {
        Self {
            limit,
            per_second: rate.per_second,
            burst: f64::from(rate.burst),
            map: Sharded::new(MAX_TRACKED),
            refused: AtomicU64::new(0),
        }
    }

    /// What `b` holds at `now`.
    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Takes one token from `key`'s bucket, or says when there is one.
    fn take(&self, key: &K, now: Instant) -> Result<(), Limited> {
        let full = || Bucket {
            tokens: self.burst,
            at: now,
        };
        let taken = self.map.with(
            key,
            full,
            // A full bucket is what a new key would get: forgetting it
            // changes nothing.
            |map| map.retain(|_, b| self.level(b, now) < self.burst),
            |b| {
                b.tokens = self.level(b, now);
                b.at = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    Ok(())
                } else {
                    Err((1.0 - b.tokens) / self.per_second)
                }
            },
        );
        taken.map_err(|wait| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Limited {
                limit: self.limit,
                // `wait` is positive and finite (the rate is checked at
                // load); a float-to-int cast saturates.
                retry_after_secs: (wait.ceil() as u64).max(1),
            }
        })
    }
}

/// The four limits.
#[derive(Debug)]
pub struct Limiter {
    logins_per_source: Buckets<IpAddr>,
    logins_per_identity: Buckets<u64>,
    requests_per_source: Buckets<IpAddr>,
    requests_per_identity: Buckets<u64>,
    /// Identities are keyed by a digest under a per-process key: no
    /// allocation per request, and no caller can aim two identities at one
    /// bucket.
    identities: RandomState,
}

impl Limiter {
    /// The limits `settings` describe.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            logins_per_source: Buckets::new(Limit::LoginsPerSource, settings.logins_per_source),
            logins_per_identity: Buckets::new(
                Limit::LoginsPerIdentity,
                settings.logins_per_identity,
            ),
            requests_per_source: Buckets::new(
                Limit::RequestsPerSource,
                settings.requests_per_source,
            ),
            requests_per_identity: Buckets::new(
                Limit::RequestsPerIdentity,
                settings.requests_per_identity,
            ),
            identities: RandomState::new(),
        }
    }

    /// A login from `peer`, before its proof is checked.
    pub fn login_from(&self, peer: IpAddr, now: Instant) -> Result<(), Limited> {
        self.logins_per_source.take(&source_key(peer), now)
    }

    /// A login whose proof attested `(workload, issuer, subject)`.
    pub fn login_of(
        &self,
        workload: &str,
        issuer: &str,
        subject: &str,
        now: Instant,
    ) -> Result<(), Limited> {
        let key = self.identities.hash_one((workload, issuer, subject));
        self.logins_per_identity.take(&key, now)
    }

    /// Any other audited request from `peer`, before its token is looked
    /// up.
    pub fn request_from(&self, peer: IpAddr, now: Instant) -> Result<(), Limited> {
        self.requests_per_source.take(&source_key(peer), now)
    }

    /// A request whose token resolved to `(workload, issuer, subject)`.
    pub fn request_of(
        &self,
        workload: &str,
        issuer: &str,
        subject: &str,
        now: Instant,
    ) -> Result<(), Limited> {
        let key = self.identities.hash_one((workload, issuer, subject));
        self.requests_per_identity.take(&key, now)
    }

    /// What each limit has refused so far.
    pub fn counts(&self) -> leash_api::LimitedStatus {
        let n = |b: &AtomicU64| b.load(Ordering::Relaxed);
        leash_api::LimitedStatus {
            logins_per_source: n(&self.logins_per_source.refused),
            logins_per_identity: n(&self.logins_per_identity.refused),
            requests_per_source: n(&self.requests_per_source.refused),
            requests_per_identity: n(&self.requests_per_identity.refused),
        }
    }
}

/// The key a source address is counted under: IPv4 as it is (an
/// IPv4-mapped IPv6 address as its IPv4), IPv6 by its /64.
fn source_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_second: f64, burst: u32) -> Limiter {
        let r = RateSetting { per_second, burst };
        Limiter::new(&LimitSettings {
            logins_per_source: r,
            logins_per_identity: r,
            requests_per_source: r,
            requests_per_identity: r,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_burst_then_the_rate_with_the_wait_it_needs() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.request_from(A, t0), Ok(()));
        }
        let refused = l.request_from(A, t0).expect_err("over the burst");
        assert_eq!(refused.limit, Limit::RequestsPerSource);
        // Two a second: the next token comes within half a second, which
        // reads as one whole second.
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(
            l.request_from(A, t0 + Duration::from_millis(499)).ok(),
            None
        );
        assert_eq!(l.request_from(A, t0 + Duration::from_millis(501)), Ok(()));
        // A long quiet spell refills to the burst, never past it.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.request_from(A, later), Ok(()));
        }
        assert!(l.request_from(A, later).is_err());
        assert_eq!(l.counts().requests_per_source, 3);
    }

    #[test]
    fn a_slow_rate_asks_for_a_longer_wait() {
        let l = limiter(0.1, 1);
        let t0 = Instant::now();
        assert_eq!(l.login_from(A, t0), Ok(()));
        assert_eq!(l.login_from(A, t0).map_err(|e| e.retry_after_secs), Err(10));
    }

    #[test]
    fn keys_do_not_share_buckets_and_kinds_do_not_either() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        assert_eq!(l.request_from(A, t0), Ok(()));
        assert!(l.request_from(A, t0).is_err());
        assert_eq!(l.request_from(B, t0), Ok(()), "another address");
        assert_eq!(l.login_from(A, t0), Ok(()), "logins count apart");
        assert_eq!(l.request_of("w", "i", "s", t0), Ok(()));
        assert!(l.request_of("w", "i", "s", t0).is_err());
        assert_eq!(l.request_of("w", "i", "s2", t0), Ok(()), "another subject");
        assert_eq!(l.request_of("w2", "i", "s", t0), Ok(()), "another workload");
        // The parts are delimited: ("w", "is", "") is not ("wi", "s", "").
        assert_eq!(l.login_of("w", "is", "", t0), Ok(()));
        assert_eq!(l.login_of("wi", "s", "", t0), Ok(()));
    }

    #[test]
    fn ipv6_counts_per_slash_64_and_mapped_ipv4_as_ipv4() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("addr");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("addr");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("addr");
        assert_eq!(l.request_from(a, t0), Ok(()));
        assert!(l.request_from(same_64, t0).is_err());
        assert_eq!(l.request_from(other_64, t0), Ok(()));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("addr");
        assert_eq!(l.request_from(A, t0), Ok(()));
        assert!(l.request_from(mapped, t0).is_err());
    }

    #[test]
    fn many_sources_stay_bounded() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        // 120k addresses, each draining its bucket: none is full, so the
        // bound is kept by dropping drained ones.
        for i in 0..120_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            assert_eq!(l.request_from(ip, t0), Ok(()));
        }
        assert!(l.requests_per_source.map.len() <= MAX_TRACKED + 32);
        // A second later every bucket is full again, and a new key's
        // insertion clears them instead of a drained one.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.request_from(A, t1), Ok(()));
        assert!(l.request_from(A, t1).is_err(), "A's drained bucket is kept");
    }
}
