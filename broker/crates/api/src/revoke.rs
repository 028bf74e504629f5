//! `POST /v1/leash/leases/revoke`: the request body (exactly one of
//! `lease_id`, `prefix`, `accessor`, `workload`) and the answer
//! `{"revoked": N}`.
//!
//! Must never happen: a request with two selectors (or none) read as a
//! target; a lease id shown by `Debug` (it is a bearer reference, kept out
//! of logs like the token that owns it).

use std::fmt;

use serde::{Deserialize, Serialize};

const REDACTED: &str = "<redacted>";

/// The body of `POST /v1/leash/leases/revoke`. On the wire exactly one
/// field is set (an empty string counts as unset); unknown fields are
/// refused. Build one from a [`RevokeTarget`]; read one with
/// [`RevokeRequest::target`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// One lease, by id. Redacted in `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// Every lease whose path starts with this text (literally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// One identity: the token with this accessor and all its leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessor: Option<String>,
    /// Every token of this workload and all their leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// What a revoke request selects: the one field it sets.
#[derive(Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One lease, by id. Redacted in `Debug`.
    Lease(String),
    /// Every lease under a path prefix.
    Prefix(String),
    /// The token with this accessor, and its leases.
    Accessor(String),
    /// Every token of a workload, and their leases.
    Workload(String),
}

impl RevokeRequest {
    /// The one selector this request sets, or `None` when it sets none or
    /// more than one (empty strings count as unset).
    pub fn target(self) -> Option<RevokeTarget> {
        let given = |v: Option<String>| v.filter(|s| !s.is_empty());
        let mut set = [
            given(self.lease_id).map(RevokeTarget::Lease),
            given(self.prefix).map(RevokeTarget::Prefix),
            given(self.accessor).map(RevokeTarget::Accessor),
            given(self.workload).map(RevokeTarget::Workload),
        ]
        .into_iter()
        .flatten();
        match (set.next(), set.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

impl From<RevokeTarget> for RevokeRequest {
    fn from(t: RevokeTarget) -> Self {
        let mut r = RevokeRequest::default();
        match t {
            RevokeTarget::Lease(v) => r.lease_id = Some(v),
            RevokeTarget::Prefix(v) => r.prefix = Some(v),
            RevokeTarget::Accessor(v) => r.accessor = Some(v),
            RevokeTarget::Workload(v) => r.workload = Some(v),
        }
        r
    }
}

impl fmt::Debug for RevokeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeRequest")
            .field("lease_id", &self.lease_id.as_ref().map(|_| REDACTED))
            .field("prefix", &self.prefix)
            .field("accessor", &self.accessor)
            .field("workload", &self.workload)
            .finish()
    }
}

impl fmt::Debug for RevokeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeTarget::Lease(_) => f.debug_tuple("Lease").field(&REDACTED).finish(),
            RevokeTarget::Prefix(p) => f.debug_tuple("Prefix").field(p).finish(),
            RevokeTarget::Accessor(a) => f.debug_tuple("Accessor").field(a).finish(),
            RevokeTarget::Workload(w) => f.debug_tuple("Workload").field(w).finish(),
        }
    }
}

/// `data` of the answer: how many rows the revocation changed (leases; for
/// an accessor or a workload, tokens plus leases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// Rows revoked.
    pub revoked: u64,
}
