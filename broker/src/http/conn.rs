//! Connections: the accept loop, the caps on how many connections are open
//! (overall and per peer address), and each connection's time bounds.
//!
//! Every connection is in one phase at a time, kept in its [`ConnClock`]:
//! *head* (from a new connection's accept, or a request's first byte, until
//! its headers are parsed: `server.header_read_timeout`, within
//! `server.request_timeout`), *body* (until the handler has read the body:
//! the rest of `server.request_timeout`, counted from the first byte),
//! *handling* (bounded by `server.handler_timeout` in the handler itself),
//! and *idle* (between requests: `server.idle_timeout`). A watchdog per
//! connection closes it when its phase outlives its bound; a body still
//! arriving at its deadline is answered 408 by the handler first.
//!
//! Must never happen: one peer holding the descriptors every other peer
//! needs (it meets the per-peer cap first); a connection that stays open
//! past its bound however slowly its peer sends; a log line per refused
//! connection (refusals are counted, and logged at most once a second).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServerSettings;
use crate::service::ConnectionStats;

/// How long past its body deadline a connection may take to be answered
/// 408 before the watchdog closes it without an answer.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// What the watchdog allows a handler past `server.handler_timeout` (the
/// handler bounds itself; then the audit commit, bounded by
/// `audit.commit_timeout`): a backstop, not the bound.
const HANDLING_SLACK: Duration = Duration::from_secs(120);

/// The phases of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle = 0,
    Head = 1,
    Body = 2,
    Handling = 3,
}

impl Phase {
    fn from_bits(b: u64) -> Phase {
        match b & 3 {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Body,
            _ => Phase::Handling,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Head => "headers",
            Phase::Body => "body",
            Phase::Handling => "handler",
        }
    }
}

/// One connection's phase and when it began, in one word (the phase in the
/// low two bits, the milliseconds since the connection's accept above).
#[derive(Debug)]
pub(crate) struct ConnClock {
    base: Instant,
    state: AtomicU64,
    changed: Notify,
}

impl ConnClock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            state: AtomicU64::new(Phase::Head as u64),
            changed: Notify::new(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX >> 2)
    }

    fn load(&self) -> (Phase, Instant, u64) {
        let word = self.state.load(Ordering::Acquire);
        let since = self.base + Duration::from_millis(word >> 2);
        (Phase::from_bits(word), since, word)
    }

    fn set(&self, phase: Phase, since: Instant) {
        self.state
            .store((self.millis(since) << 2) | phase as u64, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts a request.
    fn on_read(&self) {
        let (phase, _, _) = self.load();
        if phase == Phase::Idle {
            self.set(Phase::Head, Instant::now());
        }
    }

    /// The headers are parsed: the body phase begins, its deadline counted
    /// from the request's first byte.
    fn request_started(&self, limits: &Limits) -> Instant {
        let (phase, since, _) = self.load();
        let start = if phase == Phase::Head {
            since
        } else {
            Instant::now()
        };
        self.set(Phase::Body, start);
        start + limits.request
    }

    /// The body is read: the handler's own timeout bounds what follows.
    pub(crate) fn handling(&self) {
        self.set(Phase::Handling, Instant::now());
    }

    /// The response is out of the handler: the connection idles.
    fn idle(&self) {
        self.set(Phase::Idle, Instant::now());
    }
}

/// The time bounds of a connection.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header: Duration,
    request: Duration,
    idle: Duration,
    handler: Duration,
}

impl Limits {
    /// How long a connection may stay in `phase`.
    fn bound(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Idle => self.idle,
            Phase::Head => self.header.min(self.request),
            Phase::Body => self.request + ANSWER_GRACE,
            Phase::Handling => self.handler.saturating_add(HANDLING_SLACK),
        }
    }
}

/// What a request carries from its connection: the deadline of its body
/// and the clock to mark the end of reading it.
#[derive(Debug, Clone)]
pub(crate) struct RequestClock {
    /// When the whole request (headers and body) must have arrived.
    pub(crate) body_deadline: Instant,
    /// The connection's clock.
    pub(crate) conn: Arc<ConnClock>,
}

