//! Durations as written in policies: Leash's one duration grammar
//! ([`leash_domain::duration`]: `30s`, `5m`, `1h30m`, `2d`, or integer
//! seconds), restricted to whole seconds. Nothing here may define a grammar
//! of its own, or accept a sub-second value (`5ms`, `1500ms`): leases and
//! tokens are counted in seconds.

use std::time::Duration;

pub use leash_domain::duration::DurationError;

/// Parses a policy duration: the shared grammar, whole seconds only
/// (`1000ms` is `1s`; `5ms` is refused).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let d = leash_domain::duration::parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(DurationError {
            input: s.to_owned(),
            why: "policies count whole seconds; a sub-second part is not allowed",
        });
    }
    Ok(d)
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
        assert_eq!(parse_duration("1s1000ms"), Ok(s(2)));
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
            "1500ms",
            "1s1ms",
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
        let e = parse_duration("5ms").unwrap_err().to_string();
        assert!(e.contains("whole seconds"), "{e}");
        let e = parse_duration("5\u{202e}m").unwrap_err().to_string();
        assert!(e.contains("\\u{202e}"), "{e}");
    }
}
