//! `sys/leases/*`: a workload looks up, renews and revokes its own leases.
//!
//! A lease id is usable only with the token that owns it: any other token
//! gets the same answer as for an id that does not exist. Renewal re-checks
//! the workload's policy and conditions, never passes the lease's max (or
//! its token's), and races with revocation safely: the store's conditional
//! update decides, so no renewal succeeds after a revoke commits.

use leash_domain::LeaseRecord;
use leash_policy::{Capability, canonicalize};
use serde::Deserialize;

use super::{Answer, Broker, Denied, IfNotApplied, Pending, Req, ServiceError, parse_increment};
use crate::attest::Session;
use crate::audit::Record;
use crate::lease;
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

impl LeaseBody {
    /// Vault answers a revocation with 204, or 202 when asked not to wait.
    fn revoke_status(&self) -> u16 {
        if self.sync == Some(false) { 202 } else { 204 }
    }
}

/// Largest lease id accepted (mount, path of at most 1,024 bytes and a
/// 55-character tail: issue time, `.`, 256 random bits).
const MAX_LEASE_ID: usize = 1200;

/// The lease id from the path (after `skip` segments) or the body.
fn lease_id(req: &Req<'_>, skip: usize, body: &LeaseBody) -> Result<String, ServiceError> {
    let id = req
        .rest(skip)
        .or_else(|| body.lease_id.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ServiceError::bad_request("lease_id must be specified"))?;
    if id.len() > MAX_LEASE_ID {
        return Err(ServiceError::bad_request("invalid lease"));
    }
    Ok(id)
}

impl Broker {
    /// The caller's own live lease, or the one answer for "no such lease".
    async fn own_lease(
        &self,
        s: &Session,
        id: &str,
        req: &Req<'_>,
        rec: &mut Record,
        missing: &str,
    ) -> Result<LeaseRecord, ServiceError> {
        let hash = self.hasher.lease(id);
        rec.lease(&hash);
        let lease = self
            .store
            .lease(&hash)
            .await
            .map_err(|e| ServiceError::unavailable("state store", e))?;
        let refuse = |why: &str| Err(ServiceError::bad_request_because(missing, why));
        match lease {
            Some(l) if l.token_hash.ct_eq(&s.token.hash) && l.is_live(req.now) => Ok(l),
            Some(l) if !l.token_hash.ct_eq(&s.token.hash) => {
                refuse("lease belongs to another token")
            }
            Some(l) if l.revoked_at.is_some() => refuse("lease revoked"),
            Some(_) => refuse("lease expired"),
            None => refuse("lease not found"),
        }
    }

    pub(crate) async fn lease_lookup(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("lease.lookup");
        req.require_method(&["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.session(req, rec).await?;
        let id = lease_id(req, 3, &body)?;
        let l = self.own_lease(&s, &id, req, rec, "invalid lease").await?;
        let data = serde_json::json!({
            "id": id,
            "issue_time": rfc3339(l.issued_at),
            "expire_time": rfc3339(l.expires_at),
            "last_renewal": l.last_renewal.map(rfc3339),
            "path": l.lease_path,
            "renewable": l.renewable,
            "ttl": (l.expires_at - req.now).num_seconds().max(0),
        });
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, data),
        )))
    }

    pub(crate) async fn lease_renew(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("lease.renew");
        req.require_method(&["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.session(req, rec).await?;
        let id = lease_id(req, 3, &body)?;
        let asked = parse_increment(&body.increment)?;
        let l = self.own_lease(&s, &id, req, rec, "lease not found").await?;
        if !l.renewable {
            return Err(ServiceError::bad_request("lease is not renewable"));
        }
        // Renewal re-checks policy and conditions on the lease's resource.
        let resource =
            canonicalize(&l.path).map_err(|e| ServiceError::bad_request(e.to_string()))?;
        s.admitted
            .decide(Capability::Read, &resource)
            .map_err(Denied::Policy)?;
        let renewal = lease::renew_lease(&l, &s.token, asked, req.now);
        let env = Envelope::<()> {
            request_id: &req.inc.request_id,
            lease_id: &id,
            renewable: true,
            lease_duration: renewal.granted,
            data: None,
            wrap_info: None,
            warnings: renewal.warning.map(|w| vec![w]),
            auth: None,
        };
        Ok(Pending::mutate(
            renewal.mutation,
            Answer::Reply(Reply::json(200, &env)),
            IfNotApplied::LeaseNotFound,
        ))
    }

    pub(crate) async fn lease_revoke(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        skip: usize,
    ) -> Result<Pending, ServiceError> {
        rec.op("lease.revoke");
        req.require_method(&["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.session(req, rec).await?;
        let id = lease_id(req, skip, &body)?;
        let hash = self.hasher.lease(&id);
        rec.lease(&hash);
        Ok(Pending::mutate(
            lease::revoke_lease(hash, Some(s.token.hash), req.now),
            Answer::Reply(Reply::Empty {
                status: body.revoke_status(),
            }),
            IfNotApplied::Denied,
        ))
    }

    pub(crate) async fn lease_revoke_prefix(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        skip: usize,
    ) -> Result<Pending, ServiceError> {
        rec.op("lease.revoke_prefix");
        req.require_method(&["PUT", "POST"])?;
        let body: LeaseBody = req.json()?;
        let s = self.session(req, rec).await?;
        let prefix = req
            .rest(skip)
            .ok_or_else(|| ServiceError::bad_request("prefix must be specified"))?;
        Ok(Pending::mutate(
            lease::revoke_prefix(prefix, Some(s.token.hash), req.now),
            Answer::Reply(Reply::Empty {
                status: body.revoke_status(),
            }),
            IfNotApplied::Denied,
        ))
    }
}
