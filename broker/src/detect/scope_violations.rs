//! `scope_violations`: an identity refused outside its scope `threshold`
//! times within `window` (`[detection.scope_violations]`), counted over
//! every replica from the subject's signals.
//!
//! Must never happen: an allowed request, a 404 inside scope, or a client's
//! malformed request counted.

use super::history::since;
use super::{Detector, Finding, Observation};

/// The detector.
#[derive(Debug)]
pub struct ScopeViolations;

#[async_trait::async_trait]
impl Detector for ScopeViolations {
    fn name(&self) -> &'static str {
        "scope_violations"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let (Some(policy), true) = (o.policy, o.out_of_scope()) else {
            return Vec::new();
        };
        let rule = policy.scope_violations();
        let from = since(o.event.time, rule.window);
        // Earlier refusals (other requests, any replica), then this one.
        let mut evidence: Vec<String> = o
            .history
            .recent(from, &["scope"])
            .await
            .filter(|s| s.request_id != o.event.request_id)
            .map(|s| s.request_id.clone())
            .collect();
        evidence.reverse();
        evidence.push(o.event.request_id.clone());
        let count = evidence.len() as u64;
        if !crosses(count, u64::from(rule.threshold), policy.dry_run()) {
            return Vec::new();
        }
        let keep = evidence.len().saturating_sub(super::MAX_EVIDENCE);
        evidence.drain(..keep);
        vec![Finding {
            detector: self.name(),
            rule: rule.rule(),
            summary: format!(
                "{count} requests outside scope within {}s",
                rule.window.as_secs()
            ),
            evidence,
            paths: vec![o.event.path.clone()],
            response: rule.response,
        }]
    }
}

/// Whether `count` refusals cross `threshold`: from the threshold on when
/// the response contains the identity (a race between replicas must not
/// let it slip past), exactly at it in dry-run (which contains nothing, so
/// every later refusal would report again).
pub(super) fn crosses(count: u64, threshold: u64, dry_run: bool) -> bool {
    if dry_run {
        count == threshold
    } else {
        count >= threshold
    }
}
