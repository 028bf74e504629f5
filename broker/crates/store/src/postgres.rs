//! The PostgreSQL store: production, shared by every broker replica.
//!
//! Owns: the connection pool (with `statement_timeout` on every
//! connection), the embedded PostgreSQL migrations, and the PostgreSQL
//! dialect of the commit transaction, whose code is shared with SQLite
//! (`crate::shared`). Every commit applies its mutations, then locks the
//! single `audit_head` row (`SELECT … FOR UPDATE`) and holds it only for its
//! audit rows and its commit, so commits from all replicas (and concurrent
//! batches of one replica) write one gap-free chain in commit order while
//! their mutations overlap. Mutations are conditional
//! `UPDATE`s/`INSERT … SELECT … WHERE EXISTS`, re-checked by PostgreSQL
//! after any row-lock wait; conflicting ones serialise on their rows.
//! Must never happen: a renewal applied after the revocation of its lease
//! or token committed; a lease inserted for a token that is not live; an
//! audit seq used twice or skipped; a connection URL (which may hold a
//! password) in an error or in `Debug`.

use std::fmt;
use std::str::FromStr;

use std::collections::HashSet;

use leash_domain::crypto::{Digest, KeyedHasher};
use leash_domain::records::{LeaseRecord, TokenRecord};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::codec::{ChainedEvent, EventColumns, LeaseColumns, TokenColumns};
use crate::{PoolOptions, Revocation, RevocationFeed, StoreError, feed};

static MIGRATOR: Migrator = sqlx::migrate!("../../../migrations/postgres");

/// Locks the chain head for the rest of the transaction.
const LOCK_HEAD: &str = "SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE";

/// Tokens, many at once: one array per column.
const INSERT_TOKENS: &str = "INSERT INTO tokens (hash, accessor, workload, auth_path, issuer, \
     subject, source, meta, created_at, expires_at, max_expires_at, ttl_secs, renewable, \
     revoked_at) SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], \
     $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], \
     $12::int8[], $13::bool[], $14::int8[])";

/// Leases, many at once, each inserted only if its token is live at its
/// `issued_at`. The token row is share-locked, so a concurrent revocation of
/// the token either commits first (and the lease is not inserted) or waits
/// for this transaction (and then revokes the new lease too). Returns the
/// hashes of the leases inserted.
const INSERT_LEASES: &str = "INSERT INTO leases (hash, token_hash, workload, path, lease_path, \
     issued_at, expires_at, max_expires_at, ttl_secs, renewable, last_renewal, revoked_at) \
     SELECT u.* FROM UNNEST($1::bytea[], $2::bytea[], $3::text[], $4::text[], $5::text[], \
     $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::bool[], $11::int8[], $12::int8[]) \
     AS u(hash, token_hash, workload, path, lease_path, issued_at, expires_at, max_expires_at, \
     ttl_secs, renewable, last_renewal, revoked_at) \
     WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.hash = u.token_hash \
     AND t.revoked_at IS NULL AND t.expires_at > u.issued_at FOR SHARE) \
     RETURNING hash";

/// Audit rows, many at once, and the head moved to the last of them
/// (`$16` seq, `$17` MAC), in one statement: one round trip while the head
/// is locked.
const INSERT_EVENTS: &str = "WITH appended AS (INSERT INTO audit_events (seq, request_id, \
     time, identity, workload, peer, operation, method, path, decision, status, reason, \
     lease_ref, attestation, mac) SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], \
     $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
     $11::int4[], $12::text[], $13::text[], $14::text[], $15::bytea[])) \
     UPDATE audit_head SET seq = $16, mac = $17 WHERE id = 1";

/// `$1` lease, `$2` token, `$3` new expiry, `$4` now. The `WHERE` is
/// re-evaluated on the newest row version after waiting for a row lock, so
/// a revocation that commits first always wins.
const RENEW_LEASE: &str = "UPDATE leases SET expires_at = LEAST($3, max_expires_at), \
     last_renewal = $4 WHERE hash = $1 AND token_hash = $2 AND revoked_at IS NULL \
     AND expires_at > $4 AND renewable AND EXISTS (SELECT 1 FROM tokens t WHERE t.hash = $2 \
     AND t.revoked_at IS NULL AND t.expires_at > $4)";

/// `$1` token, `$2` new expiry, `$3` now.
const RENEW_TOKEN: &str = "UPDATE tokens SET expires_at = LEAST($2, max_expires_at) \
     WHERE hash = $1 AND revoked_at IS NULL AND expires_at > $3 AND renewable";

