//! How a workload logs in: the [`Login`] enum, one variant per method
//! with only that method's settings, and the checks a method's settings
//! make by themselves (an AppRole secret id against its digest, a peer
//! against the bound networks). Nothing here may do I/O, compare a secret
//! id in variable time, accept an empty secret id, or print the digest.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::claims::BoundClaim;
use crate::conditions::normalize_peer;

/// How a workload logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// A JWT from a configured issuer.
    Jwt,
    /// A role id and a secret id, bound to source networks (lower
    /// assurance than a signed attestation).
    AppRole,
}

impl LoginMethod {
    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Jwt => "jwt",
            LoginMethod::AppRole => "approle",
        }
    }
}

impl fmt::Display for LoginMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a workload logs in: one variant per method, each holding only the
/// settings its method uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// A JWT from a configured issuer, whose claims must match.
    Jwt(JwtLogin),
    /// A role id and a secret id, from inside bound networks.
    AppRole(AppRoleLogin),
}

impl Login {
    /// Which method this is.
    pub fn method(&self) -> LoginMethod {
        match self {
            Login::Jwt(_) => LoginMethod::Jwt,
            Login::AppRole(_) => LoginMethod::AppRole,
        }
    }

    /// The JWT settings, if the workload logs in with a JWT.
    pub fn jwt(&self) -> Option<&JwtLogin> {
        match self {
            Login::Jwt(j) => Some(j),
            Login::AppRole(_) => None,
        }
    }

    /// The AppRole settings, if the workload logs in with AppRole.
    pub fn approle(&self) -> Option<&AppRoleLogin> {
        match self {
            Login::AppRole(a) => Some(a),
            Login::Jwt(_) => None,
        }
    }
}

/// JWT login settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtLogin {
    /// The name of an issuer configured in the broker.
    pub issuer: String,
    /// Every one must match (never empty).
    pub bound_claims: Vec<BoundClaim>,
}

/// AppRole login settings. The secret id itself is never known to the
/// policy, only its SHA-256 digest, which [`fmt::Debug`] does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct AppRoleLogin {
    /// The role id (not secret), unique across the set.
    pub role_id: String,
    /// Where the role may log in from and use its token from (never empty).
    pub bound_cidrs: Vec<IpNet>,
    secret_id_sha256: [u8; 32],
}

impl AppRoleLogin {
    pub(crate) fn new(
        role_id: String,
        secret_id_sha256: [u8; 32],
        bound_cidrs: Vec<IpNet>,
    ) -> Self {
        Self {
            role_id,
            bound_cidrs,
            secret_id_sha256,
        }
    }

    /// Whether SHA-256(`secret_id`) equals the configured digest, compared
    /// in constant time. An empty secret id never matches.
    pub fn secret_matches(&self, secret_id: &str) -> bool {
        if secret_id.is_empty() {
            return false;
        }
        let digest = Sha256::digest(secret_id.as_bytes());
        bool::from(digest.as_slice().ct_eq(&self.secret_id_sha256[..]))
    }

    /// Whether `peer` is inside one of the bound networks. IPv4-mapped IPv6
    /// peers are compared as IPv4, as in conditions. An empty list (which
    /// the loader refuses) allows nothing.
    pub fn allows_source(&self, peer: IpAddr) -> bool {
        let peer = normalize_peer(peer);
        self.bound_cidrs.iter().any(|n| n.contains(&peer))
    }
}

impl fmt::Debug for AppRoleLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRoleLogin")
            .field("role_id", &self.role_id)
            .field("bound_cidrs", &self.bound_cidrs)
            .field("secret_id_sha256", &"<redacted>")
            .finish()
    }
}
