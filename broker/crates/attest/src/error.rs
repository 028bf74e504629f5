//! The two error types of this crate: [`LoginError`] (a presented JWT was
//! refused) and [`ConfigError`] (issuer configuration or the development
//! issuer's files are unusable).
//!
//! Must never happen: an error that carries a JWT, a private key, a claim
//! value or any other text an attacker chose without escaping it. Login
//! errors are fixed strings (the algorithm name is the one exception, and it
//! is escaped and capped); configuration errors name the issuer, the file and
//! the reason, never the file's contents.

use leash_domain::audit::escape_untrusted;

/// Why a presented JWT was refused. Every variant renders in Vault's style
/// (`error validating token: …`) and is meant for a 400 response body.
///
/// No variant holds the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The issuer name (from a role or request) is not configured.
    #[error("error validating token: unknown issuer")]
    UnknownIssuer,
    /// The token is longer than the size cap.
    #[error("error validating token: token is too large")]
    TooLarge,
    /// The token is not in JWS compact form (three dot-separated parts).
    #[error("error validating token: token is malformed: compact JWS format must have three parts")]
    NotCompact,
    /// Bad base64url, bad JSON, duplicate JSON keys, a header or claims
    /// object of the wrong shape.
    #[error("error validating token: token is malformed")]
    Malformed,
    /// The header carries a parameter that could redirect key selection or
    /// change processing (`jku`, `x5u`, `jwk`, `x5c`, `crit`, …).
    #[error("error validating token: header parameter \"{0}\" is not allowed")]
    ForbiddenHeader(&'static str),
    /// The header's `alg` is not in the issuer's allow-list. Holds the
    /// escaped, capped algorithm name.
    #[error("error validating token: algorithm \"{0}\" is not allowed")]
    AlgorithmNotAllowed(String),
    /// The header names a `kid` that is not among the issuer's keys.
    #[error("error validating token: unknown key id")]
    UnknownKeyId,
    /// No `kid` was given and more than one configured key fits the
    /// algorithm.
    #[error(
        "error validating token: key id required: more than one configured key fits the algorithm"
    )]
    AmbiguousKey,
    /// No configured key fits the algorithm (or the key named by `kid` is
    /// bound to another algorithm).
    #[error("error validating token: no configured key fits the algorithm")]
    NoKeyForAlgorithm,
    /// The signature does not verify.
    #[error("error validating token: error verifying token signature")]
    BadSignature,
    /// `iss` is missing or not exactly the configured issuer.
    #[error("error validating token: invalid issuer (iss) claim")]
    InvalidIssuer,
    /// `aud` is missing, of the wrong type, or names none of the audiences.
    #[error(
        "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience"
    )]
    InvalidAudience,
    /// `exp` (plus leeway) has passed.
    #[error("error validating token: invalid expiration time (exp) claim: token is expired")]
    Expired,
    /// `nbf` (minus leeway) is still in the future.
    #[error("error validating token: invalid not before (nbf) claim: token not yet valid")]
    NotYetValid,
    /// `iat` is further in the future than the leeway.
    #[error("error validating token: invalid issued at (iat) claim: token issued in the future")]
    IssuedInFuture,
    /// `sub` is missing, empty or not a string.
    #[error("error validating token: invalid subject (sub) claim")]
    InvalidSubject,
    /// A required claim is absent (or null). Holds the claim's name: a
    /// fixed name or one from the operator's configuration, escaped.
    #[error("error validating token: missing required claim \"{0}\"")]
    MissingClaim(String),
    /// A registered claim has the wrong type or an impossible value (for
    /// example `exp` as a string). Holds the fixed claim description.
    #[error("error validating token: invalid {0} claim: wrong type or value")]
    InvalidClaim(&'static str),
}

impl LoginError {
    /// The HTTP status a client should receive (Vault uses 400 for every
    /// login validation failure).
    pub fn status(&self) -> u16 {
        400
    }

    /// A short, fixed reason code for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            LoginError::UnknownIssuer => "unknown_issuer",
            LoginError::TooLarge => "too_large",
            LoginError::NotCompact => "not_compact",
            LoginError::Malformed => "malformed",
            LoginError::ForbiddenHeader(_) => "forbidden_header",
            LoginError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            LoginError::UnknownKeyId => "unknown_kid",
            LoginError::AmbiguousKey => "ambiguous_key",
            LoginError::NoKeyForAlgorithm => "no_key_for_algorithm",
            LoginError::BadSignature => "bad_signature",
            LoginError::InvalidIssuer => "invalid_iss",
            LoginError::InvalidAudience => "invalid_aud",
            LoginError::Expired => "expired",
            LoginError::NotYetValid => "not_yet_valid",
            LoginError::IssuedInFuture => "iat_in_future",
            LoginError::InvalidSubject => "invalid_sub",
            LoginError::MissingClaim(_) => "missing_claim",
            LoginError::InvalidClaim(_) => "invalid_claim",
        }
    }

    pub(crate) fn algorithm_not_allowed(alg: &str) -> Self {
        LoginError::AlgorithmNotAllowed(escape_untrusted(alg, 32))
    }
}

/// Why issuer configuration or the development issuer could not be used.
/// Names the issuer, the file and the reason; never a key's bytes, never a
/// token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration value is invalid.
    #[error("issuer \"{issuer}\": {reason}")]
    Invalid {
        /// The issuer's configured name (escaped).
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// A key file is unusable.
    #[error("issuer \"{issuer}\": key file {path}: {reason}")]
    KeyFile {
        /// The issuer's configured name (escaped).
        issuer: String,
        /// The file (escaped).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("issuer \"{issuer}\": cannot {action} {path}: {source}")]
    Io {
        /// The issuer's configured name (escaped).
        issuer: String,
        /// What was being done: `read`, `write`, `create`, …
        action: &'static str,
        /// The file (escaped).
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The development issuer could not mint a token.
    #[error("issuer \"dev\": cannot mint token: {0}")]
    Mint(String),
}

impl ConfigError {
    pub(crate) fn invalid(issuer: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            issuer: escape_untrusted(issuer, 128),
            reason: reason.into(),
        }
    }

    pub(crate) fn key_file(
        issuer: &str,
        path: &std::path::Path,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::KeyFile {
            issuer: escape_untrusted(issuer, 128),
            path: show_path(path),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(
        issuer: &str,
        action: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        ConfigError::Io {
            issuer: escape_untrusted(issuer, 128),
            action,
            path: show_path(path),
            source,
        }
    }
}

/// A path, escaped for an error message.
pub(crate) fn show_path(path: &std::path::Path) -> String {
    escape_untrusted(&path.display().to_string(), 512)
}
