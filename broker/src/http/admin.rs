//! The admin router: the operator API under `/v1/leash/`. Every route
//! names its operation, then checks the operator token, then runs.
//!
//! Must never happen: an operator route served without the operator token;
//! an unknown operator path answered differently from a known one to a
//! caller without it.

use crate::audit::Record;
use crate::service::{Broker, Pending, Req, ServiceError};

/// The operator endpoints.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Status,
    Revoke,
    AuditList,
    AuditVerify,
    DetectionList,
    DetectionShow,
    IdentityShow,
    Quarantine,
    Release,
    Unknown,
}

impl Endpoint {
    fn of(req: &Req<'_>) -> Self {
        let seg: Vec<&str> = req.segments().iter().map(String::as_str).collect();
        match seg.as_slice() {
            ["leash", "status"] => Endpoint::Status,
            ["leash", "leases", "revoke"] => Endpoint::Revoke,
            ["leash", "audit"] => Endpoint::AuditList,
            ["leash", "audit", "verify"] => Endpoint::AuditVerify,
            ["leash", "detections"] => Endpoint::DetectionList,
            ["leash", "detections", _] => Endpoint::DetectionShow,
            ["leash", "identities"] => Endpoint::IdentityShow,
            ["leash", "identities", "quarantine"] => Endpoint::Quarantine,
            ["leash", "identities", "release"] => Endpoint::Release,
            _ => Endpoint::Unknown,
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Endpoint::Status => "admin.status",
            Endpoint::Revoke => "admin.lease_revoke",
            Endpoint::AuditList => "admin.audit_list",
            Endpoint::AuditVerify => "admin.audit_verify",
            Endpoint::DetectionList => "admin.detection_list",
            Endpoint::DetectionShow => "admin.detection_show",
            Endpoint::IdentityShow => "admin.identity_show",
            Endpoint::Quarantine => "admin.identity_quarantine",
            Endpoint::Release => "admin.identity_release",
            Endpoint::Unknown => "admin.unknown",
        }
    }
}

/// Routes an operator request.
pub(crate) async fn route(
    b: &Broker,
    req: &Req<'_>,
    rec: &mut Record,
) -> Result<Pending, ServiceError> {
    let endpoint = Endpoint::of(req);
    rec.op(endpoint.operation());
    b.operator(req, rec)?;
    match endpoint {
        Endpoint::Status => b.admin_status(req).await,
        Endpoint::Revoke => b.admin_revoke(req, rec),
        Endpoint::AuditList => b.audit_list(req).await,
        Endpoint::AuditVerify => b.audit_verify(req, rec).await,
        Endpoint::DetectionList => b.detections_list(req).await,
        Endpoint::DetectionShow => b.detection_show(req, rec).await,
        Endpoint::IdentityShow => b.identity_show(req, rec).await,
        Endpoint::Quarantine => b.identity_quarantine(req, rec),
        Endpoint::Release => b.identity_release(req, rec),
        Endpoint::Unknown => Err(ServiceError::NoOperatorEndpoint),
    }
}
