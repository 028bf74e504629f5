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
mod error;
mod extract;
mod vault;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::service::Broker;
#[cfg(doc)]
use crate::service::Incoming;
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
        if let Some(which) = vault::status_endpoint(&inc) {
            // Unauthenticated and unaudited, as in Vault.
            return render(broker.status_endpoint(which, &inc).await);
        }
        let mut rec = broker.record(&inc);
        let routed = vault::route(broker, &inc, &mut rec).await;
        match broker.finish(rec, routed).await {
            Ok(reply) => render(reply),
            Err(e) => {
                e.log();
                render(e.reply())
            }
        }
    }
    .instrument(span)
    .await
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
