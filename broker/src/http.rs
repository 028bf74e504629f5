//! The HTTP edge: the only module that knows axum. It turns a request into
//! an [`Incoming`] — method, raw path, token, peer, a size-bounded body —
//! hands it to [`Broker::handle`] and renders the [`Reply`]. It holds no
//! business rule.
//!
//! The raw (still percent-encoded) path is passed on untouched, so that the
//! policy crate decodes it exactly once. Bodies are read here with the
//! configured limit so that an oversized body still reaches the service and
//! is audited (413), instead of being cut off by a layer the audit log never
//! sees.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leash_domain::SecretToken;

use crate::service::{BodyProblem, Broker, Incoming};
use crate::wire::Reply;

/// Shared state of the router.
#[derive(Clone, Debug)]
pub struct HttpState {
    broker: Arc<Broker>,
    max_body: usize,
}

/// The router: every path goes to one handler, which routes like Vault does
/// (by mount), not by axum's path patterns.
pub fn router(broker: Arc<Broker>, max_body: usize) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(HttpState { broker, max_body })
}

/// Serves `broker` on `listener` until `shutdown` resolves, then lets open
/// connections finish (at most 30 s).
///
/// Each connection is HTTP/1.1 with a header-read timeout: a client that
/// trickles its headers (slowloris) is cut off after `header_read_timeout`
/// instead of holding a connection forever. Bodies are bounded separately,
/// by size, in [`handle`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    max_body: usize,
    header_read_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let router = router(broker, max_body);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing them");
    }
}

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

async fn handle(State(state): State<HttpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
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
    let body = if declared.is_some_and(|n| n > state.max_body as u64) {
        Err(BodyProblem::TooLarge)
    } else {
        match axum::body::to_bytes(body, state.max_body).await {
            Ok(b) => Ok(b.to_vec()),
            Err(e) => {
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
    let path = parts.uri.path();
    let raw_path = path.strip_prefix("/v1/").map(str::to_owned);
    let inc = Incoming {
        request_id: uuid::Uuid::new_v4().to_string(),
        method: parts.method.as_str().to_ascii_uppercase(),
        raw_path,
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
    };
    render(state.broker.handle(inc).await)
}

fn render(reply: Reply) -> Response {
    let (status, body) = match reply {
        Reply::Json { status, body } => (status, Body::from(body)),
        Reply::Empty { status } => (status, Body::empty()),
        Reply::Redirect { location } => {
            let mut resp = (StatusCode::TEMPORARY_REDIRECT, Body::empty()).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
    };
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
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
