//! `enumeration`: an identity probing for what it cannot reach — reads of
//! `distinct_paths` different out-of-scope paths, or `lists` refused LIST
//! calls, within `window` (`[detection.enumeration]`), interleaved with
//! normal reads or not, spread over replicas or not. The probed paths are
//! the finding's gap report: what the workload looked for that its policy
//! does not grant.
//!
//! Must never happen: the same path refused again counted as a new probe;
//! a 404 inside scope counted at all.

use std::collections::BTreeSet;

use super::history::since;
use super::scope_violations::crosses;
use super::{Detector, Finding, MAX_EVIDENCE, Observation};

/// The detector.
#[derive(Debug)]
pub struct Enumeration;

#[async_trait::async_trait]
impl Detector for Enumeration {
    fn name(&self) -> &'static str {
        "enumeration"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let (Some(policy), true) = (o.policy, o.out_of_scope()) else {
            return Vec::new();
        };
        let rule = policy.enumeration();
        let from = since(o.event.time, rule.window);
        let earlier: Vec<_> = o
            .history
            .recent(from, &["scope"])
            .await
            .filter(|s| s.request_id != o.event.request_id)
            .collect();
        let this_is_list = super::operation_of(o.event) == "list";
        let mut paths: BTreeSet<&str> = earlier.iter().map(|s| s.path.as_str()).collect();
        let new_path = paths.insert(&o.event.path);
        let lists = earlier.iter().filter(|s| s.operation == "list").count() as u64
            + u64::from(this_is_list);
        let distinct = paths.len() as u64;
        let dry_run = policy.dry_run();
        // Only the request that adds to a count can cross it.
        let by_paths = new_path && crosses(distinct, u64::from(rule.distinct_paths), dry_run);
        let by_lists = this_is_list && crosses(lists, u64::from(rule.lists), dry_run);
        if !by_paths && !by_lists {
            return Vec::new();
        }
        let mut evidence: Vec<String> = earlier
            .iter()
            .rev()
            .map(|s| s.request_id.clone())
            .chain([o.event.request_id.clone()])
            .collect();
        let keep = evidence.len().saturating_sub(MAX_EVIDENCE);
        evidence.drain(..keep);
        let summary = if by_paths {
            format!(
                "{distinct} distinct paths outside scope probed within {}s",
                rule.window.as_secs()
            )
        } else {
            format!(
                "{lists} LIST calls outside scope within {}s",
                rule.window.as_secs()
            )
        };
        vec![Finding {
            detector: self.name(),
            rule: rule.rule(),
            summary,
            evidence,
            paths: paths.into_iter().map(str::to_owned).collect(),
            response: rule.response,
        }]
    }
}
