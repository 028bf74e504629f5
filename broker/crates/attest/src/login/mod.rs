//! Login methods: how a workload proves who it is. Each method is one file
//! implementing [`LoginMethod`] — [`jwt`], [`kubernetes`], [`approle`] — and
//! the broker registers each with one line; its route is
//! `auth/<mount>/login`.
//!
//! A method reads its own request body, finds the workload the login names,
//! and checks the proof against that workload's login binding: a JWT's
//! signature and claims, an AppRole secret id and source network. It
//! returns what was proven ([`Attested`]); the broker then checks the
//! workload's conditions and issues the token.
//! Must never happen: a login accepted without its proof checked; a JWT, a
//! secret id or a claim value in a failure, a note or `Debug` output;
//! caller text in a message unescaped.

pub mod approle;
pub mod jwt;
pub mod kubernetes;

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use leash_policy::{PolicySet, Workload};
use serde::de::DeserializeOwned;

pub use approle::AppRoleLogin;
pub use jwt::JwtLogin;
pub use kubernetes::KubernetesLogin;

/// The request a login method judges, besides its body.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'p> {
    /// The policy set in force.
    pub policies: &'p PolicySet,
    /// The peer address.
    pub peer: IpAddr,
    /// The request's time.
    pub now: DateTime<Utc>,
}

/// What a login proved: the workload, and who the token is issued to.
#[derive(Debug, Clone)]
pub struct Attested<'p> {
    /// The workload the caller proved to be.
    pub workload: &'p Workload,
    /// The issuer that attested the caller (`approle` for AppRole).
    pub issuer: String,
    /// The attested subject (escaped).
    pub subject: String,
    /// The token may never live past this (a JWT's `exp`); `None`: only the
    /// workload's `max_ttl` bounds it.
    pub not_after: Option<DateTime<Utc>>,
    /// Vault's `auth.metadata` block.
    pub meta: BTreeMap<String, String>,
}

/// What a login attempt has shown so far, for its audit event — kept even
/// when the login fails.
#[derive(Debug, Clone, Default)]
pub struct LoginNotes {
    /// The workload the caller named (untrusted text: escape it).
    pub workload: Option<String>,
    /// What was proven about the caller (never a JWT or a secret).
    pub attestation: Option<serde_json::Value>,
}

/// Why a login failed. Vault answers every one with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", reason.as_deref().unwrap_or(shown))]
pub struct LoginFailure {
    /// What the caller reads.
    pub shown: String,
    /// What the audit log records instead, when the caller is told less.
    pub reason: Option<String>,
}

impl LoginFailure {
    /// A failure the caller and the audit log read alike.
    pub fn new(shown: impl Into<String>) -> Self {
        Self {
            shown: shown.into(),
            reason: None,
        }
    }

    /// A failure the caller reads as `shown`; the audit log records `reason`.
    pub fn because(shown: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            shown: shown.into(),
            reason: Some(reason.into()),
        }
    }
}

/// A way for a workload to log in.
pub trait LoginMethod: Send + Sync + 'static {
    /// The request body it reads (parsed by the broker, leniently: an empty
    /// body is `Default`). Must not print secrets in `Debug`.
    type Body: DeserializeOwned + Default + Send;

    /// The auth mount it serves: `auth/<mount>/login`.
    const MOUNT: &'static str;

    /// The operation its audit events record, e.g. `auth.jwt.login`.
    const OPERATION: &'static str;

    /// The auth path recorded on the tokens it earns.
    const AUTH_PATH: &'static str;

    /// Checks the proof in `body` for the workload it names.
    fn attest<'p>(
        &self,
        body: Self::Body,
        req: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<Attested<'p>, LoginFailure>;
}
