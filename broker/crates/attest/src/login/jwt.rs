//! `auth/jwt/login`: a JWT from an issuer the workload's policy names,
//! verified offline against that issuer's keys, whose claims must match
//! every claim the policy binds.
//!
//! Must never happen: a JWT verified against an issuer other than the one
//! the workload names; a workload that does not log in with a JWT logged in
//! by one; the JWT in a failure or `Debug` output; a failure whose text
//! tells an unknown role from a known one ([`LOGIN_DENIED`] for all).

use std::collections::BTreeMap;

use leash_domain::audit::escape_untrusted;
use serde::Deserialize;

use super::{Attested, LoginFailure, LoginMethod, LoginNotes, LoginRequest};
use crate::{Issuers, VerifiedJwt};

/// What the caller reads for every JWT login that names a role and carries
/// a token but fails: an unknown role, a role that does not log in with a
/// JWT, a JWT that does not verify, claims that do not match.
pub const LOGIN_DENIED: &str = "permission denied: invalid role or JWT";

/// The body: the role (workload) and the JWT. `Debug` leaves out the JWT.
#[derive(Default, Deserialize)]
pub struct JwtBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    jwt: Option<String>,
}

impl std::fmt::Debug for JwtBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtBody")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// JWT login against the configured issuers.
#[derive(Clone)]
pub struct JwtLogin {
    issuers: Issuers,
}

impl std::fmt::Debug for JwtLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtLogin")
            .field("issuers", &self.issuers.names())
            .finish()
    }
}

impl JwtLogin {
    /// Verifies against `issuers`.
    pub fn new(issuers: Issuers) -> Self {
        Self { issuers }
    }

    /// The workload `body` names, its JWT verified and its claims checked;
    /// for the methods that take a JWT (this one, Kubernetes).
    pub(super) fn verify<'p>(
        &self,
        body: JwtBody,
        req: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<(&'p leash_policy::Workload, VerifiedJwt), LoginFailure> {
        let role = body
            .role
            .filter(|r| !r.is_empty())
            .ok_or_else(|| LoginFailure::new("missing role"))?;
        notes.workload = Some(role.clone());
        let jwt = body
            .jwt
            .filter(|j| !j.is_empty())
            .ok_or_else(|| LoginFailure::new("missing token"))?;
        // Past this point every failure reads the same to the caller, so
        // that answers cannot tell which workloads exist; the audit event
        // records which check failed.
        let denied = |why: String| LoginFailure::because(LOGIN_DENIED, why);
        let workload = req.policies.workload(&role).ok_or_else(|| {
            denied(format!(
                "role \"{}\" could not be found",
                escape_untrusted(&role, 64)
            ))
        })?;
        let Some(binding) = workload.login.jwt() else {
            return Err(denied(format!(
                "role \"{}\" does not log in with a JWT",
                escape_untrusted(&role, 64)
            )));
        };
        let verified = self
            .issuers
            .verify(&binding.issuer, &jwt, req.now)
            .map_err(|e| denied(e.to_string()))?;
        notes.attestation = Some(verified.summary());
        workload
            .check_claims(&verified.claims)
            .map_err(|d| denied(format!("error validating claims: {d}")))?;
        Ok((workload, verified))
    }
}

/// What a verified JWT earns: its issuer and subject, never past its `exp`.
pub(super) fn attested<'p>(
    workload: &'p leash_policy::Workload,
    verified: &VerifiedJwt,
) -> Attested<'p> {
    let mut meta = BTreeMap::new();
    meta.insert("role".to_owned(), workload.name.clone());
    meta.insert("issuer".to_owned(), verified.issuer_name.clone());
    meta.insert("sub".to_owned(), escape_untrusted(&verified.subject, 256));
    Attested {
        workload,
        issuer: verified.issuer_name.clone(),
        subject: escape_untrusted(&verified.subject, 256),
        not_after: Some(verified.expires_at),
        meta,
    }
}

impl LoginMethod for JwtLogin {
    type Body = JwtBody;
    const MOUNT: &'static str = "jwt";
    const OPERATION: &'static str = "auth.jwt.login";
    const AUTH_PATH: &'static str = "auth/jwt/login";

    fn attest<'p>(
        &self,
        body: JwtBody,
        req: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<Attested<'p>, LoginFailure> {
        let (workload, verified) = self.verify(body, req, notes)?;
        Ok(attested(workload, &verified))
    }
}
