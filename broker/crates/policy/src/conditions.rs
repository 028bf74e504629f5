//! Conditions checked at login and on every request: allowed source
//! networks and time windows. Nothing here may read the clock or the
//! network (time and peer are passed in), or treat a missing condition as
//! anything but "no restriction" and a present one as anything but a
//! restriction.

use std::net::IpAddr;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use ipnet::IpNet;

use crate::denial::Denial;

/// Where and when a workload may act. `None` means unrestricted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    pub(crate) source_cidrs: Option<Vec<IpNet>>,
    pub(crate) time_windows: Option<Vec<TimeWindow>>,
}

/// A weekly window in a time zone: on one of `days`, local time in
/// `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    pub(crate) days: [bool; 7],
    pub(crate) start_minute: u32,
    pub(crate) end_minute: u32,
    pub(crate) timezone: Tz,
}

/// Unmaps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4.
pub(crate) fn normalize_peer(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl TimeWindow {
    /// The days, Monday first.
    pub fn days(&self) -> Vec<Weekday> {
        let all = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ];
        all.into_iter()
            .filter(|d| self.days[d.num_days_from_monday() as usize])
            .collect()
    }

    /// Start, minutes after local midnight (inclusive).
    pub fn start_minute(&self) -> u32 {
        self.start_minute
    }

    /// End, minutes after local midnight (exclusive; 1440 = midnight).
    pub fn end_minute(&self) -> u32 {
        self.end_minute
    }

    /// The IANA time zone.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// Whether `now` falls inside, evaluated as local time in the zone (so
    /// daylight saving changes are honoured).
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.timezone);
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = local.hour() * 60 + local.minute();
        self.days.get(day).copied().unwrap_or(false)
            && self.start_minute <= minute
            && minute < self.end_minute
    }
}

impl Conditions {
    /// The allowed source networks, if restricted.
    pub fn source_cidrs(&self) -> Option<&[IpNet]> {
        self.source_cidrs.as_deref()
    }

    /// The allowed time windows, if restricted.
    pub fn time_windows(&self) -> Option<&[TimeWindow]> {
        self.time_windows.as_deref()
    }

