//! Containment's durable state, for both databases: the signals detectors
//! count, quarantines, detections and the alert outbox — the mutations a
//! commit applies for them, and the reads and outbox writes outside
//! commits ([`Detections`](crate::Detections)).
//!
//! Owns: [`DetectionRecord`], [`ClaimedAlert`], [`AlertAttempt`],
//! [`AttemptOutcome`]; how those rows are written and decoded; the outbox's
//! claim (one claimer per alert) and attempt bookkeeping.
//! Must never happen: a quarantine check read before the write it guards
//! (it is in the quarantine's own insert, under the subject's lock); an
//! alert claimed by two callers at once; an attempt recorded for an alert
//! already delivered or given up; a row that does not decode turned into a
//! record anyway.

use std::time::Duration;

use chrono::{DateTime, Utc};
use leash_domain::detection::{
    AlertDelivery, Detection, Quarantine, Signal, SignalStats, Subject,
};
use leash_domain::records::Outcome;
use sqlx::Pool;

use crate::StoreError;
use crate::codec::{self, micros};
use crate::dialect::{Dialect, begin_write};

mod rows;
pub(crate) mod sql;
mod stores;

pub(crate) use rows::{AlertRow, DetectionRow, QuarantineRow, SignalRow};

/// A detection as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionRecord {
    /// Its cursor: ascending in insert order.
    pub seq: i64,
    /// The detection.
    pub detection: Detection,
}

/// An alert claimed for delivery by this caller until the claim lapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedAlert {
    /// What to send.
    pub delivery: AlertDelivery,
    /// The attempts already made.
    pub attempts: u32,
}

/// One delivery attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAttempt {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The HTTP status the target answered, if it answered.
    pub status: Option<u16>,
    /// Why it failed, if it did (no secret, no body).
    pub error: Option<String>,
    /// What happens next.
    pub outcome: AttemptOutcome,
}

/// What happens to an alert after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// It was delivered: never claimed again.
    Delivered,
    /// Try again from `next_attempt_at`.
    Retry {
        /// When it is due again.
        next_attempt_at: DateTime<Utc>,
    },
    /// Stop trying: never claimed again.
    GiveUp,
}

/// Binds a subject as `$1`, `$2`, `$3` (then more with `.bind`).
macro_rules! subject_query {
    ($sql:expr, $s:expr) => {
        DB::query($sql)
            .bind($s.workload.as_str())
            .bind($s.issuer.as_str())
            .bind($s.subject.as_str())
    };
}

// ------------------------------------------------------------- mutations

/// [`Mutation::RecordSignal`](leash_domain::records::Mutation::RecordSignal).
pub(crate) async fn record_signal<DB: Dialect>(
    conn: &mut DB::Connection,
    s: &Signal,
) -> Result<Outcome, StoreError> {
    let n = subject_query!(sql::INSERT_SIGNAL, s.subject)
        .bind(micros(s.at))
        .bind(s.request_id.as_str())
        .bind(s.operation.as_str())
        .bind(s.path.as_str())
        .bind(s.kind.as_str())
        .execute(conn)
        .await?;
    Ok(Outcome::Applied { affected: n })
}

/// [`Mutation::Quarantine`](leash_domain::records::Mutation::Quarantine):
/// under the subject's lock, so that no login in flight outlives it.
pub(crate) async fn quarantine<DB: Dialect>(
    conn: &mut DB::Connection,
    q: &Quarantine,
) -> Result<Outcome, StoreError> {
    DB::lock_subject(&mut *conn, &q.subject).await?;
    let n = subject_query!(sql::QUARANTINE, q.subject)
        .bind(micros(q.since))
        .bind(q.until.map(micros))
        .bind(q.reason.as_str())
        .bind(q.by.as_str())
        .bind(q.detection_id.as_deref())
        .execute(conn)
        .await?;
    Ok(Outcome::Applied { affected: n })
}

/// [`Mutation::ReleaseQuarantine`](leash_domain::records::Mutation::ReleaseQuarantine).
pub(crate) async fn release<DB: Dialect>(
    conn: &mut DB::Connection,
    subject: &Subject,
    at: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let n = subject_query!(sql::RELEASE_QUARANTINE, subject)
        .bind(micros(at))
        .execute(conn)
        .await?;
    Ok(Outcome::Applied { affected: n })
}

