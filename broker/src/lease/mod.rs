//! Tokens and leases: issuing them, renewing them, revoking them, reaping
//! the dead ones, and fanning revocations out to this replica's session
//! cache ([`fanout`]).
//!
//! Owns: lifetimes — a lease never outlives its token or its workload's
//! `max_ttl`; a token never outlives what its login proved (a JWT's `exp`)
//! or its workload's `max_ttl`; a renewal never passes those caps — the
//! shape of lease ids and the mutations that change tokens and leases.
//! Must never happen: a token or a lease id kept in clear (only their keyed
//! digests are stored); a cap exceeded; a revoked token served from this
//! replica's cache after the revoking reply left.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leash_domain::crypto::{KeyError, new_accessor, new_lease_suffix, new_token};
use leash_domain::{
    Digest, KeyedHasher, LeaseRecord, Mutation, SecretToken, TokenRecord, TokenSelector,
};
use leash_policy::{CanonicalPath, Workload};

pub mod fanout;
mod reaper;

pub use reaper::spawn_reaper;

/// Why a token or a lease could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The random source failed.
    #[error("random source failed")]
    Random(#[source] KeyError),
    /// Its caps leave it no time to live.
    #[error("no time left under the caps")]
    NoTimeLeft,
}

/// Seconds of a std duration, saturating.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// Clamps `ttl_secs` from `now` to at most `cap`; returns the expiry and
/// the seconds granted.
pub fn expiry(now: DateTime<Utc>, ttl_secs: i64, cap: DateTime<Utc>) -> (DateTime<Utc>, i64) {
    let wanted = now + chrono::Duration::seconds(ttl_secs);
    let at = wanted.min(cap);
    (at, (at - now).num_seconds().max(0))
}

/// Vault's warning when a renewal asked for more than the cap allows.
pub fn cap_warning(asked: i64, capped: i64) -> String {
    format!(
        "TTL of \"{asked}s\" exceeded the effective max_ttl of \"{capped}s\"; TTL value is capped accordingly"
    )
}

/// Who a token is issued to, as a login proved it.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The issuer that attested the caller (`approle` for AppRole).
    pub issuer: String,
    /// The attested subject (escaped).
    pub subject: String,
    /// The token never lives past this (a JWT's `exp`).
    pub not_after: DateTime<Utc>,
    /// The auth path that issued it, e.g. `auth/jwt/login`.
    pub auth_path: &'static str,
    /// The `auth.metadata` block.
    pub meta: BTreeMap<String, String>,
}

/// A token just issued: the secret (shown once), its record, its TTL.
pub struct IssuedToken {
    /// The token itself; never stored.
    pub token: SecretToken,
    /// What is stored: its digest and facts.
    pub record: TokenRecord,
    /// Seconds granted.
    pub granted: i64,
}

/// Issues a token for `workload` to `holder`, used from `peer`: random,
/// stored only as a digest, living at most the workload's TTL, never past
/// its `max_ttl` or `holder.not_after`.
pub fn issue_token(
    hasher: &KeyedHasher,
    workload: &Workload,
    holder: Holder,
    peer: IpAddr,
    now: DateTime<Utc>,
) -> Result<IssuedToken, IssueError> {
    let max = (now + chrono::Duration::seconds(secs(workload.lease.max_ttl))).min(holder.not_after);
    let ttl = secs(workload.lease.ttl);
    let (expires_at, granted) = expiry(now, ttl, max);
    if granted <= 0 {
        return Err(IssueError::NoTimeLeft);
    }
    let token = new_token().map_err(IssueError::Random)?;
    let accessor = new_accessor().map_err(IssueError::Random)?;
    let record = TokenRecord {
        hash: hasher.token(&token),
        accessor,
        workload: workload.name.clone(),
        auth_path: holder.auth_path.into(),
        issuer: holder.issuer,
        subject: holder.subject,
        source: peer.to_string(),
        meta: holder.meta,
        created_at: now,
        expires_at,
        max_expires_at: max,
        ttl_secs: ttl,
        renewable: true,
        revoked_at: None,
    };
    Ok(IssuedToken {
        token,
        record,
        granted,
    })
}

