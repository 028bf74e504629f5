//! The use cases: log in, read, list, write, renew, revoke, and the
//! operator's status, revocation and audit queries — one handler each, in
//! the files of this module. The HTTP edge routes a request to one of them
//! (`http::vault`, `http::admin`) and hands the result to
//! [`Broker::finish`].
//!
//! Every routed request ends in exactly one commit unit — its audit event,
//! plus the mutation where state changes — committed through the group
//! committer before the reply leaves. A reply carrying a secret is released
//! only after its lease and audit row have committed; if they cannot commit
//! the caller gets 503 and nothing else. The only unaudited paths are the
//! `sys/` status endpoints, which carry no identity (as in Vault).
//!
//! Handlers call down (attest, policy, lease, backend, audit), never back
//! up into the HTTP layer.

mod admin;
mod connections;
mod error;
mod kv;
mod leases;
mod login;
mod plan;
mod request;
mod sys;
mod tokens;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::SubsecRound;
use leash_backend::SecretBackend;
use leash_domain::{Clock, CommitUnit, Decision, KeyedHasher, Mutation, Outcome, Refusal};
use leash_store::Store;

use crate::attest::{Session, Sessions};
use crate::audit::{Committer, Record};
use crate::detect::{Detectors, History, Observation, Refusal as Refused};
use crate::lease::fanout;
use crate::limits::Limiter;
use crate::policies::PolicyHandle;
use crate::wire::Reply;
use leash_domain::detection::Subject;

pub use admin::{ChainReport, verify_audit_chain};
pub use connections::ConnectionStats;
pub use error::{Cause, Denied, IfNotApplied, ServiceError};
pub(crate) use kv::Shape;
pub use login::LoginMethods;
pub(crate) use plan::{Answer, Pending};
pub use request::{BodyProblem, Incoming, Req, parse_increment};
pub(crate) use sys::STATUS_ENDPOINTS;