/// [`Mutation::RecordDetection`](leash_domain::records::Mutation::RecordDetection).
pub(crate) async fn record_detection<DB: Dialect>(
    conn: &mut DB::Connection,
    d: &Detection,
) -> Result<Outcome, StoreError> {
    let (evidence, responses, paths) = (
        rows::list_json(&d.evidence)?,
        rows::list_json(&d.responses)?,
        rows::list_json(&d.paths)?,
    );
    let n = DB::query(sql::INSERT_DETECTION)
        .bind(d.id.as_str())
        .bind(micros(d.at))
        .bind(d.detector.as_str())
        .bind(d.rule.as_str())
        .bind(d.subject.workload.as_str())
        .bind(d.subject.issuer.as_str())
        .bind(d.subject.subject.as_str())
        .bind(d.summary.as_str())
        .bind(evidence.as_str())
        .bind(responses.as_str())
        .bind(d.dry_run)
        .bind(paths.as_str())
        .execute(conn)
        .await?;
    Ok(Outcome::Applied { affected: n })
}

/// [`Mutation::EnqueueAlert`](leash_domain::records::Mutation::EnqueueAlert).
pub(crate) async fn enqueue_alert<DB: Dialect>(
    conn: &mut DB::Connection,
    a: &AlertDelivery,
) -> Result<Outcome, StoreError> {
    let n = DB::query(sql::ENQUEUE_ALERT)
        .bind(a.delivery_id.as_str())
        .bind(a.detection_id.as_str())
        .bind(a.target.as_str())
        .bind(&a.body[..])
        .bind(micros(a.created_at))
        .execute(conn)
        .await?;
    Ok(Outcome::Applied { affected: n })
}

// ----------------------------------------------------------------- reads

/// [`Detections::signal_stats`](crate::Detections::signal_stats).
pub(crate) async fn signal_stats<DB: Dialect>(
    readers: &Pool<DB>,
    subject: &Subject,
    since: DateTime<Utc>,
) -> Result<SignalStats, StoreError> {
    let (refusals, distinct_paths, lists): (i64, i64, i64) =
        subject_query!(sql::SIGNAL_STATS, subject)
            .bind(micros(since))
            .fetch_one(readers)
            .await?;
    let count = |n: i64| {
        u64::try_from(n).map_err(|_| StoreError::corrupt("detection_signals", "negative count"))
    };
    Ok(SignalStats {
        refusals: count(refusals)?,
        distinct_paths: count(distinct_paths)?,
        lists: count(lists)?,
    })
}

