//! Limits, end to end against the real `leash-broker serve` on SQLite:
//! slow headers and slow bodies are cut off at their bounds while another
//! client keeps being served; a flood of connections from one address
//! beyond the per-peer cap leaves another address served; start-up refuses
//! a key file others can read (unless allowed) and accepts it at 0600; the
//! SQLite store's files are 0600 in a 0700 directory.
//!
//! Every broker is spawned on port 0 in its own temporary directory and
//! killed by a guard on drop, even when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use leash_tests::eventually;
use leash_tests::procs::{BOUND, Running, Setup, run, setup as operator_setup};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// The SQLite example's configuration directory ([`operator_setup`]),
/// without its `state/` directory: the broker creates it.
async fn setup() -> Setup {
    let s = operator_setup("leash.sqlite.toml").await;
    std::fs::remove_dir(s.dir.path().join("state")).unwrap();
    s
}

/// A running `serve`, killed on drop.
struct Served {
    p: Running,
    addr: SocketAddr,
}

impl Served {
    /// Standard error without colour sequences.
    fn stderr(&self) -> String {
        self.p.stderr()
    }
}

/// `serve` with `env`; waits for it to listen.
async fn serve(s: &Setup, env: &[(&str, &str)]) -> Served {
    let (p, url) = s.serve(env).await;
    let addr = url.trim_start_matches("http://").parse().unwrap();
    Served { p, addr }
}

/// `serve` that must fail; returns its exit code and standard error.
async fn serve_fails(s: &Setup, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let r = run(s.broker(&["serve"], env)).await;
    (r.code, r.stderr)
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    sock.connect(to).await.unwrap()
}

