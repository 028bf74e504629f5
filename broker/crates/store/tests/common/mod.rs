//! Test support for the store conformance suite: a fresh database per test
//! (a new PostgreSQL database, or a SQLite file in a temporary directory),
//! record and event fixtures, and chain verification.
//! Must never happen: a test touching a database it did not create.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use leash_domain::audit::{AuditEvent, ChainBreak, ChainVerifier, Decision, StoredEvent};
use leash_domain::crypto::{Digest, KeyedHasher, random_bytes};
use leash_domain::records::{CommitUnit, Committed, LeaseRecord, Mutation, Refusal, TokenRecord};
use leash_store::{PgStore, PoolOptions, SqliteStore, Store};
use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("LEASH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `admin_url` with the database name replaced.
fn db_url(db: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let slash = base.rfind('/').unwrap();
    // "postgres://host" has no database part: the last slash is the scheme's.
    let base = if base[..slash].ends_with('/') {
        base.as_str()
    } else {
        &base[..slash]
    };
    format!("{base}/{db}{query}")
}

pub fn test_opts() -> PoolOptions {
    PoolOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(60),
        statement_timeout: Duration::from_secs(30),
    }
}

pub fn hasher() -> KeyedHasher {
    KeyedHasher::new(&[7u8; 32]).unwrap()
}

enum Backend {
    Pg {
        db: String,
        url: String,
    },
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
}

/// One fresh, migrated store.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub hasher: KeyedHasher,
    backend: Backend,
}

impl Harness {
    pub async fn pg() -> Self {
        let db = format!("leash_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        // The name is generated above (hex only); identifiers cannot be bound.
        sqlx::raw_sql(&format!("CREATE DATABASE \"{db}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.ok();
        let url = db_url(&db);
        let store = PgStore::connect(&url, &test_opts(), hasher())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Self {
            store: Arc::new(store),
            hasher: hasher(),
            backend: Backend::Pg { db, url },
        }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leash.db");
        let store = SqliteStore::open(&path, &test_opts(), hasher())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Self {
            store: Arc::new(store),
            hasher: hasher(),
            backend: Backend::Sqlite { _dir: dir, path },
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self.backend, Backend::Pg { .. })
    }

    /// The URL `leash_store::connect` takes for this database.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Pg { url, .. } => url.clone(),
            Backend::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        }
    }

    /// A second store on the same database (another replica or process).
    pub async fn another(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Pg { url, .. } => {
                Arc::new(PgStore::connect(url, &test_opts(), hasher()).await.unwrap())
            }
            Backend::Sqlite { path, .. } => Arc::new(
                SqliteStore::open(path, &test_opts(), hasher())
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Runs `sql` on a separate connection, with the append-only guards in
    /// place. Returns rows affected.
    pub async fn raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match &self.backend {
            Backend::Pg { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                let r = sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected());
                c.close().await.ok();
                r
            }
            Backend::Sqlite { path, .. } => {
                let mut c = sqlite_raw(path).await?;
                let r = sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected());
                c.close().await.ok();
                r
            }
        }
    }

    /// Runs `sql` as an attacker with full database access would: on
    /// PostgreSQL as superuser with triggers disabled for the session
    /// (`session_replication_role = replica`), on SQLite after dropping the
    /// guard triggers from the file.
    pub async fn tamper(&self, sql: &str) -> u64 {
        match &self.backend {
            Backend::Pg { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql("SET session_replication_role = replica")
                    .execute(&mut c)
                    .await
                    .unwrap();
                let n = sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .unwrap()
                    .rows_affected();
                c.close().await.ok();
                n
            }
            Backend::Sqlite { path, .. } => {
                let mut c = sqlite_raw(path).await.unwrap();
                sqlx::raw_sql(
                    "DROP TRIGGER IF EXISTS audit_events_no_update; \
                     DROP TRIGGER IF EXISTS audit_events_no_delete; \
                     DROP TRIGGER IF EXISTS audit_head_forward; \
                     DROP TRIGGER IF EXISTS audit_head_no_delete;",
                )
                .execute(&mut c)
                .await
                .unwrap();
                let n = sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .unwrap()
                    .rows_affected();
                c.close().await.ok();
                n
            }
        }
    }

    /// For SQLite, the file's journal mode.
    pub async fn sqlite_journal_mode(&self) -> Option<String> {
        match &self.backend {
            Backend::Pg { .. } => None,
            Backend::Sqlite { path, .. } => {
                let mut c = sqlite_raw(path).await.unwrap();
                let (m,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                Some(m)
            }
        }
    }
}

async fn sqlite_raw(path: &std::path::Path) -> Result<sqlx::SqliteConnection, sqlx::Error> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(30));
    sqlx::SqliteConnection::connect_with(&opts).await
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Backend::Pg { db, .. } = &self.backend {
            let db = db.clone();
            // Best effort, from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url()).await {
                        let _ = sqlx::raw_sql(&format!(
                            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                        ))
                        .execute(&mut c)
                        .await;
                        let _ = c.close().await;
                    }
                });
            })
            .join();
        }
    }
}