/// Everything a request needs. Shared behind an `Arc`.
pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) committer: Committer,
    pub(crate) policies: Arc<PolicyHandle>,
    /// The login methods, by auth mount.
    pub(crate) logins: LoginMethods,
    pub(crate) hasher: KeyedHasher,
    pub(crate) backends: HashMap<String, Arc<dyn SecretBackend>>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The guards of external stores, for health and metrics.
    pub(crate) guards: HashMap<String, Arc<leash_backend::Guarded>>,
    /// Token → session, through this replica's cache.
    pub(crate) sessions: Sessions,
    /// The detectors every decided request passes.
    pub(crate) detectors: Detectors,
    /// What the HTTP edge counts about connections.
    pub(crate) connections: Arc<ConnectionStats>,
    /// The rate limits of `[limits]`.
    pub(crate) limits: Limiter,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store.kind())
            .field("mounts", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Opens the audit record of a request received now.
    pub(crate) fn record(&self, inc: &Incoming) -> Record {
        // Microseconds: what every store keeps exactly, so TTLs computed from
        // stored times come out in whole seconds.
        let now = self.clock.now().trunc_subsecs(6);
        Record::new(
            &inc.request_id,
            &inc.method,
            inc.raw_path.as_deref(),
            inc.peer,
            now,
        )
    }

    /// Resolves the caller's token to a live session (see
    /// [`Sessions::resolve`]; every refusal is 403), and draws on its
    /// identity's rate limit (429).
    pub(crate) async fn session(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Session, ServiceError> {
        let s = self
            .sessions
            .resolve(req.inc.token.as_ref(), req.inc.peer, req.now, rec)
            .await?;
        let t = &s.token;
        self.limits.request_of(
            &t.workload,
            &t.issuer,
            &t.subject,
            std::time::Instant::now(),
        )?;
        Ok(s)
    }

    /// The KV version clients see at `mount`, if it is a mount.
    pub(crate) fn kv_version(&self, mount: &str) -> Option<u8> {
        self.backends.get(mount).map(|b| b.kv_version())
    }

    /// Commits a routed request's outcome — its audit event, its mutation
    /// if it succeeded, and the consequences of whatever the detectors found
    /// in it — and says what the caller gets: the reply, or the error to
    /// render (already audited, except [`ServiceError::AuditUnavailable`],
    /// which is what failed).
    pub(crate) async fn finish(
        &self,
        mut rec: Record,
        mut result: Result<Pending, ServiceError>,
    ) -> Result<Reply, ServiceError> {
        match &result {
            Ok(p) => rec.allow(p.answer.status()),
            Err(e) => {
                let decision = if e.is_failure() {
                    Decision::Error
                } else {
                    Decision::Denied
                };
                rec.refuse(decision, e.status(), e.audit_reason());
            }
        }
        let consequences = self.detect(&rec, result.as_ref().err()).await;
        // The event names what it set off, so the audit log explains every
        // containment (the detection record holds the evidence).
        for m in &consequences {
            if let Mutation::RecordDetection(d) = m {
                rec.detected(&d.detector, &d.id);
            }
        }
        let request_id = rec.request_id().to_owned();
        let time = rec.now();
        let (mutation, on_refusal) = match &mut result {
            Ok(p) => {
                let on_refusal = p.if_not_applied_refusal();
                (p.mutation.take(), on_refusal)
            }
            Err(_) => (None, None),
        };
        let unit = CommitUnit {
            mutation,
            consequences,
            event: rec.into_event(),
            on_refusal,
        };
        // What this replica must evict once the unit has committed.
        let revokes: Vec<Mutation> = unit
            .mutations()
            .filter(|m| fanout::revokes_tokens(m))
            .cloned()
            .collect();
        let committed = self.committer.commit(unit).await;
        // Before the reply: this replica's next request must not find a
        // revoked token in its cache. (Others evict on the announcement the
        // commit carried.) Also on a failed commit, which may have committed
        // after all.
        for m in &revokes {
            self.sessions.cache().evict_for(m);
        }
        let committed = match committed {
            Ok(c) => c,
            Err(c) => {
                if let Err(e) = &result {
                    e.log();
                }
                return Err(ServiceError::AuditUnavailable(Box::new(c)));
            }
        };
        let p = result?;
        match committed.outcome {
            Outcome::NotApplied(why) => Err(ServiceError::NotApplied {
                planned: p.if_not_applied,
                why,
            }),
            outcome => Ok(p.answer.render(&request_id, time, outcome)),
        }
    }

    /// Runs the detectors on a settled record; returns the mutations their
    /// findings call for, to commit with its event.
    async fn detect(&self, rec: &Record, refused: Option<&ServiceError>) -> Vec<Mutation> {
        if self.detectors.is_empty() {
            return Vec::new();
        }
        let token = rec.token().map(|t| &**t);
        let subject = token.map(Subject::of);
        let workload = token.and_then(|t| self.policies.current().shared(&t.workload));
        let policy = workload.as_deref().map(|w| w.detection());
        let history = match (&subject, policy) {
            (Some(s), Some(p)) => History::of(
                self.store.clone(),
                s.clone(),
                rec.now(),
                crate::detect::history_window(p),
            ),
            _ => History::none(),
        };
        let observation = Observation {
            event: rec.event(),
            token,
            subject: subject.as_ref(),
            policy,
            peer: rec.peer(),
            refusal: refused.map(|e| Refused {
                kind: e.kind(),
                policy: e.policy_denial(),
            }),
            history: &history,
        };
        self.detectors.observe(&observation).await
    }
}

impl Pending {
    /// How the store records the event when the mutation does not apply
    /// (its status and reason; a check-and-set mismatch is the store's to
    /// override).
    fn if_not_applied_refusal(&self) -> Option<Refusal> {
        self.mutation.as_ref()?;
        let planned = self.if_not_applied;
        Some(Refusal {
            status: planned.status(),
            reason: planned.shown().to_owned(),
        })
    }
}
