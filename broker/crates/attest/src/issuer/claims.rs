//! The claim checks of a JWT whose signature holds, with an injected
//! `now`: `iss` exact, `aud` one of the issuer's, `exp`, `nbf` and `iat`
//! as NumericDates within the issuer's leeway, `sub` a non-empty string,
//! `jti` a string if present, and the issuer's required claims present.
//!
//! Must never happen: a time that cannot be represented accepted (every
//! comparison is checked arithmetic and fails closed), a fractional second
//! that extends validity, the wall clock read, or a claim value in an error
//! (only claim names, escaped).

use chrono::{DateTime, Utc};
use leash_domain::audit::escape_untrusted;
use serde_json::{Map, Value};

use super::{Issuer, VerifiedJwt};
use crate::error::LoginError;

/// NumericDate range accepted: 1970-01-01 ..= 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

impl Issuer {
    /// The claim checks, run only once the signature holds.
    pub(super) fn check_claims(
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
