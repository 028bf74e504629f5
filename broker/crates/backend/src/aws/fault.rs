//! Classification of AWS SDK errors: a missing secret, an outage (retry
//! later: `Unavailable`), or a refusal of Leash's own credentials or
//! permissions (`Upstream`).
//!
//! Must never happen: an AWS error message or body copied into a
//! [`BackendError`] (only the operation name, an HTTP status and a
//! sanitised error code are kept); a refused credential reported as
//! anything but a permission problem.

use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::BackendError;

/// The `Upstream` text for refused credentials or permissions.
const PERMISSION_DENIED: &str = "permission denied upstream";

/// The cause behind an `Unavailable`: which call and what went wrong, in
/// Leash's words (never an AWS message or body).
#[derive(Debug)]
struct AwsFault {
    op: &'static str,
    what: String,
}

impl fmt::Display for AwsFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AWS {}: {}", self.op, self.what)
    }
}

impl std::error::Error for AwsFault {}

pub(super) fn unavailable(op: &'static str, what: impl Into<String>) -> BackendError {
    BackendError::Unavailable(Box::new(AwsFault {
        op,
        what: what.into(),
    }))
}

/// An AWS error code reduced to a short, log-safe token.
fn safe_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        .take(64)
        .collect()
}

pub(super) enum Failure {
    /// The secret does not exist (or is scheduled for deletion).
    Missing,
    Error(BackendError),
}

/// Codes that mean Leash's own credentials or permissions were refused.
const DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "NotAuthorized",
    "AuthFailure",
    "UnauthorizedOperation",
    "KMSAccessDeniedException",
];

/// Codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServiceError",
    "InternalServiceErrorException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

fn credentials_failed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<CredentialsError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Sorts an SDK error into missing, unavailable (retry later) or upstream
/// refusal. Only the operation name, an HTTP status and a sanitised error
/// code are kept.
pub(super) fn classify<E>(op: &'static str, err: SdkError<E>, missing: &[&str]) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if credentials_failed(&err) {
        return Failure::Error(BackendError::Upstream(PERMISSION_DENIED.into()));
    }
    let e = match &err {
        SdkError::TimeoutError(_) => unavailable(op, "timed out"),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                unavailable(op, "timed out")
            } else if d.is_io() {
                unavailable(op, "connection failed")
            } else {
                unavailable(op, "request could not be sent")
            }
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            let status = ctx.raw().status().as_u16();
            if missing.contains(&code) {
                return Failure::Missing;
            }
            if DENIED_CODES.contains(&code) {
                BackendError::Upstream(PERMISSION_DENIED.into())
            } else if TRANSIENT_CODES.contains(&code) || status == 429 || status >= 500 {
                unavailable(op, format!("HTTP {status} {}", safe_code(code)))
            } else if status == 401 || status == 403 {
                BackendError::Upstream(PERMISSION_DENIED.into())
            } else {
                BackendError::Upstream(format!(
                    "AWS {op} failed: HTTP {status} {}",
                    safe_code(code)
                ))
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            if status == 429 || status >= 500 {
                unavailable(op, format!("HTTP {status}"))
            } else {
                BackendError::Upstream(format!("AWS {op}: unreadable answer (HTTP {status})"))
            }
        }
        SdkError::ConstructionFailure(_) => {
            BackendError::Upstream(format!("AWS {op}: the request could not be built"))
        }
        _ => unavailable(op, "failed"),
    };
    Failure::Error(e)
}
