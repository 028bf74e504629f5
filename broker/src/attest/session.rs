//! Token → [`Session`]: the one way a request becomes an identity.
//!
//! A token record comes from this replica's session cache (trusted only to
//! allow, for at most its TTL, see `lease::fanout`) or from the store. The
//! record must be live now, its workload still declared, and the
//! workload's conditions (source networks, time windows, an AppRole's bound
//! networks) must hold for this request's peer and time.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leash_domain::crypto::label;
use leash_domain::{Digest, KeyedHasher, SecretToken, TokenRecord};
use leash_policy::{Admitted, Denial, Workload};
use leash_store::{Store, StoreError};

use crate::audit::Record;
use crate::lease::fanout::SessionCache;
use crate::policies::PolicyHandle;

/// A resolved, live token, and the workload it runs under, admitted: its
/// conditions held for this request's peer and time.
pub(crate) struct Session {
    pub(crate) token: Arc<TokenRecord>,
    pub(crate) admitted: Admitted,
}

impl Session {
    /// The workload the token runs under, as declared now.
    pub(crate) fn workload(&self) -> &Workload {
        self.admitted.workload()
    }
}

/// Why a presented token did not resolve to a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// No token was presented.
    #[error("missing token")]
    Missing,
    /// No token with this digest exists.
    #[error("unknown token")]
    Unknown,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// The token expired.
    #[error("token expired")]
    Expired,
    /// The token's workload is no longer declared in the policy set.
    #[error("workload is no longer declared")]
    WorkloadGone,
    /// The workload's conditions (source, time, AppRole networks) do not
    /// hold now.
    #[error("{0}")]
    Conditions(Denial),
    /// The token was presented from a source other than its login's,
    /// outside the workload's declared egress pool (`[detection] egress`).
    #[error("token presented from a source other than its login's")]
    NewSource,
    /// The presented token is not the operator's.
    #[error("not an operator token")]
    NotOperator,
}

impl SessionRefusal {
    /// A stable short code for this refusal.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionRefusal::Missing => "session.missing",
            SessionRefusal::Unknown => "session.unknown",
            SessionRefusal::Revoked => "session.revoked",
            SessionRefusal::Expired => "session.expired",
            SessionRefusal::WorkloadGone => "session.workload_gone",
            SessionRefusal::Conditions(_) => "session.conditions",
            SessionRefusal::NewSource => crate::detect::NEW_SOURCE,
            SessionRefusal::NotOperator => "session.not_operator",
        }
    }
}

/// A failed resolution: refused, or the store could not say.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The token does not give a session.
    #[error(transparent)]
    Refused(SessionRefusal),
    /// The store could not be read: nothing is allowed.
    #[error("state store unavailable")]
    Store(#[source] StoreError),
}

impl From<SessionRefusal> for SessionError {
    fn from(r: SessionRefusal) -> Self {
        SessionError::Refused(r)
    }
}

/// Resolves tokens for every request of this replica.
pub(crate) struct Sessions {
    store: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    hasher: KeyedHasher,
    policies: Arc<PolicyHandle>,
    operator: Digest,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// Resolves tokens from `cache`, else `store`; `operator` is the keyed
    /// digest of the operator token.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        cache: Arc<SessionCache>,
        hasher: KeyedHasher,
        policies: Arc<PolicyHandle>,
        operator: Digest,
    ) -> Self {
        Self {
            store,
            cache,
            hasher,
            policies,
            operator,
        }
    }

    /// This replica's cache of token records.
    pub(crate) fn cache(&self) -> &SessionCache {
        &self.cache
    }

    /// Resolves `token` to a live session whose workload is still declared
    /// and whose conditions hold for `peer` at `now`. The token's identity
    /// is recorded as soon as it is known, refused or not.
    pub(crate) async fn resolve(
        &self,
        token: Option<&SecretToken>,
        peer: IpAddr,
        now: DateTime<Utc>,
        record: &mut Record,
    ) -> Result<Session, SessionError> {
        let token = token.ok_or(SessionRefusal::Missing)?;
        let digest = self.hasher.token(token);
        let cached = self.cache.get(&digest, now);
        self.cache.count(cached.is_some());
        let token = match cached {
            Some(r) => r,
            None => {
                let epoch = self.cache.epoch();
                let r = Arc::new(
                    self.store
                        .token(&digest)
                        .await
                        .map_err(SessionError::Store)?
                        .ok_or(SessionRefusal::Unknown)?,
                );
                self.cache.put(r.clone(), epoch, now);
                r
            }
        };
        record.session(&token);
        if token.revoked_at.is_some() {
            return Err(SessionRefusal::Revoked.into());
        }
        if token.expires_at <= now {
            return Err(SessionRefusal::Expired.into());
        }
        let workload = self
            .policies
            .current()
            .shared(&token.workload)
            .ok_or(SessionRefusal::WorkloadGone)?;
        // One token, one host: a token used from anywhere but its login's
        // source (or the declared egress pool) is refused before anything
        // else is checked — a stolen token is contained even from inside
        // the workload's networks. In dry-run the detector only records it.
        let detection = workload.detection();
        if !detection.dry_run() && !crate::detect::source_moved_ok(detection, &token.source, peer) {
            return Err(SessionRefusal::NewSource.into());
        }
        // Conditions include an AppRole's bound CIDRs: its token is usable
        // only from there. Checked once here; every decision of the request
        // goes through the `Admitted` this gives.
        let admitted = workload
            .admit(peer, now)
            .map_err(SessionRefusal::Conditions)?;
        Ok(Session { token, admitted })
    }

    /// Checks the operator token, in constant time.
    pub(crate) fn operator(
        &self,
        token: Option<&SecretToken>,
        record: &mut Record,
    ) -> Result<(), SessionRefusal> {
        let token = token.ok_or(SessionRefusal::Missing)?;
        let presented = self
            .hasher
            .digest(label::OPERATOR, token.expose().as_bytes());
        if !presented.ct_eq(&self.operator) {
            return Err(SessionRefusal::NotOperator);
        }
        record.identity("operator");
        Ok(())
    }
}
