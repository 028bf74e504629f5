//! Detection: the seam through which every decided request passes before
//! its unit is committed ([`Detectors::observe`], called from the one place
//! every decision goes through, `Broker::finish`).
//!
//! A [`Detector`] sees an [`Observation`] — the request's audit event as it
//! will be committed (identity, workload, source, operation, canonical
//! path, decision, status, reason, time), the session's token record and
//! attested [`Subject`], the workload's `[detection]` settings, and, for a
//! refusal, its kind and the policy denial with the rule that made it — and
//! returns zero or more [`Finding`]s. One file per detector, registered in
//! [`Detectors::builtin`]:
//!
//! - `scope_violations` — refused requests outside scope in a window;
//! - `enumeration` — distinct out-of-scope paths probed, refused LISTs;
//! - `new_source` — a token used from a source other than its login's;
//! - `off_hours` — a request outside the workload's time windows;
//! - `canary` — a read of a decoy path;
//! - `volume` — a request rate far above the identity's own baseline
//!   (alert-only by default; counted in memory, per replica).
//!
//! Counts are shared by every replica without new machinery: each refusal
//! a detector counts is recorded as a signal row committed with its event
//! ([`Signal`]), and a detector that counts reads the subject's recent
//! signals from the store ([`Observation::history`]) — only when a refusal
//! happens, so allowed traffic pays no query.
//!
//! A finding names the response its workload declared for it; `respond`
//! turns the findings of a request into mutations (revoke, quarantine, the
//! detection record, its alerts) committed in the same transaction as the
//! event of the request that triggered them, so the answer to that request
//! leaves only after the identity is contained.
//!
//! Must never happen: a detector that sees a secret value, a token or a
//! lease id (the observation holds none); a finding's consequence committed
//! apart from the event that caused it; a dry-run workload changed.

pub mod alert;
mod canary;
mod enumeration;
mod history;
mod new_source;
mod off_hours;
mod respond;
mod scope_violations;
mod volume;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use leash_domain::detection::{Signal, Subject};
use leash_domain::{AuditEvent, Mutation, TokenRecord};
use leash_policy::{Denial, DetectionPolicy, Response};

pub use history::History;
pub(crate) use new_source::moved_ok as source_moved_ok;

/// How far back the detectors that count look, for `policy`.
pub fn history_window(policy: &DetectionPolicy) -> std::time::Duration {
    policy
        .scope_violations()
        .window
        .max(policy.enumeration().window)
}
pub use respond::AlertTargets;

/// At most this many request ids are kept as a finding's evidence.
pub(crate) const MAX_EVIDENCE: usize = 50;

/// What a detector sees of one decided request.
#[derive(Clone, Copy)]
pub struct Observation<'a> {
    /// The request's audit event, as it will be committed.
    pub event: &'a AuditEvent,
    /// The session's token record, when a token resolved (for a login: the
    /// token being issued).
    pub token: Option<&'a TokenRecord>,
    /// What the token's login attested, when a token resolved.
    pub subject: Option<&'a Subject>,
    /// The `[detection]` settings of the token's workload, when it is still
    /// declared.
    pub policy: Option<&'a DetectionPolicy>,
    /// The peer address.
    pub peer: IpAddr,
    /// Why the request was refused; `None` when it was allowed.
    pub refusal: Option<Refusal<'a>>,
    /// The subject's recent signals, read from the store on first use.
    pub history: &'a History,
}

impl fmt::Debug for Observation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("request_id", &self.event.request_id)
            .field("subject", &self.subject)
            .field("refusal", &self.refusal)
            .finish_non_exhaustive()
    }
}

/// A refusal, as data.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// A stable short code for the kind of refusal (`session.revoked`,
    /// `out_of_scope`, `bad_request`, …).
    pub kind: &'static str,
    /// The policy's denial, with the rule that made it, when the policy
    /// refused.
    pub policy: Option<&'a Denial>,
}