// ---------------------------------------------------------------- fixtures

/// A fixed, microsecond-exact instant.
pub fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 123_456_000)
        .single()
        .unwrap()
}

pub fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

pub fn digest() -> Digest {
    Digest(random_bytes::<32>().unwrap())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A live, renewable token issued at `t0()` for an hour (max a day).
pub fn token() -> TokenRecord {
    let mut meta = BTreeMap::new();
    meta.insert("team".to_owned(), "payments".to_owned());
    meta.insert("ünïcode \"quoted\"".to_owned(), "line\nbreak".to_owned());
    TokenRecord {
        hash: digest(),
        accessor: format!("acc-{}", next()),
        workload: "payments-api".to_owned(),
        auth_path: "auth/jwt/login".to_owned(),
        issuer: "https://issuer.example".to_owned(),
        subject: "system:serviceaccount:pay:api".to_owned(),
        source: "10.1.2.3".to_owned(),
        meta,
        created_at: t0(),
        expires_at: t0() + secs(3600),
        max_expires_at: t0() + secs(86_400),
        ttl_secs: 3600,
        renewable: true,
        revoked_at: None,
    }
}

/// A live, renewable lease of `tok` on `lease_path`, issued at `t0()` for
/// ten minutes (max an hour).
pub fn lease(tok: &TokenRecord, lease_path: &str) -> LeaseRecord {
    LeaseRecord {
        hash: digest(),
        token_hash: tok.hash,
        workload: tok.workload.clone(),
        path: "secret/payments/db".to_owned(),
        lease_path: lease_path.to_owned(),
        issued_at: t0(),
        expires_at: t0() + secs(600),
        max_expires_at: t0() + secs(3600),
        ttl_secs: 600,
        renewable: true,
        last_renewal: None,
        revoked_at: None,
    }
}

pub fn event(operation: &str) -> AuditEvent {
    AuditEvent {
        request_id: format!("req-{}", next()),
        time: t0(),
        identity: Some("acc".to_owned()),
        workload: Some("payments-api".to_owned()),
        peer: "10.1.2.3:5555".to_owned(),
        operation: operation.to_owned(),
        method: "POST".to_owned(),
        path: "sys/leases/renew".to_owned(),
        decision: Decision::Allowed,
        status: 200,
        reason: "ok".to_owned(),
        lease_ref: Some("ab12".to_owned()),
        attestation: serde_json::json!({
            "iss": "https://issuer.example",
            "sub": "spiffe://cluster/ns/pay/sa/api",
            "claims": {"n": 1, "f": 1.5, "neg": -3, "u": "ü\n\"", "list": [true, null]},
        }),
    }
}

/// A unit for `m`, refused as 400 "refused" if its condition fails.
pub fn unit(m: Mutation) -> CommitUnit {
    let op = match &m {
        Mutation::InsertToken(_) => "auth.login",
        Mutation::InsertLease(_) => "kv.read",
        Mutation::RenewLease { .. } => "lease.renew",
        Mutation::RenewToken { .. } => "token.renew",
        Mutation::RevokeLease { .. } => "lease.revoke",
        Mutation::RevokeLeasePrefix { .. } => "lease.revoke_prefix",
        Mutation::RevokeToken { .. } => "token.revoke",
        Mutation::RevokeTokens { .. } => "admin.revoke_tokens",
        Mutation::KvWrite { .. } => "kv.write",
        Mutation::KvDelete { .. } => "kv.delete",
        Mutation::RecordSignal(_) => "detect.signal",
        Mutation::Quarantine(_) => "admin.quarantine",
        Mutation::ReleaseQuarantine { .. } => "admin.release",
        Mutation::RecordDetection(_) => "detect.detection",
        Mutation::EnqueueAlert(_) => "detect.alert",
    };
    CommitUnit {
        mutation: Some(m),
        consequences: Vec::new(),
        event: event(op),
        on_refusal: Some(Refusal {
            status: 400,
            reason: "refused".to_owned(),
        }),
    }
}

pub async fn commit1(store: &dyn Store, m: Mutation) -> Committed {
    let out = store.commit(&[unit(m)]).await.unwrap();
    assert_eq!(out.len(), 1);
    out[0]
}

pub async fn all_events(store: &dyn Store) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_events(after, 37).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = last.seq;
        out.extend(page);
    }
}

pub async fn verify_chain(store: &dyn Store, hasher: &KeyedHasher) -> Result<i64, ChainBreak> {
    let rows = all_events(store).await;
    let head = store.audit_head().await.unwrap();
    let mut v = ChainVerifier::new(hasher);
    for r in &rows {
        v.push(r)?;
    }
    v.finish(head)
}

pub async fn event_at(store: &dyn Store, seq: i64) -> StoredEvent {
    let rows = store.audit_events(seq - 1, 1).await.unwrap();
    assert_eq!(rows.len(), 1, "no event at seq {seq}");
    assert_eq!(rows[0].seq, seq);
    rows[0].clone()
}
