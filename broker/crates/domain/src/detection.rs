//! Containment's vocabulary: who a detection is about ([`Subject`]), the
//! refusals detectors count ([`Signal`], [`SignalStats`]), what they find
//! ([`Detection`]), how an identity is held off ([`Quarantine`]) and the
//! alerts sent about it ([`AlertDelivery`]).
//!
//! Owns: these shapes, and how a token is matched to a subject. They are
//! written by the store as [`Mutation`](crate::records::Mutation)s in the
//! transaction of the request that caused them.
//! Must never happen: a token, lease id or secret value in any of these
//! (they hold request ids, canonical paths and attested names only).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::TokenRecord;

/// What a login attested: the identity detections count, quarantine and
/// revoke (an accessor is one login of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// The workload the token was issued to.
    pub workload: String,
    /// The issuer that attested the caller.
    pub issuer: String,
    /// The attested subject.
    pub subject: String,
}

impl Subject {
    /// The subject a token was issued to.
    pub fn of(t: &TokenRecord) -> Self {
        Self {
            workload: t.workload.clone(),
            issuer: t.issuer.clone(),
            subject: t.subject.clone(),
        }
    }

    /// Whether `t` was issued to this subject.
    pub fn matches(&self, t: &TokenRecord) -> bool {
        self.workload == t.workload && self.issuer == t.issuer && self.subject == t.subject
    }
}

/// One refusal a detector counts, committed with its request's event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Whose request it was.
    pub subject: Subject,
    /// When.
    pub at: DateTime<Utc>,
    /// The request's id (its audit event).
    pub request_id: String,
    /// The request's operation, e.g. `kv.read`, `list`.
    pub operation: String,
    /// The canonical path it asked for.
    pub path: String,
    /// What kind of refusal, e.g. `scope`, `list`, `new_source`.
    pub kind: String,
}

/// Counts of a subject's signals since a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalStats {
    /// Signals.
    pub refusals: u64,
    /// Distinct paths among them.
    pub distinct_paths: u64,
    /// Signals whose operation is `list`.
    pub lists: u64,
}

/// A subject's logins refused from `since` until `until` (`None`: until
/// released).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Who.
    pub subject: Subject,
    /// From when.
    pub since: DateTime<Utc>,
    /// Until when (`None`: until an operator releases it).
    pub until: Option<DateTime<Utc>>,
    /// Why, for the operator.
    pub reason: String,
    /// The detector that asked for it, or `operator`.
    pub by: String,
    /// The detection that caused it, if any.
    pub detection_id: Option<String>,
}

impl Quarantine {
    /// Whether it is in force at `now` (not counting a release, which the
    /// store records).
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| u > now)
    }
}

/// What a detector found, recorded whatever it did (with `dry_run`, it did
/// nothing else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// Broker-generated, e.g. `det_<hex>`.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The detector, e.g. `scope_violations`.
    pub detector: String,
    /// The rule that fired, as configured.
    pub rule: String,
    /// Who it is about.
    pub subject: Subject,
    /// One line for the operator.
    pub summary: String,
    /// The request ids that made the case.
    pub evidence: Vec<String>,
    /// What was done: e.g. `revoke`, `quarantine`, `alert`.
    pub responses: Vec<String>,
    /// Recorded only: nothing was revoked or quarantined.
    pub dry_run: bool,
    /// The paths probed (the policy gap report).
    pub paths: Vec<String>,
}

/// An alert waiting in the outbox: the exact bytes to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDelivery {
    /// Unique; the receiver deduplicates on it.
    pub delivery_id: String,
    /// The detection it announces.
    pub detection_id: String,
    /// The configured target's name.
    pub target: String,
    /// The JSON body, byte for byte.
    pub body: Vec<u8>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn token(workload: &str, sub: &str) -> TokenRecord {
        TokenRecord {
            hash: crate::crypto::Digest([1; 32]),
            accessor: "a".into(),
            workload: workload.into(),
            auth_path: "auth/jwt/login".into(),
            issuer: "iss".into(),
            subject: sub.into(),
            source: "10.0.0.1".into(),
            meta: BTreeMap::new(),
            created_at: DateTime::UNIX_EPOCH,
            expires_at: DateTime::UNIX_EPOCH,
            max_expires_at: DateTime::UNIX_EPOCH,
            ttl_secs: 1,
            renewable: true,
            revoked_at: None,
        }
    }

    #[test]
    fn a_subject_matches_its_tokens_only() {
        let t = token("w", "s");
        let s = Subject::of(&t);
        assert!(s.matches(&t));
        assert!(!s.matches(&token("w", "other")));
        assert!(!s.matches(&token("other", "s")));
    }

    #[test]
    fn quarantine_in_force_until_its_end() {
        let q = Quarantine {
            subject: Subject::of(&token("w", "s")),
            since: DateTime::UNIX_EPOCH,
            until: Some(DateTime::UNIX_EPOCH + chrono::Duration::seconds(10)),
            reason: "r".into(),
            by: "operator".into(),
            detection_id: None,
        };
        assert!(q.in_force(DateTime::UNIX_EPOCH + chrono::Duration::seconds(9)));
        assert!(!q.in_force(DateTime::UNIX_EPOCH + chrono::Duration::seconds(10)));
    }
}