impl Observation<'_> {
    /// The policy's denial, if the policy refused this request.
    pub fn denial(&self) -> Option<&Denial> {
        self.refusal.and_then(|r| r.policy)
    }

    /// Whether the policy refused this request as outside the workload's
    /// scope (no scope grants it, or a deny scope matched).
    pub fn out_of_scope(&self) -> bool {
        matches!(
            self.denial(),
            Some(Denial::OutOfScope { .. } | Denial::ExplicitDeny { .. })
        )
    }

    /// The signal this request leaves for the detectors that count, if it
    /// is one they count: a refusal of an attested subject outside its
    /// scope, from a new source, or outside its time windows.
    fn signal(&self) -> Option<Signal> {
        let subject = self.subject?;
        let refusal = self.refusal?;
        let kind = match refusal.policy {
            Some(Denial::OutOfScope { .. } | Denial::ExplicitDeny { .. }) => "scope",
            Some(Denial::OutsideTimeWindows { .. }) => "off_hours",
            Some(Denial::SourceNotAllowed { .. } | Denial::OutsideBoundNetworks { .. }) => "source",
            _ if refusal.kind == NEW_SOURCE => "new_source",
            _ => return None,
        };
        Some(Signal {
            subject: subject.clone(),
            at: self.event.time,
            request_id: self.event.request_id.clone(),
            operation: operation_of(self.event),
            path: self.event.path.clone(),
            kind: kind.to_owned(),
        })
    }
}

/// The refusal kind of a token presented from a source other than its
/// login's (`SessionRefusal::NewSource`).
pub const NEW_SOURCE: &str = "session.new_source";

/// The capability a request asked for, as signals record it (`list`,
/// `read`, …): the last part of its operation (`kv.list` → `list`).
fn operation_of(event: &AuditEvent) -> String {
    if event.method == "LIST" || event.operation.ends_with(".list") {
        return "list".into();
    }
    event
        .operation
        .rsplit('.')
        .next()
        .unwrap_or(&event.operation)
        .to_owned()
}

/// What a detector found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The detector's name.
    pub detector: &'static str,
    /// The policy rule that set its threshold and response
    /// (`detection.scope_violations`).
    pub rule: &'static str,
    /// The evidence, in words (log-safe: no secret, token or lease id).
    pub summary: String,
    /// The request ids that crossed the threshold, this one last.
    pub evidence: Vec<String>,
    /// The paths involved (for enumeration: the probed paths, the gap in
    /// policy it reports).
    pub paths: Vec<String>,
    /// What the workload declared must happen.
    pub response: Response,
}

/// A detector: looks at every decided request.
#[async_trait::async_trait]
pub trait Detector: Send + Sync + fmt::Debug + 'static {
    /// Its name, in findings and logs.
    fn name(&self) -> &'static str;

    /// Looks at one decided request.
    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding>;
}

/// The detectors in force, called in order, and where their alerts go.
#[derive(Debug, Clone, Default)]
pub struct Detectors {
    list: Vec<Arc<dyn Detector>>,
    alerts: AlertTargets,
}

impl Detectors {
    /// The detectors Leash ships, one line each.
    pub fn builtin() -> Self {
        Self::with(vec![
            Arc::new(scope_violations::ScopeViolations),
            Arc::new(enumeration::Enumeration),
            Arc::new(new_source::NewSource),
            Arc::new(off_hours::OffHours),
            Arc::new(canary::Canary),
            Arc::new(volume::Volume::default()),
        ])
    }

    /// Exactly `list` (tests, and deployments that add their own).
    pub fn with(list: Vec<Arc<dyn Detector>>) -> Self {
        Self {
            list,
            alerts: AlertTargets::default(),
        }
    }

    /// The same detectors, alerting `targets`.
    pub fn alerting(mut self, targets: AlertTargets) -> Self {
        self.alerts = targets;
        self
    }

    /// Whether there are none (then nothing is observed at all).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The mutations `o` calls for, to commit with its event: its signal,
    /// then what the findings of every detector call for.
    pub async fn observe(&self, o: &Observation<'_>) -> Vec<Mutation> {
        let mut findings = Vec::new();
        for d in &self.list {
            findings.extend(d.observe(o).await);
        }
        let mut out: Vec<Mutation> = o.signal().map(Mutation::RecordSignal).into_iter().collect();
        if findings.is_empty() {
            return out;
        }
        let dry_run = o.policy.is_some_and(|p| p.dry_run());
        for f in &findings {
            tracing::warn!(
                detector = f.detector,
                rule = f.rule,
                workload = o.event.workload.as_deref().unwrap_or("-"),
                identity = o.event.identity.as_deref().unwrap_or("-"),
                dry_run,
                "detection: {}",
                f.summary
            );
        }
        out.extend(respond::consequences(o, &findings, dry_run, &self.alerts));
        out
    }
}
