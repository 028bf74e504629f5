//! The one mapping from a [`ServiceError`] to what the caller receives: the
//! HTTP status and the Vault error body `{"errors":[...]}`. The audit event
//! records the same status ([`ServiceError::status`]), so what the log says
//! and what the caller got cannot drift apart.
//!
//! Vault's semantics are kept: 403 for a missing, bad or revoked token and
//! for any refusal (never 401, and the same for a missing path as for an
//! existing one), 400 for a failed login or a malformed request, 404 with
//! an empty `errors` list for a missing secret.
//! Must never happen: internal text (SQL, backend addresses, host paths, a
//! dependency's message) in a body; a 5xx for a client's mistake.

use leash_domain::NotApplied;

use crate::service::{IfNotApplied, ServiceError};
use crate::wire::Reply;

impl ServiceError {
    /// The HTTP status the caller receives.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Denied(_) | ServiceError::PreflightDenied(_) => 403,
            ServiceError::BadRequest { .. } => 400,
            ServiceError::NotFound(_)
            | ServiceError::NamespaceNotFound
            | ServiceError::NoRoute(_)
            | ServiceError::NoOperatorEndpoint => 404,
            ServiceError::MethodNotAllowed(_) => 405,
            ServiceError::BodyTooLarge => 413,
            ServiceError::RateLimited(_) => 429,
            ServiceError::Upstream(why) => not_applied_status(IfNotApplied::Denied, *why),
            ServiceError::NotApplied { planned, why } => not_applied_status(*planned, *why),
            ServiceError::Unavailable { .. }
            | ServiceError::AuditUnavailable(_)
            | ServiceError::TimedOut => 503,
            ServiceError::BadGateway(_) => 502,
        }
    }

    /// The messages of the Vault error body.
    fn errors(&self) -> Vec<String> {
        match self {
            ServiceError::Denied(_) => vec!["permission denied".into()],
            ServiceError::BadRequest { shown, .. } => vec![shown.clone()],
            ServiceError::NotFound(_) => Vec::new(),
            ServiceError::Upstream(why) => vec![IfNotApplied::Denied.shown_for(*why).into()],
            ServiceError::NotApplied { planned, why } => vec![planned.shown_for(*why).into()],
            ServiceError::BadGateway(_) => vec!["secret store error".into()],
            ServiceError::RateLimited(l) => {
                vec![format!("rate limit exceeded: {}", l.limit.shown())]
            }
            ServiceError::NamespaceNotFound
            | ServiceError::NoRoute(_)
            | ServiceError::NoOperatorEndpoint
            | ServiceError::MethodNotAllowed(_)
            | ServiceError::BodyTooLarge
            | ServiceError::PreflightDenied(_)
            | ServiceError::Unavailable { .. }
            | ServiceError::TimedOut
            | ServiceError::AuditUnavailable(_) => vec![self.to_string()],
        }
    }

    /// The seconds a caller should wait before it retries (`Retry-After`),
    /// for a refusal that says.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::RateLimited(l) => Some(l.retry_after_secs),
            _ => None,
        }
    }

    /// The reply: the status and `{"errors":[...]}`.
    pub fn reply(&self) -> Reply {
        let errors = self.errors();
        let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
        Reply::error(self.status(), &errors)
    }

    /// Logs a failure of the broker or a dependency, once, with its cause
    /// chain, inside the request's span (which carries the request id).
    /// Refusals of a caller are the audit log's business, not the log's.
    pub(crate) fn log(&self) {
        if !self.is_failure() {
            return;
        }
        let mut chain = String::new();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            if !chain.is_empty() {
                chain.push_str(": ");
            }
            chain.push_str(&c.to_string());
            cause = c.source();
        }
        tracing::error!(status = self.status(), cause = %chain, "{self}");
    }
}

impl IfNotApplied {
    /// The status a route planned for a mutation that does not apply.
    pub fn status(self) -> u16 {
        match self {
            IfNotApplied::Denied => 403,
            IfNotApplied::LeaseNotFound => 400,
            IfNotApplied::LoginNotRecorded
            | IfNotApplied::RevocationNotRecorded
            | IfNotApplied::QuarantineNotRecorded => 503,
        }
    }
}

/// The status for a conditional mutation that did not apply: Vault's 400
/// for a check-and-set mismatch and for a refused login (a quarantined
/// identity), otherwise what the route planned.
fn not_applied_status(planned: IfNotApplied, why: NotApplied) -> u16 {
    match why {
        NotApplied::CasMismatch | NotApplied::Quarantined => 400,
        _ => planned.status(),
    }
}
