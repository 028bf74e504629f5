//! The commit pipeline both databases share: a batch of [`CommitUnit`]s
//! written as one general transaction, and the chaining of their audit
//! events.
//!
//! Owns: the order of work inside a commit — each unit's mutations (its
//! own, then its consequences), in unit order (runs of inserts written
//! together); then the audit head; then every unit's final event, chained
//! from that head; then the new head — and which units may be written
//! together ([`batchable`]).
//! Must never happen: a unit's event written without its mutation (or the
//! reverse); the head read before the mutations (a lock cycle through the
//! head could then form); an event chained from anything but the head read
//! in the same transaction, or the previous event of the same batch.

use std::borrow::Cow;

use leash_domain::audit::AuditEvent;
use leash_domain::crypto::{Digest, KeyedHasher};
use leash_domain::records::{CommitUnit, Committed, LeaseRecord, Mutation, Outcome, TokenRecord};
use sqlx::Pool;

use crate::StoreError;
use crate::codec;
use crate::dialect::{Dialect, begin_write};
use crate::mutation::{apply, lease_outcome, token_outcome};

/// An audit event at its place in the chain, ready to insert.
pub(crate) struct ChainedEvent<'a> {
    /// Its seq.
    pub seq: i64,
    /// The event as recorded (the unit's own, unless rewritten).
    pub event: Cow<'a, AuditEvent>,
    /// Its chain MAC.
    pub mac: Digest,
}

/// A commit's audit rows, what each unit's caller is told, and the head
/// after them.
pub(crate) type Chained<'a> = (Vec<ChainedEvent<'a>>, Vec<Committed>, (i64, Digest));

/// What a unit's mutations did: the request's own mutation's outcome, and
/// the rows its consequences changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnitOutcome {
    /// The outcome of the unit's first mutation ([`Outcome::Recorded`]
    /// without one): it decides the unit's final event.
    pub own: Outcome,
    /// The rows the mutations after it changed.
    pub consequences_affected: u64,
}

impl UnitOutcome {
    /// A unit without consequences.
    pub(crate) fn only(own: Outcome) -> Self {
        Self {
            own,
            consequences_affected: 0,
        }
    }
}

/// A commit's audit rows, chained after `head`: each unit's final event
/// for its own mutation's outcome at the next seq.
pub(crate) fn chain<'a>(
    hasher: &KeyedHasher,
    units: &'a [CommitUnit],
    outcomes: impl IntoIterator<Item = UnitOutcome>,
    head: (i64, Digest),
) -> Result<Chained<'a>, StoreError> {
    let (mut seq, mut prev) = head;
    let mut events = Vec::with_capacity(units.len());
    let mut out = Vec::with_capacity(units.len());
    for (unit, done) in units.iter().zip(outcomes) {
        let event = unit.final_event(&done.own);
        seq = seq
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt("audit_head", "seq overflow"))?;
        let mac = event.chain_mac(hasher, &prev, seq);
        prev = mac;
        events.push(ChainedEvent { seq, event, mac });
        out.push(Committed {
            seq,
            outcome: done.own,
            consequences_affected: done.consequences_affected,
        });
    }
    Ok((events, out, (seq, prev)))
}

/// Whether a unit belongs to a run written with multi-row statements: it
/// records only, or its one mutation inserts a token or a lease (a unit
/// with consequences never does). Within such a run no unit can change
/// another's outcome (a lease needs a token a client already holds, so
/// never one inserted in the same run; a quarantine, which refuses a token,
/// is never in a run), so its rows may be written together.
pub(crate) fn batchable(unit: &CommitUnit) -> bool {
    unit.consequences.is_empty()
        && matches!(
            unit.mutation,
            None | Some(Mutation::InsertToken(_)) | Some(Mutation::InsertLease(_))
        )
}

