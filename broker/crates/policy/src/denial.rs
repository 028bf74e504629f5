//! A refusal as data: [`Denial`] names the kind of refusal and, where one
//! matched, the rule, so detectors, replay and the audit log can read a
//! decision without parsing its text. The text (its `Display`) is rendered
//! only at the edge and in the audit event. Nothing here may hold a secret
//! value, a token or a claim's value, or render text that came from
//! outside without escaping it.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use leash_domain::text::escape_untrusted;

use crate::MAX_QUOTED;
use crate::capability::Capability;
use crate::login::LoginMethod;
use crate::path::CanonicalPath;

/// Why something was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No allow scope grants the capability on the resource (the default).
    #[error("no scope grants {capability} on {resource}")]
    OutOfScope {
        /// What was asked for.
        capability: Capability,
        /// On what.
        resource: CanonicalPath,
    },
    /// A deny scope matched; it wins over every allow.
    #[error("{capability} on {resource} denied by scope `{pattern}`")]
    ExplicitDeny {
        /// What was asked for.
        capability: Capability,
        /// On what.
        resource: CanonicalPath,
        /// The first matching deny scope, an index into
        /// [`Workload::scopes`](crate::Workload::scopes).
        rule: usize,
        /// That scope's pattern, as written.
        pattern: String,
    },
    /// The peer is outside `conditions.source_cidrs`.
    #[error("source address {peer} is not in the workload's allowed networks")]
    SourceNotAllowed {
        /// The peer, IPv4-mapped IPv6 unmapped.
        peer: IpAddr,
    },
    /// The time is outside every one of `conditions.time_windows`.
    #[error("outside the workload's allowed time windows")]
    OutsideTimeWindows {
        /// The time that was checked.
        at: DateTime<Utc>,
    },
    /// The peer is outside an AppRole workload's `login.bound_cidrs`.
    #[error("source address {peer} is not in the AppRole's bound networks")]
    OutsideBoundNetworks {
        /// The peer, IPv4-mapped IPv6 unmapped.
        peer: IpAddr,
    },
    /// A bound claim is absent from the token.
    #[error("bound claim `{}` is missing", escape_untrusted(.claim, MAX_QUOTED))]
    ClaimMissing {
        /// The claim as written in the policy.
        claim: String,
    },
    /// A bound claim is an array, an object or null.
    #[error(
        "bound claim `{}` is not a string, number or boolean",
        escape_untrusted(.claim, MAX_QUOTED)
    )]
    ClaimWrongType {
        /// The claim as written in the policy.
        claim: String,
    },
    /// A bound claim has none of the accepted values.
    #[error("bound claim `{}` does not match the policy", escape_untrusted(.claim, MAX_QUOTED))]
    ClaimMismatch {
        /// The claim as written in the policy.
        claim: String,
    },
    /// A JWT was checked for a workload that logs in another way.
    #[error("workload logs in with {method}, not a JWT")]
    NotJwt {
        /// How the workload does log in.
        method: LoginMethod,
    },
    /// The workload binds no claims (the loader refuses this; kept closed).
    #[error("workload binds no claims")]
    NoBoundClaims,
}

impl Denial {
    /// A stable short code for the kind of refusal, for detectors and the
    /// audit log: `out_of_scope`, `explicit_deny`, `condition.source`,
    /// `condition.time`, `condition.approle_network`, `claim.missing`,
    /// `claim.wrong_type`, `claim.mismatch`, `login.not_jwt`,
    /// `login.no_bound_claims`.
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::OutOfScope { .. } => "out_of_scope",
            Denial::ExplicitDeny { .. } => "explicit_deny",
            Denial::SourceNotAllowed { .. } => "condition.source",
            Denial::OutsideTimeWindows { .. } => "condition.time",
            Denial::OutsideBoundNetworks { .. } => "condition.approle_network",
            Denial::ClaimMissing { .. } => "claim.missing",
            Denial::ClaimWrongType { .. } => "claim.wrong_type",
            Denial::ClaimMismatch { .. } => "claim.mismatch",
            Denial::NotJwt { .. } => "login.not_jwt",
            Denial::NoBoundClaims => "login.no_bound_claims",
        }
    }

    /// The scope that decided, an index into
    /// [`Workload::scopes`](crate::Workload::scopes), when one did.
    pub fn rule(&self) -> Option<usize> {
        match self {
            Denial::ExplicitDeny { rule, .. } => Some(*rule),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::canonicalize;

    #[test]
    fn kinds_are_distinct_and_texts_unchanged() {
        let resource = canonicalize("secret/a").unwrap();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let claim = || "sub".to_owned();
        let all = [
            Denial::OutOfScope {
                capability: Capability::Read,
                resource: resource.clone(),
            },
            Denial::ExplicitDeny {
                capability: Capability::Read,
                resource: resource.clone(),
                rule: 2,
                pattern: "secret/*".into(),
            },
            Denial::SourceNotAllowed { peer },
            Denial::OutsideTimeWindows {
                at: DateTime::UNIX_EPOCH,
            },
            Denial::OutsideBoundNetworks { peer },
            Denial::ClaimMissing { claim: claim() },
            Denial::ClaimWrongType { claim: claim() },
            Denial::ClaimMismatch { claim: claim() },
            Denial::NotJwt {
                method: LoginMethod::AppRole,
            },
            Denial::NoBoundClaims,
        ];
        let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "no scope grants read on secret/a",
                "read on secret/a denied by scope `secret/*`",
                "source address 192.0.2.7 is not in the workload's allowed networks",
                "outside the workload's allowed time windows",
                "source address 192.0.2.7 is not in the AppRole's bound networks",
                "bound claim `sub` is missing",
                "bound claim `sub` is not a string, number or boolean",
                "bound claim `sub` does not match the policy",
                "workload logs in with approle, not a JWT",
                "workload binds no claims",
            ]
        );
        let mut kinds: Vec<&str> = all.iter().map(Denial::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
        assert_eq!(all[1].rule(), Some(2));
        assert_eq!(all[0].rule(), None);
    }
}