/// A lease just issued: its id (shown once) and its record.
pub struct IssuedLease {
    /// `<lease_path>/<issue time>.<256 random bits>`; never stored.
    pub id: String,
    /// What is stored: its digest and facts.
    pub record: LeaseRecord,
    /// Seconds granted.
    pub granted: i64,
}

/// Issues a lease on `resource` (read through `lease_path`, the path the
/// client used) for a session of `workload` holding `token`.
pub fn issue_lease(
    hasher: &KeyedHasher,
    token: &TokenRecord,
    workload: &Workload,
    resource: &CanonicalPath,
    lease_path: String,
    now: DateTime<Utc>,
) -> Result<IssuedLease, IssueError> {
    let suffix = new_lease_suffix(now.timestamp_micros()).map_err(IssueError::Random)?;
    let id = format!("{lease_path}/{suffix}");
    let max =
        (now + chrono::Duration::seconds(secs(workload.lease.max_ttl))).min(token.max_expires_at);
    let ttl = secs(workload.lease.ttl);
    let (expires_at, granted) = expiry(now, ttl, max);
    if granted <= 0 {
        return Err(IssueError::NoTimeLeft);
    }
    let record = LeaseRecord {
        hash: hasher.lease(&id),
        token_hash: token.hash,
        workload: workload.name.clone(),
        path: resource.as_str().to_owned(),
        lease_path,
        issued_at: now,
        expires_at,
        max_expires_at: max,
        ttl_secs: ttl,
        renewable: true,
        last_renewal: None,
        revoked_at: None,
    };
    Ok(IssuedLease {
        id,
        record,
        granted,
    })
}

/// A renewal: the conditional mutation and what it grants.
pub struct Renewal {
    /// Applies only if the lease or token is still live (and owned).
    pub mutation: Mutation,
    /// Seconds granted.
    pub granted: i64,
    /// Vault's warning when the ask was capped.
    pub warning: Option<String>,
}

impl Renewal {
    fn new(mutation: Mutation, asked: i64, granted: i64) -> Self {
        Self {
            mutation,
            granted,
            warning: (granted < asked).then(|| cap_warning(asked, granted)),
        }
    }
}

/// Renews `lease`, presented with `token`, by `asked` seconds (else its
/// own TTL), capped by the lease's and the token's max.
pub fn renew_lease(
    lease: &LeaseRecord,
    token: &TokenRecord,
    asked: Option<i64>,
    now: DateTime<Utc>,
) -> Renewal {
    let ttl = asked.unwrap_or(lease.ttl_secs);
    let cap = lease.max_expires_at.min(token.max_expires_at);
    let (expires_at, granted) = expiry(now, ttl, cap);
    Renewal::new(
        Mutation::RenewLease {
            lease: lease.hash,
            token: token.hash,
            now,
            expires_at,
        },
        ttl,
        granted,
    )
}

/// Renews `token` by `asked` seconds (else its own TTL), capped by its max.
pub fn renew_token(token: &TokenRecord, asked: Option<i64>, now: DateTime<Utc>) -> Renewal {
    let ttl = asked.unwrap_or(token.ttl_secs);
    let (expires_at, granted) = expiry(now, ttl, token.max_expires_at);
    Renewal::new(
        Mutation::RenewToken {
            token: token.hash,
            now,
            expires_at,
        },
        ttl,
        granted,
    )
}

/// Revokes one lease; with `owner`, only if that token owns it.
pub fn revoke_lease(lease: Digest, owner: Option<Digest>, now: DateTime<Utc>) -> Mutation {
    Mutation::RevokeLease { lease, owner, now }
}

/// Revokes every lease whose public path starts with `prefix` (literally);
/// with `owner`, only that token's.
pub fn revoke_prefix(prefix: String, owner: Option<Digest>, now: DateTime<Utc>) -> Mutation {
    Mutation::RevokeLeasePrefix { prefix, owner, now }
}

/// Revokes a token and every lease it holds.
pub fn revoke_token(token: Digest, now: DateTime<Utc>) -> Mutation {
    Mutation::RevokeToken { token, now }
}

/// Revokes every live token `selector` picks, and all their leases.
pub fn revoke_tokens(selector: TokenSelector, now: DateTime<Utc>) -> Mutation {
    Mutation::RevokeTokens { selector, now }
}
