//! The PostgreSQL store: production, shared by every broker replica.
//!
//! Owns: the connection pool (with `statement_timeout` on every
//! connection), the embedded PostgreSQL migrations, and the commit
//! transaction. Every commit first locks the single `audit_head` row
//! (`SELECT … FOR UPDATE`), so commits from all replicas are serialised and
//! write one gap-free chain; mutations are conditional `UPDATE`s/`INSERT …
//! SELECT … WHERE EXISTS`, re-checked by PostgreSQL after any row-lock wait.
//! Must never happen: a renewal applied after the revocation of its lease
//! or token committed; a lease inserted for a token that is not live; an
//! audit seq used twice or skipped; a connection URL (which may hold a
//! password) in an error or in `Debug`.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::audit::{AuditEvent, StoredEvent};
use leash_domain::crypto::{Digest, KeyedHasher};
use leash_domain::records::{
    CommitUnit, Committed, LeaseRecord, Mutation, NotApplied, Outcome, TokenRecord,
};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::codec::{self, micros};
use crate::kv::{KvVersion, KvVersionMeta, children, folder_prefix};
use crate::sql;
use crate::{PoolOptions, Store, StoreError, StoreStats};

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

async fn apply(conn: &mut PgConnection, m: &Mutation) -> Result<Outcome, StoreError> {
    let outcome = match m {
        Mutation::InsertToken(t) => {
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
            Outcome::Applied { affected: n }
        }
        Mutation::InsertLease(l) => {
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
            if n == 0 {
                Outcome::NotApplied(NotApplied::TokenNotLive)
            } else {
                Outcome::Applied { affected: n }
            }
        }
        Mutation::RenewLease {
            lease,
            token,
            now,
            expires_at,
        } => {
            let now = micros(*now);
            let n = sqlx::query(RENEW_LEASE)
                .bind(&lease.0[..])
                .bind(&token.0[..])
                .bind(micros(*expires_at))
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n > 0 {
                Outcome::Applied { affected: n }
            } else {
                let probe: Option<codec::RenewProbe> = sqlx::query_as(codec::RENEW_PROBE)
                    .bind(&lease.0[..])
                    .fetch_optional(&mut *conn)
                    .await?;
                Outcome::NotApplied(codec::renew_refusal(probe, token, now))
            }
        }
        Mutation::RenewToken {
            token,
            now,
            expires_at,
        } => {
            let now = micros(*now);
            let n = sqlx::query(RENEW_TOKEN)
                .bind(&token.0[..])
                .bind(micros(*expires_at))
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n > 0 {
                Outcome::Applied { affected: n }
            } else {
                let probe: Option<(Option<i64>, i64, bool)> =
                    sqlx::query_as(sql::TOKEN_RENEW_PROBE)
                        .bind(&token.0[..])
                        .fetch_optional(&mut *conn)
                        .await?;
                Outcome::NotApplied(codec::token_renew_refusal(probe, now))
            }
        }
        Mutation::RevokeLease { lease, owner, now } => {
            let q = match owner {
                None => sqlx::query(sql::REVOKE_LEASE)
                    .bind(&lease.0[..])
                    .bind(micros(*now)),
                Some(o) => sqlx::query(sql::REVOKE_LEASE_OWNED)
                    .bind(&lease.0[..])
                    .bind(micros(*now))
                    .bind(&o.0[..]),
            };
            let n = q.execute(&mut *conn).await?.rows_affected();
            Outcome::Applied { affected: n }
        }
        Mutation::RevokeLeasePrefix { prefix, owner, now } => {
            let q = match owner {
                None => sqlx::query(sql::REVOKE_PREFIX)
                    .bind(prefix.as_str())
                    .bind(micros(*now)),
                Some(o) => sqlx::query(sql::REVOKE_PREFIX_OWNED)
                    .bind(prefix.as_str())
                    .bind(micros(*now))
                    .bind(&o.0[..]),
            };
            let n = q.execute(&mut *conn).await?.rows_affected();
            Outcome::Applied { affected: n }
        }
        Mutation::RevokeToken { token, now } => {
            sqlx::query(sql::REVOKE_TOKEN)
                .bind(&token.0[..])
                .bind(micros(*now))
                .execute(&mut *conn)
                .await?;
            let n = sqlx::query(sql::REVOKE_TOKEN_LEASES)
                .bind(&token.0[..])
                .bind(micros(*now))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            Outcome::Applied { affected: n }
        }
    };
    Ok(outcome)
}