/// Writes `units` in one general transaction on `writer`: the mutations
/// first, in unit order (each unit's own, then its consequences), then the
/// audit head, then the chained events and the new head. Returns what each unit's caller is told and the head the
/// commit left. On any error nothing is committed.
pub(crate) async fn general<DB: Dialect>(
    writer: &Pool<DB>,
    hasher: &KeyedHasher,
    units: &[CommitUnit],
) -> Result<(Vec<Committed>, (i64, Digest)), StoreError> {
    let mut tx = begin_write(writer).await?;
    // The mutations first, in unit order; the audit head last. Every
    // transaction takes its row locks before the head lock and holds the
    // head only for its audit rows and its commit, so concurrent batches
    // overlap their mutations, and a lock cycle through the head cannot
    // form. Conflicting mutations still serialise on their rows, and
    // whichever commits first also takes the lower seqs, so the chain's
    // order is the commit order.
    let mut outcomes = Vec::with_capacity(units.len());
    let mut rest = units;
    while !rest.is_empty() {
        // A run of batchable units, or else one unit.
        let n = rest.iter().take_while(|u| batchable(u)).count().max(1);
        let (now, later) = rest.split_at(n);
        if batchable(&now[0]) {
            let run = apply_run::<DB>(&mut tx, now).await?;
            outcomes.extend(run.into_iter().map(UnitOutcome::only));
        } else {
            outcomes.push(apply_unit::<DB>(&mut tx, &now[0]).await?);
        }
        rest = later;
    }
    let (seq, mac): (i64, Vec<u8>) = DB::query(DB::COMMIT_HEAD)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::corrupt("audit_head", "missing"))?;
    let head = codec::head(seq, &mac)?;
    let (events, out, (seq, prev)) = chain(hasher, units, outcomes, head)?;
    // Events never influence a mutation, so they are all written last,
    // together.
    DB::insert_events(&mut tx, &events, (seq, &prev)).await?;
    tx.commit().await?;
    Ok((out, (seq, prev)))
}

/// Applies one unit's mutations in order: its own, then each consequence,
/// whatever the outcome of the one before.
async fn apply_unit<DB: Dialect>(
    conn: &mut DB::Connection,
    unit: &CommitUnit,
) -> Result<UnitOutcome, StoreError> {
    let own = match &unit.mutation {
        Some(m) => apply::<DB>(&mut *conn, m).await?,
        None => Outcome::Recorded,
    };
    let mut consequences_affected = 0;
    for m in &unit.consequences {
        consequences_affected += apply::<DB>(&mut *conn, m).await?.affected();
    }
    Ok(UnitOutcome {
        own,
        consequences_affected,
    })
}

/// Applies a run of [`batchable`] units: their tokens in one statement,
/// then their leases in one; returns their outcomes in order.
async fn apply_run<DB: Dialect>(
    conn: &mut DB::Connection,
    run: &[CommitUnit],
) -> Result<Vec<Outcome>, StoreError> {
    let tokens: Vec<&TokenRecord> = run
        .iter()
        .filter_map(|u| match u.own() {
            Some(Mutation::InsertToken(t)) => Some(t),
            _ => None,
        })
        .collect();
    let mut tokens_inserted = if tokens.is_empty() {
        Vec::new()
    } else {
        DB::insert_tokens(&mut *conn, &tokens).await?
    }
    .into_iter();
    let leases: Vec<&LeaseRecord> = run
        .iter()
        .filter_map(|u| match u.own() {
            Some(Mutation::InsertLease(l)) => Some(l),
            _ => None,
        })
        .collect();
    let mut inserted = if leases.is_empty() {
        Vec::new()
    } else {
        DB::insert_leases(&mut *conn, &leases).await?
    }
    .into_iter();
    let mut out = Vec::with_capacity(run.len());
    for unit in run {
        out.push(match unit.own() {
            None => Outcome::Recorded,
            Some(Mutation::InsertToken(_)) => {
                token_outcome(tokens_inserted.next().unwrap_or(false))
            }
            _ => lease_outcome(inserted.next().unwrap_or(false)),
        });
    }
    Ok(out)
}
