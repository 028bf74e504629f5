//! `auth/token/*-self`: a workload looks up, renews or revokes its own
//! token. Renewal never passes the token's max (capped with a warning, as
//! Vault does); revoking a token revokes every lease it holds.

use serde::Deserialize;

use super::login::{auth_block, policy_names};
use super::{Answer, Broker, Denied, IfNotApplied, Pending, Req, ServiceError, parse_increment};
use crate::audit::Record;
use crate::lease;
use crate::wire::{Envelope, Reply, rfc3339};

#[derive(Debug, Default, Deserialize)]
struct RenewBody {
    #[serde(default)]
    increment: serde_json::Value,
}

/// The token the caller presented (it is not stored, only its digest).
fn presented(req: &Req<'_>) -> String {
    req.inc
        .token
        .as_ref()
        .map(|t| t.expose().to_owned())
        .unwrap_or_default()
}

impl Broker {
    pub(crate) async fn token_lookup_self(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("token.lookup_self");
        // Vault's default policy allows only `read` here: POST is a 403.
        if req.method() != "GET" {
            return Err(Denied::LookupSelfReadOnly.into());
        }
        let s = self.session(req, rec).await?;
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
            "id": presented(req),
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
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, data),
        )))
    }

    pub(crate) async fn token_renew_self(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("token.renew_self");
        req.require_method(&["POST", "PUT"])?;
        let s = self.session(req, rec).await?;
        let body: RenewBody = req.json()?;
        let asked = parse_increment(&body.increment)?;
        if !s.token.renewable {
            return Err(ServiceError::bad_request("lease is not renewable"));
        }
        let renewal = lease::renew_token(&s.token, asked, req.now);
        let mut env = Envelope::<()>::empty(&req.inc.request_id);
        env.warnings = renewal.warning.map(|w| vec![w]);
        env.auth = Some(auth_block(&s.token, presented(req), renewal.granted));
        Ok(Pending::mutate(
            renewal.mutation,
            Answer::Reply(Reply::json(200, &env)),
            IfNotApplied::Denied,
        ))
    }

    pub(crate) async fn token_revoke_self(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("token.revoke_self");
        req.require_method(&["POST", "PUT"])?;
        let s = self.session(req, rec).await?;
        Ok(Pending::mutate(
            lease::revoke_token(s.token.hash, req.now),
            Answer::Reply(Reply::Empty { status: 204 }),
            IfNotApplied::Denied,
        ))
    }
}
