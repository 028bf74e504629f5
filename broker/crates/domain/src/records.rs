//! Tokens, leases and the units of work the store commits.
//!
//! Every request ends in exactly one [`CommitUnit`]: an audit event and, for
//! requests that change state, its [`Mutation`] — followed by any
//! consequences (a revocation a finding calls for). The store applies the
//! mutations and inserts the event in one transaction. Mutations that
//! extend access are conditional (the token must still be live, the lease
//! still owned and unrevoked); when the request's own mutation does not
//! apply the store records the event as a refusal instead, so the audit log
//! always says what happened.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::crypto::Digest;
use crate::detection::{AlertDelivery, Detection, Quarantine, Signal, Subject};

/// A broker token, as stored. The token itself is never stored: `hash` is
/// its keyed digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Keyed digest of the token.
    pub hash: Digest,
    /// The non-secret handle shown in lookups and audit rows.
    pub accessor: String,
    /// The workload the token was issued to.
    pub workload: String,
    /// The auth method path that issued it, e.g. `auth/jwt/login`.
    pub auth_path: String,
    /// The issuer that attested the caller.
    pub issuer: String,
    /// The attested subject.
    pub subject: String,
    /// The source address at login.
    pub source: String,
    /// Metadata shown in the Vault `auth.metadata` block (string→string).
    pub meta: BTreeMap<String, String>,
    /// When the token was issued.
    pub created_at: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
    /// It never lives past this (the workload's max TTL, the JWT's `exp`).
    pub max_expires_at: DateTime<Utc>,
    /// The default TTL a renewal grants, in seconds.
    pub ttl_secs: i64,
    /// Whether renew-self is allowed.
    pub renewable: bool,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Live at `now`: not revoked, not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A lease on a secret that was handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Keyed digest of the lease id.
    pub hash: Digest,
    /// Digest of the token that owns it.
    pub token_hash: Digest,
    /// The workload that holds it.
    pub workload: String,
    /// The canonical resource path, e.g. `secret/payments/db`.
    pub path: String,
    /// The public part of the lease id, e.g. `secret/data/payments/db`;
    /// revoke-prefix matches on it.
    pub lease_path: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
    /// It never lives past this.
    pub max_expires_at: DateTime<Utc>,
    /// The default TTL a renewal grants, in seconds.
    pub ttl_secs: i64,
    /// Whether it may be renewed.
    pub renewable: bool,
    /// The last renewal.
    pub last_renewal: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl LeaseRecord {
    /// Live at `now`: not revoked, not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Whether a KV write may create a secret, update one, or both: the
/// workload's `create` and `update` capabilities, enforced by the store in
/// the same statement that writes (no check-then-write race).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRule {
    /// Only if the secret does not exist yet.
    CreateOnly,
    /// Only if the secret exists.
    UpdateOnly,
    /// Either.
    Any,
}

