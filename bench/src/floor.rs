//! The floor: the least work any broker must do for one leased, audited
//! read, measured on this machine beside the same load generator.
//!
//! A minimal HTTP/1.1 server (hyper's, as under Leash's axum) on its own
//! two-worker runtime in this process. Every request is a read: the server
//! makes the read's lease row and audit row (the storage ceiling's rows,
//! into the ceiling's scratch tables shaped like Leash's), queues them, and
//! answers only once the transaction holding them is durable. `writers`
//! tasks each take whatever is queued (up to `max_batch` reads) and insert
//! it with the ceiling's two multi-row statements in one transaction,
//! either committed durably (`synchronous_commit = on`, Leash's scheme)
//! or, `pipelined`, committed without waiting for the disk and handed to
//! one flusher task that makes every batch committed so far durable with
//! one flush before their replies, while the writers go on.
//!
//! There is no token, policy, attestation, chain, MAC or secret: what is
//! left is HTTP, a queue and the rows. Its rate is what a design that
//! commits a read's rows before replying can reach here at best, so it
//! separates what this machine allows from what Leash's own work costs.
//!
//! Must never happen: a reply before its rows' commit returned, or a failed
//! commit answered with a 2xx (it is a 503, which the generator counts).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::pg::{self, Row};

/// A reply about the size of a KV v2 read's through Leash.
const BODY: &str = r#"{"request_id":"00000000-0000-4000-8000-000000000000","lease_id":"secret/data/bench/db/00000000000000000000000000000000","renewable":true,"lease_duration":7200,"data":{"data":{"password":"xxxxxxxxxxxxxxxx","username":"bench"},"metadata":{"created_time":"2026-01-01T00:00:00Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1}},"wrap_info":null,"warnings":null,"auth":null}"#;

const UNAVAILABLE: &str = r#"{"errors":["audit log unavailable"]}"#;

/// A batch committed (or failed: `false`) and not yet flushed.
type Committed = (Vec<oneshot::Sender<bool>>, bool);

struct Job {
    row: Row,
    reply: oneshot::Sender<bool>,
}

struct State {
    seq: AtomicI64,
    queue: mpsc::Sender<Job>,
}

/// The floor server. Stops when dropped.
pub struct Floor {
    /// Its listener.
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Floor {
    /// Starts it on a free loopback port, writing into the scratch tables
    /// of the database at `db_url` (see [`pg::scratch_database`]) over
    /// `writers` connections (and a flusher's, `pipelined`). Returns once
    /// every connection is open.
    pub async fn start(
        db_url: &str,
        writers: usize,
        pipelined: bool,
        max_batch: usize,
    ) -> anyhow::Result<Floor> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floor")
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (queue, rx) = mpsc::channel(max_batch.max(1) * 8);
        let rx = Arc::new(Mutex::new(rx));
        let mut ready = Vec::new();
        let flush = if pipelined {
            let (tx, ok) = oneshot::channel();
            let (flush, batches) = mpsc::channel(writers.max(1) * 2);
            runtime.spawn(flusher(db_url.to_owned(), batches, tx));
            ready.push(ok);
            Some(flush)
        } else {
            None
        };
        for _ in 0..writers.max(1) {
            let (tx, ok) = oneshot::channel();
            runtime.spawn(writer(
                db_url.to_owned(),
                rx.clone(),
                flush.clone(),
                max_batch.max(1),
                tx,
            ));
            ready.push(ok);
        }
        for ok in ready {
            ok.await??;
        }
        let state = Arc::new(State {
            seq: AtomicI64::new(1),
            queue,
        });
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |_req: hyper::Request<Incoming>| read(state.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Floor {
            addr,
            runtime: Some(runtime),
        })
    }
}

async fn read(state: Arc<State>) -> Result<Response<Full<Bytes>>, Infallible> {
    let row = pg::row(state.seq.fetch_add(1, Ordering::Relaxed));
    let (reply, committed) = oneshot::channel();
    let ok = state.queue.send(Job { row, reply }).await.is_ok() && committed.await == Ok(true);
    let (status, body) = if ok {
        (StatusCode::OK, BODY)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Connects; `unflushed`: its commits do not wait for the disk, otherwise
/// they do, whatever the server's default.
async fn connect(url: &str, unflushed: bool) -> anyhow::Result<PgConnection> {
    let mut c = PgConnection::connect(url).await?;
    let set = if unflushed {
        "SET synchronous_commit = off"
    } else {
        "SET synchronous_commit = on"
    };
    sqlx::query(set).execute(&mut c).await?;
    Ok(c)
}

async fn writer(
    url: String,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    flush: Option<mpsc::Sender<Committed>>,
    max_batch: usize,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let mut c = match connect(&url, flush.is_some()).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut rows = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut next = Some(first);
            while let Some(j) = next.take() {
                rows.push(j.row);
                replies.push(j.reply);
                if rows.len() < max_batch {
                    next = rx.try_recv().ok();
                }
            }
        }
        let ok = commit(&mut c, &rows).await.is_ok();
        rows.clear();
        match &flush {
            // A dropped batch's callers get 503.
            Some(flush) => {
                let batch = std::mem::replace(&mut replies, Vec::with_capacity(max_batch));
                let _ = flush.send((batch, ok)).await;
            }
            None => {
                for r in replies.drain(..) {
                    let _ = r.send(ok);
                }
            }
        }
    }
}

/// A flush: a transaction that writes a row (one that writes nothing
/// commits without waiting for the disk) and commits with
/// `synchronous_commit = on`, waiting for the WAL up to its commit record,
/// which follows every commit made before it began.
const FLUSH: &str = "UPDATE bench_flushes SET flushes = flushes + 1 WHERE id = 1";

/// Takes every batch committed so far, makes them durable with one flush
/// ([`FLUSH`]), then answers their callers. (Only sound while the server
/// does not restart: a flush on a restarted server says nothing of commits
/// lost with the old one. The benchmark's server does not restart.)
async fn flusher(
    url: String,
    mut batches: mpsc::Receiver<Committed>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let mut c = match connect(&url, false).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(first) = batches.recv().await {
        let mut all = vec![first];
        while let Ok(more) = batches.try_recv() {
            all.push(more);
        }
        let flushed = sqlx::query(FLUSH).execute(&mut c).await.is_ok();
        for (replies, ok) in all {
            for r in replies {
                let _ = r.send(ok && flushed);
            }
        }
    }
}

/// One transaction (durable at its commit unless the connection's
/// `synchronous_commit` is off).
async fn commit(c: &mut PgConnection, rows: &[Row]) -> anyhow::Result<()> {
    let mut tx = c.begin().await?;
    pg::insert_rows(&mut tx, rows, true).await?;
    tx.commit().await?;
    Ok(())
}
