//! `canary`: a read of a decoy the operator declared
//! (`[detection] canaries`). The decoy is granted and served like any
//! secret, so the reader cannot tell; one read is enough, and the
//! containment commits with the read's own event, before the value leaves
//! (`[detection.canary]`).
//!
//! Must never happen: a canary read answered differently from a real one;
//! a refused or failed read reported (nothing was handed out).

use leash_domain::Decision;
use leash_policy::CanonicalPath;

use super::{Detector, Finding, Observation};

/// The detector.
#[derive(Debug)]
pub struct Canary;

#[async_trait::async_trait]
impl Detector for Canary {
    fn name(&self) -> &'static str {
        "canary"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let Some(policy) = o.policy else {
            return Vec::new();
        };
        if policy.canaries().is_empty()
            || o.event.decision != Decision::Allowed
            || o.event.status != 200
            || !o.event.operation.ends_with("read")
        {
            return Vec::new();
        }
        // The event's path is the canonical form the policy matched.
        let path = o.event.path.parse::<CanonicalPath>();
        if !path.is_ok_and(|p| policy.is_canary(&p)) {
            return Vec::new();
        }
        let rule = policy.canary();
        vec![Finding {
            detector: self.name(),
            rule: rule.rule(),
            summary: format!("canary {} read", o.event.path),
            evidence: vec![o.event.request_id.clone()],
            paths: vec![o.event.path.clone()],
            response: rule.response,
        }]
    }
}
