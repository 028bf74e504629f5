//! What the findings of one request make happen: the mutations committed
//! with its event, in the order the store applies them — revoke the
//! identity's tokens and leases (or every session of its attested subject),
//! quarantine it, record each detection with its evidence, and enqueue its
//! alerts in the outbox. In dry-run only the detections are recorded, each
//! saying what would have been done.
//!
//! Ids are derived from the request id (a fresh UUID), so they need no
//! randomness that could fail, and a delivery id names one alert to one
//! target for good: a receiver that sees it twice knows it is the same.
//!
//! Must never happen: a finding whose response is lost (an identity not
//! contained because something else failed); a dry-run that changes state.

use std::sync::Arc;

use leash_domain::detection::{AlertDelivery, Detection, Quarantine, Subject};
use leash_domain::{Mutation, TokenSelector};
use leash_policy::RevokeScope;
use serde::Serialize;

use super::{Finding, Observation};

/// The names of the configured alert targets every alerting finding is
/// delivered to (the delivery worker holds their addresses and keys).
#[derive(Debug, Clone, Default)]
pub struct AlertTargets {
    names: Arc<[String]>,
}

impl AlertTargets {
    /// Alerts go to `names`.
    pub fn new(names: Vec<String>) -> Self {
        Self {
            names: names.into(),
        }
    }
}

/// The mutations `findings` on `o` call for.
pub(super) fn consequences(
    o: &Observation<'_>,
    findings: &[Finding],
    dry_run: bool,
    alerts: &AlertTargets,
) -> Vec<Mutation> {
    let Some(subject) = o.subject else {
        return Vec::new();
    };
    let now = o.event.time;
    let revoke = widest_revoke(findings);
    let quarantine = findings.iter().find(|f| f.response.quarantine);
    let mut out = Vec::new();
    if !dry_run {
        if let Some(scope) = revoke {
            out.push(Mutation::RevokeTokens {
                selector: selector(subject, scope),
                now,
            });
        }
        if let Some(first) = quarantine {
            out.push(Mutation::Quarantine(Quarantine {
                subject: subject.clone(),
                since: now,
                until: quarantine_until(findings, now),
                reason: first.summary.clone(),
                by: first.detector.to_owned(),
                detection_id: Some(detection_id(&o.event.request_id, 0)),
            }));
        }
    }
    for (i, f) in findings.iter().enumerate() {
        let detection = Detection {
            id: detection_id(&o.event.request_id, i),
            at: now,
            detector: f.detector.to_owned(),
            rule: f.rule.to_owned(),
            subject: subject.clone(),
            summary: f.summary.clone(),
            evidence: f.evidence.clone(),
            responses: responses(f),
            dry_run,
            paths: f.paths.clone(),
        };
        let deliveries: Vec<AlertDelivery> = if dry_run || !f.response.alert {
            Vec::new()
        } else {
            alerts
                .names
                .iter()
                .map(|target| alert(&detection, target))
                .collect()
        };
        out.push(Mutation::RecordDetection(detection));
        out.extend(deliveries.into_iter().map(Mutation::EnqueueAlert));
    }
    out
}

/// The widest revocation any finding asks for.
fn widest_revoke(findings: &[Finding]) -> Option<RevokeScope> {
    let scopes = findings.iter().filter_map(|f| f.response.revoke);
    scopes.reduce(|a, b| match (a, b) {
        (RevokeScope::Subject, _) | (_, RevokeScope::Subject) => RevokeScope::Subject,
        _ => RevokeScope::Identity,
    })
}

/// The tokens a revocation of `scope` picks.
fn selector(subject: &Subject, scope: RevokeScope) -> TokenSelector {
    match scope {
        RevokeScope::Identity => TokenSelector::Subject(subject.clone()),
        RevokeScope::Subject => TokenSelector::Attestation {
            issuer: subject.issuer.clone(),
            subject: subject.subject.clone(),
        },
    }
}

/// The end of the quarantine the findings ask for: the latest, and none
/// (until an operator releases it) if any asks for that.
fn quarantine_until(
    findings: &[Finding],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let mut until = None;
    for f in findings.iter().filter(|f| f.response.quarantine) {
        let d = f.response.quarantine_for?;
        let end = chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))?;
        until = until.max(Some(end));
    }
    until
}

/// What a finding's response does, by name.
fn responses(f: &Finding) -> Vec<String> {
    let r = &f.response;
    let mut out = Vec::new();
    match r.revoke {
        Some(RevokeScope::Identity) => out.push("revoke".to_owned()),
        Some(RevokeScope::Subject) => out.push("revoke_subject".to_owned()),
        None => {}
    }
    if r.quarantine {
        out.push("quarantine".to_owned());
    }
    if r.alert {
        out.push("alert".to_owned());
    }
    out
}

/// The id of the `i`th detection of the request `request_id`.
fn detection_id(request_id: &str, i: usize) -> String {
    format!("det-{request_id}-{i}")
}

/// The body every alert target receives for a detection: this JSON, exact
/// bytes, signed when sent (see `docs/alerts.md`).
#[derive(Serialize)]
struct AlertBody<'a> {
    /// `leash.detection`.
    kind: &'static str,
    /// Names this delivery for good; a receiver may see it more than once.
    delivery_id: &'a str,
    /// The target it was meant for.
    target: &'a str,
    /// The detection.
    detection: &'a Detection,
}

/// The outbox entry of `detection` for `target`.
fn alert(detection: &Detection, target: &str) -> AlertDelivery {
    let delivery_id = format!("{}.{target}", detection.id);
    let body = AlertBody {
        kind: "leash.detection",
        delivery_id: &delivery_id,
        target,
        detection,
    };
    AlertDelivery {
        // Serializing plain strings, numbers and a timestamp cannot fail;
        // an empty body would still be signed and sent.
        body: serde_json::to_vec(&body).unwrap_or_default(),
        delivery_id,
        detection_id: detection.id.clone(),
        target: target.to_owned(),
        created_at: detection.at,
    }
}
