//! Leash's durable state — tokens, leases, the audit chain and the built-in
//! secret store — in PostgreSQL (production, shared by replicas) or SQLite
//! (a single node, `dev`), behind one [`Store`] trait.
//!
//! Owns: the schema (the migrations under `migrations/`), the conditional
//! mutations that decide whether a lease or token may be extended (or a
//! login of a quarantined identity recorded), and the one transaction that
//! applies a batch of mutations together with their hash-chained audit
//! rows — containment's signals, quarantines, detections and alerts
//! included.
//! Must never happen: a mutation committed without its audit row (or the
//! reverse); a renewal that succeeds after the revocation of its lease or
//! token committed; a gap or fork in the audit chain, even with several
//! replicas; SQL built from values; a secret value, token or lease id in
//! clear anywhere in the database; a database message in a `Display` string.
//!
//! Layout. The code both databases share is written once, generic over the
//! database, and each backend is a plain implementation of [`Store`] (and
//! its parts [`AuditLog`], [`Leases`], [`KvStore`]) that calls it:
//!
//! - `commit` — a batch of units in one general transaction, and the audit
//!   chain; `mutation` — what each mutation does; `read` — lookups, the
//!   audit log, counts, reaping; `kv` — the built-in secret store;
//!   `detect` — containment's state ([`Detections`]) and its mutations.
//! - `dialect` — what differs between the databases (the `Dialect` trait);
//!   `query` — sqlx's query API over either database, with the bounds that
//!   needs gathered in one place; `sql` and `codec` — the shared statements
//!   and row layouts.
//! - `postgres` and `sqlite` — the pools, the migrations, each `Dialect`,
//!   each `Store`; PostgreSQL's one-statement commit; `feed` — its
//!   revocation announcements.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leash_domain::audit::StoredEvent;
use leash_domain::crypto::{Digest, KeyedHasher};
use leash_domain::detection::{Quarantine, Signal, SignalStats, Subject};
use leash_domain::records::{CommitUnit, Committed, LeaseRecord, TokenRecord};
use serde::Serialize;

mod codec;
mod commit;
mod detect;
mod dialect;
mod error;
mod feed;
mod kv;
mod mutation;
mod postgres;
mod query;
mod read;
mod sql;
mod sqlite;

pub use detect::{AlertAttempt, AttemptOutcome, ClaimedAlert, DetectionRecord};
pub use error::{BoxError, StoreError};
pub use feed::{Revocation, RevocationFeed};
pub use kv::{KvVersion, KvVersionMeta};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Leash's state, in one database: the commit pipeline, and (as
/// supertraits) the reads and writes outside it, by concern — the audit
/// log ([`AuditLog`]), tokens and leases ([`Leases`]), the built-in secret
/// store ([`KvStore`]), containment's state ([`Detections`]). Held as
/// `Arc<dyn Store>`; every method of the supertraits is callable on it.
#[async_trait::async_trait]
pub trait Store: AuditLog + Leases + KvStore + Detections + Send + Sync + 'static {
    /// `"postgres"` or `"sqlite"`.
    fn kind(&self) -> &'static str;

    /// Applies the embedded migrations for this database. Applying them
    /// again is a no-op; replicas may call it concurrently.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Applies every unit in one transaction, in order: for each unit its
    /// (conditional) mutations — the request's own, then its consequences
    /// (see [`CommitUnit`]) — then its final event
    /// ([`CommitUnit::final_event`], decided by the request's own
    /// mutation) at the next audit seq, chained to the previous one; then
    /// moves the audit head and commits. Returns one [`Committed`] per
    /// unit, in the same order. On any error nothing is committed. Returns
    /// only once the commit is durable.
    async fn commit(&self, units: &[CommitUnit]) -> Result<Vec<Committed>, StoreError> {
        let out = self.commit_unflushed(units).await?;
        self.flush().await?;
        Ok(out)
    }

    /// As [`Store::commit`], but may return before the commit is durable
    /// (PostgreSQL: before its WAL reaches the disk), so that the next
    /// commit can start while this one is flushed. Nothing may act on the
    /// result (no reply, no secret) until a [`Store::flush`] that began
    /// after this returned has returned. A crash before that loses the
    /// whole transaction, never a part of it.
    async fn commit_unflushed(&self, units: &[CommitUnit]) -> Result<Vec<Committed>, StoreError>;

    /// Returns once every commit that returned before the call is durable.
    /// Concurrent calls may share one disk flush.
    async fn flush(&self) -> Result<(), StoreError>;

    /// How this process's commits were written, since it started.
    fn commit_paths(&self) -> CommitPaths {
        CommitPaths::default()
    }

    /// Subscribes to the revocations that any replica sharing this database
    /// commits (each mutation that revokes a token announces it in its own
    /// transaction, so the announcement is delivered if and only if the
    /// revocation commits). `None` when no other process writes this
    /// database (SQLite): the committing process is the only one to tell.
    /// When `Ok(Some(_))` returns, the subscription is active.
    async fn subscribe(&self) -> Result<Option<RevocationFeed>, StoreError>;

    /// Counts of live tokens and leases at `now`, and of audit events.
    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError>;
}

/// The audit log, read back: the hash-chained events every commit writes
/// (only [`Store::commit`] appends to it).
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
    /// Up to `limit` audit events with `seq > after_seq`, ascending.
    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The last seq and MAC of the chain; `None` before the first event.
    async fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError>;
}

