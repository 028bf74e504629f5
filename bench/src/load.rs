//! The load generator: `N` keep-alive HTTP/1.1 connections, each a closed
//! loop (send one request, read the whole reply, send the next), for a
//! warm-up and then a bounded measured window. Every measured latency goes
//! into an HDR histogram.
//!
//! Must never happen: a failed request counted as a success or silently
//! dropped (non-2xx answers, transport errors and reconnects are counted on
//! their own and reported), a latency measured from anything but the send
//! of the request to the last byte of its reply, or per-request work
//! beyond building one `Request` (the body is a shared `Bytes`, the headers
//! are cloned handles).
//!
//! Closed-loop generators do not correct for coordinated omission: the
//! latencies are those of a saturated server answering `N` callers that
//! each wait for their reply, which is how services use a secrets broker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// The one request every connection sends, over and over.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// GET, POST…
    pub method: Method,
    /// Path and query, e.g. `/v1/secret/data/bench/db`.
    pub path: String,
    /// Extra headers (`X-Vault-Token`, `Content-Type`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty for GET).
    pub body: Bytes,
}

impl RequestSpec {
    /// A GET with a Vault token.
    pub fn get_with_token(path: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::GET,
            path: path.to_owned(),
            headers: vec![(
                HeaderName::from_static("x-vault-token"),
                HeaderValue::from_str(token)?,
            )],
            body: Bytes::new(),
        })
    }

    /// A POST of a JSON body.
    pub fn post_json(path: &str, body: &serde_json::Value) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::POST,
            path: path.to_owned(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(serde_json::to_vec(body)?),
        })
    }
}

/// How one load run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Concurrent connections (each a closed loop).
    pub connections: usize,
    /// Requests sent during the warm-up are not measured.
    pub warmup: Duration,
    /// The measured window: requests *sent* in it are measured, to their
    /// last byte, even when the reply arrives after the window closed.
    pub duration: Duration,
}

/// What one load run saw.
#[derive(Debug)]
pub struct LoadOutcome {
    /// 2xx replies to requests sent in the window.
    pub ok: u64,
    /// Other statuses, by status, in the window.
    pub non_2xx: BTreeMap<u16, u64>,
    /// Transport errors (connect, send, read) in the window.
    pub errors: u64,
    /// Connections re-opened (the server closed a keep-alive connection).
    pub reconnects: u64,
    /// The first error or non-2xx answer, for the report.
    pub first_problem: Option<String>,
    /// Latencies of the 2xx replies, in microseconds.
    pub latency_us: Histogram<u64>,
    /// From the window's start to the last measured reply (at least the
    /// configured duration).
    pub window: Duration,
}

impl LoadOutcome {
    /// 2xx replies per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// A latency quantile in milliseconds (0 when nothing succeeded).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            0.0
        } else {
            self.latency_us.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// Non-2xx answers, all statuses.
    pub fn non_2xx_total(&self) -> u64 {
        self.non_2xx.values().sum()
    }

    /// Whether every request in the window succeeded.
    pub fn clean(&self) -> bool {
        self.errors == 0 && self.non_2xx_total() == 0 && self.ok > 0
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 120 s, three significant digits.
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

struct ConnStats {
    ok: u64,
    non_2xx: BTreeMap<u16, u64>,
    errors: u64,
    reconnects: u64,
    first_problem: Option<String>,
    hist: Histogram<u64>,
    last_done: Instant,
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes.
        let _ = conn.await;
    });
    Ok(sender)
}

fn build(spec: &RequestSpec, host: &HeaderValue) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut b = Request::builder()
        .method(spec.method.clone())
        .uri(spec.path.as_str())
        .header(http::header::HOST, host.clone());
    for (k, v) in &spec.headers {
        b = b.header(k.clone(), v.clone());
    }
    Ok(b.body(Full::new(spec.body.clone()))?)
}

