//! The operator's side of containment (routed by `http::admin`): list and
//! show detections, show an identity (its quarantine in force, its history
//! and its detections), quarantine and release it. Reads go to the store's
//! [`Detections`](leash_store::Detections); a quarantine or a release is the
//! request's own mutation, committed with its audit event. Every event
//! names the identity's workload; the path is the canonical request path.
//!
//! A quarantine refuses logins only: sessions already open stay open until
//! the operator revokes them (`POST leash/leases/revoke`).
//! Must never happen: caller text stored or echoed unchecked (every name is
//! bounded and free of control characters before it reaches the store); a
//! reply built as ad-hoc JSON.

use chrono::{DateTime, Utc};
use leash_api as api;
use leash_domain::Mutation;
use leash_domain::audit::escape_untrusted;
use leash_domain::detection::{Quarantine, Subject};
use leash_store::{DetectionRecord, StoreError};

use crate::audit::Record;
use crate::service::{Answer, Broker, IfNotApplied, Pending, Req, ServiceError};
use crate::wire::{Envelope, Reply};

/// Longest workload, issuer, subject, reason or detection id accepted
/// (bytes).
const MAX_NAME: usize = 256;

/// The shortest quarantine an operator may set.
const MIN_QUARANTINE: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET leash/detections` answers at most this many by default, and never
/// more than `MAX_PAGE`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// How many of an identity's detections `GET leash/identities` shows.
const IDENTITY_DETECTIONS: u32 = 100;

/// The reason of a quarantine the operator gave none for.
const DEFAULT_REASON: &str = "quarantined by an operator";

/// Checks one name the caller sent: non-empty, at most [`MAX_NAME`]
/// bytes, no control characters.
fn name(v: &str, what: &str) -> Result<(), ServiceError> {
    if v.is_empty() {
        return Err(ServiceError::bad_request(format!("{what} is required")));
    }
    if v.len() > MAX_NAME || v.chars().any(char::is_control) {
        return Err(ServiceError::bad_request(format!(
            "invalid {what}: at most {MAX_NAME} bytes, no control characters"
        )));
    }
    Ok(())
}

/// The identity an operator names, checked.
fn subject(who: api::IdentityRef) -> Result<Subject, ServiceError> {
    name(&who.workload, "workload")?;
    name(&who.issuer, "issuer")?;
    name(&who.subject, "subject")?;
    Ok(Subject {
        workload: who.workload,
        issuer: who.issuer,
        subject: who.subject,
    })
}

/// Records whose identity the request is about: the workload as the
/// event's workload, issuer and subject in its reason.
fn note_subject(rec: &mut Record, s: &Subject) {
    rec.workload(&s.workload);
    rec.note(&format!(
        "issuer={} subject={}",
        escape_untrusted(&s.issuer, MAX_NAME),
        escape_untrusted(&s.subject, MAX_NAME)
    ));
}

/// RFC 3339, UTC `Z`, as many fraction digits as needed (as the audit log).
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A stored detection as the operator API shows it.
pub(super) fn detection_view(r: DetectionRecord) -> api::DetectionView {
    let d = r.detection;
    api::DetectionView {
        seq: r.seq,
        id: d.id,
        at: time(d.at),
        detector: d.detector,
        rule: d.rule,
        workload: d.subject.workload,
        issuer: d.subject.issuer,
        subject: d.subject.subject,
        summary: d.summary,
        evidence: d.evidence,
        responses: d.responses,
        dry_run: d.dry_run,
        paths: d.paths,
    }
}

/// A quarantine as the operator API shows it, in force or not at `now`.
pub(super) fn quarantine_view(q: Quarantine, now: DateTime<Utc>) -> api::QuarantineView {
    let active = q.since <= now && q.in_force(now);
    api::QuarantineView {
        workload: q.subject.workload,
        issuer: q.subject.issuer,
        subject: q.subject.subject,
        since: time(q.since),
        until: q.until.map(time),
        reason: q.reason,
        by: q.by,
        detection_id: q.detection_id,
        active,
    }
}

fn unavailable(e: StoreError) -> ServiceError {
    ServiceError::unavailable("state store", e)
}

fn data<T: serde::Serialize>(req: &Req<'_>, data: T) -> Pending {
    Pending::reply(Reply::json(200, &Envelope::data(&req.inc.request_id, data)))
}

impl Broker {
    /// `GET leash/detections?after=SEQ&limit=N`: a page of detections in
    /// seq order.
    pub(crate) async fn detections_list(&self, req: &Req<'_>) -> Result<Pending, ServiceError> {
        req.require_method(&["GET"])?;
        let after = match req.query("after") {
            None => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ServiceError::bad_request("invalid after"))?,
            ),
        };
        let limit = match req.query("limit") {
            None => DEFAULT_PAGE,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| ServiceError::bad_request("limit must be 1..1000"))?,
        };
        let rows = self
            .store
            .detections(after, limit)
            .await
            .map_err(unavailable)?;
        let full = rows.len() >= limit as usize;
        let next_after = rows.last().filter(|_| full).map(|r| r.seq);
        let page = api::DetectionPage {
            detections: rows.into_iter().map(detection_view).collect(),
            next_after,
        };
        Ok(data(req, page))
    }

    /// `GET leash/detections/<id>`: one detection; 404 (empty `errors`)
    /// when there is none.
    pub(crate) async fn detection_show(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["GET"])?;
        let missing = ServiceError::NotFound("no such detection");
        let id = match req.segments().get(2) {
            Some(id) if name(id, "detection id").is_ok() => id,
            _ => return Err(missing),
        };
        let found = self.store.detection(id).await.map_err(unavailable)?;
        let record = found.ok_or(missing)?;
        rec.workload(&record.detection.subject.workload);
        Ok(data(req, detection_view(record)))
    }

    /// `GET leash/identities?workload=W&issuer=I&subject=S`: the
    /// identity's quarantine in force, its quarantines newest first and its
    /// latest detections.
    pub(crate) async fn identity_show(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["GET"])?;
        let given = |k: &str| req.query(k).unwrap_or_default();
        let s = subject(api::IdentityRef {
            workload: given("workload"),
            issuer: given("issuer"),
            subject: given("subject"),
        })?;
        note_subject(rec, &s);
        let now = req.now;
        let active = self
            .store
            .active_quarantine(&s, now)
            .await
            .map_err(unavailable)?;
        let history = self.store.quarantines(&s).await.map_err(unavailable)?;
        let detections = self
            .store
            .detections_of(&s, IDENTITY_DETECTIONS)
            .await
            .map_err(unavailable)?;
        let view = api::IdentityView {
            quarantine: active.map(|q| quarantine_view(q, now)),
            history: history
                .into_iter()
                .map(|q| quarantine_view(q, now))
                .collect(),
            detections: detections.into_iter().map(detection_view).collect(),
            workload: s.workload,
            issuer: s.issuer,
            subject: s.subject,
        };
        Ok(data(req, view))
    }

    /// `POST leash/identities/quarantine`: refuses the identity's logins
    /// from now, until released or for `for`; answers `{"applied": 1}`, or
    /// 0 when a quarantine of it was already in force.
    pub(crate) fn identity_quarantine(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["POST", "PUT"])?;
        let body: api::QuarantineRequest = req.json()?;
        let s = subject(body.identity())?;
        note_subject(rec, &s);
        let reason = match body.reason.filter(|r| !r.is_empty()) {
            None => DEFAULT_REASON.to_owned(),
            Some(r) => {
                name(&r, "reason")?;
                r
            }
        };
        let until = match body.duration.as_deref().filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => Some(quarantine_end(req.now, d)?),
        };
        let q = Quarantine {
            subject: s,
            since: req.now,
            until,
            reason,
            by: "operator".into(),
            detection_id: None,
        };
        Ok(Pending::mutate(
            Mutation::Quarantine(q),
            Answer::Applied,
            IfNotApplied::QuarantineNotRecorded,
        ))
    }

    /// `POST leash/identities/release`: ends the identity's quarantines in
    /// force; answers `{"applied": N}`.
    pub(crate) fn identity_release(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["POST", "PUT"])?;
        let body: api::ReleaseRequest = req.json()?;
        let s = subject(body)?;
        note_subject(rec, &s);
        Ok(Pending::mutate(
            Mutation::ReleaseQuarantine {
                subject: s,
                at: req.now,
            },
            Answer::Applied,
            IfNotApplied::QuarantineNotRecorded,
        ))
    }
}

/// When a quarantine of `d` (the request's `for`) placed at `now` ends.
fn quarantine_end(now: DateTime<Utc>, d: &str) -> Result<DateTime<Utc>, ServiceError> {
    let bad =
        || ServiceError::bad_request("invalid for: a duration of at least 1m, e.g. 30m or 1h");
    let d = leash_domain::parse_duration(d).map_err(|_| bad())?;
    if d < MIN_QUARANTINE {
        return Err(bad());
    }
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(name("payments-api", "workload").is_ok());
        assert!(name("repo:org/r:ref:refs/heads/main ü", "subject").is_ok());
        assert!(name(&"a".repeat(256), "subject").is_ok());
        for bad in [
            String::new(),
            "a".repeat(257),
            "a\nb".into(),
            "\u{1b}[31m".into(),
        ] {
            assert!(name(&bad, "subject").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quarantine_lengths() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            quarantine_end(now, "1h").unwrap(),
            now + chrono::Duration::hours(1)
        );
        assert!(quarantine_end(now, "1m").is_ok());
        for bad in ["59s", "0s", "soon", "-1h", "1000000000000h"] {
            assert!(quarantine_end(now, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_released_or_ended_quarantine_is_not_active() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let q = |until: Option<DateTime<Utc>>| Quarantine {
            subject: Subject {
                workload: "w".into(),
                issuer: "i".into(),
                subject: "s".into(),
            },
            since: now - chrono::Duration::hours(1),
            until,
            reason: "r".into(),
            by: "operator".into(),
            detection_id: None,
        };
        assert!(quarantine_view(q(None), now).active);
        assert!(quarantine_view(q(Some(now + chrono::Duration::seconds(1))), now).active);
        let ended = quarantine_view(q(Some(now)), now);
        assert!(!ended.active);
        assert_eq!(ended.until.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(ended.since, "2023-12-31T23:00:00Z");
    }
}
