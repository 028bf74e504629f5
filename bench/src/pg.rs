//! PostgreSQL for the benchmark: fresh `leash_bench_*` databases dropped
//! when their guard drops, the storage ceiling (how many audit-sized rows
//! this PostgreSQL commits per second), and seeding live leases directly.
//!
//! Must never happen: a database the harness did not create dropped (only
//! names it generated, `leash_bench_<pid>_<n>`), or a scratch table created
//! in Leash's own database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{Connection as _, Executor as _, PgConnection};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The URL of database `name` on the server of `admin_url`.
pub fn url_for(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, rest) = admin_url
        .rsplit_once('/')
        .context("the PostgreSQL URL has no database part")?;
    let query = rest.split_once('?').map(|(_, q)| q);
    Ok(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}

/// A fresh database, dropped on drop.
#[derive(Debug)]
pub struct Database {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    admin_url: String,
}

impl Database {
    /// Creates `leash_bench_<pid>_<n>_<label>`.
    pub async fn create(admin_url: &str, label: &str) -> anyhow::Result<Database> {
        let name = format!(
            "leash_bench_{}_{}_{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| "PostgreSQL does not answer (run scripts/ensure-postgres)")?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        Ok(Database {
            url: url_for(admin_url, &name)?,
            name,
            admin_url: admin_url.to_owned(),
        })
    }

    /// A connection to it.
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (name, admin) = (self.name.clone(), self.admin_url.clone());
        // Drop cannot await: a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let _ = c
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

/// The server's version and durability settings.
pub async fn describe(admin_url: &str) -> anyhow::Result<(String, String)> {
    let mut c = PgConnection::connect(admin_url).await?;
    let (version,): (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&mut c)
        .await?;
    let mut settings = Vec::new();
    for s in [
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "shared_buffers",
        "max_connections",
    ] {
        let (v,): (String,) = sqlx::query_as(&format!("SHOW {s}"))
            .fetch_one(&mut c)
            .await?;
        settings.push(format!("{s}={v}"));
    }
    Ok((format!("PostgreSQL {version}"), settings.join(" ")))
}

/// Leash's own migrations, applied to the ceiling's scratch database so
/// that its table is shaped by the schema Leash writes, whatever it is.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A scratch table shaped like `audit_events` as Leash's migrations leave
/// it (same columns, checks and indexes; no append-only trigger, no chain
/// head), one shaped like `leases`, and the floor server's flush row.
const SCRATCH: &str = "CREATE TABLE bench_audit (LIKE audit_events INCLUDING ALL); \
    CREATE TABLE bench_leases (LIKE leases INCLUDING ALL); \
    CREATE TABLE bench_flushes (id INT PRIMARY KEY, flushes BIGINT NOT NULL); \
    INSERT INTO bench_flushes VALUES (1, 0)";

/// A read's lease rows, many at once (the audit rows go with
/// [`INSERT_BATCH`] in the same transaction).
const INSERT_LEASES: &str = "INSERT INTO bench_leases (hash, token_hash, workload, path, \
    lease_path, issued_at, expires_at, max_expires_at, ttl_secs, renewable) \
    SELECT h, decode(repeat('ab', 32), 'hex'), 'bench-app', 'secret/bench/db', p, t, \
    t + 7200000000, t + 7200000000, 7200, true \
    FROM UNNEST($1::bytea[], $2::text[], $3::int8[]) AS u(h, p, t)";

const INSERT_ONE: &str = "INSERT INTO bench_audit (seq, request_id, time, identity, workload, \
    peer, operation, method, path, decision, status, reason, lease_ref, attestation, mac) \
    VALUES ($1, $2, $3, $4, 'bench-app', '127.0.0.1:50000', 'read', 'GET', \
    'secret/bench/db', 'allowed', 200, 'allowed by scope `secret/bench/*`', $5, $6, $7)";

const INSERT_BATCH: &str = "INSERT INTO bench_audit (seq, request_id, time, identity, workload, \
    peer, operation, method, path, decision, status, reason, lease_ref, attestation, mac) \
    SELECT s, r, t, i, 'bench-app', '127.0.0.1:50000', 'read', 'GET', 'secret/bench/db', \
    'allowed', 200, 'allowed by scope `secret/bench/*`', l, a, m \
    FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
    $7::bytea[]) AS u(s, r, t, i, l, a, m)";

const ATTESTATION: &str = r#"{"method":"jwt","issuer":"dev","subject":"bench-app","claims":{"aud":"leash","iss":"https://dev.leash.invalid"},"source":"127.0.0.1"}"#;

/// What this PostgreSQL commits.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// Rows per transaction in the batched measurement.
    pub batch_rows: usize,
    /// Concurrent connections of the batched measurement.
    pub batched_connections: usize,
    /// Concurrent connections of the one-row measurement (PostgreSQL
    /// shares WAL flushes between concurrent commits).
    pub single_connections: usize,
    /// Rows/s committed in batches.
    pub batched_rows_per_sec: f64,
    /// Rows/s committed one per transaction.
    pub single_rows_per_sec: f64,
    /// Reads/s whose rows (a lease row into a table shaped like `leases`
    /// and an audit row) PostgreSQL commits, batched as above (half the
    /// rows of a transaction each).
    pub read_rows_reads_per_sec: f64,
}