/// [`Detections::signals`](crate::Detections::signals).
pub(crate) async fn signals<DB: Dialect>(
    readers: &Pool<DB>,
    subject: &Subject,
    since: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Signal>, StoreError> {
    let rows: Vec<SignalRow> = subject_query!(sql::SELECT_SIGNALS, subject)
        .bind(micros(since))
        .bind(i64::from(limit))
        .fetch_all(readers)
        .await?;
    rows.into_iter().map(Signal::try_from).collect()
}

/// [`Detections::active_quarantine`](crate::Detections::active_quarantine).
pub(crate) async fn active_quarantine<DB: Dialect>(
    readers: &Pool<DB>,
    subject: &Subject,
    now: DateTime<Utc>,
) -> Result<Option<Quarantine>, StoreError> {
    let row: Option<QuarantineRow> = subject_query!(sql::ACTIVE_QUARANTINE, subject)
        .bind(micros(now))
        .fetch_optional(readers)
        .await?;
    row.map(Quarantine::try_from).transpose()
}

/// [`Detections::quarantines`](crate::Detections::quarantines).
pub(crate) async fn quarantines<DB: Dialect>(
    readers: &Pool<DB>,
    subject: &Subject,
) -> Result<Vec<Quarantine>, StoreError> {
    let rows: Vec<QuarantineRow> = subject_query!(sql::QUARANTINES, subject)
        .fetch_all(readers)
        .await?;
    rows.into_iter().map(Quarantine::try_from).collect()
}

/// [`Detections::detections`](crate::Detections::detections).
pub(crate) async fn detections<DB: Dialect>(
    readers: &Pool<DB>,
    after_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<DetectionRecord>, StoreError> {
    let rows: Vec<DetectionRow> = DB::query(sql::SELECT_DETECTIONS)
        .bind(after_seq.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(readers)
        .await?;
    rows.into_iter().map(DetectionRecord::try_from).collect()
}

/// [`Detections::detection`](crate::Detections::detection).
pub(crate) async fn detection<DB: Dialect>(
    readers: &Pool<DB>,
    id: &str,
) -> Result<Option<DetectionRecord>, StoreError> {
    let row: Option<DetectionRow> = DB::query(sql::SELECT_DETECTION)
        .bind(id)
        .fetch_optional(readers)
        .await?;
    row.map(DetectionRecord::try_from).transpose()
}

/// [`Detections::detections_of`](crate::Detections::detections_of).
pub(crate) async fn detections_of<DB: Dialect>(
    readers: &Pool<DB>,
    subject: &Subject,
    limit: u32,
) -> Result<Vec<DetectionRecord>, StoreError> {
    let rows: Vec<DetectionRow> = subject_query!(sql::DETECTIONS_OF, subject)
        .bind(i64::from(limit))
        .fetch_all(readers)
        .await?;
    rows.into_iter().map(DetectionRecord::try_from).collect()
}

// ---------------------------------------------------------------- outbox

/// [`Detections::claim_alerts`](crate::Detections::claim_alerts): one
/// statement ([`Dialect::CLAIM_ALERTS`]) in a write transaction.
pub(crate) async fn claim_alerts<DB: Dialect>(
    writer: &Pool<DB>,
    now: DateTime<Utc>,
    claim_for: Duration,
    limit: u32,
) -> Result<Vec<ClaimedAlert>, StoreError> {
    let claim = chrono::Duration::from_std(claim_for)
        .map_err(|_| StoreError::other("alert claim too long"))?;
    let until = now
        .checked_add_signed(claim)
        .ok_or_else(|| StoreError::other("alert claim too long"))?;
    let mut tx = begin_write(writer).await?;
    let mut rows: Vec<AlertRow> = DB::query(DB::CLAIM_ALERTS)
        .bind(micros(now))
        .bind(micros(until))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    // `RETURNING` has no order: the most overdue first.
    rows.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    rows.into_iter().map(ClaimedAlert::try_from).collect()
}

/// [`Detections::record_alert_attempt`](crate::Detections::record_alert_attempt):
/// the outbox row and the attempt row in one transaction.
pub(crate) async fn record_alert_attempt<DB: Dialect>(
    writer: &Pool<DB>,
    delivery_id: &str,
    a: &AlertAttempt,
) -> Result<bool, StoreError> {
    let at = micros(a.at);
    let (delivered_at, next, gave_up) = match a.outcome {
        AttemptOutcome::Delivered => (Some(at), None, None),
        AttemptOutcome::Retry { next_attempt_at } => (None, Some(micros(next_attempt_at)), None),
        AttemptOutcome::GiveUp => (None, None, Some(at)),
    };
    let status = a.status.map(i64::from);
    let mut tx = begin_write(writer).await?;
    let attempt: Option<(i64,)> = DB::query(sql::FINISH_ATTEMPT)
        .bind(delivery_id)
        .bind(status)
        .bind(a.error.as_deref())
        .bind(delivered_at)
        .bind(next)
        .bind(gave_up)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((attempt,)) = attempt else {
        // Unknown, delivered or given up: nothing to record.
        return Ok(false);
    };
    DB::query(sql::INSERT_ATTEMPT)
        .bind(delivery_id)
        .bind(attempt)
        .bind(at)
        .bind(status)
        .bind(a.error.as_deref())
        .bind(matches!(a.outcome, AttemptOutcome::Delivered))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// [`Detections::reap_signals`](crate::Detections::reap_signals), in
/// short transactions on `writer`.
pub(crate) async fn reap_signals<DB: Dialect>(
    writer: &Pool<DB>,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let before = micros(before);
    let mut total = 0;
    loop {
        let mut tx = begin_write(writer).await?;
        let n = DB::query(sql::REAP_SIGNALS)
            .bind(before)
            .bind(codec::REAP_BATCH)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += n;
        if n < codec::REAP_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}
