//! Configured JWT issuers and the validation of a presented JWT against one
//! of them: size cap, compact form, header screening, the per-issuer
//! algorithm allow-list, key selection from the issuer's own keys only,
//! signature verification, then every claim check with an injected `now`.
//!
//! Must never happen: a claim trusted before the signature verifies; the
//! token choosing its own key or algorithm (`jku`, `x5u`, `jwk`, `x5c`,
//! `none`, HMAC); any I/O while verifying (keys are loaded once, a `kid` is
//! only looked up in memory); the JWT or a claim value in an error, a log
//! line or `Debug` output.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use leash_domain::audit::escape_untrusted;
use serde_json::{Map, Value};

use crate::encoding::{b64url_decode, parse_object};
use crate::error::{ConfigError, LoginError};
use crate::keys::{Algorithm, VerifyingKey, parse_jwks, parse_pem_keys};

/// The largest JWT accepted, in bytes, checked before any parsing.
pub const MAX_JWT_BYTES: usize = 16 * 1024;
/// The largest leeway an issuer may configure.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// The largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;
/// The most keys one issuer may have.
const MAX_KEYS_PER_ISSUER: usize = 256;
/// The longest `kid` looked up; longer ones are unknown by definition.
const MAX_KID_BYTES: usize = 1024;
/// NumericDate range accepted: 1970-01-01 ..= 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Header parameters that are refused outright: they would let the token
/// pick its own key (`jku`, `x5u`, `jwk`, `x5c`), demand processing we do
/// not do (`crit`, `b64`), or mark a JWE or nested token (`enc`, `zip`,
/// `cty`).
const FORBIDDEN_HEADERS: [&str; 9] = [
    "jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip", "cty",
];

fn default_leeway() -> u64 {
    MAX_LEEWAY_SECS
}

/// One trusted issuer, as configured by the operator.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// How policies refer to it, e.g. `dev`, `github`.
    pub name: String,
    /// The exact `iss`.
    pub issuer: String,
    /// `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// The allow-list, from RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384
    /// EdDSA.
    pub algorithms: Vec<String>,
    /// A JWK set file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// PEM public key files (SubjectPublicKeyInfo, or PKCS#1 for RSA).
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    /// Clock-skew leeway for `exp`, `nbf` and `iat`; at most 60.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Claims that must be present, beyond iss, aud, exp and sub.
    #[serde(default)]
    pub required_claims: Vec<String>,
}

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

fn read_capped(issuer: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| ConfigError::io(issuer, "read", path, e))?;
    let mut buf = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ConfigError::io(issuer, "read", path, e))?;
    if buf.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(ConfigError::key_file(
            issuer,
            path,
            "file is larger than 1 MiB",
        ));
    }
    Ok(buf)
}

