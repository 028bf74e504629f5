//! `new_source`: a token presented from a source other than the one it
//! logged in from — even inside the workload's CIDRs — unless both lie in
//! the egress pool the workload declares (`[detection] egress`). The
//! default is one token, one host. The session layer already refused the
//! request (`SessionRefusal::NewSource`) unless the workload is in dry-run;
//! this detector contains the identity, so the token and its leases die
//! for its usual host too.
//!
//! Must never happen: a token used from its own login address reported; a
//! source that cannot be read as an address treated as the same one.

use std::net::IpAddr;

use super::{Detector, Finding, Observation};

/// The detector.
#[derive(Debug)]
pub struct NewSource;

#[async_trait::async_trait]
impl Detector for NewSource {
    fn name(&self) -> &'static str {
        "new_source"
    }

    async fn observe(&self, o: &Observation<'_>) -> Vec<Finding> {
        let (Some(policy), Some(token)) = (o.policy, o.token) else {
            return Vec::new();
        };
        // Refused for it by the session layer, or let through in dry-run
        // (nothing else reports it: a revoked token presented again from
        // the new host is refused as revoked, and reported no more).
        let refused_for_it = o.refusal.is_some_and(|r| r.kind == super::NEW_SOURCE);
        let let_through = policy.dry_run()
            && o.refusal.is_none()
            && !o.event.operation.ends_with("login")
            && !moved_ok(policy, &token.source, o.peer);
        if !refused_for_it && !let_through {
            return Vec::new();
        }
        let rule = policy.new_source();
        vec![Finding {
            detector: self.name(),
            rule: rule.rule(),
            summary: format!("token issued to {} presented from {}", token.source, o.peer),
            evidence: vec![o.event.request_id.clone()],
            paths: vec![o.event.path.clone()],
            response: rule.response,
        }]
    }
}

/// Whether a token that logged in from `login` may be presented from
/// `peer` under `policy`.
pub(crate) fn moved_ok(policy: &leash_policy::DetectionPolicy, login: &str, peer: IpAddr) -> bool {
    match login.parse::<IpAddr>() {
        Ok(from) => policy.allows_source(from, peer),
        Err(_) => false,
    }
}
