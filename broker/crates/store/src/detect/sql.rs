//! The statements containment's state needs, the same in both databases
//! (the alert claim, which is not, is [`Dialect::CLAIM_ALERTS`]).
//!
//! Owns: the text of those statements. Every value is a bind parameter.
//! Must never happen: a statement assembled at run time.
//!
//! [`Dialect::CLAIM_ALERTS`]: crate::dialect::Dialect::CLAIM_ALERTS

/// The condition "a quarantine of (`$1` workload, `$2` issuer, `$3`
/// subject) is in force at `$4`", on the table aliased `q`.
macro_rules! active {
    () => {
        "q.workload = $1 AND q.issuer = $2 AND q.subject = $3 \
         AND q.released_at IS NULL AND (q.until IS NULL OR q.until > $4)"
    };
}

pub(crate) const INSERT_SIGNAL: &str = "INSERT INTO detection_signals (workload, issuer, \
     subject, at, request_id, operation, path, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// `$1`…`$3` the subject, `$4` since (inclusive).
pub(crate) const SIGNAL_STATS: &str = "SELECT count(*), count(DISTINCT path), \
     coalesce(sum(CASE WHEN operation = 'list' THEN 1 ELSE 0 END), 0) \
     FROM detection_signals WHERE workload = $1 AND issuer = $2 AND subject = $3 AND at >= $4";

/// `$1`…`$3` the subject, `$4` since (inclusive), `$5` the limit.
pub(crate) const SELECT_SIGNALS: &str = "SELECT workload, issuer, subject, at, request_id, \
     operation, path, kind FROM detection_signals WHERE workload = $1 AND issuer = $2 \
     AND subject = $3 AND at >= $4 ORDER BY at DESC, id DESC LIMIT $5";

/// `$1` the cut-off, `$2` the batch size.
pub(crate) const REAP_SIGNALS: &str = "DELETE FROM detection_signals WHERE id IN \
     (SELECT id FROM detection_signals WHERE at < $1 LIMIT $2)";

/// `$1`…`$3` the subject, `$4` since, `$5` until, `$6` reason, `$7` by,
/// `$8` detection id. No row when one is already in force at `$4`.
pub(crate) const QUARANTINE: &str = concat!(
    "INSERT INTO quarantines (workload, issuer, subject, since, until, reason, \
     quarantined_by, detection_id) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
     WHERE NOT EXISTS (SELECT 1 FROM quarantines q WHERE ",
    active!(),
    ")"
);

/// `$1`…`$3` the subject, `$4` the time of the release.
pub(crate) const RELEASE_QUARANTINE: &str = concat!(
    "UPDATE quarantines SET released_at = $4 WHERE id IN (SELECT q.id FROM quarantines q WHERE ",
    active!(),
    ")"
);

macro_rules! quarantine_columns {
    () => {
        "SELECT workload, issuer, subject, since, until, reason, quarantined_by, \
         detection_id, released_at FROM quarantines q"
    };
}

/// `$1`…`$3` the subject, `$4` now.
pub(crate) const ACTIVE_QUARANTINE: &str = concat!(
    quarantine_columns!(),
    " WHERE ",
    active!(),
    " ORDER BY q.since DESC, q.id DESC LIMIT 1"
);

/// `$1`…`$3` the subject.
pub(crate) const QUARANTINES: &str = concat!(
    quarantine_columns!(),
    " WHERE q.workload = $1 AND q.issuer = $2 AND q.subject = $3 \
     ORDER BY q.since DESC, q.id DESC"
);

pub(crate) const INSERT_DETECTION: &str = "INSERT INTO detections (id, at, detector, rule, \
     workload, issuer, subject, summary, evidence, responses, dry_run, paths) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

macro_rules! detection_columns {
    () => {
        "SELECT seq, id, at, detector, rule, workload, issuer, subject, summary, evidence, \
         responses, dry_run, paths FROM detections"
    };
}

/// `$1` the last seq seen, `$2` the limit.
pub(crate) const SELECT_DETECTIONS: &str =
    concat!(detection_columns!(), " WHERE seq > $1 ORDER BY seq LIMIT $2");

/// `$1` the id.
pub(crate) const SELECT_DETECTION: &str = concat!(detection_columns!(), " WHERE id = $1");

/// `$1`…`$3` the subject, `$4` the limit.
pub(crate) const DETECTIONS_OF: &str = concat!(
    detection_columns!(),
    " WHERE workload = $1 AND issuer = $2 AND subject = $3 ORDER BY seq DESC LIMIT $4"
);

/// `$1` delivery id, `$2` detection id, `$3` target, `$4` body, `$5`
/// created at (and first due).
pub(crate) const ENQUEUE_ALERT: &str = "INSERT INTO alert_outbox (delivery_id, detection_id, \
     target, body, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $5)";

/// `$1` delivery id, `$2` status, `$3` error, `$4` delivered at, `$5` next
/// attempt (`NULL`: unchanged), `$6` given up at. Only while the alert is
/// neither delivered nor given up; returns the attempt's number.
pub(crate) const FINISH_ATTEMPT: &str = "UPDATE alert_outbox SET attempts = attempts + 1, \
     claimed_until = NULL, last_status = $2, last_error = $3, delivered_at = $4, \
     next_attempt_at = coalesce($5, next_attempt_at), gave_up_at = $6 \
     WHERE delivery_id = $1 AND delivered_at IS NULL AND gave_up_at IS NULL \
     RETURNING CAST(attempts AS BIGINT)";

/// `$1` delivery id, `$2` attempt, `$3` at, `$4` status, `$5` error,
/// `$6` delivered.
pub(crate) const INSERT_ATTEMPT: &str = "INSERT INTO alert_attempts (delivery_id, attempt, at, \
     status, error, delivered) VALUES ($1, $2, $3, $4, $5, $6)";

/// Claims due alerts (see [`Dialect::CLAIM_ALERTS`]), with `$lock` after
/// the choice of rows.
///
/// [`Dialect::CLAIM_ALERTS`]: crate::dialect::Dialect::CLAIM_ALERTS
macro_rules! claim_alerts {
    ($lock:literal) => {
        concat!(
            "UPDATE alert_outbox SET claimed_until = $2 WHERE delivery_id IN \
             (SELECT delivery_id FROM alert_outbox WHERE delivered_at IS NULL \
             AND gave_up_at IS NULL AND next_attempt_at <= $1 \
             AND (claimed_until IS NULL OR claimed_until < $1) \
             ORDER BY next_attempt_at, delivery_id LIMIT $3",
            $lock,
            ") RETURNING delivery_id, detection_id, target, body, created_at, \
             next_attempt_at, CAST(attempts AS BIGINT) AS attempts"
        )
    };
}

/// PostgreSQL: rows another claim holds are skipped, and a row another
/// claim committed meanwhile is re-checked (and then excluded) after its
/// lock is taken.
pub(crate) const CLAIM_ALERTS_SKIP_LOCKED: &str = claim_alerts!(" FOR UPDATE SKIP LOCKED");

/// SQLite: the write transaction already excludes every other claim.
pub(crate) const CLAIM_ALERTS_PLAIN: &str = claim_alerts!("");
