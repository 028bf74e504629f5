//! Durations as written in policies (`30s`, `5m`, `1h30m`, `2d`, or integer
//! seconds). Nothing here may accept a negative, fractional, overflowing or
//! ambiguous duration (units out of order, repeated, or unknown).

use std::time::Duration;

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{}`: {why}", crate::text::escape_untrusted(.input))]
pub struct DurationError {
    /// What was written.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Longest digit run accepted in one component (keeps arithmetic far from
/// overflow).
const MAX_DIGITS: usize = 9;

/// Parses `<n>d<n>h<n>m<n>s` with each unit at most once, in that order,
/// at least one component, no spaces; or a plain run of digits meaning
/// seconds. Examples: `30s`, `5m`, `1h30m`, `2d`, `90`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |why| DurationError {
        input: s.to_owned(),
        why,
    };
    if s.is_empty() {
        return Err(fail("empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        if s.len() > MAX_DIGITS {
            return Err(fail("too large"));
        }
        let n: u64 = s.parse().map_err(|_| fail("not a number"))?;
        return Ok(Duration::from_secs(n));
    }
    let units: [(u8, u64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];
    let bytes = s.as_bytes();
    let mut total: u64 = 0;
    let mut next_unit = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(fail("expected a number before each unit (d, h, m, s)"));
        }
        if i - start > MAX_DIGITS {
            return Err(fail("too large"));
        }
        let n: u64 = s
            .get(start..i)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| fail("not a number"))?;
        let Some(&unit) = bytes.get(i) else {
            return Err(fail("a number without a unit must be the whole value"));
        };
        let Some(pos) = units.iter().position(|(u, _)| *u == unit) else {
            return Err(fail("unknown unit (use d, h, m or s)"));
        };
        if pos < next_unit {
            return Err(fail("units must appear once each, in the order d, h, m, s"));
        }
        next_unit = pos + 1;
        total = n
            .checked_mul(units[pos].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| fail("too large"))?;
        i += 1;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(parse_duration("30s"), Ok(s(30)));
        assert_eq!(parse_duration("5m"), Ok(s(300)));
        assert_eq!(parse_duration("1h"), Ok(s(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(s(5400)));
        assert_eq!(parse_duration("2d"), Ok(s(172_800)));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(s(93_784)));
        assert_eq!(parse_duration("90"), Ok(s(90)));
        assert_eq!(parse_duration("0s"), Ok(s(0)));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "-5m",
            "5 m",
            "5M",
            "1.5h",
            "m",
            "5mm",
            "30m1h",
            "1h1h",
            "5ms",
            "1w",
            "9999999999s",
            "99999999999",
            "+5m",
            " 5m",
            "5m ",
            "1h30",
            "٣s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_duration("5\u{202e}m").unwrap_err().to_string();
        assert!(e.contains("\\u{202e}"), "{e}");
    }
}
