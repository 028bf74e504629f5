//! `volume`: an identity's request rate far above its own recent baseline
//! (`[detection.volume]`: `factor` times the baseline, and at least
//! `min_requests`, within one `window`). Alert-only by default: a burst is
//! worth a look, not a revocation.
//!
//! Counted in memory, per replica, shared-nothing: allowed traffic must not
//! pay a query, and the bound is documented — behind a load balancer that
//! spreads an identity over N replicas, each sees about 1/N of its rate and
//! of its baseline alike, so the ratio holds while `min_requests` applies
//! per replica. The baseline is an exponentially weighted mean of the
//! identity's past windows (weight 1/4 for the newest), so a workload that
//! grows slowly moves its baseline with it.
//!
//! Must never happen: a global lock on the request path (the map is
//! sharded); unbounded memory (at most `MAX_TRACKED` identities, idle ones
//! evicted first); the same burst reported more than once per window.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leash_domain::detection::Subject;

use super::{Detector, Finding, Observation};
use crate::sharded::Sharded;

/// Identities tracked at most, over all shards.
const MAX_TRACKED: usize = 100_000;
/// The newest window's weight in the baseline.
const ALPHA: f64 = 0.25;

/// One identity's counts.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Start of the current window.
    window_start: DateTime<Utc>,
    /// Requests in it.
    count: u64,
    /// The mean of past windows (`None` until one window has passed).
    baseline: Option<f64>,
    /// Whether the current window has already been reported.
    reported: bool,
}

/// The detector.
#[derive(Debug)]
pub struct Volume {
    rates: Sharded<Subject, Rate>,
}

impl Default for Volume {
    fn default() -> Self {
        Self {
            rates: Sharded::new(MAX_TRACKED),
        }
    }
}

#[async_trait::async_trait]
impl Detector for Volume {
    fn name(&self) -> &'static str {
        "volume"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let (Some(policy), Some(subject)) = (o.policy, o.subject) else {
            return Vec::new();
        };
        let rule = policy.volume();
        let Ok(window) = chrono::Duration::from_std(rule.window) else {
            return Vec::new();
        };
        let now = o.event.time;
        let fresh = || Rate {
            window_start: now,
            count: 0,
            baseline: None,
            reported: false,
        };
        let crossed = self.rates.with(
            subject,
            fresh,
            |map| evict_idle(map, now, window),
            |rate| {
                advance(rate, now, window);
                rate.count += 1;
                let over = exceeds(rate, u64::from(rule.min_requests), f64::from(rule.factor));
                let first = over && !rate.reported;
                if first {
                    rate.reported = true;
                }
                first.then_some(*rate)
            },
        );
        let Some(rate) = crossed else {
            return Vec::new();
        };
        vec![Finding {
            detector: self.name(),
            rule: rule.rule(),
            summary: format!(
                "{} requests within {}s, against a baseline of {:.1}",
                rate.count,
                rule.window.as_secs(),
                rate.baseline.unwrap_or(0.0)
            ),
            evidence: vec![o.event.request_id.clone()],
            paths: vec![o.event.path.clone()],
            response: rule.response,
        }]
    }
}

/// Moves `rate` to the window holding `now`, folding the windows that
/// ended into the baseline (an empty window counts as zero).
fn advance(rate: &mut Rate, now: DateTime<Utc>, window: chrono::Duration) {
    if window <= chrono::Duration::zero() || now < rate.window_start + window {
        return;
    }
    let fold = |count: f64, rate: &mut Rate| {
        rate.baseline = Some(match rate.baseline {
            Some(b) => b + ALPHA * (count - b),
            None => count,
        });
    };
    fold(rate.count as f64, rate);
    let elapsed = now - rate.window_start;
    let windows = elapsed.num_milliseconds() / window.num_milliseconds().max(1);
    // Windows with no request at all pull the baseline down; past a few
    // dozen, it is as good as zero.
    for _ in 1..windows.min(64) {
        fold(0.0, rate);
    }
    rate.window_start += window * i32::try_from(windows).unwrap_or(i32::MAX);
    rate.count = 0;
    rate.reported = false;
}

