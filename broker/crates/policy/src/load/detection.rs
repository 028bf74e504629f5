//! Checking the `[detection]` section: thresholds and windows in range,
//! responses from the known set, `egress` networks, and canaries that a
//! read scope covers and no deny scope touches (a decoy must answer like a
//! real secret). Nothing here may weaken a default the file did not
//! mention, accept a key that has no effect (`revoke` without a revoke
//! response, `quarantine_for` without quarantine, `[detection.off_hours]`
//! without time windows), or a network that matches every address.

use std::time::Duration;

use leash_domain::text::escape_untrusted;
use toml::Spanned;

use crate::MAX_QUOTED;
use crate::capability::Capability;
use crate::conditions::Conditions;
use crate::detection::{
    DetectionPolicy, DetectorKind, EnumerationRule, EventRule, Response, RevokeScope,
    ThresholdRule, VolumeRule,
};
use crate::pattern::{Matcher, Pattern, parse_pattern_as};
use crate::workload::{Rule, Scope};

use super::check::FileCheck;
use super::raw::{RawDetection, RawEvent, RawList, RawResponse};

/// Most `egress` networks, and most `canaries`.
pub const MAX_DETECTION_LIST: usize = 256;
/// Shortest detector window.
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Longest detector window.
const MAX_WINDOW: Duration = Duration::from_secs(86_400);
/// Shortest `quarantine_for`.
const MIN_QUARANTINE: Duration = Duration::from_secs(60);

/// The scopes a canary is checked against: `None` when some scope of the
/// file did not parse (coverage would then be judged on a partial list).
pub(super) struct ScopeView<'r> {
    pub(super) scopes: &'r [Scope],
    pub(super) rules: Option<&'r [Rule]>,
}

impl RawEvent {
    fn response(self) -> RawResponse {
        RawResponse {
            respond: self.respond,
            quarantine_for: self.quarantine_for,
            revoke: self.revoke,
        }
    }
}

