//! A workload's detection policy (`[detection]`): what counts as abuse of
//! its identity and what happens when it is seen — the thresholds of the
//! counting detectors, the canary paths, the networks a token may move
//! within, and per detector a [`Response`]. Loaded and checked in
//! `load/detection.rs`; consumed by the broker's detectors.
//!
//! Nothing here may do I/O or read the clock, or weaken the defaults: a
//! workload that says nothing about detection gets [`DetectionPolicy::default`],
//! which revokes, quarantines and alerts on every detector but volume
//! (alert only). A token moves to no other address unless an `egress`
//! network holds both its login's address and the new one ("one token,
//! one host").

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::conditions::normalize_peer;
use crate::path::CanonicalPath;
use crate::pattern::Matcher;

/// Default `detection.scope_violations.threshold`.
pub const DEFAULT_SCOPE_THRESHOLD: u32 = 5;
/// Default `detection.scope_violations.window`.
pub const DEFAULT_SCOPE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Default `detection.enumeration.distinct_paths`.
pub const DEFAULT_ENUM_DISTINCT_PATHS: u32 = 4;
/// Default `detection.enumeration.lists`.
pub const DEFAULT_ENUM_LISTS: u32 = 2;
/// Default `detection.enumeration.window`.
pub const DEFAULT_ENUM_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Default `detection.volume.factor`.
pub const DEFAULT_VOLUME_FACTOR: u32 = 10;
/// Default `detection.volume.min_requests`.
pub const DEFAULT_VOLUME_MIN_REQUESTS: u32 = 100;
/// Default `detection.volume.window`.
pub const DEFAULT_VOLUME_WINDOW: Duration = Duration::from_secs(60);

/// The detectors a policy configures, each with a stable rule name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectorKind {
    /// Refused requests outside scope, counted in a window.
    ScopeViolations,
    /// Distinct out-of-scope paths probed, refused LIST calls.
    Enumeration,
    /// A token used from a source other than its login's.
    NewSource,
    /// A request outside the workload's time windows.
    OffHours,
    /// A read of a canary path.
    Canary,
    /// A request rate far above the identity's baseline.
    Volume,
}

impl DetectorKind {
    /// Every detector, in the order of the policy format.
    pub const ALL: [DetectorKind; 6] = [
        DetectorKind::ScopeViolations,
        DetectorKind::Enumeration,
        DetectorKind::NewSource,
        DetectorKind::OffHours,
        DetectorKind::Canary,
        DetectorKind::Volume,
    ];

    /// The stable rule name (`detection.scope_violations`, …), as written
    /// in policies and in audit events.
    pub fn rule(self) -> &'static str {
        match self {
            DetectorKind::ScopeViolations => "detection.scope_violations",
            DetectorKind::Enumeration => "detection.enumeration",
            DetectorKind::NewSource => "detection.new_source",
            DetectorKind::OffHours => "detection.off_hours",
            DetectorKind::Canary => "detection.canary",
            DetectorKind::Volume => "detection.volume",
        }
    }
}

/// Whose sessions a revocation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevokeScope {
    /// The tokens (and leases) of this workload + issuer + subject.
    Identity,
    /// Every session with the same issuer + subject, whatever workload.
    Subject,
}

/// What happens when a detector fires (unless the policy is in dry run).
/// All off is "record only".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Revoke tokens and leases, and whose.
    pub revoke: Option<RevokeScope>,
    /// Refuse the identity's logins until released or expired.
    pub quarantine: bool,
    /// Send an alert.
    pub alert: bool,
    /// How long a quarantine lasts; `None` = until an operator releases it.
    pub quarantine_for: Option<Duration>,
}

impl Response {
    /// The default for every detector but volume: revoke the identity,
    /// quarantine it until released, alert.
    pub const CONTAIN: Response = Response {
        revoke: Some(RevokeScope::Identity),
        quarantine: true,
        alert: true,
        quarantine_for: None,
    };

    /// The default for volume: alert only.
    pub const ALERT: Response = Response {
        revoke: None,
        quarantine: false,
        alert: true,
        quarantine_for: None,
    };

    /// Record the detection, change nothing.
    pub const RECORD_ONLY: Response = Response {
        revoke: None,
        quarantine: false,
        alert: false,
        quarantine_for: None,
    };

    /// Whether the response only records.
    pub fn is_record_only(&self) -> bool {
        self.revoke.is_none() && !self.quarantine && !self.alert
    }
}

/// `detection.scope_violations`: `threshold` refused out-of-scope requests
/// by one identity within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdRule {
    /// Refusals that fire it (1..=10000).
    pub threshold: u32,
    /// The sliding window (1s..=24h).
    pub window: Duration,
    /// What happens.
    pub response: Response,
}

impl ThresholdRule {
    /// `detection.scope_violations`.
    pub fn rule(&self) -> &'static str {
        DetectorKind::ScopeViolations.rule()
    }
}

impl Default for ThresholdRule {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_SCOPE_THRESHOLD,
            window: DEFAULT_SCOPE_WINDOW,
            response: Response::CONTAIN,
        }
    }
}

/// `detection.enumeration`: `distinct_paths` distinct out-of-scope paths
/// probed, or `lists` refused LIST calls, by one identity within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumerationRule {
    /// Distinct refused paths that fire it (1..=10000).
    pub distinct_paths: u32,
    /// Refused LIST calls that fire it (1..=10000).
    pub lists: u32,
    /// The sliding window (1s..=24h).
    pub window: Duration,
    /// What happens.
    pub response: Response,
}