/// Tokens and the leases they own, outside commits: lookups by digest, and
/// reaping the dead ones (they are issued, renewed and revoked only by
/// [`Store::commit`]).
#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// The token with this digest, revoked or not.
    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>, StoreError>;

    /// The lease with this digest, revoked or not.
    async fn lease(&self, hash: &Digest) -> Result<Option<LeaseRecord>, StoreError>;

    /// Deletes tokens and leases that expired or were revoked before
    /// `before` (and the leases of such tokens). Returns the rows deleted.
    async fn reap(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The built-in secret store's versions, sealed by the backend before they
/// arrive (a write on a request's behalf is a [`Store::commit`] mutation).
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    /// Stores a new version of a sealed secret; returns its number (1, 2, …).
    async fn kv_put(
        &self,
        mount: &str,
        path: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// One version of a secret (`None`: the latest), or `None` if unknown.
    async fn kv_get(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<KvVersion>, StoreError>;

    /// Metadata of every version of a secret, ascending; empty if unknown.
    async fn kv_versions(&self, mount: &str, path: &str) -> Result<Vec<KvVersionMeta>, StoreError>;

    /// The direct children of `folder` (`""` or `"a/b/"`; the prefix is
    /// literal): leaf names and `"sub/"` for sub-folders, sorted; empty if
    /// none.
    async fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>, StoreError>;
}

/// Containment's state, outside commits: the signals detectors count,
/// quarantines, detections, and the alert outbox (each is written by
/// [`Store::commit`] as a mutation of the request that caused it; only the
/// outbox's delivery bookkeeping and reaping are written here).
#[async_trait::async_trait]
pub trait Detections: Send + Sync {
    /// Counts of the subject's signals at or after `since`.
    async fn signal_stats(
        &self,
        subject: &Subject,
        since: DateTime<Utc>,
    ) -> Result<SignalStats, StoreError>;

    /// Up to `limit` of the subject's signals at or after `since`, newest
    /// first.
    async fn signals(
        &self,
        subject: &Subject,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Signal>, StoreError>;

    /// The subject's quarantine in force at `now` (the newest, if several),
    /// or `None`.
    async fn active_quarantine(
        &self,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> Result<Option<Quarantine>, StoreError>;

    /// Every quarantine of the subject, newest first. A released one ends
    /// at its release: its `until` is the earlier of the two.
    async fn quarantines(&self, subject: &Subject) -> Result<Vec<Quarantine>, StoreError>;

    /// Up to `limit` detections with `seq > after_seq` (all with `None`),
    /// ascending. Seqs are taken at insert: with concurrent commits a
    /// detection may become visible after one with a higher seq, so a
    /// cursor that must miss none re-reads a little behind its last seq.
    async fn detections(
        &self,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DetectionRecord>, StoreError>;

    /// The detection with this id.
    async fn detection(&self, id: &str) -> Result<Option<DetectionRecord>, StoreError>;

    /// Up to `limit` of the subject's detections, newest first.
    async fn detections_of(
        &self,
        subject: &Subject,
        limit: u32,
    ) -> Result<Vec<DetectionRecord>, StoreError>;

    /// Claims up to `limit` alerts due at `now` (not delivered, not given
    /// up, `next_attempt_at <= now`, no claim in force) until `now +
    /// claim_for`, most overdue first. Two concurrent claims (from any
    /// replicas) never return the same alert; a claim that lapses without
    /// an attempt recorded makes the alert claimable again.
    async fn claim_alerts(
        &self,
        now: DateTime<Utc>,
        claim_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedAlert>, StoreError>;

    /// Records an attempt at delivering an alert: an attempt row, one more
    /// attempt counted, the claim released, and per the outcome, delivered,
    /// due again, or given up. `false` (nothing recorded) when the alert is
    /// unknown, delivered or given up.
    async fn record_alert_attempt(
        &self,
        delivery_id: &str,
        attempt: &AlertAttempt,
    ) -> Result<bool, StoreError>;

    /// Deletes signals older than `before`; returns how many.
    async fn reap_signals(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Counts for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Tokens neither revoked nor expired.
    pub live_tokens: i64,
    /// Leases neither revoked nor expired.
    pub live_leases: i64,
    /// Audit events written (the head seq: the chain has no gaps).
    pub audit_events: i64,
}

/// How commits were written: in one statement chained in advance from the
/// head the previous commit left (PostgreSQL), or as a general
/// transaction that locks the head and then chains; `stale` counts
/// one-statement attempts the database refused (another replica had moved
/// the head, or a token was revoked meanwhile), each then written the
/// general way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitPaths {
    /// Commits written in one statement.
    pub one_statement: u64,
    /// Commits written as a general transaction.
    pub general: u64,
    /// One-statement attempts refused by the database.
    pub stale: u64,
}

/// Connection pool bounds. Every wait is bounded: acquiring a connection
/// (including connecting) by `acquire_timeout`, each statement by
/// `statement_timeout` (PostgreSQL `statement_timeout`, SQLite
/// `busy_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections open at once (for SQLite: readers; writes use one
    /// connection of their own).
    pub max_connections: u32,
    /// Longest wait for a connection.
    pub acquire_timeout: Duration,
    /// Longest a statement may run or wait for a lock.
    pub statement_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the store a URL names: `postgres://…` or `postgresql://…` for
/// PostgreSQL, `sqlite://PATH` or `sqlite:PATH` for a SQLite file (created
/// if missing). Does not migrate.
pub async fn connect(
    url: &str,
    opts: &PoolOptions,
    hasher: KeyedHasher,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url, opts, hasher).await?));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"));
    match path {
        Some(p) => Ok(Arc::new(
            SqliteStore::open(Path::new(p), opts, hasher).await?,
        )),
        None => Err(StoreError::other("unsupported store URL scheme")),
    }
}
