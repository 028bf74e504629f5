//! The client's error type. Messages carry the broker's own error strings
//! and transport details, never a token or a secret value.

/// Everything a [`crate::LeashClient`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with a non-success status and its `errors` list.
    #[error("{}", api_message(*status, errors))]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The messages from the `{"errors":[...]}` body (empty when the
        /// body had none, e.g. a 404 for a missing secret).
        errors: Vec<String>,
    },
    /// The request could not be sent or the answer could not be read
    /// (connection refused, timeout, TLS failure, ...).
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The broker answered with a success status but a body that does not
    /// match the API contract.
    #[error("cannot decode the broker's answer: {0}")]
    Decode(String),
    /// The broker address is not a usable `http://` or `https://` URL.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// A caller-supplied value (a path, a token, a method) cannot be put
    /// into a request safely.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ClientError {
    /// The HTTP status when the broker answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is the broker refusing the request with 403.
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(403)
    }

    /// Whether this is a 404 (e.g. a missing secret inside the caller's scope).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

fn api_message(status: u16, errors: &[String]) -> String {
    if errors.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_display_matches_the_contract() {
        let e = ClientError::Api {
            status: 403,
            errors: vec!["permission denied".into()],
        };
        assert_eq!(e.to_string(), "HTTP 403: permission denied");
        assert!(e.is_permission_denied());
        let e = ClientError::Api {
            status: 404,
            errors: vec![],
        };
        assert_eq!(e.to_string(), "HTTP 404");
        assert!(e.is_not_found());
        let e = ClientError::Api {
            status: 400,
            errors: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.to_string(), "HTTP 400: a; b");
        assert_eq!(ClientError::Decode("x".into()).status(), None);
    }
}
