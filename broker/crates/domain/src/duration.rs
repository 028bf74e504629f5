//! The one duration grammar of Leash, for configuration files, policy
//! files, command-line flags and the `increment` of a Vault renewal.
//!
//! A duration is a plain run of digits (seconds), or components
//! `<digits><unit>` with the units `d`, `h`, `m`, `s` and `ms`, each at most
//! once and in that order: `90`, `30s`, `250ms`, `1h30m`, `2d`, `1m30s500ms`.
//! Nothing here may accept a sign, a fraction, whitespace, an unknown or
//! repeated unit, units out of order, or a value that overflows; callers that
//! need whole seconds (policies) check [`Duration::subsec_nanos`] themselves.

use std::time::Duration;

use crate::text::escape_untrusted;

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{}`: {why}", escape_untrusted(.input, 64))]
pub struct DurationError {
    /// What was written.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Longest digit run accepted in one component (keeps arithmetic far from
/// overflow: 999,999,999 days still fits a `u64` of seconds).
const MAX_DIGITS: usize = 9;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration; see the module documentation for the grammar.
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
    let mut total_ms: u64 = 0;
    let mut next_unit = 0usize;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a number before each unit (d, h, m, s, ms)"));
        }
        if digits > MAX_DIGITS {
            return Err(fail("too large"));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| fail("not a number"))?;
        let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        if letters == 0 {
            return Err(fail("a number without a unit must be the whole value"));
        }
        let (unit, tail) = tail.split_at(letters);
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(fail("unknown unit (use d, h, m, s or ms)"));
        };
        if pos < next_unit {
            return Err(fail(
                "units must appear once each, in the order d, h, m, s, ms",
            ));
        }
        next_unit = pos + 1;
        total_ms = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| fail("too large"))?;
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Serde support: a duration as a string in the grammar above, or an
/// integer number of seconds (never negative). Use with
/// `#[serde(with = "leash_domain::duration::serde_str")]`.
pub mod serde_str {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Deserializes a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"30s\", \"250ms\", \"1h30m\", or whole seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                super::parse_duration(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }

    /// Serializes a duration as whole milliseconds (`"1500ms"`) or seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_millis() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("30s"), Ok(s(30)));
        assert_eq!(parse_duration("5m"), Ok(s(300)));
        assert_eq!(parse_duration("1h"), Ok(s(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(s(5400)));
        assert_eq!(parse_duration("2d"), Ok(s(172_800)));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(s(93_784)));
        assert_eq!(parse_duration("90"), Ok(s(90)));
        assert_eq!(parse_duration("0s"), Ok(s(0)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
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
            "5ms1s",
            "1w",
            "9999999999s",
            "99999999999",
            "999999999d999999999d",
            "+5m",
            " 5m",
            "5m ",
            "1h30",
            "٣s",
            "10x",
            "s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_escape_the_input() {
        let e = parse_duration("5\u{202e}m").unwrap_err().to_string();
        assert!(e.contains("\\u{202e}"), "{e}");
        assert!(!e.contains('\u{202e}'), "{e}");
    }

    #[test]
    fn serde_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "serde_str")]
            d: Duration,
        }
        let t: T = serde_json::from_str(r#"{"d":"1h30m"}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(5400));
        let t: T = serde_json::from_str(r#"{"d":90}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(90));
        assert!(serde_json::from_str::<T>(r#"{"d":-1}"#).is_err());
        let back: T = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