/// A stream that marks its connection's clock when bytes arrive.
struct TimedIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Overall,
    PerPeer,
}

/// The open connections, overall and per peer address.
#[derive(Debug)]
struct Slots {
    max_total: usize,
    max_per_peer: usize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
    stats: Arc<ConnectionStats>,
}

/// One open connection's place; given back on drop.
#[derive(Debug)]
struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let mut map = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refused::Overall);
        }
        let n = map.entry(peer).or_insert(0);
        if *n >= self.max_per_peer {
            return Err(Refused::PerPeer);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = &self.slots;
        let mut map = s.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
        s.total.fetch_sub(1, Ordering::Relaxed);
        s.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Logs refusals at most once a second, with how many there were.
#[derive(Debug)]
struct RefusalLog {
    last: Option<Instant>,
    overall: u64,
    per_peer: u64,
}

impl RefusalLog {
    fn note(&mut self, why: Refused, peer: IpAddr, slots: &Slots) {
        match why {
            Refused::Overall => {
                self.overall += 1;
                slots.stats.refused_overall.fetch_add(1, Ordering::Relaxed);
            }
            Refused::PerPeer => {
                self.per_peer += 1;
                slots.stats.refused_per_peer.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            at_overall_cap = self.overall,
            at_per_peer_cap = self.per_peer,
            last_peer = %peer,
            max_connections = slots.max_total,
            max_connections_per_peer = slots.max_per_peer,
            "connections refused at a connection cap"
        );
        self.last = Some(now);
        self.overall = 0;
        self.per_peer = 0;
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish (at most 30 s).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    server: &ServerSettings,
    stats: Arc<ConnectionStats>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let limits = Limits {
        header: server.header_read_timeout,
        request: server.request_timeout,
        idle: server.idle_timeout,
        handler: server.handler_timeout,
    };
    let slots = Arc::new(Slots {
        max_total: server.max_connections,
        max_per_peer: server.max_connections_per_peer,
        per_peer: Mutex::new(HashMap::new()),
        total: Default::default(),
        stats: stats.clone(),
    });
    let mut refusals = RefusalLog {
        last: None,
        overall: 0,
        per_peer: 0,
    };
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
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip().to_canonical();
        let slot = match slots.take(ip) {
            Ok(s) => s,
            Err(why) => {
                refusals.note(why, ip, &slots);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(ConnClock::new());
        let conn = connection(stream, peer, router.clone(), clock.clone(), limits);
        let conn = graceful.watch(conn);
        let stats = stats.clone();
        tokio::spawn(async move {
            let _slot = slot;
            watch(conn, &clock, &limits, &stats, ip).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing them");
    }
}

/// The HTTP/1.1 connection over `stream`, its clock kept by its reads and
/// by the service around each request.
fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    clock: Arc<ConnClock>,
    limits: Limits,
) -> impl hyper_util::server::graceful::GracefulConnection<Error = hyper::Error> {
    let io = TimedIo {
        inner: stream,
        clock: clock.clone(),
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let body_deadline = clock.request_started(&limits);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(RequestClock {
                body_deadline,
                conn: clock.clone(),
            });
            let router = router.clone();
            let clock = clock.clone();
            async move {
                let r = tower::ServiceExt::oneshot(router, req).await;
                clock.idle();
                r
            }
        });
    // The time bounds are the watchdog's: hyper's own header timeout would
    // also run while a keep-alive connection idles.
    hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
}

/// Drives `conn` until it ends or its phase outlives its bound.
async fn watch(
    conn: impl std::future::Future<Output = Result<(), hyper::Error>>,
    clock: &ConnClock,
    limits: &Limits,
    stats: &ConnectionStats,
    peer: IpAddr,
) {
    let mut conn = std::pin::pin!(conn);
    loop {
        let (phase, since, word) = clock.load();
        let deadline = since + limits.bound(phase);
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                return;
            }
            () = clock.changed.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                if clock.state.load(Ordering::Acquire) == word {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, phase = phase.name(), "connection closed: time bound exceeded");
                    return;
                }
            }
        }
    }
}
