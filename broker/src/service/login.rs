//! `auth/jwt/login`: a workload proves who it is with a JWT from an issuer
//! its policy names, and receives a broker token.
//!
//! The token is random (256 bits), returned once, and stored only as a keyed
//! digest. It never outlives the JWT, nor the workload's max TTL. Login
//! failures are 400 (Vault's semantics); a token header sent with a login is
//! ignored.

use std::collections::BTreeMap;

use leash_domain::audit::escape_untrusted;
use leash_domain::crypto::{new_accessor, new_token};
use leash_domain::{Mutation, Refusal, TokenRecord};
use leash_policy::Workload;
use serde::Deserialize;

use super::{AuditCtx, Broker, Pending, Refused, Req, expiry, secs};
use crate::wire::{AuthBlock, Envelope, Reply};

/// What a login proved, for the token it earns.
struct Proven {
    issuer: String,
    subject: String,
    /// The token never lives past this (a JWT's `exp`).
    not_after: chrono::DateTime<chrono::Utc>,
    auth_path: &'static str,
    meta: BTreeMap<String, String>,
}

/// The AppRole login body. Not `Debug`: it holds the secret id.
#[derive(Default, Deserialize)]
struct AppRoleBody {
    #[serde(default)]
    role_id: Option<String>,
    #[serde(default)]
    secret_id: Option<String>,
}

#[derive(Default, Deserialize)]
struct LoginBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    jwt: Option<String>,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The `policies` a workload's token carries.
pub(crate) fn policy_names(workload: &str) -> Vec<String> {
    vec![format!("workload/{workload}")]
}

/// The `auth` block for a token.
pub(crate) fn auth_block(token: &TokenRecord, client_token: String, ttl: i64) -> AuthBlock {
    AuthBlock {
        client_token,
        accessor: token.accessor.clone(),
        policies: policy_names(&token.workload),
        token_policies: policy_names(&token.workload),
        metadata: token.meta.clone(),
        lease_duration: ttl,
        renewable: token.renewable,
        entity_id: token.accessor.clone(),
        token_type: "service",
        orphan: true,
        mfa_requirement: None,
        num_uses: 0,
    }
}

/// Vault's Kubernetes login metadata, from a projected service-account
/// token's `kubernetes.io` claims.
fn kubernetes_meta(
    claims: &serde_json::Map<String, serde_json::Value>,
    meta: &mut BTreeMap<String, String>,
) {
    let k8s = claims.get("kubernetes.io");
    let get = |ptr: &str| {
        k8s.and_then(|v| v.pointer(ptr))
            .and_then(serde_json::Value::as_str)
            .map(|s| escape_untrusted(s, 256))
            .unwrap_or_default()
    };
    meta.insert("service_account_name".into(), get("/serviceaccount/name"));
    meta.insert("service_account_namespace".into(), get("/namespace"));
    meta.insert("service_account_uid".into(), get("/serviceaccount/uid"));
    meta.insert("service_account_secret_name".into(), String::new());
}

impl Broker {
    pub(crate) async fn jwt_login(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        // `auth/kubernetes/login` takes the same body: a service-account
        // token is a JWT from the cluster's issuer, checked offline against
        // its keys (no TokenReview: pod deletion is bounded by the token's
        // own short expiry).
        let kubernetes = req.segments.get(1).is_some_and(|m| m == "kubernetes");
        ctx.op(if kubernetes {
            "auth.kubernetes.login"
        } else {
            "auth.jwt.login"
        });
        Self::require_method(req, &["POST", "PUT"])?;
        let body: LoginBody = req.json()?;
        let role = body
            .role
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Refused::bad_request("missing role"))?;
        ctx.workload(&role);
        let jwt = body
            .jwt
            .filter(|j| !j.is_empty())
            .ok_or_else(|| Refused::bad_request("missing token"))?;

        let policies = self.policies.current();
        let workload = policies.workload(&role).ok_or_else(|| {
            Refused::bad_request(format!(
                "role \"{}\" could not be found",
                escape_untrusted(&role, 64)
            ))
        })?;
        let Some(jwt_login) = workload.login.jwt() else {
            return Err(Refused::bad_request(format!(
                "role \"{}\" does not log in with a JWT",
                escape_untrusted(&role, 64)
            )));
        };
        let verified = self
            .issuers
            .verify(&jwt_login.issuer, &jwt, req.now)
            .map_err(|e| Refused::bad_request(e.to_string()))?;
        ctx.attestation(verified.summary());
        workload
            .check_claims(&verified.claims)
            .map_err(|d| Refused::bad_request(format!("error validating claims: {d}")))?;
        workload
            .check_conditions(req.inc.peer, req.now)
            .map_err(|d| Refused::bad_request(format!("login refused: {d}")))?;

