//! A request as the service sees it: [`Incoming`] (what the HTTP edge
//! extracted) and [`Req`] (the same, routed: its canonical segments and the
//! request's time), with the helpers every route uses to read it.
//!
//! Must never happen: a body parsed strictly enough to break a Vault client
//! (node-vault sends form-encoded empty bodies), or leniently enough to
//! accept something other than a JSON object where one is required; caller
//! text in an error unescaped.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use leash_domain::SecretToken;
use leash_domain::audit::escape_untrusted;
use leash_policy::CanonicalPath;
use serde::de::DeserializeOwned;

use super::ServiceError;

/// A request as the HTTP layer hands it over.
#[derive(Debug)]
pub struct Incoming {
    /// A fresh request id (UUID).
    pub request_id: String,
    /// Upper-case method (`GET`, `LIST`, …).
    pub method: String,
    /// The path after `/v1/`, still percent-encoded; `None` when the path
    /// does not start with `/v1/`.
    pub raw_path: Option<String>,
    /// The raw query, if any.
    pub query: Option<String>,
    /// The presented token, if any.
    pub token: Option<SecretToken>,
    /// Set when the token headers were ambiguous or malformed.
    pub token_problem: Option<&'static str>,
    /// The peer address.
    pub peer: IpAddr,
    /// The body, or why it could not be read.
    pub body: Result<Vec<u8>, BodyProblem>,
    /// `X-Vault-Wrap-TTL` was present.
    pub wants_wrapping: bool,
    /// `X-Vault-Namespace`, if present.
    pub namespace: Option<String>,
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Larger than the configured limit.
    TooLarge,
    /// The connection failed while reading.
    Unreadable,
    /// Not received within the request's deadline (the edge answers 408
    /// before any handler).
    TimedOut,
}

/// A routed request: what a route needs to know about it.
#[derive(Debug)]
pub struct Req<'a> {
    /// The request as extracted.
    pub inc: &'a Incoming,
    /// The canonical path: decoded once, the form that is matched and
    /// logged.
    pub path: &'a CanonicalPath,
    /// The request's time (microseconds): every decision's `now`.
    pub now: DateTime<Utc>,
}

impl Req<'_> {
    /// The canonical path's segments.
    pub fn segments(&self) -> &[String] {
        self.path.segments()
    }

    /// Whether the path ended in `/`.
    pub fn trailing_slash(&self) -> bool {
        self.path.trailing_slash()
    }

    /// The upper-case method.
    pub fn method(&self) -> &str {
        &self.inc.method
    }

    /// Fails with 405 unless the method is one of `methods`.
    pub fn require_method(&self, methods: &[&str]) -> Result<(), ServiceError> {
        if methods.contains(&self.method()) {
            Ok(())
        } else {
            Err(ServiceError::MethodNotAllowed("unsupported operation"))
        }
    }

    /// The value of a query parameter (first occurrence).
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.inc.query.as_deref()?;
        q.split('&').filter(|p| !p.is_empty()).find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    /// Parses the JSON body leniently: an empty body is `{}`, any
    /// Content-Type is accepted (node-vault sends form-encoded empty bodies).
    pub fn json<T: DeserializeOwned + Default>(&self) -> Result<T, ServiceError> {
        let body = match &self.inc.body {
            Ok(b) => b,
            Err(BodyProblem::TooLarge) => return Err(ServiceError::BodyTooLarge),
            Err(BodyProblem::Unreadable | BodyProblem::TimedOut) => {
                return Err(ServiceError::bad_request("request body could not be read"));
            }
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(body).map_err(|e| {
            // serde_json's messages name positions and expected types, never
            // the input itself beyond a short unexpected token.
            ServiceError::bad_request(format!(
                "failed to decode JSON input: {}",
                escape_untrusted(&e.to_string(), 200)
            ))
        })
    }

    /// The path segments after `skip` as one string, for lease ids and
    /// prefixes carried in the path.
    pub fn rest(&self, skip: usize) -> Option<String> {
        let rest = self.segments().get(skip..)?;
        if rest.is_empty() {
            return None;
        }
        let mut s = rest.join("/");
        if self.trailing_slash() {
            s.push('/');
        }
        Some(s)
    }
}

/// Parses a Vault `increment`: integer seconds, or a duration string
/// (`"30m"`); `0`, `""` and null mean "the default".
pub fn parse_increment(v: &serde_json::Value) -> Result<Option<i64>, ServiceError> {
    let bad = || ServiceError::bad_request("invalid increment");
    let secs = match v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        serde_json::Value::String(s) if s.is_empty() => return Ok(None),
        serde_json::Value::String(s) => {
            let d = leash_domain::parse_duration(s).map_err(|_| bad())?;
            i64::try_from(d.as_secs()).map_err(|_| bad())?
        }
        _ => return Err(bad()),
    };
    if secs < 0 {
        return Err(bad());
    }
    Ok(if secs == 0 { None } else { Some(secs) })
}
