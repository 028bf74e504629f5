//! Containment's operator answers and requests: detections
//! (`GET /v1/leash/detections`, `…/detections/<id>`: [`DetectionPage`],
//! [`DetectionView`]), an identity's state (`GET /v1/leash/identities`:
//! [`IdentityView`] with its [`QuarantineView`]s) and the operator's
//! quarantine and release of one (`POST /v1/leash/identities/quarantine`,
//! `…/release`: [`QuarantineRequest`], [`ReleaseRequest`], [`Applied`]).
//!
//! An identity is what a login attested: a workload, an issuer and a
//! subject ([`IdentityRef`]). Times are RFC 3339 text in UTC (`Z`), as in
//! the audit log. Must never happen: a token, a lease id or a secret value
//! in any of these (detections carry request ids and canonical paths only).

use serde::{Deserialize, Serialize};

/// One identity: the workload, issuer and subject a login attested.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRef {
    /// The workload.
    pub workload: String,
    /// The issuer that attested it.
    pub issuer: String,
    /// The attested subject.
    pub subject: String,
}

/// The body of `POST /v1/leash/identities/release`: the identity whose
/// quarantines in force end now.
pub type ReleaseRequest = IdentityRef;

/// The body of `POST /v1/leash/identities/quarantine`: refuse the
/// identity's logins from now, until released or for `for`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    /// The workload.
    pub workload: String,
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// Why, for the record (default: `quarantined by an operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long, as a duration (`"1h"`, at least one minute); absent: until
    /// released.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

impl QuarantineRequest {
    /// The identity it names.
    pub fn identity(&self) -> IdentityRef {
        IdentityRef {
            workload: self.workload.clone(),
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// `data` of a quarantine or a release: how many quarantines it placed
/// (1, or 0 when one was already in force) or released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Quarantines placed or released.
    pub applied: u64,
}

/// `data` of `POST /v1/leash/identities/release`.
pub type ReleaseResult = Applied;

/// One detection, as the operator API shows it: the stored detection with
/// its subject spread into `workload`, `issuer`, `subject`, and its `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionView {
    /// Its cursor in the detection log (ascending in insert order).
    pub seq: i64,
    /// The detection's id, e.g. `det_<hex>`.
    pub id: String,
    /// RFC 3339 time it was made.
    pub at: String,
    /// The detector, e.g. `scope_violations`.
    pub detector: String,
    /// The rule that fired, as configured.
    #[serde(default)]
    pub rule: String,
    /// Whose requests: the workload …
    pub workload: String,
    /// … the issuer …
    pub issuer: String,
    /// … and the subject.
    pub subject: String,
    /// One line for the operator.
    #[serde(default)]
    pub summary: String,
    /// The request ids (audit events) that made the case.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub evidence: Vec<String>,
    /// What was done: `revoke`, `quarantine`, `alert`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub responses: Vec<String>,
    /// Recorded only: nothing was revoked or quarantined.
    #[serde(default)]
    pub dry_run: bool,
    /// The paths probed (the policy gap report).
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub paths: Vec<String>,
}

/// `data` of `GET /v1/leash/detections?after=SEQ&limit=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionPage {
    /// Detections with a seq above `after`, ascending, at most `limit`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub detections: Vec<DetectionView>,
    /// The `after` of the next page when this one is full (there may be
    /// more); `null` when it is not.
    #[serde(default)]
    pub next_after: Option<i64>,
}

/// One quarantine of an identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    /// The workload.
    pub workload: String,
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// RFC 3339 time it began.
    pub since: String,
    /// RFC 3339 time it ends or ended (at its release, if released);
    /// `null`: until released.
    #[serde(default)]
    pub until: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// The detector that placed it, or `operator`.
    pub by: String,
    /// The detection that caused it, if any.
    #[serde(default)]
    pub detection_id: Option<String>,
    /// In force now.
    pub active: bool,
}

/// `data` of `GET /v1/leash/identities?workload=W&issuer=I&subject=S`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// The workload.
    pub workload: String,
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// The quarantine in force now, if any.
    #[serde(default)]
    pub quarantine: Option<QuarantineView>,
    /// Every quarantine of the identity, newest first.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub history: Vec<QuarantineView>,
    /// Its most recent detections, newest first.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub detections: Vec<DetectionView>,
}