/// A change of state, applied in the same transaction as its audit event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Store a new token. Applies unless the token's [`Subject`] has a
    /// quarantine in force at `created_at` ([`NotApplied::Quarantined`]),
    /// checked so that a login racing a quarantine never outlives it.
    InsertToken(TokenRecord),
    /// Store a new lease. Applies only if the owning token is live at
    /// `issued_at`: a token revoked while a read was in flight hands out
    /// nothing.
    InsertLease(LeaseRecord),
    /// Extend a lease to `expires_at`. Applies only if the lease exists, is
    /// owned by `token`, is live at `now`, is renewable, and `token` is live.
    RenewLease {
        /// The lease.
        lease: Digest,
        /// The presenting token.
        token: Digest,
        /// The time of the request.
        now: DateTime<Utc>,
        /// The new expiry (already capped by the caller).
        expires_at: DateTime<Utc>,
    },
    /// Extend a token to `expires_at`. Applies only if it is live and
    /// renewable.
    RenewToken {
        /// The token.
        token: Digest,
        /// The time of the request.
        now: DateTime<Utc>,
        /// The new expiry (already capped by the caller).
        expires_at: DateTime<Utc>,
    },
    /// Revoke one lease. With `owner`, only if that token owns it. Applies
    /// (affecting 0 rows) when there is nothing to revoke: revocation is
    /// idempotent.
    RevokeLease {
        /// The lease.
        lease: Digest,
        /// The token that must own it, or `None` for an operator.
        owner: Option<Digest>,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Revoke every unrevoked lease whose `lease_path` starts with `prefix`
    /// (a literal prefix, never a pattern). With `owner`, only its leases.
    RevokeLeasePrefix {
        /// The literal prefix.
        prefix: String,
        /// The token that must own them, or `None` for an operator.
        owner: Option<Digest>,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Write a new version of a built-in secret (the value already sealed
    /// by the backend). Applies only if `rule` allows it and, with `cas`,
    /// only if the current version is `cas` (0: the secret must not exist).
    KvWrite {
        /// The mount.
        mount: String,
        /// The path inside the mount.
        path: String,
        /// The sealed value (ciphertext).
        sealed: Vec<u8>,
        /// Create, update or both.
        rule: WriteRule,
        /// Check-and-set: the version the writer saw.
        cas: Option<u64>,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Soft-delete the latest version of a built-in secret. Applies (with
    /// 0 rows) when there is nothing to delete.
    KvDelete {
        /// The mount.
        mount: String,
        /// The path inside the mount.
        path: String,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Revoke a token and every lease it owns.
    RevokeToken {
        /// The token.
        token: Digest,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Revoke every live token a selector picks, and all their leases (an
    /// operator's answer to a compromised identity or workload).
    RevokeTokens {
        /// Which tokens.
        selector: TokenSelector,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Record a refusal a detector counts. Always applies (1 row).
    RecordSignal(Signal),
    /// Refuse the subject's logins from `since`. Idempotent: applies with
    /// 0 rows when a quarantine of the subject is already in force at
    /// `since`.
    Quarantine(Quarantine),
    /// Release every quarantine of the subject in force at `at`; affected:
    /// the quarantines released.
    ReleaseQuarantine {
        /// Who.
        subject: Subject,
        /// The time of the release.
        at: DateTime<Utc>,
    },
    /// Record a detection. Always applies (1 row).
    RecordDetection(Detection),
    /// Queue an alert for delivery. Always applies (1 row).
    EnqueueAlert(AlertDelivery),
}

/// Which tokens an operator revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token with this accessor (one identity's session).
    Accessor(String),
    /// Every token of this workload.
    Workload(String),
    /// Every token of this workload, issuer and subject (one attested
    /// identity of one workload).
    Subject(Subject),
    /// Every token of this issuer and subject, whatever the workload.
    Attestation {
        /// The issuer.
        issuer: String,
        /// The attested subject.
        subject: String,
    },
}

/// Why a conditional mutation did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotApplied {
    /// The token is revoked, expired or unknown.
    TokenNotLive,
    /// No such lease, or it belongs to another token.
    LeaseNotFound,
    /// The lease was revoked.
    LeaseRevoked,
    /// The lease has expired.
    LeaseExpired,
    /// The lease or token may not be renewed.
    NotRenewable,
    /// A check-and-set write saw another version.
    CasMismatch,
    /// A create-only write found the secret already there.
    AlreadyExists,
    /// An update-only write found no secret.
    Missing,
    /// A login for an identity under quarantine.
    Quarantined,
}

impl NotApplied {
    /// A short description for the audit reason.
    pub fn as_str(self) -> &'static str {
        match self {
            NotApplied::TokenNotLive => "token not live",
            NotApplied::LeaseNotFound => "lease not found",
            NotApplied::LeaseRevoked => "lease revoked",
            NotApplied::LeaseExpired => "lease expired",
            NotApplied::NotRenewable => "not renewable",
            NotApplied::CasMismatch => "check-and-set mismatch",
            NotApplied::AlreadyExists => "secret exists and the workload may only create",
            NotApplied::Missing => "secret missing and the workload may only update",
            NotApplied::Quarantined => "identity quarantined",
        }
    }

    /// The refusal for this reason: its override, else the route's
    /// `fallback`, else 403 `permission denied`.
    pub fn refusal(self, fallback: Option<&Refusal>) -> Refusal {
        self.caller_override()
            .or_else(|| fallback.cloned())
            .unwrap_or(Refusal {
                status: 403,
                reason: "permission denied".into(),
            })
    }

    /// What the caller is told when this reason must override the route's
    /// refusal (Vault answers a CAS mismatch with 400 and its own message).
    pub fn caller_override(self) -> Option<Refusal> {
        match self {
            NotApplied::CasMismatch => Some(Refusal {
                status: 400,
                reason: "check-and-set parameter did not match the current version".into(),
            }),
            _ => None,
        }
    }
}

/// What the event should say if the mutation does not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status the caller will get.
    pub status: u16,
    /// The reason to record.
    pub reason: String,
}

/// One request's worth of work for the store: its audit event and the
/// mutations committed with it, in one transaction.
///
/// `mutation`, if any, is the request's own. Its outcome is
/// [`Committed::outcome`] and decides the event recorded
/// ([`CommitUnit::final_event`]): the caller's event when it applied, or
/// the event rewritten as a refusal ([`CommitUnit::on_refusal`]) when it
/// did not. Each of `consequences` is a consequence of the request (a
/// revocation a detector's finding calls for): applied after the request's
/// own, in order, in the same transaction, whatever its outcome was (a
/// refused renewal still gets its identity revoked; a refused request with
/// no mutation of its own still gets its consequences), and never changing
/// the event. The rows the consequences changed are
/// [`Committed::consequences_affected`]. A consequence that revokes a token
/// announces it to the other replicas exactly as a first mutation does.
#[derive(Debug, Clone)]
pub struct CommitUnit {
    /// The request's own mutation, if the request changes state.
    pub mutation: Option<Mutation>,
    /// What must happen because of the request, after its own mutation.
    pub consequences: Vec<Mutation>,
    /// The audit event, written as allowed/denied by the caller.
    pub event: AuditEvent,
    /// How to rewrite the event if the request's own mutation does not
    /// apply. Without it the event is recorded as denied with status 403.
    pub on_refusal: Option<Refusal>,
}

impl CommitUnit {
    /// A unit that only records an event.
    pub fn event(event: AuditEvent) -> Self {
        Self {
            mutation: None,
            consequences: Vec::new(),
            event,
            on_refusal: None,
        }
    }

    /// A unit whose request makes one change, `mutation`, refused as
    /// `on_refusal` says if it does not apply.
    pub fn new(mutation: Mutation, event: AuditEvent, on_refusal: Option<Refusal>) -> Self {
        Self {
            mutation: Some(mutation),
            consequences: Vec::new(),
            event,
            on_refusal,
        }
    }

    /// The request's own mutation, if any.
    pub fn own(&self) -> Option<&Mutation> {
        self.mutation.as_ref()
    }

    /// Every mutation of the unit, in the order they apply: the request's
    /// own, then its consequences.
    pub fn mutations(&self) -> impl Iterator<Item = &Mutation> {
        self.mutation.iter().chain(&self.consequences)
    }

    /// The event the store must record for `outcome`, the outcome of the
    /// request's own mutation: the caller's event when it applied (or there
    /// was none), otherwise the event rewritten as a refusal.
    pub fn final_event(&self, outcome: &Outcome) -> std::borrow::Cow<'_, AuditEvent> {
        let Outcome::NotApplied(why) = outcome else {
            return std::borrow::Cow::Borrowed(&self.event);
        };
        let mut e = self.event.clone();
        let r = self.refusal_for(*why);
        let (status, reason) = (r.status, r.reason.as_str());
        e.decision = crate::audit::Decision::Denied;
        e.status = status;
        e.reason = format!("{reason}: {}", why.as_str());
        std::borrow::Cow::Owned(e)
    }
}

impl CommitUnit {
    /// What the caller gets, and the log records, when the request's own
    /// mutation did not apply for `why`.
    pub fn refusal_for(&self, why: NotApplied) -> Refusal {
        why.refusal(self.on_refusal.as_ref())
    }
}

/// The result of a unit's mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No mutation; the event was recorded.
    Recorded,
    /// The mutation applied to `affected` rows (for a revoke: leases).
    Applied {
        /// Rows changed.
        affected: u64,
    },
    /// A KV write created `version`.
    Written {
        /// The new version.
        version: u64,
    },
    /// The condition failed; the event was recorded as a refusal.
    NotApplied(NotApplied),
}

/// A unit after its transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The audit event's position in the chain.
    pub seq: i64,
    /// What the request's own mutation did ([`Outcome::Recorded`] without
    /// one).
    pub outcome: Outcome,
    /// The rows the unit's consequences changed, summed over them: each
    /// one's [`Outcome::affected`]. 0 without consequences.
    pub consequences_affected: u64,
}

impl Outcome {
    /// The rows a mutation changed, as its outcome reports them: `affected`
    /// when it applied (for a revocation, what it revoked), 1 for a KV
    /// write, 0 when it did not apply or there was none.
    pub fn affected(&self) -> u64 {
        match self {
            Outcome::Applied { affected } => *affected,
            Outcome::Written { .. } => 1,
            Outcome::Recorded | Outcome::NotApplied(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;

    fn event() -> AuditEvent {
        AuditEvent {
            request_id: "req-1".into(),
            time: DateTime::UNIX_EPOCH,
            identity: Some("acc".into()),
            workload: Some("w".into()),
            peer: "127.0.0.1".into(),
            operation: "lease.renew".into(),
            method: "PUT".into(),
            path: "sys/leases/renew".into(),
            decision: Decision::Allowed,
            status: 200,
            reason: "ok".into(),
            lease_ref: None,
            attestation: serde_json::json!({}),
        }
    }

    fn revoke(byte: u8) -> Mutation {
        Mutation::RevokeToken {
            token: Digest([byte; 32]),
            now: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_requests_own_mutation_applies_before_its_consequences() {
        let u = CommitUnit::event(event());
        assert_eq!(u.own(), None);
        assert_eq!(u.mutations().count(), 0);
        let mut u = CommitUnit::new(revoke(1), event(), None);
        assert_eq!(u.own(), Some(&revoke(1)));
        u.consequences.push(revoke(2));
        u.consequences.push(revoke(3));
        assert_eq!(u.own(), Some(&revoke(1)));
        let all: Vec<&Mutation> = u.mutations().collect();
        assert_eq!(all, vec![&revoke(1), &revoke(2), &revoke(3)]);
        let mut refused = CommitUnit::event(event());
        refused.consequences.push(revoke(2));
        assert_eq!(
            refused.own(),
            None,
            "a consequence is never the request's own"
        );
    }

    #[test]
    fn only_the_requests_own_outcome_rewrites_the_event() {
        let mut u = CommitUnit::new(revoke(1), event(), None);
        u.consequences.push(revoke(2));
        let applied = Outcome::Applied { affected: 0 };
        assert_eq!(*u.final_event(&applied), u.event);
        let refused = u.final_event(&Outcome::NotApplied(NotApplied::LeaseNotFound));
        assert_eq!((refused.decision, refused.status), (Decision::Denied, 403));
        assert_eq!(refused.reason, "permission denied: lease not found");
    }

    #[test]
    fn affected_counts_what_an_outcome_changed() {
        assert_eq!(Outcome::Recorded.affected(), 0);
        assert_eq!(Outcome::Applied { affected: 3 }.affected(), 3);
        assert_eq!(Outcome::Written { version: 9 }.affected(), 1);
        assert_eq!(Outcome::NotApplied(NotApplied::TokenNotLive).affected(), 0);
    }
}