fn load_one(c: &IssuerConfig) -> Result<Issuer, ConfigError> {
    let name = c.name.as_str();
    let bad = |reason: String| ConfigError::invalid(name, reason);
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(bad(
            "name must be 1-64 characters of A-Z a-z 0-9 - _ .".into()
        ));
    }
    if c.issuer.is_empty() {
        return Err(bad("issuer (iss) must not be empty".into()));
    }
    if c.audiences.is_empty() || c.audiences.iter().any(String::is_empty) {
        return Err(bad(
            "audiences must list at least one non-empty audience".into()
        ));
    }
    if c.leeway_secs > MAX_LEEWAY_SECS {
        return Err(bad(format!(
            "leeway_secs is {}; at most {MAX_LEEWAY_SECS} is allowed",
            c.leeway_secs
        )));
    }
    if c.algorithms.is_empty() {
        return Err(bad("algorithms must list at least one algorithm".into()));
    }
    let mut algorithms = Vec::new();
    for a in &c.algorithms {
        let shown = escape_untrusted(a, 32);
        let upper = a.to_ascii_uppercase();
        if upper == "NONE" || upper.starts_with("HS") {
            return Err(bad(format!(
                "algorithm \"{shown}\" is never allowed (no \"none\", no HMAC)"
            )));
        }
        let alg = Algorithm::parse(a).ok_or_else(|| {
            bad(format!(
                "algorithm \"{shown}\" is not supported (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA)"
            ))
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if c.required_claims.iter().any(String::is_empty) {
        return Err(bad("required_claims must not contain an empty name".into()));
    }
    if c.jwks_file.is_none() && c.public_key_files.is_empty() {
        return Err(bad("no keys: set jwks_file or public_key_files".into()));
    }

    let mut keys: Vec<(VerifyingKey, &Path)> = Vec::new();
    if let Some(path) = &c.jwks_file {
        let bytes = read_capped(name, path)?;
        let parsed = parse_jwks(&bytes).map_err(|r| ConfigError::key_file(name, path, r))?;
        if parsed.is_empty() {
            return Err(ConfigError::key_file(name, path, "the JWK set has no keys"));
        }
        keys.extend(parsed.into_iter().map(|k| (k, path.as_path())));
    }
    for path in &c.public_key_files {
        let bytes = read_capped(name, path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ConfigError::key_file(name, path, "not a PEM text file"))?;
        let parsed = parse_pem_keys(text).map_err(|r| ConfigError::key_file(name, path, r))?;
        keys.extend(parsed.into_iter().map(|material| {
            (
                VerifyingKey {
                    kid: None,
                    alg: None,
                    material,
                },
                path.as_path(),
            )
        }));
    }
    if keys.len() > MAX_KEYS_PER_ISSUER {
        return Err(bad(format!(
            "{} keys configured; at most {MAX_KEYS_PER_ISSUER} are allowed",
            keys.len()
        )));
    }

    let mut by_kid = HashMap::new();
    for (i, (key, path)) in keys.iter().enumerate() {
        let kind = key.material.kind();
        match key.alg {
            Some(a) if !algorithms.contains(&a) => {
                return Err(ConfigError::key_file(
                    name,
                    path,
                    format!("key #{i} is bound to {a}, which is not in the issuer's algorithms"),
                ));
            }
            None if !algorithms.iter().any(|a| a.key_kind() == kind) => {
                return Err(ConfigError::key_file(
                    name,
                    path,
                    format!(
                        "key #{i} is {}, which fits none of the issuer's algorithms",
                        kind.describe()
                    ),
                ));
            }
            _ => {}
        }
        if let Some(kid) = &key.kid {
            if kid.len() > MAX_KID_BYTES {
                return Err(ConfigError::key_file(
                    name,
                    path,
                    format!("key #{i}: kid is too long"),
                ));
            }
            if by_kid.insert(kid.clone(), i).is_some() {
                return Err(ConfigError::key_file(
                    name,
                    path,
                    format!(
                        "key #{i}: kid {} is used by more than one key",
                        escape_untrusted(kid, 64)
                    ),
                ));
            }
        }
    }

    Ok(Issuer {
        name: c.name.clone(),
        iss: c.issuer.clone(),
        audiences: c.audiences.clone(),
        algorithms,
        leeway: Duration::seconds(i64::try_from(c.leeway_secs).unwrap_or(0)),
        required_claims: c.required_claims.clone(),
        keys: keys.into_iter().map(|(k, _)| k).collect(),
        by_kid,
    })
}

impl Issuers {
    /// Loads every issuer and reads its key files. Nothing is read later.
    pub fn load(configs: &[IssuerConfig]) -> Result<Issuers, ConfigError> {
        let mut map = HashMap::new();
        for c in configs {
            let issuer = load_one(c)?;
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

impl Issuer {
    fn verify(&self, jwt: &str, now: DateTime<Utc>) -> Result<VerifiedJwt, LoginError> {
        // 1. Size, before anything else looks at it.
        if jwt.len() > MAX_JWT_BYTES {
            return Err(LoginError::TooLarge);
        }
        // 2. Compact JWS: exactly three base64url parts. JWE (five parts) and
        //    the JSON serialisation are refused here.
        let mut parts = jwt.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LoginError::NotCompact);
        };
        // 3. Header: strict JSON object, screened.
        let header = b64url_decode(h64)
            .and_then(|b| parse_object(&b))
            .ok_or(LoginError::Malformed)?;
        for h in FORBIDDEN_HEADERS {
            if header.contains_key(h) {
                return Err(LoginError::ForbiddenHeader(h));
            }
        }
        let alg_name = match header.get("alg") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(LoginError::Malformed),
        };
        if let Some(t) = header.get("typ")
            && !t.is_string()
        {
            return Err(LoginError::Malformed);
        }
        // 4. Algorithm from the issuer's allow-list only.
        let alg = Algorithm::parse(alg_name)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| LoginError::algorithm_not_allowed(alg_name))?;
        // 5. Key from the issuer's own keys only, bound to the algorithm.
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(LoginError::Malformed),
        };
        let key = self.select_key(kid, alg)?;
        // 6. Signature over the exact bytes received.
        let sig = b64url_decode(s64).ok_or(LoginError::Malformed)?;
        if sig.is_empty() {
            return Err(LoginError::BadSignature);
        }
        let signing_input_len = h64.len() + 1 + p64.len();
        let signing_input = jwt
            .as_bytes()
            .get(..signing_input_len)
            .ok_or(LoginError::Malformed)?;
        if !key.material.verify(alg, signing_input, &sig) {
            return Err(LoginError::BadSignature);
        }
        // 7. Only now: the claims.
        let claims = b64url_decode(p64)
            .and_then(|b| parse_object(&b))
            .ok_or(LoginError::Malformed)?;
        self.check_claims(claims, now)
    }

    fn select_key(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, LoginError> {
        match kid {
            Some(kid) => {
                if kid.len() <= MAX_KID_BYTES
                    && let Some(&i) = self.by_kid.get(kid)
                {
                    let key = self.keys.get(i).ok_or(LoginError::UnknownKeyId)?;
                    return if key.fits(alg) {
                        Ok(key)
                    } else {
                        Err(LoginError::NoKeyForAlgorithm)
                    };
                }
                // Keys configured without a kid (PEM files) cannot be named
                // by one; a token that carries a kid may still use the one
                // such key that fits the algorithm. With none, the kid is
                // simply unknown. Never a fetch.
                only_one(
                    self.keys.iter().filter(|k| k.kid.is_none() && k.fits(alg)),
                    LoginError::UnknownKeyId,
                )
            }
            None => only_one(
                self.keys.iter().filter(|k| k.fits(alg)),
                LoginError::NoKeyForAlgorithm,
            ),
        }
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedJwt, LoginError> {
        // iss: exact.
        match claims.get("iss") {
            Some(Value::String(s)) if *s == self.iss => {}
            _ => return Err(LoginError::InvalidIssuer),
        }
        // aud: a string or a non-empty array of strings, one of which is ours.
        let aud_ok = match claims.get("aud") {
            Some(Value::String(s)) => self.audiences.contains(s),
            Some(Value::Array(a)) => {
                let strs: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                strs.is_some_and(|v| v.iter().any(|s| self.audiences.iter().any(|x| x == s)))
            }
            _ => false,
        };
        if !aud_ok {
            return Err(LoginError::InvalidAudience);
        }
        // Times.
        let exp = numeric_date(&claims, "exp", "expiration time (exp)", Round::Down)?
            .ok_or_else(|| LoginError::MissingClaim("exp".into()))?;
        let nbf = numeric_date(&claims, "nbf", "not before (nbf)", Round::Up)?;
        let iat = numeric_date(&claims, "iat", "issued at (iat)", Round::Up)?;
        // Written as comparisons against `now`, with checked arithmetic: a
        // time that cannot be represented fails closed.
        let leeway = self.leeway;
        if let Some(nbf) = nbf {
            let earliest = nbf
                .checked_sub_signed(leeway)
                .ok_or(LoginError::NotYetValid)?;
            if now < earliest {
                return Err(LoginError::NotYetValid);
            }
        }
        let latest = exp.checked_add_signed(leeway).ok_or(LoginError::Expired)?;
        if now >= latest {
            return Err(LoginError::Expired);
        }
        if let Some(iat) = iat {
            let horizon = now
                .checked_add_signed(leeway)
                .ok_or(LoginError::IssuedInFuture)?;
            if iat > horizon {
                return Err(LoginError::IssuedInFuture);
            }
        }
        // sub: a non-empty string.
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(LoginError::InvalidSubject),
        };
        // jti: a string if present.
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(LoginError::InvalidClaim("JWT ID (jti)")),
        };
        for name in &self.required_claims {
            if claims.get(name).is_none_or(Value::is_null) {
                return Err(LoginError::MissingClaim(escape_untrusted(name, 64)));
            }
        }
        Ok(VerifiedJwt {
            issuer_name: self.name.clone(),
            iss: self.iss.clone(),
            subject,
            expires_at: exp,
            issued_at: iat,
            jti,
            claims,
        })
    }
}

