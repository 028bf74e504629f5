//! `[limits]`: how fast one peer address or one identity may make the
//! broker work — token buckets for logins and for every other audited
//! request, each keyed by source address and by identity (workload, issuer,
//! subject). A request over its bucket is answered 429 with `Retry-After`,
//! and audited.
//!
//! The defaults are generous for benign traffic (a fleet of a few hundred
//! pods sharing one service account logging in at once; a service reading
//! a few hundred secrets a second) and strict enough that one identity's
//! flood is refused before it reaches the store, so others keep their
//! latency.
//!
//! Must never happen: a limit that can be switched off by writing `0` (a
//! zero or negative rate is refused at load), or one larger than the
//! buckets can represent.

use serde::Deserialize;

/// One token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSetting {
    /// Requests per second, sustained (a fraction is allowed: `0.5` is one
    /// every two seconds).
    pub per_second: f64,
    /// Requests at once after a quiet spell.
    pub burst: u32,
}

impl RateSetting {
    const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    fn check(&self, name: &str) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0 && self.per_second <= 1e9) {
            return Err(format!(
                "limits.{name}.per_second must be above 0 and at most 1e9"
            ));
        }
        if self.burst == 0 {
            return Err(format!("limits.{name}.burst must be at least 1"));
        }
        Ok(())
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Logins from one source address, counted before the proof is
    /// checked (a flood of bad logins costs no signature check).
    pub logins_per_source: RateSetting,
    /// Logins of one identity, counted once its proof is checked.
    pub logins_per_identity: RateSetting,
    /// Every other audited request from one source address, counted before
    /// its token is looked up (a flood of made-up tokens costs no lookup).
    pub requests_per_source: RateSetting,
    /// Every other audited request of one identity, counted once its token
    /// has resolved.
    pub requests_per_identity: RateSetting,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            logins_per_source: RateSetting::new(50.0, 500),
            logins_per_identity: RateSetting::new(10.0, 200),
            requests_per_source: RateSetting::new(2_000.0, 4_000),
            requests_per_identity: RateSetting::new(500.0, 1_000),
        }
    }
}

impl LimitSettings {
    /// The problems of these settings, if any.
    pub(super) fn check(&self) -> Result<(), String> {
        self.logins_per_source.check("logins_per_source")?;
        self.logins_per_identity.check("logins_per_identity")?;
        self.requests_per_source.check("requests_per_source")?;
        self.requests_per_identity.check("requests_per_identity")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_is_refused() {
        assert_eq!(LimitSettings::default().check(), Ok(()));
        for bad in [
            RateSetting::new(0.0, 1),
            RateSetting::new(-1.0, 1),
            RateSetting::new(f64::NAN, 1),
            RateSetting::new(f64::INFINITY, 1),
            RateSetting::new(1.0, 0),
        ] {
            let s = LimitSettings {
                requests_per_identity: bad,
                ..LimitSettings::default()
            };
            let e = s.check().expect_err("refused");
            assert!(e.starts_with("limits.requests_per_identity."), "{e}");
        }
    }
}
