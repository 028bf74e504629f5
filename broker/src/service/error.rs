//! Why a request was not served, as data: [`ServiceError`] and, for the
//! refusals that answer 403 `permission denied`, [`Denied`].
//!
//! Owns: the kinds of failure and the reason each records in the audit log
//! (its `Display`). The HTTP status and the Vault error body the caller
//! receives are chosen in one place only, `http::error` — the audit event
//! records that status, so the service asks for it there
//! ([`ServiceError::status`]) rather than choosing one itself.
//! Must never happen: a secret value, a token, a lease id or unescaped
//! caller text in a reason; a client's mistake classed as a broker error.

use leash_backend::BackendError;
use leash_domain::NotApplied;
use leash_domain::audit::escape_untrusted;
use leash_policy::Denial;

use crate::attest::{SessionError, SessionRefusal};
use crate::limits::Limited;

/// Boxed cause of a dependency failure, logged once at the edge.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

pub(crate) use crate::audit::MAX_LOGGED;

/// A request the broker did not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Refused: the caller may not do this (403 `permission denied`, for a
    /// missing path as for an existing one).
    #[error("{0}")]
    Denied(Denied),
    /// The request is malformed or a login failed (400). `shown` is what
    /// the caller reads; `reason`, when set, is the more precise text the
    /// audit log records (e.g. which part of an AppRole login failed).
    #[error("{}", reason.as_deref().unwrap_or(shown))]
    BadRequest {
        /// The message the caller sees.
        shown: String,
        /// What the audit log records instead, if different.
        reason: Option<String>,
    },
    /// Vault's bare 404 (`{"errors":[]}`); the reason is only recorded.
    #[error("{0}")]
    NotFound(&'static str),
    /// `X-Vault-Namespace` names a namespace other than root (404).
    #[error("namespace not found")]
    NamespaceNotFound,
    /// No route serves this path (404); the path is already escaped.
    #[error("no handler for route \"{0}\"")]
    NoRoute(String),
    /// An operator path that does not exist (404).
    #[error("no such operator endpoint")]
    NoOperatorEndpoint,
    /// The method is not served here, or the mount does not take writes
    /// through Leash (405).
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// The body is larger than the configured limit (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// The KV preflight of a mount the caller has no scope under (403, with
    /// Vault's message naming the path, already escaped).
    #[error(
        "preflight capability check returned 403, please ensure client's policies grant access to path \"{0}\""
    )]
    PreflightDenied(String),
    /// A conditional write the store refused before Leash committed
    /// anything (an upstream check-and-set mismatch).
    #[error("{}", .0.as_str())]
    Upstream(NotApplied),
    /// The request's own mutation did not apply when its unit committed:
    /// `planned` is what the route said the caller gets then.
    #[error("{}: {}", planned.shown_for(*why), why.as_str())]
    NotApplied {
        /// The route's answer for a mutation that does not apply.
        planned: IfNotApplied,
        /// Why it did not apply.
        why: NotApplied,
    },
    /// A dependency (the state store, the secret store, the audit log, the
    /// random source) failed; nothing was handed out (503).
    #[error("{what} unavailable")]
    Unavailable {
        /// Which dependency, as the caller reads it.
        what: &'static str,
        /// The cause, logged once at the edge.
        #[source]
        cause: Cause,
    },
    /// The secret store answered something unusable (502).
    #[error("secret store error: {0}")]
    BadGateway(Cause),
    /// Over a rate limit of `[limits]` (429, with `Retry-After`); refused
    /// before the work the limit protects (a signature check, a token
    /// lookup, a read).
    #[error(
        "rate limit exceeded: {} (limits.{}); retry after {}s",
        .0.limit.shown(),
        .0.limit.name(),
        .0.retry_after_secs
    )]
    RateLimited(Limited),
    /// The handler did not finish within `server.handler_timeout` (503);
    /// what it had begun upstream may or may not have taken effect, and
    /// nothing was handed out.
    #[error("request timed out")]
    TimedOut,
    /// The request's audit event could not be committed, so the request was
    /// not processed (503). Never itself audited: that is what failed.
    #[error("audit log unavailable; request not processed")]
    AuditUnavailable(#[source] Cause),
}

/// What a route answers when its conditional mutation does not apply at
/// commit (the token was revoked meanwhile, the lease is gone, …). A
/// check-and-set mismatch overrides it with Vault's own 400, a login of a
/// quarantined identity with a failed login's 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfNotApplied {
    /// 403 `permission denied` (reads, writes, renew-self, revocations by
    /// a workload).
    Denied,
    /// 400 `lease not found` (a lease renewal).
    LeaseNotFound,
    /// 503: the login's token could not be recorded.
    LoginNotRecorded,
    /// 503: an operator's revocation could not be recorded.
    RevocationNotRecorded,
    /// 503: an operator's quarantine or release could not be recorded.
    QuarantineNotRecorded,
}

/// Vault's answer to a check-and-set mismatch, whatever the route planned.
const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// The answer to a login of a quarantined identity (its proof was good:
/// telling it why is no help to anyone who could not log in anyway).
pub(crate) const QUARANTINED: &str =
    "login refused: this identity is quarantined; an operator must release it";

