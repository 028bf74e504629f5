//! A verified JWT ([`VerifiedJwt`]): what it proves (issuer, subject,
//! times, claims), its `Debug` and the summaries the audit log records.
//!
//! Must never happen: a claim value in `Debug` output (only the claim
//! names, escaped), or untrusted text (`iss`, `sub`, claim names and
//! values) in a summary without escaping.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use leash_domain::audit::escape_untrusted;
use serde_json::{Map, Value};

/// A JWT whose signature and claims were verified.
#[derive(Clone, PartialEq)]
pub struct VerifiedJwt {
    /// The configured issuer name it was verified against.
    pub issuer_name: String,
    /// Its `iss` (equal to the configured issuer).
    pub iss: String,
    /// Its `sub`.
    pub subject: String,
    /// Its `exp`.
    pub expires_at: DateTime<Utc>,
    /// Its `iat`, if present.
    pub issued_at: Option<DateTime<Utc>>,
    /// Its `jti`, if present.
    pub jti: Option<String>,
    /// Every claim, for binding conditions. Untrusted text: escape before
    /// logging.
    pub claims: Map<String, Value>,
}

impl fmt::Debug for VerifiedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self
            .claims
            .keys()
            .map(|k| escape_untrusted(k, 64))
            .collect();
        names.sort();
        f.debug_struct("VerifiedJwt")
            .field("issuer_name", &self.issuer_name)
            .field("iss", &escape_untrusted(&self.iss, 256))
            .field("subject", &escape_untrusted(&self.subject, 256))
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("jti_present", &self.jti.is_some())
            .field("claim_names", &names)
            .finish()
    }
}

impl VerifiedJwt {
    /// What the audit log records: issuer name, `iss`, `sub` (escaped),
    /// `exp` and `iat` (Unix seconds), and whether a `jti` was present.
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "issuer": self.issuer_name,
            "iss": escape_untrusted(&self.iss, 256),
            "sub": escape_untrusted(&self.subject, 256),
            "exp": self.expires_at.timestamp(),
            "iat": self.issued_at.map(|t| t.timestamp()),
            "jti_present": self.jti.is_some(),
        })
    }

    /// [`summary`](Self::summary) plus a `claims` object with the named
    /// claims that are strings (escaped, at most 256 characters), numbers or
    /// booleans. Other types, absent claims and `jti` are left out.
    pub fn summary_with(&self, claim_names: &[&str]) -> Value {
        let mut s = self.summary();
        let mut extra = Map::new();
        let mut seen = HashSet::new();
        for name in claim_names {
            if *name == "jti" || !seen.insert(*name) {
                continue;
            }
            let v = match self.claims.get(*name) {
                Some(Value::String(v)) => Value::String(escape_untrusted(v, 256)),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
                _ => continue,
            };
            extra.insert(escape_untrusted(name, 64), v);
        }
        if let Some(o) = s.as_object_mut() {
            o.insert("claims".into(), Value::Object(extra));
        }
        s
    }
}