        let mut meta = BTreeMap::new();
        meta.insert("role".to_owned(), workload.name.clone());
        meta.insert("issuer".to_owned(), verified.issuer_name.clone());
        meta.insert("sub".to_owned(), escape_untrusted(&verified.subject, 256));
        if kubernetes {
            kubernetes_meta(&verified.claims, &mut meta);
        }
        self.issue_token(
            req,
            ctx,
            workload,
            Proven {
                issuer: verified.issuer_name.clone(),
                subject: escape_untrusted(&verified.subject, 256),
                // Never outlive the JWT.
                not_after: verified.expires_at,
                auth_path: if kubernetes {
                    "auth/kubernetes/login"
                } else {
                    "auth/jwt/login"
                },
                meta,
            },
        )
    }

    /// `auth/approle/login`: a role id and a secret id, from inside the
    /// role's bound CIDRs. Every failure gets the same answer.
    pub(crate) async fn approle_login(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("auth.approle.login");
        Self::require_method(req, &["POST", "PUT"])?;
        let body: AppRoleBody = req.json()?;
        let role_id = body
            .role_id
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Refused::bad_request("missing role_id"))?;
        let secret_id = body
            .secret_id
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Refused::bad_request("missing secret_id"))?;
        let invalid = |why: &str| Refused::bad_request("invalid role or secret ID").reason_is(why);
        let policies = self.policies.current();
        let workload = policies
            .workload_by_role_id(&role_id)
            .ok_or_else(|| invalid("unknown role_id"))?;
        ctx.workload(&workload.name);
        let app = workload
            .login
            .approle()
            .ok_or_else(|| invalid("not an approle workload"))?;
        ctx.attestation(serde_json::json!({
            "method": "approle",
            "role_id": escape_untrusted(&app.role_id, 128),
            "source": req.inc.peer.to_string(),
        }));
        if !app.secret_matches(&secret_id) {
            return Err(invalid("secret_id does not match"));
        }
        if !app.allows_source(req.inc.peer) {
            return Err(invalid("source address outside the role's bound_cidrs"));
        }
        workload
            .check_conditions(req.inc.peer, req.now)
            .map_err(|d| Refused::bad_request(format!("login refused: {d}")))?;
        let mut meta = BTreeMap::new();
        meta.insert("role_name".to_owned(), workload.name.clone());
        self.issue_token(
            req,
            ctx,
            workload,
            Proven {
                issuer: "approle".into(),
                subject: escape_untrusted(&app.role_id, 128),
                not_after: req.now + chrono::Duration::seconds(secs(workload.lease.max_ttl)),
                auth_path: "auth/approle/login",
                meta,
            },
        )
    }

    /// Issues a token for `workload` after a successful login: random,
    /// stored only as a digest, living at most the workload's max TTL and
    /// never past `proven.not_after`.
    fn issue_token(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        workload: &Workload,
        proven: Proven,
    ) -> Result<Pending, Refused> {
        let max = (req.now + chrono::Duration::seconds(secs(workload.lease.max_ttl)))
            .min(proven.not_after);
        let ttl = secs(workload.lease.ttl);
        let (expires_at, granted) = expiry(req.now, ttl, max);
        if granted <= 0 {
            return Err(Refused::bad_request(
                "error validating token: invalid expiration time (exp) claim: token is expired",
            ));
        }
        let token = new_token().map_err(|e| Refused::unavailable("random source", &e))?;
        let accessor = new_accessor().map_err(|e| Refused::unavailable("random source", &e))?;
        let record = TokenRecord {
            hash: self.hasher.token(&token),
            accessor,
            workload: workload.name.clone(),
            auth_path: proven.auth_path.into(),
            issuer: proven.issuer,
            subject: proven.subject,
            source: req.inc.peer.to_string(),
            meta: proven.meta,
            created_at: req.now,
            expires_at,
            max_expires_at: max,
            ttl_secs: ttl,
            renewable: true,
            revoked_at: None,
        };
        ctx.session(&record);
        let auth = auth_block(&record, token.expose().to_owned(), granted);
        let mut env = Envelope::<()>::empty(&req.inc.request_id);
        env.auth = Some(auth);
        let reply = Reply::json(200, &env);
        Ok(Pending::mutate(
            Mutation::InsertToken(record),
            reply,
            Refusal {
                status: 503,
                reason: "login could not be recorded".into(),
            },
        ))
    }
}
