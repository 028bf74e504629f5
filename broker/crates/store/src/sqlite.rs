//! The SQLite store: one node and `dev`, in one file.
//!
//! Owns: the file (created if missing; WAL, `synchronous = FULL`, foreign
//! keys on, `busy_timeout`), the embedded SQLite migrations, and two pools:
//! a single-connection writer, whose transactions all start with
//! `BEGIN IMMEDIATE`, and a pool of readers. Every write goes through the one
//! writer, so writes are serialised in-process and a transaction never has
//! to upgrade a read lock to a write lock (the `SQLITE_BUSY` deadlock).
//! The commit transaction and the queries are shared with PostgreSQL
//! (`crate::commit`, `crate::mutation`, `crate::read`, `crate::kv`); this
//! module gives them the SQLite [`Dialect`].
//! Must never happen: a write on a reader connection; a renewal applied
//! after the revocation of its lease or token committed; a lease inserted
//! for a token that is not live; an audit seq used twice or skipped.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::audit::StoredEvent;
use leash_domain::crypto::{Digest, KeyedHasher};
use leash_domain::detection::Subject;
use leash_domain::records::{CommitUnit, Committed, LeaseRecord, TokenRecord};
use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::codec::{self, micros};
use crate::commit::{self, ChainedEvent};
use crate::dialect::Dialect;
use crate::kv::{self, KvVersion, KvVersionMeta};
use crate::{
    AuditLog, CommitPaths, KvStore, Leases, PoolOptions, Revocation, RevocationFeed, Store,
    StoreError, StoreStats, detect, read, sql,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../../migrations/sqlite");

/// Every write transaction takes the write lock up front.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Inserts a lease only if its token is live at `issued_at` (`$6`).
const INSERT_LEASE: &str = "INSERT INTO leases (hash, token_hash, workload, path, lease_path, \
     issued_at, expires_at, max_expires_at, ttl_secs, renewable, last_renewal, revoked_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
     WHERE EXISTS (SELECT 1 FROM tokens WHERE hash = $2 AND revoked_at IS NULL \
     AND expires_at > $6)";

/// `$1` lease, `$2` token, `$3` new expiry, `$4` now.
const RENEW_LEASE: &str = "UPDATE leases SET expires_at = min($3, max_expires_at), \
     last_renewal = $4 WHERE hash = $1 AND token_hash = $2 AND revoked_at IS NULL \
     AND expires_at > $4 AND renewable AND EXISTS (SELECT 1 FROM tokens t WHERE t.hash = $2 \
     AND t.revoked_at IS NULL AND t.expires_at > $4)";

/// `$1` token, `$2` new expiry, `$3` now.
const RENEW_TOKEN: &str = "UPDATE tokens SET expires_at = min($2, max_expires_at) \
     WHERE hash = $1 AND revoked_at IS NULL AND expires_at > $3 AND renewable";

/// Leash state in a SQLite file.
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) readers: SqlitePool,
    hasher: KeyedHasher,
    /// Commits written (all general transactions).
    commits: AtomicU64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("readers", &self.readers.size())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`. Fails with
    /// [`StoreError::Unavailable`] if it cannot be opened. Does not migrate.
    pub async fn open(
        path: &Path,
        opts: &PoolOptions,
        hasher: KeyedHasher,
    ) -> Result<Self, StoreError> {
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            // Separate writer and reader connections need one shared file.
            return Err(StoreError::other("SQLite store needs a file path"));
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(opts.statement_timeout)
            .foreign_keys(true);
        // The writer is opened first: it creates the file and switches it
        // to WAL before any reader connects. It is kept open so the WAL and
        // its index are never torn down under the readers.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect.create_if_missing(false))
            .await?;
        Ok(Self {
            writer,
            readers,
            hasher,
            commits: AtomicU64::new(0),
        })
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

impl Dialect for Sqlite {
    const BEGIN_WRITE: Option<&'static str> = Some(BEGIN_WRITE);
    // The write transaction began with `BEGIN IMMEDIATE`: no other writer
    // can move the head before it commits, so a plain read holds it.
    const COMMIT_HEAD: &'static str = sql::SELECT_HEAD;
    const RENEW_LEASE: &'static str = RENEW_LEASE;
    const RENEW_TOKEN: &'static str = RENEW_TOKEN;
    const CLAIM_ALERTS: &'static str = detect::sql::CLAIM_ALERTS_PLAIN;

    // SQLite runs in this process: a statement per row costs no round
    // trip, so the multi-row writes are loops over the single-row
    // statements.

    async fn insert_tokens(
        conn: &mut SqliteConnection,
        tokens: &[&TokenRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let mut out = Vec::with_capacity(tokens.len());
        for t in tokens {
            let n = sqlx::query(sql::INSERT_TOKEN)
                .bind(&t.hash.0[..])
                .bind(&t.accessor)
                .bind(&t.workload)
                .bind(&t.auth_path)
                .bind(&t.issuer)
                .bind(&t.subject)
                .bind(&t.source)
                .bind(codec::meta_json(&t.meta)?)
                .bind(micros(t.created_at))
                .bind(micros(t.expires_at))
                .bind(micros(t.max_expires_at))
                .bind(t.ttl_secs)
                .bind(t.renewable)
                .bind(t.revoked_at.map(micros))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            out.push(n > 0);
        }
        Ok(out)
    }

    /// The write transaction already excludes every other writer, logins
    /// included.
    async fn lock_subject(_conn: &mut SqliteConnection, _s: &Subject) -> Result<(), StoreError> {
        Ok(())
    }

    async fn insert_leases(
        conn: &mut SqliteConnection,
        leases: &[&LeaseRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            let n = sqlx::query(INSERT_LEASE)
                .bind(&l.hash.0[..])
                .bind(&l.token_hash.0[..])
                .bind(&l.workload)
                .bind(&l.path)
                .bind(&l.lease_path)
                .bind(micros(l.issued_at))
                .bind(micros(l.expires_at))
                .bind(micros(l.max_expires_at))
                .bind(l.ttl_secs)
                .bind(l.renewable)
                .bind(l.last_renewal.map(micros))
                .bind(l.revoked_at.map(micros))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            out.push(n > 0);
        }
        Ok(out)
    }

    async fn insert_events(
        conn: &mut SqliteConnection,
        events: &[ChainedEvent<'_>],
        (seq, mac): (i64, &Digest),
    ) -> Result<(), StoreError> {
        for ChainedEvent { seq, event: e, mac } in events {
            sqlx::query(sql::INSERT_EVENT)
                .bind(seq)
                .bind(&e.request_id)
                .bind(micros(e.time))
                .bind(e.identity.as_deref())
                .bind(e.workload.as_deref())
                .bind(&e.peer)
                .bind(&e.operation)
                .bind(&e.method)
                .bind(&e.path)
                .bind(e.decision.as_str())
                .bind(i32::from(e.status))
                .bind(&e.reason)
                .bind(e.lease_ref.as_deref())
                .bind(codec::attestation_json(&e.attestation)?)
                .bind(&mac.0[..])
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(sql::UPDATE_HEAD)
            .bind(seq)
            .bind(&mac.0[..])
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// One process writes a SQLite file: the committing process evicts its
    /// own cache, and there is no one else to tell.
    async fn announce(_conn: &mut SqliteConnection, _r: &Revocation) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        read::ping(&self.readers).await
    }

    /// One writer holds the file at a time, and each commit is short: the
    /// general transaction is the only one.
    async fn commit_unflushed(&self, units: &[CommitUnit]) -> Result<Vec<Committed>, StoreError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let (out, _head) = commit::general(&self.writer, &self.hasher, units).await?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// SQLite commits synchronously (`synchronous = FULL`): every commit is
    /// durable when it returns, and one writer at a time holds the file, so
    /// there is no lock to release sooner.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn commit_paths(&self) -> CommitPaths {
        CommitPaths {
            general: self.commits.load(Ordering::Relaxed),
            ..Default::default()
        }
    }

    /// No other process writes the file: nothing to subscribe to.
    async fn subscribe(&self) -> Result<Option<RevocationFeed>, StoreError> {
        Ok(None)
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
        read::stats(&self.readers, now).await
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::audit_events(&self.readers, after_seq, limit).await
    }

    async fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError> {
        read::audit_head(&self.readers).await
    }
}

#[async_trait]
impl Leases for SqliteStore {
    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        read::token(&self.readers, hash).await
    }

    async fn lease(&self, hash: &Digest) -> Result<Option<LeaseRecord>, StoreError> {
        read::lease(&self.readers, hash).await
    }

    async fn reap(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        read::reap(&self.writer, before).await
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_put(
        &self,
        mount: &str,
        path: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        kv::put(&self.writer, mount, path, sealed, now).await
    }

    async fn kv_get(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<KvVersion>, StoreError> {
        kv::get(&self.readers, mount, path, version).await
    }

    async fn kv_versions(&self, mount: &str, path: &str) -> Result<Vec<KvVersionMeta>, StoreError> {
        kv::versions(&self.readers, mount, path).await
    }

    async fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>, StoreError> {
        kv::list(&self.readers, mount, folder).await
    }
}
