//! `sys/leases/*`: a workload looks up, renews and revokes its own leases.
//!
//! A lease id is usable only with the token that owns it: any other token
//! gets the same answer as for an id that does not exist. Renewal re-checks
//! the workload's policy and conditions, never passes the lease's max (or
//! its token's), and races with revocation safely: the store's conditional
//! update decides, so no renewal succeeds after a revoke commits.

use leash_domain::{LeaseRecord, Mutation, Refusal};
use leash_policy::{Capability, canonicalize};
use serde::Deserialize;

use super::{
    AuditCtx, Broker, Pending, Refused, Req, Session, cap_warning, expiry, parse_increment,
};
use crate::wire::{Envelope, Reply, rfc3339};

#[derive(Debug, Default, Deserialize)]
struct LeaseBody {
    #[serde(default)]
    lease_id: Option<String>,
    #[serde(default)]
    increment: serde_json::Value,
    #[serde(default)]
    sync: Option<bool>,
}

/// Largest lease id accepted (mount, path of at most 1,024 bytes and a
/// 55-character tail: issue time, `.`, 256 random bits).
const MAX_LEASE_ID: usize = 1200;

impl Broker {
    /// The lease id from the path (after `skip` segments) or the body.
    fn lease_id(req: &Req<'_>, skip: usize, body: &LeaseBody) -> Result<String, Refused> {
        let id = req
            .rest(skip)
            .or_else(|| body.lease_id.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Refused::bad_request("lease_id must be specified"))?;
        if id.len() > MAX_LEASE_ID {
            return Err(Refused::bad_request("invalid lease"));
        }
        Ok(id)
    }

    /// The caller's own live lease, or the one answer for "no such lease".
    async fn own_lease(
        &self,
        s: &Session,
        id: &str,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        missing: &str,
    ) -> Result<LeaseRecord, Refused> {
        let hash = self.hasher.lease(id);
        ctx.lease(&hash);
        let lease = self
            .store
            .lease(&hash)
            .await
            .map_err(|e| Refused::unavailable("state store", &e))?;
        match lease {
            Some(l) if l.token_hash.ct_eq(&s.token.hash) && l.is_live(req.now) => Ok(l),
            Some(l) if !l.token_hash.ct_eq(&s.token.hash) => {
                Err(Refused::bad_request(missing).reason_is("lease belongs to another token"))
            }
            Some(l) if l.revoked_at.is_some() => {
                Err(Refused::bad_request(missing).reason_is("lease revoked"))
            }
            Some(_) => Err(Refused::bad_request(missing).reason_is("lease expired")),
            None => Err(Refused::bad_request(missing).reason_is("lease not found")),
        }
    }

    pub(crate) async fn lease_lookup(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("lease.lookup");
        Self::require_method(req, &["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.authenticate(req, ctx).await?;
        let id = Self::lease_id(req, 3, &body)?;
        let l = self.own_lease(&s, &id, req, ctx, "invalid lease").await?;
        let data = serde_json::json!({
            "id": id,
            "issue_time": rfc3339(l.issued_at),
            "expire_time": rfc3339(l.expires_at),
            "last_renewal": l.last_renewal.map(rfc3339),
            "path": l.lease_path,
            "renewable": l.renewable,
            "ttl": (l.expires_at - req.now).num_seconds().max(0),
        });
        Ok(Pending::reply(Self::envelope(req, data)))
    }

    pub(crate) async fn lease_renew(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("lease.renew");
        Self::require_method(req, &["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.authenticate(req, ctx).await?;
        let id = Self::lease_id(req, 3, &body)?;
        let asked = parse_increment(&body.increment)?;
        let l = self.own_lease(&s, &id, req, ctx, "lease not found").await?;
        if !l.renewable {
            return Err(Refused::bad_request("lease is not renewable"));
        }
        // Renewal re-checks policy and conditions on the lease's resource.
        let resource = canonicalize(&l.path).map_err(|e| Refused::bad_request(e.to_string()))?;
        s.workload()?
            .decide(Capability::Read, &resource, req.inc.peer, req.now)
            .map_err(|d| Refused::denied(d.to_string()))?;
        let ttl = asked.unwrap_or(l.ttl_secs);
        let cap = l.max_expires_at.min(s.token.max_expires_at);
        let (expires_at, granted) = expiry(req.now, ttl, cap);
        let env = Envelope::<()> {
            request_id: &req.inc.request_id,
            lease_id: &id,
            renewable: true,
            lease_duration: granted,
            data: None,
            wrap_info: None,
            warnings: (granted < ttl).then(|| vec![cap_warning(ttl, granted)]),
            auth: None,
        };
        Ok(Pending::mutate(
            Mutation::RenewLease {
                lease: l.hash,
                token: s.token.hash,
                now: req.now,
                expires_at,
            },
            Reply::json(200, &env),
            Refusal {
                status: 400,
                reason: "lease not found".into(),
            },
        ))
    }

    pub(crate) async fn lease_revoke(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        skip: usize,
    ) -> Result<Pending, Refused> {
        ctx.op("lease.revoke");
        Self::require_method(req, &["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.authenticate(req, ctx).await?;
        let id = Self::lease_id(req, skip, &body)?;
        let hash = self.hasher.lease(&id);
        ctx.lease(&hash);
        let status = if body.sync == Some(false) { 202 } else { 204 };
        Ok(Pending::mutate(
            Mutation::RevokeLease {
                lease: hash,
                owner: Some(s.token.hash),
                now: req.now,
            },
            Reply::Empty { status },
            Refusal {
                status: 403,
                reason: "permission denied".into(),
            },
        ))
    }

    pub(crate) async fn lease_revoke_prefix(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        skip: usize,
    ) -> Result<Pending, Refused> {
        ctx.op("lease.revoke_prefix");
        Self::require_method(req, &["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.authenticate(req, ctx).await?;
        let prefix = req
            .rest(skip)
            .ok_or_else(|| Refused::bad_request("prefix must be specified"))?;
        let status = if body.sync == Some(false) { 202 } else { 204 };
        Ok(Pending::mutate(
            Mutation::RevokeLeasePrefix {
                prefix,
                owner: Some(s.token.hash),
                now: req.now,
            },
            Reply::Empty { status },
            Refusal {
                status: 403,
                reason: "permission denied".into(),
            },
        ))
    }
}