/// `GET path` on a fresh connection from `from`, with the operator token
/// if given: the status, the body, and how long it took.
async fn get_from(
    from: [u8; 4],
    to: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut c = connect_from(from, to).await;
    let auth = token.map_or_else(String::new, |t| format!("X-Vault-Token: {t}\r\n"));
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: leash\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .expect("answered within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body, started.elapsed())
}

/// `GET /v1/sys/health` from `from`: the status and how long it took.
async fn health_from(from: [u8; 4], to: SocketAddr) -> (u16, Duration) {
    let (status, _, took) = get_from(from, to, "/v1/sys/health", None).await;
    (status, took)
}

/// Reads until the peer closes (or `within` passes); returns what was read
/// and when the read ended, or `None` if the connection stayed open.
async fn read_until_closed(c: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut buf = Vec::new();
    match tokio::time::timeout(within, c.read_to_end(&mut buf)).await {
        Ok(_) => Some((buf, Instant::now())),
        Err(_) => None,
    }
}

/// Reads as bytes come until the peer closes (a reset counts) or the
/// bound passes: whether it closed, what was read, and when.
async fn read_to_close(mut r: tokio::net::tcp::OwnedReadHalf) -> (bool, Vec<u8>, Instant) {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => return (false, buf, Instant::now()),
            Ok(Ok(0) | Err(_)) => return (true, buf, Instant::now()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `GET /v1/leash/status` as the operator, from 127.0.0.2: its `data`.
async fn status_data(served: &Served, token: &str) -> Value {
    let (status, body, _) =
        get_from([127, 0, 0, 2], served.addr, "/v1/leash/status", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"].clone()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_off_while_others_are_served() {
    let s = setup().await;
    let served = serve(
        &s,
        &[
            ("LEASH_SERVER__HEADER_READ_TIMEOUT", "\"1s\""),
            ("LEASH_SERVER__REQUEST_TIMEOUT", "\"2s\""),
            ("LEASH_SERVER__IDLE_TIMEOUT", "\"3s\""),
        ],
    )
    .await;
    let addr = served.addr;

    // Slow headers: a byte every 200 ms, never the blank line.
    let started = Instant::now();
    let mut slow_head = connect_from([127, 0, 0, 1], addr).await;
    slow_head
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (head_read, mut head_write) = slow_head.into_split();
    let head_trickle = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if head_write.write_all(b"a").await.is_err() {
                break;
            }
        }
    });
    let head_task = tokio::spawn(read_to_close(head_read));

    // Slow body: Content-Length 100, one byte, then a byte every 200 ms.
    let mut slow_body = connect_from([127, 0, 0, 1], addr).await;
    slow_body
        .write_all(
            b"POST /v1/auth/jwt/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let (body_read, mut body_write) = slow_body.into_split();
    let body_trickle = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if body_write.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let body_task = tokio::spawn(read_to_close(body_read));

    // Meanwhile another client is served, promptly, again and again.
    for _ in 0..10 {
        let (status, took) = health_from([127, 0, 0, 2], addr).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "health took {took:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let (closed, _, head_closed) = head_task.await.unwrap();
    assert!(closed, "the slow-header connection was never closed");
    head_trickle.abort();
    let head_after = head_closed - started;
    assert!(
        head_after >= Duration::from_millis(900) && head_after < Duration::from_secs(4),
        "slow headers cut off after {head_after:?} (bound 1 s)"
    );

    let (closed, answer, at) = body_task.await.unwrap();
    assert!(closed, "the slow-body connection was never closed");
    let body_after = at - started;
    assert!(
        body_after >= Duration::from_millis(1900) && body_after < Duration::from_secs(5),
        "slow body cut off after {body_after:?} (bound 2 s)"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"errors":["request timed out"]}"#),
        "{answer}"
    );
    body_trickle.abort();

    // An idle keep-alive connection is closed after the idle bound, not
    // the header bound.
    let mut idle = connect_from([127, 0, 0, 1], addr).await;
    idle.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let idle_since = Instant::now();
    let (_, closed_at) = read_until_closed(&mut idle, BOUND)
        .await
        .expect("the idle connection was never closed");
    let idled = closed_at - idle_since;
    assert!(
        idled >= Duration::from_millis(2500) && idled < Duration::from_secs(6),
        "idle connection closed after {idled:?} (bound 3 s)"
    );

    // The refusals are counted; the slow body was logged, not audited.
    let data = status_data(&served, &s.operator_token).await;
    let timed_out = data["connections"]["timed_out"].as_u64().unwrap();
    assert!(timed_out >= 2, "{data}");
    assert!(
        served.stderr().contains("request_timeout; answered 408"),
        "{}",
        served.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_leaves_another_served() {
    let s = setup().await;
    let served = serve(
        &s,
        &[
            ("LEASH_SERVER__MAX_CONNECTIONS_PER_PEER", "20"),
            ("LEASH_SERVER__MAX_CONNECTIONS", "100"),
            // The flood holds its connections open without a byte.
            ("LEASH_SERVER__HEADER_READ_TIMEOUT", "\"60s\""),
            ("LEASH_SERVER__REQUEST_TIMEOUT", "\"60s\""),
        ],
    )
    .await;
    let addr = served.addr;

    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // The connections past the cap are closed at once; the first 20 stay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed = 0;
    for c in &mut flood {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), c.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 40, "connections closed at the per-peer cap");

    // Another address is served, promptly, while the flood holds its share.
    for _ in 0..5 {
        let (status, took) = health_from([127, 0, 0, 2], addr).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "health took {took:?}");
    }
    // The flooding address itself is refused while it holds its share.
    let (status, _) = {
        let mut c = connect_from([127, 0, 0, 1], addr).await;
        let _ = c
            .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut buf)).await;
        (buf.len(), ())
    };
    assert_eq!(status, 0, "a connection over the cap got an answer");

    let data = status_data(&served, &s.operator_token).await;
    let c = &data["connections"];
    assert!(c["refused_per_peer"].as_u64().unwrap() >= 41, "{data}");
    assert_eq!(c["refused_overall"].as_u64().unwrap(), 0, "{data}");
    assert!(c["open"].as_u64().unwrap() >= 20, "{data}");
    // Logged at a bounded rate, not once per refusal.
    let lines = served
        .stderr()
        .lines()
        .filter(|l| l.contains("connections refused at a connection cap"))
        .count();
    assert!((1..=5).contains(&lines), "{lines} refusal log lines");

    // Once the flood lets go, its address is served again.
    drop(flood);
    let ok = eventually(BOUND, || async {
        health_from([127, 0, 0, 1], addr).await.0 == 200
    })
    .await;
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_exposed_key_files_and_sqlite_files_are_private() {
    let s = setup().await;
    let hash_key = s.keys.join("hash.key");
    assert_eq!(mode(&hash_key), 0o600, "keygen writes 0600");
    std::fs::set_permissions(&hash_key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let (code, err) = serve_fails(&s, &[]).await;
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("keys.hash_key_file")
            && err.contains(&hash_key.display().to_string())
            && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!s.dir.path().join("state").exists(), "nothing was created");

    // An explicit setting allows it, with a warning.
    let served = serve(&s, &[("LEASH_KEYS__ALLOW_INSECURE_FILE_MODES", "true")]).await;
    assert!(
        served
            .stderr()
            .contains("allowed by keys.allow_insecure_file_modes"),
        "{}",
        served.stderr()
    );
    drop(served);

    // At 0600 it starts, and the SQLite store is private.
    std::fs::set_permissions(&hash_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let served = serve(&s, &[]).await;
    assert!(!served.stderr().contains("readable by group or others"));
    let (status, _) = health_from([127, 0, 0, 1], served.addr).await;
    assert_eq!(status, 200);
    let _ = status_data(&served, &s.operator_token).await;
    let state = s.dir.path().join("state");
    assert_eq!(mode(&state), 0o700);
    let mut seen = 0;
    for f in ["leash.db", "leash.db-wal", "leash.db-shm"] {
        let p = state.join(f);
        if f == "leash.db" || p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            seen += 1;
        }
    }
    assert!(seen >= 2, "the WAL files exist while the store is open");
}

/// A workload `name` logging in with `sub = name` that may read and write
/// `secret/rl/*`, written into the setup's policy directory.
fn rl_workload(s: &Setup, name: &str) {
    std::fs::write(
        s.policies.join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\n\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n\n\
             [login.bound_claims]\nsub = \"{name}\"\n\n[lease]\nttl = \"5m\"\nmax_ttl = \"1h\"\n\n\
             [[scope]]\npath = \"secret/rl/*\"\ncapabilities = [\"read\", \"create\", \"update\"]\n"
        ),
    )
    .unwrap();
}