/// One read's rows: its lease and its audit event.
pub struct Row {
    seq: i64,
    lease_hash: Vec<u8>,
    request_id: String,
    time: i64,
    identity: String,
    lease_ref: String,
    mac: Vec<u8>,
}

/// 32 bytes spread like a keyed digest (a lease's primary key is one), from
/// `seq` (splitmix64).
fn spread(seq: i64) -> Vec<u8> {
    let mut x = seq as u64;
    let mut out = Vec::with_capacity(32);
    for _ in 0..4 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_be_bytes());
    }
    out
}

/// The rows of read number `seq` (unique per scratch table).
pub fn row(seq: i64) -> Row {
    Row {
        seq,
        lease_hash: spread(seq),
        request_id: format!(
            "{:08x}-0000-4000-8000-{:012x}",
            seq >> 32,
            seq & 0xffff_ffff
        ),
        time: chrono::Utc::now().timestamp_micros(),
        identity: format!("jwt:dev:bench-app:{:016x}", seq),
        lease_ref: format!("secret/data/bench/db/{:024x}", seq),
        mac: {
            let mut m = vec![0u8; 32];
            m[..8].copy_from_slice(&seq.to_be_bytes());
            m
        },
    }
}

/// A fresh database holding Leash's schema and the scratch tables
/// `bench_audit` and `bench_leases` shaped like `audit_events` and `leases`.
pub async fn scratch_database(admin_url: &str, label: &str) -> anyhow::Result<Database> {
    let db = Database::create(admin_url, label).await?;
    let mut c = db.connect().await?;
    MIGRATOR
        .run(&mut c)
        .await
        .context("applying Leash's migrations to a scratch database")?;
    sqlx::raw_sql(SCRATCH).execute(&mut c).await?;
    Ok(db)
}

/// Measures the batched insert rate over `batched_connections` and the
/// one-row-per-transaction rate over `single_connections`, for `duration`
/// each.
pub async fn ceiling(
    admin_url: &str,
    batched_connections: usize,
    single_connections: usize,
    batch_rows: usize,
    duration: Duration,
) -> anyhow::Result<Ceiling> {
    let db = scratch_database(admin_url, "ceiling").await?;
    let single = insert_rate(&db, single_connections, 1, duration, 0, false).await?;
    let batched = insert_rate(
        &db,
        batched_connections,
        batch_rows,
        duration,
        1 << 40,
        false,
    )
    .await?;
    let pairs = insert_rate(
        &db,
        batched_connections,
        batch_rows / 2,
        duration,
        2 << 40,
        true,
    )
    .await?
    .max(0.0);
    Ok(Ceiling {
        batch_rows,
        batched_connections,
        single_connections,
        batched_rows_per_sec: batched,
        single_rows_per_sec: single,
        read_rows_reads_per_sec: pairs,
    })
}

