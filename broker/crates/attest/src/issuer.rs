//! Configured JWT issuers and the validation of a presented JWT against one
//! of them: size cap, compact form, header screening, the per-issuer
//! algorithm allow-list, key selection from the issuer's own keys only,
//! signature verification, then every claim check with an injected `now`.
//!
//! This file holds the loaded issuer set ([`Issuers`]) and its entry points;
//! each step lives in its own file under `issuer/`: `config.rs` (the
//! operator's configuration, checked and its key files read — the only
//! I/O), `verify.rs` (the token's form, header, algorithm, key and
//! signature), `claims.rs` (the claim checks, after the signature) and
//! `verified.rs` (what a verified JWT exposes, and how it is shown).
//!
//! Must never happen: a claim trusted before the signature verifies; the
//! token choosing its own key or algorithm (`jku`, `x5u`, `jwk`, `x5c`,
//! `none`, HMAC); any I/O while verifying (keys are loaded once, a `kid` is
//! only looked up in memory); the JWT or a claim value in an error, a log
//! line or `Debug` output.

mod claims;
mod config;
mod verified;
mod verify;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::error::{ConfigError, LoginError};
use crate::keys::{Algorithm, VerifyingKey};

pub use config::{IssuerConfig, MAX_LEEWAY_SECS};
pub use verified::VerifiedJwt;
pub use verify::MAX_JWT_BYTES;

/// The longest `kid` looked up; longer ones are unknown by definition.
const MAX_KID_BYTES: usize = 1024;

/// One issuer, loaded.
struct Issuer {
    name: String,
    iss: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    required_claims: Vec<String>,
    keys: Vec<VerifyingKey>,
    /// `kid` → index into `keys`. The only place a `kid` is looked up.
    by_kid: HashMap<String, usize>,
}

/// The configured issuers with their keys, loaded once. Cheap to clone.
#[derive(Clone)]
pub struct Issuers {
    inner: Arc<HashMap<String, Issuer>>,
}

impl fmt::Debug for Issuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        let mut names: Vec<_> = self.inner.keys().collect();
        names.sort();
        for n in names {
            if let Some(i) = self.inner.get(n) {
                m.entry(
                    n,
                    &format_args!(
                        "{{iss: {:?}, algorithms: {:?}, keys: {}}}",
                        i.iss,
                        i.algorithms,
                        i.keys.len()
                    ),
                );
            }
        }
        m.finish()
    }
}

impl Issuers {
    /// Loads every issuer and reads its key files. Nothing is read later.
    pub fn load(configs: &[IssuerConfig]) -> Result<Issuers, ConfigError> {
        let mut map = HashMap::new();
        for c in configs {
            let issuer = config::load_one(c)?;
            if map.contains_key(&issuer.name) {
                return Err(ConfigError::invalid(
                    &c.name,
                    "issuer name is configured twice",
                ));
            }
            tracing::info!(
                issuer = %issuer.name,
                keys = issuer.keys.len(),
                "attestation issuer loaded"
            );
            map.insert(issuer.name.clone(), issuer);
        }
        Ok(Issuers {
            inner: Arc::new(map),
        })
    }

    /// The configured issuer names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.keys().cloned().collect();
        v.sort();
        v
    }

    /// Validates `jwt` against the issuer named `issuer_name` at time `now`.
    pub fn verify(
        &self,
        issuer_name: &str,
        jwt: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedJwt, LoginError> {
        let issuer = self
            .inner
            .get(issuer_name)
            .ok_or(LoginError::UnknownIssuer)?;
        issuer.verify(jwt, now)
    }
}
