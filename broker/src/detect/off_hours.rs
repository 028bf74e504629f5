//! `off_hours`: a request outside the time windows the workload declares
//! (`conditions.time_windows`). The policy already refuses it; one is
//! enough to contain the identity (`[detection.off_hours]`): a service
//! account that calls after hours is not doing its job.
//!
//! Must never happen: a workload without time windows reported.

use leash_policy::Denial;

use super::{Detector, Finding, Observation};

/// The detector.
#[derive(Debug)]
pub struct OffHours;

#[async_trait::async_trait]
impl Detector for OffHours {
    fn name(&self) -> &'static str {
        "off_hours"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let (Some(policy), Some(Denial::OutsideTimeWindows { .. })) = (o.policy, o.denial()) else {
            return Vec::new();
        };
        let rule = policy.off_hours();
        vec![Finding {
            detector: self.name(),
            rule: rule.rule(),
            summary: format!(
                "{} {} outside the workload's time windows",
                o.event.method, o.event.path
            ),
            evidence: vec![o.event.request_id.clone()],
            paths: vec![o.event.path.clone()],
            response: rule.response,
        }]
    }
}
