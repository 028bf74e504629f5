//! Checking the `[conditions]` section (source networks and time windows)
//! and the CIDR syntax that `login.bound_cidrs` shares with it. Nothing
//! here may accept an empty list (which would allow nothing and hide a
//! mistake), a network with host bits set, an IPv4-mapped IPv6 network, or
//! a window that crosses midnight.

use std::net::IpAddr;

use chrono_tz::Tz;
use ipnet::IpNet;
use leash_domain::text::escape_untrusted;
use toml::Spanned;

use crate::MAX_QUOTED;
use crate::conditions::{Conditions, TimeWindow};

use super::check::FileCheck;
use super::raw::{RawConditions, RawWindow};

/// Parses `HH:MM` (00:00–23:59, and 24:00 when `allow_24` is set) into
/// minutes after midnight.
fn parse_clock(s: &str, allow_24: bool) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digits = [b[0], b[1], b[3], b[4]];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d = |i: usize| u32::from(digits[i] - b'0');
    let h = d(0) * 10 + d(1);
    let m = d(2) * 10 + d(3);
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn day_index(s: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| *d == s)
}

impl FileCheck<'_> {
    /// Checks one CIDR (or a bare address, a host network), for
    /// `conditions.source_cidrs` and `login.bound_cidrs` alike.
    pub(super) fn cidr(&mut self, raw: Spanned<String>) -> Option<IpNet> {
        let text = raw.get_ref().trim();
        let net = match text.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(a) => IpNet::from(a),
                Err(_) => {
                    self.problem(
                        raw.span(),
                        format!(
                            "invalid CIDR `{}` (expected e.g. 10.0.0.0/8 or fd00::/8)",
                            escape_untrusted(raw.get_ref(), MAX_QUOTED)
                        ),
                    );
                    return None;
                }
            },
        };
        if net.trunc() != net {
            self.problem(
                raw.span(),
                format!(
                    "CIDR `{}` has host bits set; did you mean `{}`?",
                    escape_untrusted(raw.get_ref(), MAX_QUOTED),
                    net.trunc()
                ),
            );
            return None;
        }
        if let IpNet::V6(v6) = net
            && v6.addr().to_ipv4_mapped().is_some()
            && v6.prefix_len() >= 96
        {
            self.problem(
                raw.span(),
                format!(
                    "CIDR `{}` is IPv4-mapped IPv6; write it as IPv4 (mapped peers are compared as IPv4)",
                    escape_untrusted(raw.get_ref(), MAX_QUOTED)
                ),
            );
            return None;
        }
        Some(net)
    }

    fn window(&mut self, raw: RawWindow) -> Option<TimeWindow> {
        let mut ok = true;
        let mut days = [false; 7];
        if raw.days.get_ref().is_empty() {
            self.problem(
                raw.days.span(),
                "time window `days` is empty; it would never match".to_owned(),
            );
            ok = false;
        }
        for d in raw.days.into_inner() {
            match day_index(d.get_ref()) {
                Some(i) => days[i] = true,
                None => {
                    self.problem(
                        d.span(),
                        format!(
                            "unknown day `{}` (use mon, tue, wed, thu, fri, sat, sun)",
                            escape_untrusted(d.get_ref(), MAX_QUOTED)
                        ),
                    );
                    ok = false;
                }
            }
        }
        let start = parse_clock(raw.start.get_ref(), false);
        if start.is_none() {
            self.problem(
                raw.start.span(),
                format!(
                    "invalid start `{}` (expected HH:MM, 00:00-23:59)",
                    escape_untrusted(raw.start.get_ref(), MAX_QUOTED)
                ),
            );
        }
        let end = parse_clock(raw.end.get_ref(), true);
        if end.is_none() {
            self.problem(
                raw.end.span(),
                format!(
                    "invalid end `{}` (expected HH:MM, 00:00-24:00)",
                    escape_untrusted(raw.end.get_ref(), MAX_QUOTED)
                ),
            );
        }
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            self.problem(
                raw.start.span(),
                "time window start must be before end (a window cannot cross midnight; use two windows)"
                    .to_owned(),
            );
            ok = false;
        }
        let timezone = match &raw.timezone {
            None => Some(Tz::UTC),
            Some(tz) => match tz.get_ref().parse::<Tz>() {
                Ok(z) => Some(z),
                Err(_) => {
                    self.problem(
                        tz.span(),
                        format!(
                            "unknown time zone `{}` (use an IANA name such as Europe/Berlin)",
                            escape_untrusted(tz.get_ref(), MAX_QUOTED)
                        ),
                    );
                    None
                }
            },
        };
        let (Some(start_minute), Some(end_minute), Some(timezone)) = (start, end, timezone) else {
            return None;
        };
        ok.then_some(TimeWindow {
            days,
            start_minute,
            end_minute,
            timezone,
        })
    }

    pub(super) fn conditions(&mut self, raw: RawConditions) -> Conditions {
        let source_cidrs = raw.source_cidrs.map(|list| {
            if list.get_ref().is_empty() {
                self.problem(
                    list.span(),
                    "conditions.source_cidrs is empty, which would allow no source; remove it to allow any source"
                        .to_owned(),
                );
            }
            list.into_inner()
                .into_iter()
                .filter_map(|c| self.cidr(c))
                .collect()
        });
        let time_windows = raw.time_windows.map(|list| {
            if list.get_ref().is_empty() {
                self.problem(
                    list.span(),
                    "conditions.time_windows is empty, which would allow no time; remove it to allow any time"
                        .to_owned(),
                );
            }
            list.into_inner()
                .into_iter()
                .filter_map(|w| self.window(w))
                .collect()
        });
        Conditions {
            source_cidrs,
            time_windows,
        }
    }
}
