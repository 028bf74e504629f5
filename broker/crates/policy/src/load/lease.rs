//! Checking the `[lease]` section: `ttl` and `max_ttl` as durations, with
//! their defaults. Nothing here may accept a lease shorter than one second,
//! longer than [`MAX_LEASE`], or a `ttl` longer than `max_ttl`.

use std::time::Duration;

use toml::Spanned;

use crate::duration::parse_duration;
use crate::workload::LeaseLimits;

use super::check::FileCheck;
use super::raw::RawLease;
use super::{DEFAULT_MAX_TTL, DEFAULT_TTL, MAX_LEASE};

fn fmt_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

impl FileCheck<'_> {
    fn duration(&mut self, key: &str, v: Spanned<toml::Value>) -> Option<Duration> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| format!("lease.{key} must not be negative")),
            toml::Value::String(s) => parse_duration(s).map_err(|e| format!("lease.{key}: {e}")),
            _ => Err(format!(
                "lease.{key} must be a duration string (\"30s\", \"5m\", \"1h30m\", \"2d\") or integer seconds"
            )),
        };
        let d = match parsed {
            Ok(d) => d,
            Err(why) => {
                self.problem(v.span(), why);
                return None;
            }
        };
        if d < Duration::from_secs(1) {
            self.problem(v.span(), format!("lease.{key} must be at least 1s"));
            return None;
        }
        if d > MAX_LEASE {
            self.problem(
                v.span(),
                format!(
                    "lease.{key} must be at most 30d ({})",
                    fmt_duration(MAX_LEASE)
                ),
            );
            return None;
        }
        Some(d)
    }

    pub(super) fn lease(&mut self, raw: Option<RawLease>) -> Option<LeaseLimits> {
        let Some(raw) = raw else {
            return Some(LeaseLimits {
                ttl: DEFAULT_TTL,
                max_ttl: DEFAULT_MAX_TTL,
            });
        };
        let ttl_span = raw.ttl.as_ref().map(Spanned::span);
        let max_span = raw.max_ttl.as_ref().map(Spanned::span);
        let ttl = match raw.ttl {
            Some(v) => self.duration("ttl", v),
            None => Some(DEFAULT_TTL),
        };
        let max_ttl = match raw.max_ttl {
            Some(v) => self.duration("max_ttl", v),
            None => Some(DEFAULT_MAX_TTL),
        };
        let (ttl, max_ttl) = (ttl?, max_ttl?);
        if ttl > max_ttl {
            let span = ttl_span.or(max_span).unwrap_or(0..0);
            self.problem(
                span,
                format!(
                    "lease.ttl ({}) is longer than lease.max_ttl ({})",
                    fmt_duration(ttl),
                    fmt_duration(max_ttl)
                ),
            );
            return None;
        }
        Some(LeaseLimits { ttl, max_ttl })
    }
}
