//! The HTTP edge: the only module that knows axum. Each request is
//! extracted into an [`Incoming`] ([`extract`]), routed by its Vault path
//! to one service handler ([`vault`], and [`admin`] for `/v1/leash/`),
//! committed and audited by [`Broker::finish`], and rendered — an error
//! through the one mapping from errors to statuses and Vault error bodies
//! ([`error`]). It holds no business rule.
//!
//! Every request runs in a `request` span carrying its id, method and peer;
//! errors are logged once, here, inside it.
//! Must never happen: a token, a body or a secret in a span or a log line.

mod admin;
mod conn;
mod error;
mod extract;
mod vault;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::config::ServerSettings;
#[cfg(doc)]
use crate::service::Incoming;
use crate::service::{BodyProblem, Broker, ServiceError};
use crate::wire::Reply;

/// Shared state of the router.
#[derive(Clone, Debug)]
pub struct HttpState {
    broker: Arc<Broker>,
    max_body: usize,
    handler_timeout: Duration,
}

/// The router: every path goes to one handler, which routes like Vault does
/// (by mount), not by axum's path patterns.
pub fn router(broker: Arc<Broker>, server: &ServerSettings) -> Router {
    Router::new().fallback(handle).with_state(HttpState {
        broker,
        max_body: server.max_body_bytes,
        handler_timeout: server.handler_timeout,
    })
}

/// Serves `broker` on `listener` until `shutdown` resolves, then lets open
/// connections finish (at most 30 s).
///
/// Each connection is HTTP/1.1 under the caps and time bounds of
/// `server` ([`conn`]): a client that trickles its headers or its body, or
/// opens more than its share of connections, is cut off instead of holding
/// descriptors others need. Bodies are bounded by size in [`handle`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    server: &ServerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let stats = broker.connections.clone();
    let router = router(broker, server);
    conn::serve(listener, router, server, stats, shutdown).await;
}

async fn handle(State(state): State<HttpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let inc = extract::incoming(&parts, body, state.max_body).await;
    let span = tracing::info_span!(
        "request",
        id = %inc.request_id,
        method = %inc.method,
        peer = %inc.peer,
    );
    async move {
        let broker = &state.broker;
        if inc.body == Err(BodyProblem::TimedOut) {
            // Before any handler: logged, not audited.
            tracing::info!("request body not received within server.request_timeout; answered 408");
            let mut resp = render(Reply::error(408, &["request timed out"]));
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        let bound = state.handler_timeout;
        if let Some(which) = vault::status_endpoint(&inc) {
            // Unauthenticated and unaudited, as in Vault.
            return match tokio::time::timeout(bound, broker.status_endpoint(which, &inc)).await {
                Ok(reply) => render(reply),
                Err(_) => {
                    let e = timed_out(broker);
                    e.log();
                    render(e.reply())
                }
            };
        }
        let mut rec = broker.record(&inc);
        let routed = match tokio::time::timeout(bound, vault::route(broker, &inc, &mut rec)).await {
            Ok(routed) => routed,
            // Audited like any failure, by `finish`.
            Err(_) => Err(timed_out(broker)),
        };
        match broker.finish(rec, routed).await {
            Ok(reply) => render(reply),
            Err(e) => {
                e.log();
                let mut resp = render(e.reply());
                if let Some(secs) = e.retry_after() {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                resp
            }
        }
    }
    .instrument(span)
    .await
}

/// A handler that ran past `server.handler_timeout`, counted (and logged
/// once, as a failure, where it is rendered).
fn timed_out(broker: &Broker) -> ServiceError {
    broker
        .connections
        .handler_timeouts
        .fetch_add(1, Ordering::Relaxed);
    ServiceError::TimedOut
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