/// One closed loop on one connection.
async fn one_connection(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    host: HeaderValue,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ConnStats> {
    let mut st = ConnStats {
        ok: 0,
        non_2xx: BTreeMap::new(),
        errors: 0,
        reconnects: 0,
        first_problem: None,
        hist: new_histogram()?,
        last_done: measure_from,
    };
    let mut sender: Option<Sender> = None;
    let mut opened_once = false;
    loop {
        if Instant::now() >= end {
            break;
        }
        let ready = match sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            if opened_once {
                st.reconnects += 1;
            }
            match connect(addr).await {
                Ok(s) => {
                    opened_once = true;
                    sender = Some(s);
                }
                Err(e) => {
                    if Instant::now() >= measure_from {
                        st.errors += 1;
                        st.first_problem
                            .get_or_insert_with(|| format!("connect: {e}"));
                    }
                    sender = None;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else {
            continue;
        };
        let req = build(&spec, &host)?;
        let sent = Instant::now();
        let measured = sent >= measure_from;
        let result = match s.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let mut body = resp.into_body();
                let mut read_err = None;
                while let Some(frame) = body.frame().await {
                    if let Err(e) = frame {
                        read_err = Some(e);
                        break;
                    }
                }
                match read_err {
                    None => Ok(status),
                    Some(e) => Err(format!("reading the reply: {e}")),
                }
            }
            Err(e) => Err(format!("send: {e}")),
        };
        let done = Instant::now();
        if result.is_err() {
            sender = None;
        }
        if !measured {
            continue;
        }
        st.last_done = st.last_done.max(done);
        match result {
            Ok(status) if status.is_success() => {
                st.ok += 1;
                let us = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                st.hist.saturating_record(us.max(1));
            }
            Ok(status) => {
                *st.non_2xx.entry(status.as_u16()).or_default() += 1;
                st.first_problem
                    .get_or_insert_with(|| format!("status {status}"));
            }
            Err(e) => {
                st.errors += 1;
                st.first_problem.get_or_insert(e);
            }
        }
    }
    Ok(st)
}

/// Runs `cfg.connections` closed loops against `addr` and merges what they
/// saw.
pub async fn run(
    addr: SocketAddr,
    spec: &RequestSpec,
    cfg: LoadConfig,
) -> anyhow::Result<LoadOutcome> {
    let spec = Arc::new(spec.clone());
    let host = HeaderValue::from_str(&addr.to_string())?;
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut tasks = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections.max(1) {
        tasks.push(tokio::spawn(one_connection(
            addr,
            spec.clone(),
            host.clone(),
            measure_from,
            end,
        )));
    }
    let mut out = LoadOutcome {
        ok: 0,
        non_2xx: BTreeMap::new(),
        errors: 0,
        reconnects: 0,
        first_problem: None,
        latency_us: new_histogram()?,
        window: cfg.duration,
    };
    let mut last_done = end;
    for t in tasks {
        let st = t.await??;
        out.ok += st.ok;
        out.errors += st.errors;
        out.reconnects += st.reconnects;
        for (k, v) in st.non_2xx {
            *out.non_2xx.entry(k).or_default() += v;
        }
        if out.first_problem.is_none() {
            out.first_problem = st.first_problem;
        }
        out.latency_us.add(&st.hist)?;
        last_done = last_done.max(st.last_done);
    }
    out.window = last_done.duration_since(measure_from);
    Ok(out)
}

/// A trivial HTTP/1.1 server on loopback that answers every request with
/// `200 ok`, to measure the generator's own ceiling on this machine
/// (calibration). Requests must have no body. Stops when dropped.
pub struct Trivial {
    /// Its listener.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Trivial {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Trivial {
    /// Starts it on a free loopback port.
    pub async fn start() -> anyhow::Result<Trivial> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = s.set_nodelay(true);
                    let mut buf = vec![0u8; 8192];
                    let mut have = 0;
                    loop {
                        let Ok(n) = s.read(&mut buf[have..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        // Answer each complete request head in the buffer.
                        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n")
                        {
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                            buf.copy_within(end + 4..have, 0);
                            have -= end + 4;
                        }
                        if have == buf.len() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Trivial { addr, task })
    }
}