    /// Checks the peer address and the time.
    pub fn check(&self, peer: IpAddr, now: DateTime<Utc>) -> Result<(), Denial> {
        if let Some(nets) = &self.source_cidrs {
            let peer = normalize_peer(peer);
            if !nets.iter().any(|n| n.contains(&peer)) {
                return Err(Denial::SourceNotAllowed { peer });
            }
        }
        if let Some(windows) = &self.time_windows
            && !windows.iter().any(|w| w.contains(now))
        {
            return Err(Denial::OutsideTimeWindows { at: now });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn berlin_business() -> TimeWindow {
        TimeWindow {
            days: [true, true, true, true, true, false, false],
            start_minute: 7 * 60,
            end_minute: 19 * 60,
            timezone: chrono_tz::Europe::Berlin,
        }
    }

    #[test]
    fn cidrs_and_ipv4_mapped() {
        let c = Conditions {
            source_cidrs: Some(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ]),
            time_windows: None,
        };
        let now = utc(2024, 1, 1, 12, 0);
        assert!(c.check("127.0.0.1".parse().unwrap(), now).is_ok());
        assert!(c.check("::1".parse().unwrap(), now).is_ok());
        assert!(c.check("10.1.2.3".parse().unwrap(), now).is_ok());
        assert!(c.check("::ffff:127.0.0.1".parse().unwrap(), now).is_ok());
        assert!(c.check("::ffff:10.1.200.1".parse().unwrap(), now).is_ok());
        assert!(c.check("10.2.0.1".parse().unwrap(), now).is_err());
        assert!(c.check("::ffff:10.2.0.1".parse().unwrap(), now).is_err());
        assert!(c.check("::2".parse().unwrap(), now).is_err());
        // IPv4-compatible (deprecated) form is not unmapped.
        assert!(c.check("::7f00:1".parse().unwrap(), now).is_err());
        let e = c.check("192.0.2.7".parse().unwrap(), now).unwrap_err();
        assert!(e.to_string().contains("192.0.2.7"), "{e}");
        let e = c
            .check("::ffff:192.0.2.7".parse().unwrap(), now)
            .unwrap_err();
        assert!(e.to_string().contains("192.0.2.7"), "{e}");
        assert_eq!(
            Conditions::default().check("192.0.2.7".parse().unwrap(), now),
            Ok(())
        );
    }

    #[test]
    fn time_window_basic() {
        let w = berlin_business();
        // Wed 2024-01-10, CET = UTC+1.
        assert!(!w.contains(utc(2024, 1, 10, 5, 59))); // 06:59 local
        assert!(w.contains(utc(2024, 1, 10, 6, 0))); // 07:00 local
        assert!(w.contains(utc(2024, 1, 10, 17, 59))); // 18:59 local
        assert!(!w.contains(utc(2024, 1, 10, 18, 0))); // 19:00 local
        // Sat 2024-01-13.
        assert!(!w.contains(utc(2024, 1, 13, 12, 0)));
        // Friday 23:30 UTC is Saturday 00:30 in Berlin: the local day counts.
        let all_day_fri = TimeWindow {
            days: [false, false, false, false, true, false, false],
            start_minute: 0,
            end_minute: 1440,
            timezone: chrono_tz::Europe::Berlin,
        };
        assert!(all_day_fri.contains(utc(2024, 1, 12, 22, 30)));
        assert!(!all_day_fri.contains(utc(2024, 1, 12, 23, 30)));
    }

    #[test]
    fn time_window_across_dst_changes() {
        let w = TimeWindow {
            days: [true; 7],
            ..berlin_business()
        };
        // Spring forward on Sun 2024-03-31 at 01:00 UTC (CET→CEST).
        // 05:30 UTC the day before is 06:30 local: outside.
        assert!(!w.contains(utc(2024, 3, 30, 5, 30)));
        // The same UTC time after the change is 07:30 local: inside.
        assert!(w.contains(utc(2024, 3, 31, 5, 30)));
        // 17:30 UTC: 18:30 local before, 19:30 local after.
        assert!(w.contains(utc(2024, 3, 30, 17, 30)));
        assert!(!w.contains(utc(2024, 3, 31, 17, 30)));
        // Fall back on Sun 2024-10-27 at 01:00 UTC (CEST→CET).
        assert!(w.contains(utc(2024, 10, 26, 5, 30))); // 07:30 CEST
        assert!(!w.contains(utc(2024, 10, 27, 5, 30))); // 06:30 CET
        assert!(!w.contains(utc(2024, 10, 26, 17, 30))); // 19:30 CEST
        assert!(w.contains(utc(2024, 10, 27, 17, 30))); // 18:30 CET
        let c = Conditions {
            source_cidrs: None,
            time_windows: Some(vec![w]),
        };
        let any = "203.0.113.1".parse().unwrap();
        assert!(c.check(any, utc(2024, 3, 31, 5, 30)).is_ok());
        let e = c.check(any, utc(2024, 3, 30, 5, 30)).unwrap_err();
        assert!(e.to_string().contains("time windows"));
    }

    #[test]
    fn any_of_several_windows() {
        let night = TimeWindow {
            days: [true; 7],
            start_minute: 22 * 60,
            end_minute: 1440,
            timezone: chrono_tz::UTC,
        };
        let c = Conditions {
            source_cidrs: None,
            time_windows: Some(vec![berlin_business(), night]),
        };
        let any = "203.0.113.1".parse().unwrap();
        assert!(c.check(any, utc(2024, 1, 13, 23, 0)).is_ok()); // Sat night
        assert!(c.check(any, utc(2024, 1, 13, 12, 0)).is_err()); // Sat noon
        assert_eq!(
            berlin_business().days(),
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
    }
}
