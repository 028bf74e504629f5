//! `auth/token/*-self`: a workload looks up, renews or revokes its own
//! token. Renewal never passes the token's max (capped with a warning, as
//! Vault does); revoking a token revokes every lease it holds.

use leash_domain::{Mutation, Refusal};
use serde::Deserialize;

use super::login::{auth_block, policy_names};
use super::{AuditCtx, Broker, Pending, Refused, Req, cap_warning, expiry, parse_increment};
use crate::wire::{Envelope, Reply, rfc3339};

#[derive(Debug, Default, Deserialize)]
struct RenewBody {
    #[serde(default)]
    increment: serde_json::Value,
}

impl Broker {
    pub(crate) async fn token_lookup_self(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("token.lookup_self");
        // Vault's default policy allows only `read` here: POST is a 403.
        if req.method() != "GET" {
            return Err(Refused::denied("lookup-self is read-only"));
        }
        let s = self.authenticate(req, ctx).await?;
        let t = &s.token;
        let ttl = (t.expires_at - req.now).num_seconds().max(0);
        let data = serde_json::json!({
            "accessor": t.accessor,
            "creation_time": t.created_at.timestamp(),
            "creation_ttl": t.ttl_secs,
            "display_name": format!("jwt-{}", t.workload),
            "entity_id": t.accessor,
            "expire_time": rfc3339(t.expires_at),
            "explicit_max_ttl": (t.max_expires_at - t.created_at).num_seconds().max(0),
            // The caller's own token, as Vault answers (it presented it).
            "id": req.inc.token.as_ref().map(|t| t.expose()).unwrap_or_default(),
            "issue_time": rfc3339(t.created_at),
            "meta": t.meta,
            "num_uses": 0,
            "orphan": true,
            "path": t.auth_path,
            "policies": policy_names(&t.workload),
            "renewable": t.renewable,
            "ttl": ttl,
            "type": "service",
        });
        Ok(Pending::reply(Self::envelope(req, data)))
    }

    pub(crate) async fn token_renew_self(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("token.renew_self");
        Self::require_method(req, &["POST", "PUT"])?;
        let s = self.authenticate(req, ctx).await?;
        let body: RenewBody = req.json()?;
        let asked = parse_increment(&body.increment)?;
        if !s.token.renewable {
            return Err(Refused::bad_request("lease is not renewable"));
        }
        let ttl = asked.unwrap_or(s.token.ttl_secs);
        let (expires_at, granted) = expiry(req.now, ttl, s.token.max_expires_at);
        let mut env = Envelope::<()>::empty(&req.inc.request_id);
        if granted < ttl {
            env.warnings = Some(vec![cap_warning(ttl, granted)]);
        }
        // The token itself is the one the caller presented; it is not stored.
        let presented = req
            .inc
            .token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        env.auth = Some(auth_block(&s.token, presented, granted));
        Ok(Pending::mutate(
            Mutation::RenewToken {
                token: s.token.hash,
                now: req.now,
                expires_at,
            },
            Reply::json(200, &env),
            Refusal {
                status: 403,
                reason: "permission denied".into(),
            },
        ))
    }

    pub(crate) async fn token_revoke_self(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("token.revoke_self");
        Self::require_method(req, &["POST", "PUT"])?;
        let s = self.authenticate(req, ctx).await?;
        Ok(Pending::mutate(
            Mutation::RevokeToken {
                token: s.token.hash,
                now: req.now,
            },
            Reply::Empty { status: 204 },
            Refusal {
                status: 403,
                reason: "permission denied".into(),
            },
        ))
    }
}
