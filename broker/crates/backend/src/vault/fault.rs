//! Classification of upstream failures: every `vaultrs` error becomes a
//! [`Fault`] (denied, absent, deleted version, outage, check-and-set
//! failure, or something unusable), and a fault becomes a [`BackendError`].
//! Outages (connection failures, timeouts, 5xx, 429) are `Unavailable`;
//! refusals of Leash's own token are `Upstream`; a 404 with an empty error
//! list is an absent secret.
//!
//! Must never happen: an upstream response body, token or secret value in
//! a fault or an error (bodies are zeroised on the way, only fixed texts and
//! status codes are kept); a redirect followed; a panic on any answer.

use serde::Deserialize;
use vaultrs::api::kv2::responses::SecretVersionMetadata;
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use leash_domain::NotApplied;

use crate::BackendError;

/// What a refused upstream call reports when Leash's token lacks access.
pub(super) const PERMISSION_DENIED: &str = "permission denied upstream";

/// The safe description of an upstream outage, kept as the source of
/// [`BackendError::Unavailable`]. Never holds a body, token or value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UpstreamFault(String);

/// How an upstream call failed, before it becomes a [`BackendError`].
pub(super) enum Fault {
    /// 401/403: Leash's token lacks access, expired or was revoked.
    Denied,
    /// 404 with an empty error list: nothing there.
    NotFound,
    /// KV v2: the version exists but was deleted or destroyed.
    Deleted(SecretVersionMetadata),
    /// Connection failure, timeout, 5xx, 429.
    Unavailable(String),
    /// KV v2: a check-and-set write saw another version.
    CasMismatch,
    /// KV v2: the upstream mount requires check-and-set.
    CasRequired,
    /// Anything else Leash cannot use; a safe, fixed description.
    Upstream(String),
}

impl Fault {
    pub(super) fn into_backend(self) -> BackendError {
        match self {
            Fault::Denied => BackendError::Upstream(PERMISSION_DENIED.to_owned()),
            Fault::NotFound => BackendError::Upstream("unexpected upstream 404".to_owned()),
            Fault::Deleted(_) => {
                BackendError::Upstream("unexpected deleted-version answer".to_owned())
            }
            Fault::Unavailable(m) => BackendError::Unavailable(Box::new(UpstreamFault(m))),
            Fault::CasMismatch => BackendError::NotApplied(NotApplied::CasMismatch),
            Fault::CasRequired => BackendError::BadRequest(
                "check-and-set parameter required for this call".to_owned(),
            ),
            Fault::Upstream(m) => BackendError::Upstream(m),
        }
    }
}

fn status_fault(code: u16, errors_empty: bool) -> Fault {
    match code {
        401 | 403 => Fault::Denied,
        404 if errors_empty => Fault::NotFound,
        404 => Fault::Upstream(
            "the upstream mount, namespace or route does not exist (HTTP 404)".to_owned(),
        ),
        408 | 412 | 429 | 500..=599 => {
            Fault::Unavailable(format!("the upstream store answered HTTP {code}"))
        }
        300..=399 => Fault::Upstream(format!(
            "the upstream store answered HTTP {code}; redirects are not followed"
        )),
        _ => Fault::Upstream(format!("the upstream store answered HTTP {code}")),
    }
}

/// Maps a vaultrs error. Bodies carried inside it are zeroised, never kept.
pub(super) fn classify(e: ClientError) -> Fault {
    match e {
        // Vault's own fixed texts for check-and-set (never a value).
        ClientError::APIError { code: 400, errors }
            if errors
                .iter()
                .any(|e| e.contains("check-and-set parameter did not match")) =>
        {
            Fault::CasMismatch
        }
        ClientError::APIError { code: 400, errors }
            if errors
                .iter()
                .any(|e| e.contains("check-and-set parameter required")) =>
        {
            Fault::CasRequired
        }
        ClientError::APIError { code, errors } => status_fault(code, errors.is_empty()),
        ClientError::RestClientError { source } => classify_rest(source),
        ClientError::JsonParseError { .. }
        | ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError
        | ClientError::ResponseWrapError
        | ClientError::WrapInvalidError => {
            Fault::Upstream("the upstream answer does not have the expected shape".to_owned())
        }
        _ => Fault::Upstream("the upstream request could not be made".to_owned()),
    }
}

fn classify_rest(e: rustify::errors::ClientError) -> Fault {
    use rustify::errors::ClientError as R;
    match e {
        R::ServerResponseError { code, content } => {
            let content = content.map(Zeroizing::new);
            if code == 404
                && let Some(meta) = content.as_deref().and_then(|c| deleted_version(c))
            {
                return Fault::Deleted(meta);
            }
            drop(content);
            status_fault(code, false)
        }
        R::RequestError { source, .. } => Fault::Unavailable(format!(
            "could not reach the upstream store: {}",
            source.root_cause()
        )),
        R::ResponseError { .. } => {
            Fault::Unavailable("the upstream connection failed during the answer".to_owned())
        }
        R::ResponseParseError { content, .. } => {
            drop(content.map(Zeroizing::new));
            Fault::Upstream("the upstream answer is not the expected JSON".to_owned())
        }
        R::ResponseConversionError { content, .. } => {
            drop(Zeroizing::new(content));
            Fault::Upstream("the upstream answer is not UTF-8".to_owned())
        }
        _ => Fault::Upstream("the upstream request could not be built".to_owned()),
    }
}

/// The 404 envelope OpenBao/Vault send for a deleted or destroyed v2
/// version: `data.data` null and the version's metadata.
fn deleted_version(body: &str) -> Option<SecretVersionMetadata> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Body,
    }
    #[derive(Deserialize)]
    struct Body {
        data: Option<serde::de::IgnoredAny>,
        metadata: SecretVersionMetadata,
    }
    let env: Envelope = serde_json::from_str(body).ok()?;
    match env.data.data {
        None => Some(env.data.metadata),
        Some(_) => None,
    }
}

pub(super) fn unexpected_reply() -> Fault {
    Fault::Upstream("unexpected answer kind".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_envelope() {
        let body = r#"{"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,
          "data":{"data":null,"metadata":{"created_time":"2026-11-26T19:33:47.261749839Z",
          "custom_metadata":null,"deletion_time":"2026-11-26T19:33:51.894054049Z",
          "destroyed":false,"version":2}},"wrap_info":null,"warnings":null,"auth":null}"#;
        let m = deleted_version(body).map(|m| m.version);
        assert_eq!(m, Some(2));
        assert!(deleted_version(r#"{"errors":[]}"#).is_none());
        assert!(
            deleted_version(
                r#"{"data":{"data":{"k":"v"},"metadata":{"created_time":"","deletion_time":"","destroyed":false,"version":1}}}"#
            )
            .is_none()
        );
    }
}