async fn insert_event(
    conn: &mut PgConnection,
    seq: i64,
    e: &AuditEvent,
    mac: &Digest,
) -> Result<(), StoreError> {
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
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn commit(&self, units: &[CommitUnit]) -> Result<Vec<Committed>, StoreError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let (seq, mac): (i64, Vec<u8>) = sqlx::query_as(LOCK_HEAD)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::corrupt("audit_head", "missing"))?;
        let (mut seq, mut prev) = codec::head(seq, &mac)?;
        let mut out = Vec::with_capacity(units.len());
        for unit in units {
            let outcome = match &unit.mutation {
                None => Outcome::Recorded,
                Some(m) => apply(&mut tx, m).await?,
            };
            let event = unit.final_event(&outcome);
            seq = seq
                .checked_add(1)
                .ok_or_else(|| StoreError::corrupt("audit_head", "seq overflow"))?;
            let mac = event.chain_mac(&self.hasher, &prev, seq);
            insert_event(&mut tx, seq, &event, &mac).await?;
            prev = mac;
            out.push(Committed { seq, outcome });
        }
        sqlx::query(sql::UPDATE_HEAD)
            .bind(seq)
            .bind(&prev.0[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<codec::TokenRow> = sqlx::query_as(sql::SELECT_TOKEN)
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await?;
        row.map(TokenRecord::try_from).transpose()
    }

    async fn lease(&self, hash: &Digest) -> Result<Option<LeaseRecord>, StoreError> {
        let row: Option<codec::LeaseRow> = sqlx::query_as(sql::SELECT_LEASE)
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await?;
        row.map(LeaseRecord::try_from).transpose()
    }

    async fn reap(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = micros(before);
        let mut total = 0u64;
        // Leases first (including those of dead tokens), then tokens; in
        // batches, each holding the head lock so that reaping never
        // deadlocks with a commit and never holds it for long.
        for stmt in [sql::REAP_LEASES, sql::REAP_TOKENS] {
            loop {
                let mut tx = self.pool.begin().await?;
                sqlx::query(LOCK_HEAD).execute(&mut *tx).await?;
                let n = sqlx::query(stmt)
                    .bind(before)
                    .bind(codec::REAP_BATCH)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                total += n;
                if n < codec::REAP_BATCH.unsigned_abs() {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<codec::EventRow> = sqlx::query_as(sql::SELECT_EVENTS)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError> {
        let (seq, mac): (i64, Vec<u8>) = sqlx::query_as(sql::SELECT_HEAD)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::corrupt("audit_head", "missing"))?;
        let head = codec::head(seq, &mac)?;
        Ok((head.0 > 0).then_some(head))
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
        let (live_tokens, live_leases, seq): (i64, i64, Option<i64>) = sqlx::query_as(sql::STATS)
            .bind(micros(now))
            .fetch_one(&self.pool)
            .await?;
        Ok(StoreStats {
            live_tokens,
            live_leases,
            audit_events: seq.unwrap_or(0),
        })
    }

    async fn kv_put(
        &self,
        mount: &str,
        path: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let v: i64 = sqlx::query_scalar(sql::KV_BUMP)
            .bind(mount)
            .bind(path)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(sql::KV_INSERT)
            .bind(mount)
            .bind(path)
            .bind(v)
            .bind(micros(now))
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        codec::version(v)
    }

    async fn kv_get(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<KvVersion>, StoreError> {
        let row: Option<codec::KvRow> = match version {
            None => {
                sqlx::query_as(sql::KV_LATEST)
                    .bind(mount)
                    .bind(path)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Some(v) => {
                let Ok(v) = i64::try_from(v) else {
                    return Ok(None);
                };
                sqlx::query_as(sql::KV_VERSION)
                    .bind(mount)
                    .bind(path)
                    .bind(v)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.map(KvVersion::try_from).transpose()
    }

    async fn kv_versions(&self, mount: &str, path: &str) -> Result<Vec<KvVersionMeta>, StoreError> {
        let rows: Vec<codec::KvMetaRow> = sqlx::query_as(sql::KV_VERSIONS)
            .bind(mount)
            .bind(path)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(KvVersionMeta::try_from).collect()
    }

    async fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>, StoreError> {
        let prefix = folder_prefix(folder);
        let paths: Vec<String> = sqlx::query_scalar(sql::KV_LIST)
            .bind(mount)
            .bind(prefix.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(children(&prefix, paths))
    }
}
