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
use leash_domain::{Clock, CommitUnit, Decision, KeyedHasher, Outcome, Refusal};
use leash_store::Store;

use crate::attest::{Session, Sessions};
use crate::audit::{Committer, Record};
use crate::detect::Detectors;
use crate::lease::fanout;
use crate::policies::PolicyHandle;
use crate::wire::Reply;

pub use admin::{ChainReport, verify_audit_chain};
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
    /// [`Sessions::resolve`]); every refusal is 403.
    pub(crate) async fn session(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Session, ServiceError> {
        Ok(self
            .sessions
            .resolve(req.inc.token.as_ref(), req.inc.peer, req.now, rec)
            .await?)
    }

    /// The KV version clients see at `mount`, if it is a mount.
    pub(crate) fn kv_version(&self, mount: &str) -> Option<u8> {
        self.backends.get(mount).map(|b| b.kv_version())
    }

    /// Commits a routed request's outcome — its audit event, and its
    /// mutation if it succeeded — and says what the caller gets: the reply,
    /// or the error to render (already audited, except
    /// [`ServiceError::AuditUnavailable`], which is what failed).
    pub(crate) async fn finish(
        &self,
        rec: Record,
        result: Result<Pending, ServiceError>,
    ) -> Result<Reply, ServiceError> {
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                let decision = if e.is_failure() {
                    Decision::Error
                } else {
                    Decision::Denied
                };
                let event = rec.refused(decision, e.status(), e.audit_reason());
                return match self.committer.commit(CommitUnit::event(event)).await {
                    Ok(_) => Err(e),
                    Err(c) => {
                        e.log();
                        Err(ServiceError::AuditUnavailable(Box::new(c)))
                    }
                };
            }
        };
        let request_id = rec.request_id().to_owned();
        let time = rec.now();
        let event = rec.allowed(p.answer.status());
        let revokes = p
            .mutation
            .as_ref()
            .filter(|m| fanout::revokes_tokens(m))
            .cloned();
        let planned = p.if_not_applied;
        let on_refusal = p.if_not_applied_refusal();
        let unit = CommitUnit {
            mutation: p.mutation,
            event,
            on_refusal,
        };
        let committed = self.committer.commit(unit).await;
        // Before the reply: this replica's next request must not find the
        // revoked token in its cache. (Others evict on the announcement the
        // commit carried.) Also on a failed commit, which may have committed
        // after all.
        if let Some(m) = &revokes {
            self.sessions.cache().evict_for(m);
        }
        match committed {
            Ok(c) => match c.outcome {
                Outcome::NotApplied(why) => Err(ServiceError::NotApplied { planned, why }),
                outcome => Ok(p.answer.render(&request_id, time, outcome)),
            },
            Err(e) => Err(ServiceError::AuditUnavailable(Box::new(e))),
        }
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
