//! The operator's configuration of one issuer ([`IssuerConfig`]) and its
//! loading into an [`Issuer`]: every setting checked (name, `iss`,
//! audiences, leeway, the algorithm allow-list, required claims), the key
//! files read with a size cap and parsed, and every key checked against the
//! algorithms and indexed by `kid`.
//!
//! This is the only place in the issuer module that does I/O, and it runs
//! once, at load. Must never happen: an issuer loaded that allows `none` or
//! HMAC, a key that fits none of its algorithms, two keys with one `kid`,
//! or a key file's contents in an error (only its path and the reason).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use chrono::Duration;
use leash_domain::audit::escape_untrusted;

use super::{Issuer, MAX_KID_BYTES};
use crate::error::ConfigError;
use crate::keys::{Algorithm, VerifyingKey, parse_jwks, parse_pem_keys};

/// The largest leeway an issuer may configure.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// The largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;
/// The most keys one issuer may have.
const MAX_KEYS_PER_ISSUER: usize = 256;

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

/// Checks `c` and reads its key files into a loaded issuer.
pub(super) fn load_one(c: &IssuerConfig) -> Result<Issuer, ConfigError> {
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