/// An HTTP client whose connections come from the loopback address `from`.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `POST auth/jwt/login` for `role` with `jwt`: the status, `Retry-After`
/// and the body.
async fn login(
    c: &reqwest::Client,
    to: SocketAddr,
    role: &str,
    jwt: &str,
) -> (u16, Option<String>, Value) {
    let r = c
        .post(format!("http://{to}/v1/auth/jwt/login"))
        .json(&serde_json::json!({ "role": role, "jwt": jwt }))
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// The status, `Retry-After` and JSON body of `r`.
async fn answer(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, retry, body)
}

/// A token for `role`, logged in from `from`.
async fn token_of(s: &Setup, to: SocketAddr, from: [u8; 4], role: &str) -> String {
    let (status, _, body) = login(&client_from(from), to, role, &s.jwt(role)).await;
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// Audit events of the broker at `to` whose status is `status`.
async fn audited_with_status(s: &Setup, to: SocketAddr, status: u16) -> Vec<Value> {
    let c = client_from([127, 0, 0, 3]);
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let page: Value = c
            .get(format!(
                "http://{to}/v1/leash/audit?after={after}&limit=1000"
            ))
            .header("X-Vault-Token", &s.operator_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["data"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Each page's own request is audited too: a short page is the end.
        let full = events.len() == 1000;
        if let Some(last) = events.last() {
            after = last["seq"].as_i64().unwrap();
        }
        out.extend(events.into_iter().filter(|e| e["status"] == status));
        if !full {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identitys_read_flood_meets_429_while_another_identity_reads_on() {
    let s = setup().await;
    rl_workload(&s, "flooder");
    rl_workload(&s, "neighbour");
    let served = serve(
        &s,
        &[(
            "LEASH_LIMITS__REQUESTS_PER_IDENTITY",
            "{ per_second = 20, burst = 40 }",
        )],
    )
    .await;
    let addr = served.addr;
    let flooder = token_of(&s, addr, [127, 0, 0, 1], "flooder").await;
    let neighbour = token_of(&s, addr, [127, 0, 0, 2], "neighbour").await;
    let url = format!("http://{addr}/v1/secret/data/rl/db");
    let c2 = client_from([127, 0, 0, 2]);
    let w = c2
        .post(&url)
        .header("X-Vault-Token", &neighbour)
        .json(&serde_json::json!({ "data": { "password": "p" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(w.status().as_u16(), 200);

    // The flood: 8 connections reading as fast as they can for 3 s.
    let started = Instant::now();
    let flood_for = Duration::from_secs(3);
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (url, token) = (url.clone(), flooder.clone());
        flood.spawn(async move {
            let c = client_from([127, 0, 0, 1]);
            let (mut ok, mut limited, mut retry_after) = (0u64, 0u64, Vec::new());
            while started.elapsed() < flood_for {
                let r = c
                    .get(&url)
                    .header("X-Vault-Token", &token)
                    .send()
                    .await
                    .unwrap();
                let (status, retry, body) = answer(r).await;
                match status {
                    200 => ok += 1,
                    429 => {
                        limited += 1;
                        assert_eq!(
                            body["errors"][0],
                            "rate limit exceeded: too many requests of this identity"
                        );
                        retry_after.push(retry.expect("Retry-After on a 429"));
                    }
                    other => panic!("flood read answered {other}: {body}"),
                }
            }
            (ok, limited, retry_after)
        });
    }
    // Meanwhile the neighbour reads ten times a second, within its own
    // limit: every read is served, promptly.
    let mut slowest = Duration::ZERO;
    let mut served_reads = 0;
    while started.elapsed() < flood_for {
        let t = Instant::now();
        let r = c2
            .get(&url)
            .header("X-Vault-Token", &neighbour)
            .send()
            .await
            .unwrap();
        let (status, _, body) = answer(r).await;
        assert_eq!(status, 200, "the neighbour was refused: {body}");
        assert_eq!(body["data"]["data"]["password"], "p");
        slowest = slowest.max(t.elapsed());
        served_reads += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(r) = flood.join_next().await {
        let (o, l, retry) = r.unwrap();
        ok += o;
        limited += l;
        for v in retry {
            let secs: u64 = v.parse().expect("Retry-After in whole seconds");
            assert!((1..=2).contains(&secs), "Retry-After {secs}");
        }
    }
    let took = started.elapsed().as_secs_f64();
    assert!(served_reads >= 20, "{served_reads} neighbour reads");
    assert!(
        slowest < Duration::from_secs(1),
        "a neighbour read took {slowest:?} during the flood"
    );
    // The burst, then 20 a second (and a little slack for the clock).
    let bound = 40.0 + 20.0 * took + 5.0;
    assert!(
        (ok as f64) <= bound,
        "{ok} flood reads served, bound {bound}"
    );
    assert!(
        ok >= 40,
        "{ok} flood reads served: the burst was not honoured"
    );
    assert!(limited > 0, "the flood never met the limit");

    // Every 429 was audited, with the limit that refused it, and counted.
    let audited = audited_with_status(&s, addr, 429).await;
    assert_eq!(audited.len() as u64, limited, "429s audited");
    for e in &audited {
        assert_eq!(e["decision"], "denied", "{e}");
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("limits.requests_per_identity"), "{reason}");
        assert_eq!(e["workload"], "flooder", "{e}");
    }
    let data = status_data(&served, &s.operator_token).await;
    assert_eq!(data["limited"]["requests_per_identity"], limited, "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_meet_the_source_limit_before_the_proof_and_the_identity_limit_after() {
    let s = setup().await;
    rl_workload(&s, "flooder");
    rl_workload(&s, "neighbour");
    let served = serve(
        &s,
        &[
            (
                "LEASH_LIMITS__LOGINS_PER_SOURCE",
                "{ per_second = 0.1, burst = 6 }",
            ),
            (
                "LEASH_LIMITS__LOGINS_PER_IDENTITY",
                "{ per_second = 0.1, burst = 3 }",
            ),
        ],
    )
    .await;
    let addr = served.addr;
    let c1 = client_from([127, 0, 0, 1]);
    let jwt = s.jwt("flooder");
    // One identity: its burst of three, then 429 (the proof was good).
    for _ in 0..3 {
        assert_eq!(login(&c1, addr, "flooder", &jwt).await.0, 200);
    }
    let (status, retry, body) = login(&c1, addr, "flooder", &jwt).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["errors"][0],
        "rate limit exceeded: too many logins of this identity"
    );
    assert_eq!(retry.as_deref(), Some("10"));
    // Another identity from the same address still logs in: the address
    // has 6, and has spent 4.
    assert_eq!(
        login(&c1, addr, "neighbour", &s.jwt("neighbour")).await.0,
        200
    );
    assert_eq!(
        login(&c1, addr, "neighbour", &s.jwt("neighbour")).await.0,
        200
    );
    // The address's bucket is empty: even a good login is refused, and so
    // is a bad one, before its signature is looked at.
    let (status, _, body) = login(&c1, addr, "neighbour", &s.jwt("neighbour")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["errors"][0],
        "rate limit exceeded: too many logins from this address"
    );
    let (status, _, _) = login(&c1, addr, "neighbour", "not.a.jwt").await;
    assert_eq!(status, 429);

    // Another address: bad logins are refused as bad (400) up to its
    // burst, then 429 — a flood of bad proofs costs no signature check.
    let c2 = client_from([127, 0, 0, 2]);
    for _ in 0..6 {
        assert_eq!(login(&c2, addr, "neighbour", "not.a.jwt").await.0, 400);
    }
    assert_eq!(login(&c2, addr, "neighbour", "not.a.jwt").await.0, 429);

    // Reads are another bucket: the flooder's tokens still read.
    let token = token_of(&s, addr, [127, 0, 0, 3], "neighbour").await;
    let r = client_from([127, 0, 0, 3])
        .get(format!("http://{addr}/v1/secret/data/rl/nothing"))
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Each 429 is audited with the limit that refused it.
    let audited = audited_with_status(&s, addr, 429).await;
    let reasons: Vec<&str> = audited
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].contains("limits.logins_per_identity"),
        "{reasons:?}"
    );
    for r in &reasons[1..] {
        assert!(r.contains("limits.logins_per_source"), "{reasons:?}");
    }
    let data = status_data(&served, &s.operator_token).await;
    assert_eq!(data["limited"]["logins_per_identity"], 1, "{data}");
    assert_eq!(data["limited"]["logins_per_source"], 3, "{data}");
}