/// The one element of `it`; `none` if it is empty, [`LoginError::AmbiguousKey`]
/// if it has more than one.
fn only_one<'a>(
    mut it: impl Iterator<Item = &'a VerifyingKey>,
    none: LoginError,
) -> Result<&'a VerifyingKey, LoginError> {
    match (it.next(), it.next()) {
        (Some(k), None) => Ok(k),
        (None, _) => Err(none),
        (Some(_), Some(_)) => Err(LoginError::AmbiguousKey),
    }
}

#[derive(Clone, Copy)]
enum Round {
    /// For `exp`: a fractional second never extends validity.
    Down,
    /// For `nbf` and `iat`: a fractional second never brings them earlier.
    Up,
}

/// Reads a NumericDate claim: an integer, or a finite non-integer number
/// (RFC 7519 allows fractions), within 1970..=9999. Strings, booleans,
/// negative numbers and the like are refused.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    what: &'static str,
    round: Round,
) -> Result<Option<DateTime<Utc>>, LoginError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let bad = LoginError::InvalidClaim(what);
    let n = v.as_number().ok_or_else(|| bad.clone())?;
    let secs = if let Some(i) = n.as_i64() {
        i
    } else if n.is_u64() {
        return Err(bad);
    } else {
        let f = n.as_f64().ok_or_else(|| bad.clone())?;
        if !f.is_finite() || !(0.0..=MAX_NUMERIC_DATE as f64).contains(&f) {
            return Err(bad);
        }
        let r = match round {
            Round::Down => f.floor(),
            Round::Up => f.ceil(),
        };
        // In range by the check above, so the cast is exact.
        r as i64
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&secs) {
        return Err(bad);
    }
    DateTime::from_timestamp(secs, 0).map(Some).ok_or(bad)
}

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
