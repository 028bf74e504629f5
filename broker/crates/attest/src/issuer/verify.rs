//! Verifying a presented JWT against one issuer, up to its signature: the
//! size cap, the compact form, the header screened (forbidden parameters,
//! `alg`, `typ`, `kid`), the algorithm from the issuer's allow-list only,
//! the key from the issuer's own keys only, and the signature over the
//! exact bytes received. Then the claims (see `claims.rs`).
//!
//! Must never happen: the claims decoded before the signature verifies; a
//! key or an algorithm chosen by the token (a `kid` is only looked up in
//! the issuer's own keys, in memory, never fetched); any I/O.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Issuer, MAX_KID_BYTES, VerifiedJwt};
use crate::encoding::{b64url_decode, parse_object};
use crate::error::LoginError;
use crate::keys::{Algorithm, VerifyingKey};

/// The largest JWT accepted, in bytes, checked before any parsing.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Header parameters that are refused outright: they would let the token
/// pick its own key (`jku`, `x5u`, `jwk`, `x5c`), demand processing we do
/// not do (`crit`, `b64`), or mark a JWE or nested token (`enc`, `zip`,
/// `cty`).
const FORBIDDEN_HEADERS: [&str; 9] = [
    "jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip", "cty",
];

impl Issuer {
    /// Validates `jwt` against this issuer at time `now`, step by step.
    pub(super) fn verify(&self, jwt: &str, now: DateTime<Utc>) -> Result<VerifiedJwt, LoginError> {
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
