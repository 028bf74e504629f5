//! Detection: the seam through which every decided request passes before
//! its unit is committed ([`Detectors::observe`], called from the one place
//! every decision goes through, `Broker::finish`).
//!
//! A [`Detector`] sees an [`Observation`] — the request's audit event as it
//! will be committed (identity, workload, source, operation, canonical
//! path, decision, status, reason, time), the session's token record, and,
//! for a refusal, its kind and the policy denial with the rule that made
//! it — and returns zero or more [`Finding`]s. A finding's consequences
//! (revoke the identity's tokens and leases, …) are mutations committed in
//! the same transaction as the event of the request that triggered them,
//! so the answer to that request leaves only after they are durable.
//!
//! Adding a detector is one file in this module implementing [`Detector`],
//! and one line in [`Detectors::builtin`]. None ships yet: the containment
//! issue fills the list.
//! Must never happen: a detector that sees a secret value, a token or a
//! lease id (the observation holds none); a finding's consequence committed
//! apart from the event that caused it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use leash_domain::{AuditEvent, Mutation, TokenRecord};
use leash_policy::Denial;

/// What a detector sees of one decided request.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The request's audit event, as it will be committed.
    pub event: &'a AuditEvent,
    /// The session's token record, when a token resolved (for a login: the
    /// token being issued).
    pub token: Option<&'a TokenRecord>,
    /// The peer address.
    pub peer: IpAddr,
    /// Why the request was refused; `None` when it was allowed.
    pub refusal: Option<Refusal<'a>>,
}

/// A refusal, as data.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// A stable short code for the kind of refusal (`session.revoked`,
    /// `policy`, `bad_request`, …).
    pub kind: &'static str,
    /// The policy's denial, with the rule that made it, when the policy
    /// refused.
    pub policy: Option<&'a Denial>,
}

/// What a detector found, and what must happen because of it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The detector's name.
    pub detector: &'static str,
    /// The evidence, in words (log-safe: no secret, token or lease id).
    pub summary: String,
    /// Mutations committed with the request's event, before its answer.
    pub consequences: Vec<Mutation>,
}

/// A detector: looks at every decided request.
#[async_trait::async_trait]
pub trait Detector: Send + Sync + fmt::Debug + 'static {
    /// Its name, in findings and logs.
    fn name(&self) -> &'static str;

    /// Looks at one decided request.
    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding>;
}

/// The detectors in force, called in order.
#[derive(Debug, Clone, Default)]
pub struct Detectors {
    list: Vec<Arc<dyn Detector>>,
}

impl Detectors {
    /// The detectors Leash ships, one line each.
    pub fn builtin() -> Self {
        Self { list: Vec::new() }
    }

    /// Exactly `list` (tests, and deployments that add their own).
    pub fn with(list: Vec<Arc<dyn Detector>>) -> Self {
        Self { list }
    }

    /// Whether there are none (then nothing is observed at all).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// What every detector finds in `o`.
    pub async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let mut findings = Vec::new();
        for d in &self.list {
            findings.extend(d.observe(o).await);
        }
        for f in &findings {
            tracing::warn!(
                detector = f.detector,
                identity = o.event.identity.as_deref().unwrap_or("-"),
                consequences = f.consequences.len(),
                "detection: {}",
                f.summary
            );
        }
        findings
    }
}