impl IfNotApplied {
    /// The message the caller reads when the mutation did not apply for
    /// `why` (and the audit reason's prefix): the route's, except that a
    /// check-and-set mismatch always reads as Vault's, and a quarantined
    /// identity's login says so.
    pub fn shown_for(self, why: NotApplied) -> &'static str {
        match why {
            NotApplied::CasMismatch => CAS_MISMATCH,
            NotApplied::Quarantined => QUARANTINED,
            _ => self.shown(),
        }
    }

    /// The message the caller reads (and the audit reason's prefix).
    pub fn shown(self) -> &'static str {
        match self {
            IfNotApplied::Denied => "permission denied",
            IfNotApplied::LeaseNotFound => "lease not found",
            IfNotApplied::LoginNotRecorded => "login could not be recorded",
            IfNotApplied::RevocationNotRecorded => "revocation could not be recorded",
            IfNotApplied::QuarantineNotRecorded => "quarantine could not be recorded",
        }
    }
}

/// Why a caller was refused with 403 `permission denied`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The token did not resolve to a live session.
    #[error("{0}")]
    Session(SessionRefusal),
    /// The workload's policy refused the operation on the path.
    #[error("{0}")]
    Policy(Denial),
    /// An auth method Leash does not serve (Vault answers 403 too, and says
    /// nothing about which methods exist).
    #[error("no such auth method")]
    NoSuchAuthMethod,
    /// `auth/token/lookup-self` with a method other than GET (Vault's
    /// default policy allows only `read` there).
    #[error("lookup-self is read-only")]
    LookupSelfReadOnly,
    /// The token is at its max TTL: a lease would live zero seconds.
    #[error("token at its max TTL")]
    TokenAtMaxTtl,
}

impl ServiceError {
    /// 400 with `msg` as both the caller's message and the audit reason.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ServiceError::BadRequest {
            shown: msg.into(),
            reason: None,
        }
    }

    /// 400 showing `shown` while the audit log records `reason`.
    pub fn bad_request_because(shown: impl Into<String>, reason: impl Into<String>) -> Self {
        ServiceError::BadRequest {
            shown: shown.into(),
            reason: Some(reason.into()),
        }
    }

    /// 503 for `what`, with its cause.
    pub fn unavailable(what: &'static str, cause: impl Into<Cause>) -> Self {
        ServiceError::Unavailable {
            what,
            cause: cause.into(),
        }
    }

    /// Whether the broker or a dependency failed (rather than the caller
    /// being refused): recorded as `error`, not `denied`.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            ServiceError::Unavailable { .. }
                | ServiceError::BadGateway(_)
                | ServiceError::AuditUnavailable(_)
                | ServiceError::TimedOut
        )
    }

    /// A stable short code for the kind of failure, for detectors (and,
    /// later, the audit log): `session.revoked`, `policy`, `bad_request`, …
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::Denied(Denied::Session(r)) => r.kind(),
            ServiceError::Denied(Denied::Policy(d)) => d.kind(),
            ServiceError::Denied(Denied::NoSuchAuthMethod) => "auth.unknown_method",
            ServiceError::Denied(Denied::LookupSelfReadOnly) => "method",
            ServiceError::Denied(Denied::TokenAtMaxTtl) => "token.max_ttl",
            ServiceError::BadRequest { .. } => "bad_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::NamespaceNotFound => "namespace",
            ServiceError::NoRoute(_) | ServiceError::NoOperatorEndpoint => "no_route",
            ServiceError::MethodNotAllowed(_) => "method",
            ServiceError::BodyTooLarge => "too_large",
            ServiceError::PreflightDenied(_) => "preflight",
            ServiceError::Upstream(_) | ServiceError::NotApplied { .. } => "not_applied",
            ServiceError::Unavailable { .. } => "unavailable",
            ServiceError::BadGateway(_) => "bad_gateway",
            ServiceError::AuditUnavailable(_) => "audit_unavailable",
            ServiceError::TimedOut => "timeout",
            ServiceError::RateLimited(_) => "rate_limited",
        }
    }

    /// The policy's denial, when the policy refused.
    pub fn policy_denial(&self) -> Option<&Denial> {
        match self {
            ServiceError::Denied(Denied::Policy(d))
            | ServiceError::Denied(Denied::Session(SessionRefusal::Conditions(d))) => Some(d),
            _ => None,
        }
    }

    /// The reason the audit event records: the `Display` text, escaped and
    /// bounded.
    pub fn audit_reason(&self) -> String {
        escape_untrusted(&self.to_string(), MAX_LOGGED)
    }
}

impl From<Denied> for ServiceError {
    fn from(d: Denied) -> Self {
        ServiceError::Denied(d)
    }
}

impl From<Limited> for ServiceError {
    fn from(l: Limited) -> Self {
        ServiceError::RateLimited(l)
    }
}

impl From<SessionRefusal> for ServiceError {
    fn from(r: SessionRefusal) -> Self {
        ServiceError::Denied(Denied::Session(r))
    }
}

impl From<SessionError> for ServiceError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Refused(r) => r.into(),
            SessionError::Store(e) => ServiceError::unavailable("state store", e),
        }
    }
}

impl From<BackendError> for ServiceError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(_) => ServiceError::unavailable("secret store", e),
            BackendError::BadRequest(m) => ServiceError::bad_request(m),
            BackendError::ReadOnly => {
                ServiceError::MethodNotAllowed("this mount is read-only through Leash")
            }
            BackendError::Unsupported(m) => ServiceError::MethodNotAllowed(m),
            BackendError::NotApplied(why) => ServiceError::Upstream(why),
            BackendError::Upstream(_) | BackendError::GrantMismatch | BackendError::Corrupt(_) => {
                ServiceError::BadGateway(Box::new(e))
            }
        }
    }
}
