//! The PostgreSQL store: production, shared by every broker replica.
//!
//! Owns: the connection pool (with `statement_timeout` on every
//! connection), the embedded PostgreSQL migrations, and the PostgreSQL
//! dialect of the commit transaction, whose code is shared with SQLite
//! (`crate::shared`). Every commit (and every reaping batch) first locks the
//! single `audit_head` row (`SELECT … FOR UPDATE`), so commits from all
//! replicas are serialised and write one gap-free chain; mutations are
//! conditional `UPDATE`s/`INSERT … SELECT … WHERE EXISTS`, re-checked by
//! PostgreSQL after any row-lock wait.
//! Must never happen: a renewal applied after the revocation of its lease
//! or token committed; a lease inserted for a token that is not live; an
//! audit seq used twice or skipped; a connection URL (which may hold a
//! password) in an error or in `Debug`.

use std::fmt;
use std::str::FromStr;

use leash_domain::crypto::KeyedHasher;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::{PoolOptions, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("../../../migrations/postgres");

/// Locks the chain head for the rest of the transaction.
const LOCK_HEAD: &str = "SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE";

/// Inserts a lease only if its token is live at `issued_at` (`$6`). The
/// token row is share-locked, so a concurrent revocation of the token either
/// commits first (and this inserts nothing) or waits for this transaction
/// (and then revokes the new lease too).
const INSERT_LEASE: &str = "INSERT INTO leases (hash, token_hash, workload, path, lease_path, \
     issued_at, expires_at, max_expires_at, ttl_secs, renewable, last_renewal, revoked_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
     WHERE EXISTS (SELECT 1 FROM tokens WHERE hash = $2 AND revoked_at IS NULL \
     AND expires_at > $6 FOR SHARE)";

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

crate::shared::store_backend! {
    store: PgStore,
    kind: "postgres",
    connection: PgConnection,
    migrator: MIGRATOR,
    writer: pool,
    readers: pool,
    begin: begin(),
    commit_head: LOCK_HEAD,
    reap_lock: LOCK_HEAD,
    insert_lease: INSERT_LEASE,
    renew_lease: RENEW_LEASE,
    renew_token: RENEW_TOKEN,
}