/// Whether the current window is far above the baseline: at least
/// `min_requests`, and more than `factor` times the baseline (taken as at
/// least one request per window, so an identity with no history must still
/// reach `min_requests`).
fn exceeds(rate: &Rate, min_requests: u64, factor: f64) -> bool {
    let Some(baseline) = rate.baseline else {
        // The first window has no baseline to compare with.
        return false;
    };
    rate.count >= min_requests && rate.count as f64 > factor * baseline.max(1.0)
}

/// Drops the identities idle for two windows; if none is, the oldest.
fn evict_idle(map: &mut HashMap<Subject, Rate>, now: DateTime<Utc>, window: chrono::Duration) {
    let before = map.len();
    map.retain(|_, r| r.window_start + window * 2 > now);
    if map.len() == before {
        let oldest = map
            .iter()
            .min_by_key(|(_, r)| r.window_start)
            .map(|(s, _)| s.clone());
        if let Some(s) = oldest {
            map.remove(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs)
    }

    fn fresh(t: DateTime<Utc>) -> Rate {
        Rate {
            window_start: t,
            count: 0,
            baseline: None,
            reported: false,
        }
    }

    /// Feeds `n` requests spread over the window starting at `start`;
    /// returns whether the window crossed.
    fn feed(rate: &mut Rate, start: i64, n: u64) -> bool {
        let w = chrono::Duration::seconds(60);
        let mut crossed = false;
        for i in 0..n {
            advance(rate, at(start + (i as i64 * 59) / n.max(1) as i64), w);
            rate.count += 1;
            crossed |= exceeds(rate, 100, 10.0);
        }
        crossed
    }

    #[test]
    fn a_steady_identity_is_never_over_its_baseline() {
        let mut r = fresh(at(0));
        for minute in 0..30 {
            assert!(!feed(&mut r, minute * 60, 300), "minute {minute}");
        }
        assert!((r.baseline.unwrap() - 300.0).abs() < 1.0);
    }

    #[test]
    fn a_burst_far_above_the_baseline_crosses() {
        let mut r = fresh(at(0));
        for minute in 0..10 {
            feed(&mut r, minute * 60, 20);
        }
        assert!(
            feed(&mut r, 600, 250),
            "12x the baseline and over min_requests"
        );
    }

    #[test]
    fn a_burst_below_min_requests_does_not() {
        let mut r = fresh(at(0));
        for minute in 0..10 {
            feed(&mut r, minute * 60, 2);
        }
        assert!(!feed(&mut r, 600, 90), "45x, but under 100 requests");
    }

    #[test]
    fn the_first_window_has_no_baseline() {
        let mut r = fresh(at(0));
        assert!(!feed(&mut r, 0, 5000));
    }

    #[test]
    fn idle_windows_lower_the_baseline() {
        let mut r = fresh(at(0));
        for minute in 0..10 {
            feed(&mut r, minute * 60, 1000);
        }
        // An hour of silence, then the usual rate: still not a burst, and
        // the baseline has decayed.
        advance(&mut r, at(600 + 3600), chrono::Duration::seconds(60));
        assert!(r.baseline.unwrap() < 1.0, "{:?}", r.baseline);
    }

    #[test]
    fn eviction_makes_room() {
        let mut map = HashMap::new();
        for i in 0..10 {
            map.insert(
                Subject {
                    workload: format!("w{i}"),
                    issuer: "i".into(),
                    subject: "s".into(),
                },
                fresh(at(i)),
            );
        }
        // Nobody idle for two windows yet: the oldest goes.
        evict_idle(&mut map, at(20), chrono::Duration::seconds(60));
        assert_eq!(map.len(), 9);
        assert!(!map.keys().any(|s| s.workload == "w0"));
        // Later, every one is idle.
        evict_idle(&mut map, at(1000), chrono::Duration::seconds(60));
        assert!(map.is_empty());
    }
}
