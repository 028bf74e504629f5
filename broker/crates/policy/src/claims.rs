//! Bound claims: which attested claims a workload's login token must carry.
//! Nothing here may accept a claim that is missing, an array, an object or
//! null, compare anything but exact string forms, or put a claim's value in
//! a denial reason.

use leash_domain::text::escape_untrusted;
use serde_json::{Map, Value};

use crate::MAX_QUOTED;
use crate::denial::Denial;

/// One bound claim: the claim (a top-level name, or an RFC 6901 JSON
/// pointer when it starts with `/`) must be present, a string, number or
/// boolean, and its string form must equal one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundClaim {
    /// The claim as written in the policy (`sub`, `/kubernetes.io/namespace`).
    pub claim: String,
    /// Accepted string forms; any one matches.
    pub values: Vec<String>,
    tokens: Vec<String>,
}

impl BoundClaim {
    /// Builds a bound claim; the error is a reason for a load problem.
    pub(crate) fn new(claim: &str, values: Vec<String>) -> Result<Self, String> {
        let tokens = parse_claim_key(claim)?;
        Ok(Self {
            claim: claim.to_owned(),
            values,
            tokens,
        })
    }

    /// Looks the claim up.
    fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.tokens.split_first()?;
        let mut v = claims.get(first.as_str())?;
        for t in rest {
            v = match v {
                Value::Object(m) => m.get(t.as_str())?,
                Value::Array(a) => a.get(array_index(t)?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// Checks this claim against the token's claims.
    pub(crate) fn check(&self, claims: &Map<String, Value>) -> Result<(), Denial> {
        let claim = || self.claim.clone();
        let Some(v) = self.lookup(claims) else {
            return Err(Denial::ClaimMissing { claim: claim() });
        };
        let form = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => {
                return Err(Denial::ClaimWrongType { claim: claim() });
            }
        };
        if self.values.contains(&form) {
            Ok(())
        } else {
            Err(Denial::ClaimMismatch { claim: claim() })
        }
    }
}

/// RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(t: &str) -> Option<usize> {
    if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if t.len() > 1 && t.starts_with('0') {
        return None;
    }
    t.parse().ok()
}

/// Splits a claim key into lookup tokens: a plain name is one token; a key
/// starting with `/` is an RFC 6901 pointer (`~1` is `/`, `~0` is `~`).
fn parse_claim_key(key: &str) -> Result<Vec<String>, String> {
    if key.is_empty() {
        return Err("a bound claim name must not be empty".to_owned());
    }
    if key.len() > 256 {
        return Err("a bound claim name must be at most 256 bytes".to_owned());
    }
    let Some(pointer) = key.strip_prefix('/') else {
        return Ok(vec![key.to_owned()]);
    };
    pointer
        .split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(format!(
                                "invalid JSON pointer `{}`: `~` must be followed by 0 or 1",
                                escape_untrusted(key, MAX_QUOTED)
                            ));
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn bc(k: &str, vals: &[&str]) -> BoundClaim {
        BoundClaim::new(k, vals.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn plain_claims() {
        let c = claims(json!({
            "sub": "payments-api", "n": 42, "b": true, "f": 1.5,
            "arr": ["payments-api"], "obj": {"a": 1}, "nul": null
        }));
        assert!(bc("sub", &["payments-api"]).check(&c).is_ok());
        assert!(bc("sub", &["x", "payments-api"]).check(&c).is_ok());
        assert!(bc("sub", &["Payments-api"]).check(&c).is_err());
        assert!(bc("sub", &["payments-api "]).check(&c).is_err());
        assert!(bc("n", &["42"]).check(&c).is_ok());
        assert!(bc("b", &["true"]).check(&c).is_ok());
        assert!(bc("f", &["1.5"]).check(&c).is_ok());
        let e = bc("arr", &["payments-api"]).check(&c).unwrap_err();
        assert!(e.to_string().contains("not a string"), "{e}");
        assert!(bc("obj", &["{\"a\":1}"]).check(&c).is_err());
        assert!(bc("nul", &["null"]).check(&c).is_err());
        let e = bc("missing", &["x"]).check(&c).unwrap_err();
        assert_eq!(e.to_string(), "bound claim `missing` is missing");
    }

    #[test]
    fn denial_never_contains_claim_value() {
        let c = claims(json!({"sub": "s3cr3t-value\nforged line"}));
        let e = bc("sub", &["payments-api"]).check(&c).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"));
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn json_pointers() {
        let c = claims(json!({
            "kubernetes.io": {"namespace": "payments", "pod": {"name": "p-1"}},
            "a/b": "slash", "m~n": "tilde", "list": ["x", "y"]
        }));
        assert!(
            bc("/kubernetes.io/namespace", &["payments", "payments-canary"])
                .check(&c)
                .is_ok()
        );
        assert!(bc("/kubernetes.io/pod/name", &["p-1"]).check(&c).is_ok());
        assert!(
            bc("/kubernetes.io/namespace", &["other"])
                .check(&c)
                .is_err()
        );
        assert!(bc("/kubernetes.io/nope", &["x"]).check(&c).is_err());
        assert!(bc("/a~1b", &["slash"]).check(&c).is_ok());
        assert!(bc("/m~0n", &["tilde"]).check(&c).is_ok());
        assert!(bc("/list/1", &["y"]).check(&c).is_ok());
        assert!(bc("/list/01", &["y"]).check(&c).is_err());
        assert!(bc("/list/-", &["y"]).check(&c).is_err());
        assert!(bc("/kubernetes.io", &["x"]).check(&c).is_err());
        // A name without `/` is a top-level key, dots and all.
        assert!(bc("kubernetes.io", &["x"]).check(&c).is_err());
        assert!(BoundClaim::new("/a~2", vec!["x".into()]).is_err());
        assert!(BoundClaim::new("/a~", vec!["x".into()]).is_err());
        assert!(BoundClaim::new("", vec!["x".into()]).is_err());
    }
}
