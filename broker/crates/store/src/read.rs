//! The reads both databases share — a token or a lease by digest, the audit
//! log and its head, the counts for metrics — and reaping dead rows.
//!
//! Owns: how those rows are read back and decoded, and how reaping is cut
//! into short transactions.
//! Must never happen: a write here other than reaping; reaping a row that
//! is still live; a row that does not decode turned into a record anyway
//! (it is [`StoreError::Corrupt`]).

use chrono::{DateTime, Utc};
use leash_domain::audit::StoredEvent;
use leash_domain::crypto::Digest;
use leash_domain::records::{LeaseRecord, TokenRecord};
use sqlx::Pool;

use crate::codec::{self, EventRow, LeaseRow, TokenRow, micros};
use crate::dialect::{Dialect, begin_write};
use crate::{StoreError, StoreStats, sql};

/// [`Store::ping`](crate::Store::ping).
pub(crate) async fn ping<DB: Dialect>(readers: &Pool<DB>) -> Result<(), StoreError> {
    DB::query("SELECT 1").execute(readers).await?;
    Ok(())
}

/// [`Leases::token`](crate::Leases::token).
pub(crate) async fn token<DB: Dialect>(
    readers: &Pool<DB>,
    hash: &Digest,
) -> Result<Option<TokenRecord>, StoreError> {
    let row: Option<TokenRow> = DB::query(sql::SELECT_TOKEN)
        .bind(&hash.0[..])
        .fetch_optional(readers)
        .await?;
    row.map(TokenRecord::try_from).transpose()
}

/// [`Leases::lease`](crate::Leases::lease).
pub(crate) async fn lease<DB: Dialect>(
    readers: &Pool<DB>,
    hash: &Digest,
) -> Result<Option<LeaseRecord>, StoreError> {
    let row: Option<LeaseRow> = DB::query(sql::SELECT_LEASE)
        .bind(&hash.0[..])
        .fetch_optional(readers)
        .await?;
    row.map(LeaseRecord::try_from).transpose()
}

/// [`Leases::reap`](crate::Leases::reap), in transactions on `writer`.
pub(crate) async fn reap<DB: Dialect>(
    writer: &Pool<DB>,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let before = micros(before);
    let mut total = 0u64;
    // Leases first (including those of dead tokens), then tokens; in
    // batches, so no lock is held for long. The rows reaped are dead
    // (expired or revoked long ago): no commit's conditional mutation
    // matches, so locks them, so reaping never waits for a commit's rows.
    for stmt in [sql::REAP_LEASES, sql::REAP_TOKENS] {
        loop {
            let mut tx = begin_write(writer).await?;
            let n = DB::query(stmt)
                .bind(before)
                .bind(codec::REAP_BATCH)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            total += n;
            if n < codec::REAP_BATCH.unsigned_abs() {
                break;
            }
        }
    }
    Ok(total)
}

/// [`AuditLog::audit_events`](crate::AuditLog::audit_events).
pub(crate) async fn audit_events<DB: Dialect>(
    readers: &Pool<DB>,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<EventRow> = DB::query(sql::SELECT_EVENTS)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(readers)
        .await?;
    rows.into_iter().map(StoredEvent::try_from).collect()
}

/// [`AuditLog::audit_head`](crate::AuditLog::audit_head).
pub(crate) async fn audit_head<DB: Dialect>(
    readers: &Pool<DB>,
) -> Result<Option<(i64, Digest)>, StoreError> {
    let (seq, mac): (i64, Vec<u8>) = DB::query(sql::SELECT_HEAD)
        .fetch_optional(readers)
        .await?
        .ok_or_else(|| StoreError::corrupt("audit_head", "missing"))?;
    let head = codec::head(seq, &mac)?;
    Ok((head.0 > 0).then_some(head))
}

/// [`Store::stats`](crate::Store::stats).
pub(crate) async fn stats<DB: Dialect>(
    readers: &Pool<DB>,
    now: DateTime<Utc>,
) -> Result<StoreStats, StoreError> {
    let (live_tokens, live_leases, seq): (i64, i64, Option<i64>) = DB::query(sql::STATS)
        .bind(micros(now))
        .fetch_one(readers)
        .await?;
    Ok(StoreStats {
        live_tokens,
        live_leases,
        audit_events: seq.unwrap_or(0),
    })
}
