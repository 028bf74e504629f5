//! `auth/jwt/login`, `auth/kubernetes/login`, `auth/approle/login`: a
//! workload proves who it is and receives a broker token.
//!
//! The token is random (256 bits), returned once, and stored only as a keyed
//! digest. It never outlives the JWT, nor the workload's max TTL. Login
//! failures are 400 (Vault's semantics); a token header sent with a login is
//! ignored.

use std::collections::BTreeMap;

use leash_domain::Mutation;
use leash_domain::TokenRecord;
use leash_domain::audit::escape_untrusted;
use leash_policy::Workload;
use serde::Deserialize;

use super::{Answer, Broker, IfNotApplied, Pending, Req, ServiceError};
use crate::audit::Record;
use crate::lease::{self, Holder, IssueError, secs};
use crate::wire::{AuthBlock, Envelope, Reply};

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
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        // `auth/kubernetes/login` takes the same body: a service-account
        // token is a JWT from the cluster's issuer, checked offline against
        // its keys (no TokenReview: pod deletion is bounded by the token's
        // own short expiry).
        let kubernetes = req.segments().get(1).is_some_and(|m| m == "kubernetes");
        rec.op(if kubernetes {
            "auth.kubernetes.login"
        } else {
            "auth.jwt.login"
        });
        req.require_method(&["POST", "PUT"])?;
        let body: LoginBody = req.json()?;
        let role = body
            .role
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ServiceError::bad_request("missing role"))?;
        rec.workload(&role);
        let jwt = body
            .jwt
            .filter(|j| !j.is_empty())
            .ok_or_else(|| ServiceError::bad_request("missing token"))?;

        let policies = self.policies.current();
        let workload = policies.workload(&role).ok_or_else(|| {
            ServiceError::bad_request(format!(
                "role \"{}\" could not be found",
                escape_untrusted(&role, 64)
            ))
        })?;
        let Some(jwt_login) = workload.login.jwt() else {
            return Err(ServiceError::bad_request(format!(
                "role \"{}\" does not log in with a JWT",
                escape_untrusted(&role, 64)
            )));
        };
        let verified = self
            .issuers
            .verify(&jwt_login.issuer, &jwt, req.now)
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        rec.attestation(verified.summary());
        workload
            .check_claims(&verified.claims)
            .map_err(|d| ServiceError::bad_request(format!("error validating claims: {d}")))?;
        workload
            .check_conditions(req.inc.peer, req.now)
            .map_err(|d| ServiceError::bad_request(format!("login refused: {d}")))?;

        let mut meta = BTreeMap::new();
        meta.insert("role".to_owned(), workload.name.clone());
        meta.insert("issuer".to_owned(), verified.issuer_name.clone());
        meta.insert("sub".to_owned(), escape_untrusted(&verified.subject, 256));
        if kubernetes {
            kubernetes_meta(&verified.claims, &mut meta);
        }
        self.issue_token(
            req,
            rec,
            workload,
            Holder {
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
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("auth.approle.login");
        req.require_method(&["POST", "PUT"])?;
        let body: AppRoleBody = req.json()?;
        let role_id = body
            .role_id
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ServiceError::bad_request("missing role_id"))?;
        let secret_id = body
            .secret_id
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ServiceError::bad_request("missing secret_id"))?;
        let invalid =
            |why: &str| ServiceError::bad_request_because("invalid role or secret ID", why);
        let policies = self.policies.current();
        let workload = policies
            .workload_by_role_id(&role_id)
            .ok_or_else(|| invalid("unknown role_id"))?;
        rec.workload(&workload.name);
        let app = workload
            .login
            .approle()
            .ok_or_else(|| invalid("not an approle workload"))?;
        rec.attestation(serde_json::json!({
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
            .map_err(|d| ServiceError::bad_request(format!("login refused: {d}")))?;
        let mut meta = BTreeMap::new();
        meta.insert("role_name".to_owned(), workload.name.clone());
        self.issue_token(
            req,
            rec,
            workload,
            Holder {
                issuer: "approle".into(),
                subject: escape_untrusted(&app.role_id, 128),
                not_after: req.now + chrono::Duration::seconds(secs(workload.lease.max_ttl)),
                auth_path: "auth/approle/login",
                meta,
            },
        )
    }

    /// Issues a token for `workload` after a successful login and answers
    /// Vault's `auth` block, once its record has committed.
    fn issue_token(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        workload: &Workload,
        holder: Holder,
    ) -> Result<Pending, ServiceError> {
        let issued = lease::issue_token(&self.hasher, workload, holder, req.inc.peer, req.now)
            .map_err(|e| match e {
                IssueError::NoTimeLeft => ServiceError::bad_request(
                    "error validating token: invalid expiration time (exp) claim: token is expired",
                ),
                IssueError::Random(e) => ServiceError::unavailable("random source", e),
            })?;
        rec.session(&issued.record);
        let auth = auth_block(
            &issued.record,
            issued.token.expose().to_owned(),
            issued.granted,
        );
        let mut env = Envelope::<()>::empty(&req.inc.request_id);
        env.auth = Some(auth);
        Ok(Pending::mutate(
            Mutation::InsertToken(issued.record),
            Answer::Reply(Reply::json(200, &env)),
            IfNotApplied::LoginNotRecorded,
        ))
    }
}
