//! How containment's rows are laid out and decoded: times as microseconds,
//! lists of strings as JSON text, a subject as three columns.
//!
//! Owns: the row shapes of `detection_signals`, `quarantines`,
//! `detections` and `alert_outbox`, and their decoding.
//! Must never happen: a row that does not decode exactly turned into a
//! record (it is [`StoreError::Corrupt`]), or a stored value in an error.

use leash_domain::detection::{AlertDelivery, Detection, Quarantine, Signal, Subject};

use super::{ClaimedAlert, DetectionRecord};
use crate::StoreError;
use crate::codec::{opt_time, time};

/// A list of strings as stored JSON text.
pub(crate) fn list_json(v: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(Box::new(e)))
}

fn list(what: &'static str, json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what,
        source: Some(Box::new(e)),
    })
}

/// A `detection_signals` row.
#[derive(sqlx::FromRow)]
pub(crate) struct SignalRow {
    workload: String,
    issuer: String,
    subject: String,
    at: i64,
    request_id: String,
    operation: String,
    path: String,
    kind: String,
}

impl TryFrom<SignalRow> for Signal {
    type Error = StoreError;

    fn try_from(r: SignalRow) -> Result<Self, StoreError> {
        Ok(Signal {
            subject: Subject {
                workload: r.workload,
                issuer: r.issuer,
                subject: r.subject,
            },
            at: time("detection_signals", r.at)?,
            request_id: r.request_id,
            operation: r.operation,
            path: r.path,
            kind: r.kind,
        })
    }
}

/// A `quarantines` row.
#[derive(sqlx::FromRow)]
pub(crate) struct QuarantineRow {
    workload: String,
    issuer: String,
    subject: String,
    since: i64,
    until: Option<i64>,
    reason: String,
    quarantined_by: String,
    detection_id: Option<String>,
    released_at: Option<i64>,
}

impl TryFrom<QuarantineRow> for Quarantine {
    type Error = StoreError;

    /// A released quarantine ends at its release: `until` is the earlier
    /// of the two.
    fn try_from(r: QuarantineRow) -> Result<Self, StoreError> {
        const W: &str = "quarantines";
        let until = match (r.until, r.released_at) {
            (Some(u), Some(rel)) => Some(u.min(rel)),
            (u, rel) => u.or(rel),
        };
        Ok(Quarantine {
            subject: Subject {
                workload: r.workload,
                issuer: r.issuer,
                subject: r.subject,
            },
            since: time(W, r.since)?,
            until: opt_time(W, until)?,
            reason: r.reason,
            by: r.quarantined_by,
            detection_id: r.detection_id,
        })
    }
}

/// A `detections` row.
#[derive(sqlx::FromRow)]
pub(crate) struct DetectionRow {
    seq: i64,
    id: String,
    at: i64,
    detector: String,
    rule: String,
    workload: String,
    issuer: String,
    subject: String,
    summary: String,
    evidence: String,
    responses: String,
    dry_run: bool,
    paths: String,
}

impl TryFrom<DetectionRow> for DetectionRecord {
    type Error = StoreError;

    fn try_from(r: DetectionRow) -> Result<Self, StoreError> {
        const W: &str = "detections";
        Ok(DetectionRecord {
            seq: r.seq,
            detection: Detection {
                id: r.id,
                at: time(W, r.at)?,
                detector: r.detector,
                rule: r.rule,
                subject: Subject {
                    workload: r.workload,
                    issuer: r.issuer,
                    subject: r.subject,
                },
                summary: r.summary,
                evidence: list(W, &r.evidence)?,
                responses: list(W, &r.responses)?,
                dry_run: r.dry_run,
                paths: list(W, &r.paths)?,
            },
        })
    }
}

/// A claimed `alert_outbox` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    delivery_id: String,
    detection_id: String,
    target: String,
    body: Vec<u8>,
    created_at: i64,
    next_attempt_at: i64,
    attempts: i64,
}

impl AlertRow {
    /// Claimed alerts are handed out most overdue first.
    pub(crate) fn order_key(&self) -> (i64, &str) {
        (self.next_attempt_at, &self.delivery_id)
    }
}

impl TryFrom<AlertRow> for ClaimedAlert {
    type Error = StoreError;

    fn try_from(r: AlertRow) -> Result<Self, StoreError> {
        const W: &str = "alert_outbox";
        Ok(ClaimedAlert {
            delivery: AlertDelivery {
                delivery_id: r.delivery_id,
                detection_id: r.detection_id,
                target: r.target,
                body: r.body,
                created_at: time(W, r.created_at)?,
            },
            attempts: u32::try_from(r.attempts)
                .map_err(|_| StoreError::corrupt(W, "attempts out of range"))?,
        })
    }
}