/// Audit rows/s committed (`with_leases`: reads/s, each an audit row and a
/// lease row in the same transaction).
async fn insert_rate(
    db: &Database,
    connections: usize,
    batch: usize,
    duration: Duration,
    base: i64,
    with_leases: bool,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for conn_no in 0..connections.max(1) {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = PgConnection::connect(&url).await?;
            let mut seq = base + (conn_no as i64) * (1 << 34) + 1;
            let mut rows = 0u64;
            while Instant::now() < end {
                if batch == 1 {
                    let r = row(seq);
                    sqlx::query(INSERT_ONE)
                        .bind(r.seq)
                        .bind(r.request_id)
                        .bind(r.time)
                        .bind(r.identity)
                        .bind(r.lease_ref)
                        .bind(ATTESTATION)
                        .bind(r.mac)
                        .execute(&mut c)
                        .await?;
                    seq += 1;
                    rows += 1;
                } else {
                    let rs: Vec<Row> = (0..batch as i64).map(|k| row(seq + k)).collect();
                    seq += batch as i64;
                    let mut tx = c.begin().await?;
                    insert_rows(&mut tx, &rs, with_leases).await?;
                    tx.commit().await?;
                    rows += batch as u64;
                }
            }
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0u64;
    for t in tasks {
        rows += t.await??;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// Inserts `rows` into the scratch tables: their audit rows, and with
/// `with_leases` their lease rows too (two multi-row statements).
pub async fn insert_rows(
    c: &mut PgConnection,
    rows: &[Row],
    with_leases: bool,
) -> anyhow::Result<()> {
    if with_leases {
        sqlx::query(INSERT_LEASES)
            .bind(rows.iter().map(|r| &r.lease_hash[..]).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.lease_ref.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>())
            .execute(&mut *c)
            .await?;
    }
    sqlx::query(INSERT_BATCH)
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.identity.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.lease_ref.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(vec![ATTESTATION; rows.len()])
        .bind(rows.iter().map(|r| &r.mac[..]).collect::<Vec<_>>())
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Live, unexpired leases in a Leash database.
pub async fn live_leases(c: &mut PgConnection) -> anyhow::Result<i64> {
    let now = chrono::Utc::now().timestamp_micros();
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM leases WHERE revoked_at IS NULL AND expires_at > $1")
            .bind(now)
            .fetch_one(c)
            .await?;
    Ok(n)
}

/// Leases to insert directly: numbers `from..from+count`, owned by the
/// token with `accessor`, on `lease_path`, valid for `ttl`.
#[derive(Debug, Clone)]
pub struct SeedLeases<'a> {
    /// The owning token's accessor.
    pub accessor: &'a str,
    /// The workload.
    pub workload: &'a str,
    /// The canonical secret path.
    pub path: &'a str,
    /// The lease path as the broker stores it: the path the client read
    /// (`secret/data/bench/db`), without the lease id's random suffix.
    pub lease_path: &'a str,
    /// The first number.
    pub from: i64,
    /// How many.
    pub count: i64,
    /// Lifetime from now.
    pub ttl: Duration,
}

/// Inserts the leases `s` describes with one `generate_series` (then
/// [`settle_leases`]). Their keys are shaped like the broker's (see
/// `KeyedHasher::lease`): an issue time, 8 bytes big-endian, the older the
/// lower the number (one microsecond apart, all before now), then 24 bytes
/// of the SHA-256 of the number, so that the leases the broker issues
/// afterwards sort after them, as they would in a live system.
pub async fn seed_leases(c: &mut PgConnection, s: &SeedLeases<'_>) -> anyhow::Result<()> {
    let SeedLeases {
        accessor,
        workload,
        path,
        lease_path,
        from,
        count,
        ttl,
    } = *s;
    let now = chrono::Utc::now().timestamp_micros();
    let ttl_us = i64::try_from(ttl.as_micros())?;
    let r = sqlx::query(
        "INSERT INTO leases (hash, token_hash, workload, path, lease_path, issued_at, \
         expires_at, max_expires_at, ttl_secs, renewable, last_renewal, revoked_at) \
         SELECT int8send($5 - ($9 - g) - 1) \
         || substring(sha256(convert_to('leash-bench-lease-' || g, 'UTF8')) FROM 1 FOR 24), t.hash, $2, $3, \
         $4, $5, $5 + $6, $5 + $6, $7, true, NULL, NULL \
         FROM tokens t, generate_series($8::bigint, $9::bigint) AS g WHERE t.accessor = $1",
    )
    .bind(accessor)
    .bind(workload)
    .bind(path)
    .bind(lease_path)
    .bind(now)
    .bind(ttl_us)
    .bind(i64::try_from(ttl.as_secs())?)
    .bind(from)
    .bind(from + count - 1)
    .execute(&mut *c)
    .await?;
    anyhow::ensure!(
        r.rows_affected() == u64::try_from(count)?,
        "seeded {} leases, expected {count} (is the token {accessor} in this database?)",
        r.rows_affected()
    );
    Ok(())
}

/// Readies the lease table for a measured run: vacuums and analyses it
/// (the seeding's rows and the previous run's deleted ones), then checkpoints
/// so that the seeding's WAL does not set a checkpoint off in the middle
/// of reads whose commits wait for the disk: that cost belongs to the
/// seeding.
pub async fn settle_leases(c: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("VACUUM (ANALYZE) leases")
        .execute(&mut *c)
        .await?;
    sqlx::query("CHECKPOINT").execute(&mut *c).await?;
    Ok(())
}

/// Deletes the leases of the token with `accessor` (a measured run's own
/// leases, so that the next point starts from its target). Returns how
/// many.
pub async fn delete_leases_of(c: &mut PgConnection, accessor: &str) -> anyhow::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM leases WHERE token_hash = (SELECT hash FROM tokens WHERE accessor = $1)",
    )
    .bind(accessor)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Where PostgreSQL's write-ahead log is: bytes written since the cluster
/// began, and full-page images since its statistics were reset (both
/// cluster-wide; the image count reaches `pg_stat_wal` when a backend
/// reports its statistics, within about a second).
#[derive(Debug, Clone, Copy, Default)]
pub struct WalMark {
    /// `pg_current_wal_lsn()` as bytes.
    pub bytes: f64,
    /// `pg_stat_wal.wal_fpi`.
    pub fpi: i64,
}

impl WalMark {
    /// Reads the marks now.
    pub async fn now(c: &mut PgConnection) -> anyhow::Result<WalMark> {
        let (bytes, fpi): (f64, i64) = sqlx::query_as(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8, \
             (SELECT wal_fpi FROM pg_stat_wal)",
        )
        .fetch_one(c)
        .await?;
        Ok(WalMark { bytes, fpi })
    }
}