/// Leash state in PostgreSQL.
pub struct PgStore {
    pool: PgPool,
    hasher: KeyedHasher,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…`), opening one connection to check
    /// that the database answers. Fails with [`StoreError::Unavailable`]
    /// within `opts.acquire_timeout` if it does not. Does not migrate.
    pub async fn connect(
        url: &str,
        opts: &PoolOptions,
        hasher: KeyedHasher,
    ) -> Result<Self, StoreError> {
        // The parse error may quote the URL, which may hold a password.
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::other("invalid PostgreSQL URL"))?;
        let ms = opts.statement_timeout.as_millis().max(1);
        let connect = connect.application_name("leash").options([
            ("statement_timeout", ms),
            ("lock_timeout", ms),
            ("idle_in_transaction_session_timeout", ms),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { pool, hasher })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_tokens(
    conn: &mut PgConnection,
    tokens: &[&TokenRecord],
) -> Result<u64, StoreError> {
    let c = TokenColumns::of(tokens)?;
    let n = sqlx::query(INSERT_TOKENS)
        .bind(c.hash)
        .bind(c.accessor)
        .bind(c.workload)
        .bind(c.auth_path)
        .bind(c.issuer)
        .bind(c.subject)
        .bind(c.source)
        .bind(c.meta)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.max_expires_at)
        .bind(c.ttl_secs)
        .bind(c.renewable)
        .bind(c.revoked_at)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n)
}

async fn insert_leases(
    conn: &mut PgConnection,
    leases: &[&LeaseRecord],
) -> Result<Vec<bool>, StoreError> {
    let c = LeaseColumns::of(leases);
    let inserted: Vec<Vec<u8>> = sqlx::query_scalar(INSERT_LEASES)
        .bind(c.hash)
        .bind(c.token_hash)
        .bind(c.workload)
        .bind(c.path)
        .bind(c.lease_path)
        .bind(c.issued_at)
        .bind(c.expires_at)
        .bind(c.max_expires_at)
        .bind(c.ttl_secs)
        .bind(c.renewable)
        .bind(c.last_renewal)
        .bind(c.revoked_at)
        .fetch_all(conn)
        .await?;
    let inserted: HashSet<&[u8]> = inserted.iter().map(Vec::as_slice).collect();
    Ok(leases
        .iter()
        .map(|l| inserted.contains(&l.hash.0[..]))
        .collect())
}

async fn insert_events(
    conn: &mut PgConnection,
    events: &[ChainedEvent],
    (seq, mac): (i64, &Digest),
) -> Result<(), StoreError> {
    let c = EventColumns::of(events)?;
    sqlx::query(INSERT_EVENTS)
        .bind(c.seq)
        .bind(c.request_id)
        .bind(c.time)
        .bind(c.identity)
        .bind(c.workload)
        .bind(c.peer)
        .bind(c.operation)
        .bind(c.method)
        .bind(c.path)
        .bind(c.decision)
        .bind(c.status)
        .bind(c.reason)
        .bind(c.lease_ref)
        .bind(c.attestation)
        .bind(c.mac)
        .bind(seq)
        .bind(&mac.0[..])
        .execute(conn)
        .await?;
    Ok(())
}

async fn announce(conn: &mut PgConnection, r: &Revocation) -> Result<(), StoreError> {
    // Delivered when (and only if) this transaction commits.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(feed::CHANNEL)
        .bind(r.payload())
        .execute(conn)
        .await?;
    Ok(())
}

/// The commit itself returns once its WAL is written, before it is flushed,
/// so the audit head's lock is not held through the disk flush and the
/// next batch can take it at once. Safe only with [`flush`] after it.
async fn defer_flush(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(conn)
        .await?;
    Ok(())
}

/// Returns once everything committed before the call is flushed to disk:
/// a transaction that takes a transaction id commits synchronously (the
/// connection's default), which flushes the WAL up to its commit record,
/// and every commit that returned before this call lies before that
/// record. Concurrent flushes share one disk flush. Until this returns
/// the batch's callers are not answered, so an acknowledged request is as
/// durable as with a synchronous commit; a crash before it loses the batch
/// whole (its leases together with their audit rows), and anything
/// chained on it lies later in the WAL and is lost with it.
async fn flush(store: &PgStore) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&store.pool)
        .await?;
    Ok(())
}

async fn subscribe(store: &PgStore) -> Result<Option<RevocationFeed>, StoreError> {
    Ok(Some(RevocationFeed::listen(&store.pool).await?))
}

crate::shared::store_backend! {
    store: PgStore,
    kind: "postgres",
    connection: PgConnection,
    migrator: MIGRATOR,
    writer: pool,
    readers: pool,
    begin: begin(),
    commit_head: LOCK_HEAD,
    renew_lease: RENEW_LEASE,
    renew_token: RENEW_TOKEN,
    insert_tokens: insert_tokens,
    insert_leases: insert_leases,
    insert_events: insert_events,
    announce: announce,
    defer_flush: defer_flush,
    flush: flush,
    subscribe: subscribe,
}
