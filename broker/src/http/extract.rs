//! Extraction: from an HTTP request to an [`Incoming`] — the method, the
//! raw path, the token, the peer, a size-bounded body and the Vault
//! headers Leash acts on.
//!
//! The raw (still percent-encoded) path is passed on untouched, so that the
//! policy crate decodes it exactly once. Bodies are read here with the
//! configured limit so that an oversized body still reaches the service and
//! is audited (413), instead of being cut off by a layer the audit log never
//! sees; and within the request's deadline (`server.request_timeout`, from
//! its first byte), past which the edge answers 408 itself.
//! Must never happen: a token guessed from ambiguous headers (two tokens,
//! a malformed value); a token in a log line or `Debug` output.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use leash_domain::SecretToken;

use super::conn::RequestClock;
use crate::service::{BodyProblem, Incoming};

/// Longest token accepted in a header.
const MAX_TOKEN_LEN: usize = 512;

fn token_from(headers: &HeaderMap) -> (Option<SecretToken>, Option<&'static str>) {
    let vault: Vec<&HeaderValue> = headers.get_all("x-vault-token").iter().collect();
    if vault.len() > 1 {
        return (None, Some("more than one X-Vault-Token header"));
    }
    let raw = if let Some(v) = vault.first() {
        Some(*v)
    } else {
        let auth: Vec<&HeaderValue> = headers.get_all(header::AUTHORIZATION).iter().collect();
        if auth.len() > 1 {
            return (None, Some("more than one Authorization header"));
        }
        auth.first().copied()
    };
    let Some(raw) = raw else { return (None, None) };
    let Ok(text) = raw.to_str() else {
        return (None, Some("malformed token header"));
    };
    let text = if vault.is_empty() {
        // Authorization: Bearer <token>; other schemes carry no token.
        match text.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => return (None, None),
        }
    } else {
        text.trim()
    };
    if text.is_empty() {
        return (None, None);
    }
    if text.len() > MAX_TOKEN_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
        // Not a token Leash could have issued: treat as absent-but-invalid.
        return (Some(SecretToken::new(String::new())), None);
    }
    (Some(SecretToken::new(text.to_owned())), None)
}

/// Reads a request into an [`Incoming`], its body at most `max_body` bytes.
pub(crate) async fn incoming(parts: &Parts, body: Body, max_body: usize) -> Incoming {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let (token, token_problem) = token_from(&parts.headers);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let clock = parts.extensions.get::<RequestClock>();
    let body = if declared.is_some_and(|n| n > max_body as u64) {
        Err(BodyProblem::TooLarge)
    } else {
        let read = axum::body::to_bytes(body, max_body);
        let read = match clock {
            // The whole request's deadline, counted from its first byte.
            Some(c) => tokio::time::timeout_at(c.body_deadline, read).await,
            None => Ok(read.await),
        };
        match read {
            Err(_elapsed) => Err(BodyProblem::TimedOut),
            Ok(Ok(b)) => Ok(b.to_vec()),
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                Err(if too_large {
                    BodyProblem::TooLarge
                } else {
                    BodyProblem::Unreadable
                })
            }
        }
    };
    if let Some(c) = clock {
        c.conn.handling();
    }
    let path = parts.uri.path();
    Incoming {
        request_id: uuid::Uuid::new_v4().to_string(),
        method: parts.method.as_str().to_ascii_uppercase(),
        raw_path: path.strip_prefix("/v1/").map(str::to_owned),
        query: parts.uri.query().map(str::to_owned),
        token,
        token_problem,
        peer,
        body,
        wants_wrapping: parts.headers.contains_key("x-vault-wrap-ttl"),
        namespace: parts
            .headers
            .get("x-vault-namespace")
            .map(|v| v.to_str().unwrap_or("<invalid>").to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn vault_token_wins_over_bearer() {
        let (t, p) = token_from(&headers(&[
            ("x-vault-token", "a"),
            ("authorization", "Bearer b"),
        ]));
        assert_eq!(t.unwrap().expose(), "a");
        assert!(p.is_none());
        let (t, _) = token_from(&headers(&[("authorization", "Bearer b")]));
        assert_eq!(t.unwrap().expose(), "b");
        let (t, _) = token_from(&headers(&[("authorization", "Basic b")]));
        assert!(t.is_none());
    }

    #[test]
    fn duplicate_or_odd_tokens_are_not_guessed_at() {
        let (_, p) = token_from(&headers(&[("x-vault-token", "a"), ("x-vault-token", "b")]));
        assert!(p.is_some());
        let long = "x".repeat(600);
        let (t, _) = token_from(&headers(&[("x-vault-token", &long)]));
        assert_eq!(t.unwrap().expose(), "");
    }
}
