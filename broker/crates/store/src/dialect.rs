//! What the shared store code needs of a database, in one trait:
//! [`Dialect`], implemented for `sqlx::Postgres` (in `postgres.rs`) and
//! `sqlx::Sqlite` (in `sqlite.rs`).
//!
//! Owns: the list of what differs between the two databases — how a write
//! transaction begins, the statement that reads (and, where the database
//! needs it, locks) the audit head in a commit, the two conditional
//! renewals, the multi-row writes, how a revocation is announced, how a
//! subject is locked against a concurrent login, how alerts are claimed —
//! and
//! (as supertraits) every sqlx capability the shared code relies on: the
//! value types it binds and the row shapes it decodes.
//! Must never happen: a branch on the database kind in the shared code
//! (what differs is an item of this trait, given by each implementation);
//! a statement here that shared code could write once in `crate::sql`.

use std::future::Future;

use leash_domain::crypto::Digest;
use leash_domain::detection::Subject;
use leash_domain::records::{LeaseRecord, TokenRecord};
use sqlx::{Pool, Transaction};

use crate::codec::{EventRow, KvMetaRow, KvRow, LeaseRow, RenewProbe, TokenRow};
use crate::detect::{AlertRow, DetectionRow, QuarantineRow, SignalRow};
use crate::commit::ChainedEvent;
use crate::query::{Binds, Decodes, Runs};
use crate::{Revocation, StoreError};

/// A database the shared store code runs on.
///
/// The supertraits are the sqlx bounds, written once (see `crate::query`
/// for why they are traits on the database): the value types the shared
/// code binds (`i64`, `&str`, `&[u8]`) and the rows it decodes. A shared
/// function that binds or decodes a new type adds it here; the compiler
/// then checks that both databases support it.
pub(crate) trait Dialect:
    Runs
    + for<'q> Binds<'q, i64>
    + for<'q> Binds<'q, &'q str>
    + for<'q> Binds<'q, &'q [u8]>
    + for<'q> Binds<'q, Option<i64>>
    + for<'q> Binds<'q, Option<&'q str>>
    + for<'q> Binds<'q, bool>
    + Decodes<TokenRow>
    + Decodes<LeaseRow>
    + Decodes<EventRow>
    + Decodes<RenewProbe>
    + Decodes<KvRow>
    + Decodes<KvMetaRow>
    + Decodes<SignalRow>
    + Decodes<QuarantineRow>
    + Decodes<DetectionRow>
    + Decodes<AlertRow>
    // Signal counts: refusals, distinct paths, lists.
    + Decodes<(i64, i64, i64)>
    // The audit head: seq and MAC.
    + Decodes<(i64, Vec<u8>)>
    // Live tokens, live leases, the head seq.
    + Decodes<(i64, i64, Option<i64>)>
    // A token's revoked_at, expires_at, renewable.
    + Decodes<(Option<i64>, i64, bool)>
    // One column: a version, a digest, a path.
    + Decodes<(i64,)>
    + Decodes<(Vec<u8>,)>
    + Decodes<(String,)>
{
    /// The statement that begins every write transaction (the commit's,
    /// reaping's, `kv_put`'s), or `None` for sqlx's plain `BEGIN`.
    const BEGIN_WRITE: Option<&'static str>;

    /// Reads the audit head, `(seq, mac)`, after a commit's mutations, and
    /// holds it until the commit ends (PostgreSQL locks the row; a SQLite
    /// write transaction already excludes every other writer).
    const COMMIT_HEAD: &'static str;

    /// The conditional lease renewal: `$1` lease, `$2` token, `$3` new
    /// expiry, `$4` now. Changes no row unless the lease is owned by the
    /// token, live, renewable, and the token is live.
    const RENEW_LEASE: &'static str;

    /// The conditional token renewal: `$1` token, `$2` new expiry, `$3` now.
    /// Changes no row unless the token is live and renewable.
    const RENEW_TOKEN: &'static str;

    /// Claims due alerts: `$1` now, `$2` claimed until, `$3` the limit.
    /// Sets `claimed_until` on undelivered, not given up alerts whose
    /// `next_attempt_at <= $1` and whose claim is absent or lapsed, so
    /// that two concurrent claims never return the same one; returns
    /// [`AlertRow`]s.
    const CLAIM_ALERTS: &'static str;

    /// Inserts tokens (one statement where the database allows it), each
    /// only if its subject has no quarantine in force at its `created_at`
    /// (checked so that it cannot race a quarantine: see
    /// [`Dialect::lock_subject`]); whether each one was inserted, in order.
    fn insert_tokens(
        conn: &mut Self::Connection,
        tokens: &[&TokenRecord],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Excludes every login of `subject` until the transaction ends, and
    /// waits for those in flight: taken before a quarantine or a revocation
    /// by subject writes, so that a concurrent login either commits first
    /// (and is revoked) or sees the quarantine.
    fn lock_subject(
        conn: &mut Self::Connection,
        subject: &Subject,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts leases, each only while its token is live at its
    /// `issued_at`; whether each one was inserted, in order.
    fn insert_leases(
        conn: &mut Self::Connection,
        leases: &[&LeaseRecord],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Inserts chained audit rows and moves the audit head to `head`.
    fn insert_events(
        conn: &mut Self::Connection,
        events: &[ChainedEvent<'_>],
        head: (i64, &Digest),
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Announces a revocation to the other replicas, inside the
    /// transaction that revokes (delivered only if it commits).
    fn announce(
        conn: &mut Self::Connection,
        revocation: &Revocation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Begins a write transaction on `writer` with [`Dialect::BEGIN_WRITE`].
pub(crate) async fn begin_write<DB: Dialect>(
    writer: &Pool<DB>,
) -> Result<Transaction<'static, DB>, StoreError> {
    let tx = match DB::BEGIN_WRITE {
        Some(statement) => writer.begin_with(statement).await?,
        None => writer.begin().await?,
    };
    Ok(tx)
}