impl FileCheck<'_> {
    /// An integer knob in `min..=max`.
    fn knob(
        &mut self,
        key: &str,
        v: Option<Spanned<i64>>,
        default: u32,
        (min, max): (u32, u32),
    ) -> Option<u32> {
        let Some(v) = v else {
            return Some(default);
        };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(
                    v.span(),
                    format!("detection.{key} must be between {min} and {max}"),
                );
                None
            }
        }
    }

    /// A duration, in the crate's grammar or integer seconds, at least `min`
    /// and (if given) at most `max`.
    fn detection_duration(
        &mut self,
        key: &str,
        v: Spanned<toml::Value>,
        min: Duration,
        max: Option<Duration>,
    ) -> Option<Duration> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| format!("detection.{key} must not be negative")),
            toml::Value::String(s) => {
                crate::duration::parse_duration(s).map_err(|e| format!("detection.{key}: {e}"))
            }
            _ => Err(format!(
                "detection.{key} must be a duration string (\"30s\", \"5m\", \"1h\") or integer seconds"
            )),
        };
        let d = match parsed {
            Ok(d) => d,
            Err(why) => {
                self.problem(v.span(), why);
                return None;
            }
        };
        let secs = |d: Duration| format!("{}s", d.as_secs());
        let out_of_range = d < min || max.is_some_and(|m| d > m);
        if out_of_range {
            let reason = match max {
                Some(m) => format!(
                    "detection.{key} must be between {} and {}",
                    secs(min),
                    secs(m)
                ),
                None => format!("detection.{key} must be at least {}", secs(min)),
            };
            self.problem(v.span(), reason);
            return None;
        }
        Some(d)
    }

    fn detection_window(
        &mut self,
        key: &str,
        v: Option<Spanned<toml::Value>>,
        default: Duration,
    ) -> Option<Duration> {
        match v {
            None => Some(default),
            Some(v) => self.detection_duration(key, v, MIN_WINDOW, Some(MAX_WINDOW)),
        }
    }

    /// `respond`, `revoke` and `quarantine_for` of `detection.<table>`.
    fn response(&mut self, table: &str, raw: RawResponse, default: Response) -> Option<Response> {
        let mut ok = true;
        let (mut revoke, mut quarantine, mut alert) =
            (default.revoke.is_some(), default.quarantine, default.alert);
        if let Some(list) = raw.respond {
            (revoke, quarantine, alert) = (false, false, false);
            for item in list.into_inner() {
                let flag = match item.get_ref().as_str() {
                    "revoke" => &mut revoke,
                    "quarantine" => &mut quarantine,
                    "alert" => &mut alert,
                    other => {
                        self.problem(
                            item.span(),
                            format!(
                                "unknown response `{}` in detection.{table}.respond (use revoke, quarantine, alert)",
                                escape_untrusted(other, MAX_QUOTED)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                };
                if *flag {
                    self.problem(
                        item.span(),
                        format!(
                            "`{}` is listed twice in detection.{table}.respond",
                            item.get_ref()
                        ),
                    );
                    ok = false;
                }
                *flag = true;
            }
        }
        let scope = match raw.revoke {
            None => Some(RevokeScope::Identity),
            Some(r) if !revoke => {
                self.problem(
                    r.span(),
                    format!("detection.{table}.revoke has no effect: detection.{table}.respond does not include \"revoke\""),
                );
                None
            }
            Some(r) => match r.get_ref().as_str() {
                "identity" => Some(RevokeScope::Identity),
                "subject" => Some(RevokeScope::Subject),
                other => {
                    self.problem(
                        r.span(),
                        format!(
                            "invalid detection.{table}.revoke `{}` (use \"identity\" or \"subject\")",
                            escape_untrusted(other, MAX_QUOTED)
                        ),
                    );
                    None
                }
            },
        };
        let quarantine_for = match raw.quarantine_for {
            None => Some(None),
            Some(q) if !quarantine => {
                self.problem(
                    q.span(),
                    format!("detection.{table}.quarantine_for has no effect: detection.{table}.respond does not include \"quarantine\""),
                );
                None
            }
            Some(q) => self
                .detection_duration(&format!("{table}.quarantine_for"), q, MIN_QUARANTINE, None)
                .map(Some),
        };
        let (Some(scope), Some(quarantine_for)) = (scope, quarantine_for) else {
            return None;
        };
        ok.then_some(Response {
            revoke: revoke.then_some(scope),
            quarantine,
            alert,
            quarantine_for,
        })
    }

    fn egress(&mut self, list: RawList) -> Option<Vec<ipnet::IpNet>> {
        if list.get_ref().len() > MAX_DETECTION_LIST {
            self.problem(
                list.span(),
                format!("detection.egress lists more than {MAX_DETECTION_LIST} networks"),
            );
            return None;
        }
        let mut ok = true;
        let mut nets = Vec::with_capacity(list.get_ref().len());
        for raw in list.into_inner() {
            let span = raw.span();
            match self.cidr(raw) {
                Some(net) if net.prefix_len() == 0 => {
                    self.problem(
                        span,
                        format!("detection.egress `{net}` matches every address, which would let a token move anywhere; list the networks it may move within"),
                    );
                    ok = false;
                }
                Some(net) => nets.push(net),
                None => ok = false,
            }
        }
        ok.then_some(nets)
    }

    /// Parses the canaries and checks each against the scopes.
    fn canaries(&mut self, list: RawList, view: &ScopeView<'_>) -> Option<(Vec<String>, Matcher)> {
        if list.get_ref().len() > MAX_DETECTION_LIST {
            self.problem(
                list.span(),
                format!("detection.canaries lists more than {MAX_DETECTION_LIST} patterns"),
            );
            return None;
        }
        let mut ok = true;
        let mut texts = Vec::with_capacity(list.get_ref().len());
        let mut matcher = Matcher::default();
        for raw in list.into_inner() {
            let pattern = match parse_pattern_as(raw.get_ref(), "canary") {
                Ok(p) => p,
                Err(why) => {
                    self.problem(raw.span(), why);
                    ok = false;
                    continue;
                }
            };
            if let Some(rules) = view.rules
                && let Some(why) = canary_problem(&pattern, raw.get_ref(), rules, view.scopes)
            {
                self.problem(raw.span(), why);
                ok = false;
                continue;
            }
            let index = u32::try_from(texts.len()).unwrap_or(u32::MAX);
            matcher.insert(&pattern, index);
            texts.push(raw.into_inner());
        }
        ok.then_some((texts, matcher))
    }

    /// Checks `[detection]`; a file without one gets the defaults.
    pub(super) fn detection(
        &mut self,
        raw: Option<RawDetection>,
        view: &ScopeView<'_>,
        conditions: &Conditions,
    ) -> Option<DetectionPolicy> {
        let Some(raw) = raw else {
            return Some(DetectionPolicy::default());
        };
        let before = self.problems.len();
        let mut out = DetectionPolicy {
            dry_run: raw.dry_run.unwrap_or(false),
            ..DetectionPolicy::default()
        };
        if let Some(list) = raw.egress {
            out.egress = self.egress(list).unwrap_or_default();
        }
        if let Some(list) = raw.canaries
            && let Some((texts, matcher)) = self.canaries(list, view)
        {
            out.canaries = texts;
            out.canary_matcher = matcher;
        }
        if let Some(t) = raw.scope_violations {
            let d = ThresholdRule::default();
            let threshold = self.knob(
                "scope_violations.threshold",
                t.threshold,
                d.threshold,
                (1, 10_000),
            );
            let window = self.detection_window("scope_violations.window", t.window, d.window);
            let response = self.response(
                "scope_violations",
                RawResponse {
                    respond: t.respond,
                    quarantine_for: t.quarantine_for,
                    revoke: t.revoke,
                },
                d.response,
            );
            if let (Some(threshold), Some(window), Some(response)) = (threshold, window, response) {
                out.scope_violations = ThresholdRule {
                    threshold,
                    window,
                    response,
                };
            }
        }
        if let Some(t) = raw.enumeration {
            let d = EnumerationRule::default();
            let distinct_paths = self.knob(
                "enumeration.distinct_paths",
                t.distinct_paths,
                d.distinct_paths,
                (1, 10_000),
            );
            let lists = self.knob("enumeration.lists", t.lists, d.lists, (1, 10_000));
            let window = self.detection_window("enumeration.window", t.window, d.window);
            let response = self.response(
                "enumeration",
                RawResponse {
                    respond: t.respond,
                    quarantine_for: t.quarantine_for,
                    revoke: t.revoke,
                },
                d.response,
            );
            if let (Some(distinct_paths), Some(lists), Some(window), Some(response)) =
                (distinct_paths, lists, window, response)
            {
                out.enumeration = EnumerationRule {
                    distinct_paths,
                    lists,
                    window,
                    response,
                };
            }
        }
        if let Some(t) = &raw.off_hours
            && conditions.time_windows().is_none()
        {
            self.problem(
                t.span(),
                "[detection.off_hours] has no effect: this workload declares no conditions.time_windows".to_owned(),
            );
        }
        let events = [
            (DetectorKind::NewSource, raw.new_source),
            (
                DetectorKind::OffHours,
                raw.off_hours.map(Spanned::into_inner),
            ),
            (DetectorKind::Canary, raw.canary),
        ];
        for (kind, table) in events {
            let Some(table) = table else { continue };
            let name = kind.rule().trim_start_matches("detection.");
            if let Some(response) = self.response(name, table.response(), Response::CONTAIN) {
                let rule = EventRule::new(kind, response);
                match kind {
                    DetectorKind::NewSource => out.new_source = rule,
                    DetectorKind::OffHours => out.off_hours = rule,
                    _ => out.canary = rule,
                }
            }
        }
        if let Some(t) = raw.volume {
            let d = VolumeRule::default();
            let factor = self.knob("volume.factor", t.factor, d.factor, (2, 1000));
            let min_requests = self.knob(
                "volume.min_requests",
                t.min_requests,
                d.min_requests,
                (1, 1_000_000),
            );
            let window = self.detection_window("volume.window", t.window, d.window);
            let response = self.response(
                "volume",
                RawResponse {
                    respond: t.respond,
                    quarantine_for: t.quarantine_for,
                    revoke: t.revoke,
                },
                d.response,
            );
            if let (Some(factor), Some(min_requests), Some(window), Some(response)) =
                (factor, min_requests, window, response)
            {
                out.volume = VolumeRule {
                    factor,
                    min_requests,
                    window,
                    response,
                };
            }
        }
        (self.problems.len() == before).then_some(out)
    }
}

/// Why a canary cannot stand, if it cannot: no single allow scope that
/// grants read covers it, or a deny scope matches some path of it (a read
/// there would be refused, not answered like a real secret).
fn canary_problem(
    pattern: &Pattern,
    text: &str,
    rules: &[Rule],
    scopes: &[Scope],
) -> Option<String> {
    let quoted = escape_untrusted(text, MAX_QUOTED);
    for (i, rule) in rules.iter().enumerate() {
        if rule.deny && rule.pattern.overlaps(pattern) {
            let deny = scopes.get(i).map(|s| s.pattern.as_str()).unwrap_or("?");
            return Some(format!(
                "canary `{quoted}` overlaps deny scope `{}`: a decoy must answer like a real secret, and a read there would be refused",
                escape_untrusted(deny, MAX_QUOTED)
            ));
        }
    }
    let covered = rules
        .iter()
        .any(|r| !r.deny && r.caps.contains(Capability::Read) && r.pattern.covers(pattern));
    (!covered).then(|| {
        format!(
            "canary `{quoted}` is not covered by a scope that grants read: a decoy must answer like a real secret; add (or widen) a read scope that covers it"
        )
    })
}

#[cfg(test)]
#[path = "detection_tests.rs"]
mod tests;