impl EnumerationRule {
    /// `detection.enumeration`.
    pub fn rule(&self) -> &'static str {
        DetectorKind::Enumeration.rule()
    }
}

impl Default for EnumerationRule {
    fn default() -> Self {
        Self {
            distinct_paths: DEFAULT_ENUM_DISTINCT_PATHS,
            lists: DEFAULT_ENUM_LISTS,
            window: DEFAULT_ENUM_WINDOW,
            response: Response::CONTAIN,
        }
    }
}

/// `detection.volume`: more than `factor` times the identity's own baseline
/// rate in one `window`, once the window holds at least `min_requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeRule {
    /// Multiple of the baseline (2..=1000).
    pub factor: u32,
    /// Requests in the window before it can fire (1..=1000000).
    pub min_requests: u32,
    /// The window (1s..=24h).
    pub window: Duration,
    /// What happens.
    pub response: Response,
}

impl VolumeRule {
    /// `detection.volume`.
    pub fn rule(&self) -> &'static str {
        DetectorKind::Volume.rule()
    }
}

impl Default for VolumeRule {
    fn default() -> Self {
        Self {
            factor: DEFAULT_VOLUME_FACTOR,
            min_requests: DEFAULT_VOLUME_MIN_REQUESTS,
            window: DEFAULT_VOLUME_WINDOW,
            response: Response::ALERT,
        }
    }
}

/// A detector that fires on one event (`new_source`, `off_hours`,
/// `canary`): only a response to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRule {
    kind: DetectorKind,
    /// What happens.
    pub response: Response,
}

impl EventRule {
    pub(crate) fn new(kind: DetectorKind, response: Response) -> Self {
        Self { kind, response }
    }

    /// Which detector.
    pub fn kind(&self) -> DetectorKind {
        self.kind
    }

    /// Its stable rule name.
    pub fn rule(&self) -> &'static str {
        self.kind.rule()
    }
}

/// A workload's compiled `[detection]` table.
#[derive(Debug, Clone)]
pub struct DetectionPolicy {
    pub(crate) dry_run: bool,
    pub(crate) egress: Vec<IpNet>,
    pub(crate) canaries: Vec<String>,
    pub(crate) canary_matcher: Matcher,
    pub(crate) scope_violations: ThresholdRule,
    pub(crate) enumeration: EnumerationRule,
    pub(crate) new_source: EventRule,
    pub(crate) off_hours: EventRule,
    pub(crate) canary: EventRule,
    pub(crate) volume: VolumeRule,
}

impl Default for DetectionPolicy {
    /// What a policy without `[detection]` gets: contain by default.
    fn default() -> Self {
        Self {
            dry_run: false,
            egress: Vec::new(),
            canaries: Vec::new(),
            canary_matcher: Matcher::default(),
            scope_violations: ThresholdRule::default(),
            enumeration: EnumerationRule::default(),
            new_source: EventRule::new(DetectorKind::NewSource, Response::CONTAIN),
            off_hours: EventRule::new(DetectorKind::OffHours, Response::CONTAIN),
            canary: EventRule::new(DetectorKind::Canary, Response::CONTAIN),
            volume: VolumeRule::default(),
        }
    }
}

impl DetectionPolicy {
    /// Record detections, change nothing (for tuning).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The networks a token may move within after login.
    pub fn egress(&self) -> &[IpNet] {
        &self.egress
    }

    /// The canary patterns, as written.
    pub fn canaries(&self) -> &[String] {
        &self.canaries
    }

    /// `detection.scope_violations`.
    pub fn scope_violations(&self) -> &ThresholdRule {
        &self.scope_violations
    }

    /// `detection.enumeration`.
    pub fn enumeration(&self) -> &EnumerationRule {
        &self.enumeration
    }

    /// `detection.new_source`.
    pub fn new_source(&self) -> &EventRule {
        &self.new_source
    }

    /// `detection.off_hours` (fires only for a workload that declares
    /// `conditions.time_windows`).
    pub fn off_hours(&self) -> &EventRule {
        &self.off_hours
    }

    /// `detection.canary`.
    pub fn canary(&self) -> &EventRule {
        &self.canary
    }

    /// `detection.volume`.
    pub fn volume(&self) -> &VolumeRule {
        &self.volume
    }

    /// The response configured for `kind`.
    pub fn response(&self, kind: DetectorKind) -> &Response {
        match kind {
            DetectorKind::ScopeViolations => &self.scope_violations.response,
            DetectorKind::Enumeration => &self.enumeration.response,
            DetectorKind::NewSource => &self.new_source.response,
            DetectorKind::OffHours => &self.off_hours.response,
            DetectorKind::Canary => &self.canary.response,
            DetectorKind::Volume => &self.volume.response,
        }
    }

    /// Whether `path` (canonical: KV v2 infix already stripped) matches a
    /// canary pattern.
    pub fn is_canary(&self, path: &CanonicalPath) -> bool {
        let mut hit = false;
        self.canary_matcher.for_each_match(path, |_| hit = true);
        hit
    }

    /// Whether a token whose login came from `login_source` may be used
    /// from `now`: the same address, or both inside one `egress` network.
    /// IPv4-mapped IPv6 addresses compare as IPv4.
    pub fn allows_source(&self, login_source: IpAddr, now: IpAddr) -> bool {
        let login = normalize_peer(login_source);
        let now = normalize_peer(now);
        login == now
            || self
                .egress
                .iter()
                .any(|net| net.contains(&now) && net.contains(&login))
    }
}
