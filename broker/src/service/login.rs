//! `auth/<mount>/login`: a workload proves who it is with one of the login
//! methods (`leash_attest::login`, one file each) and receives a broker
//! token. The methods are registered in [`LoginMethods::builtin`], one line
//! each; the Vault router serves `auth/<mount>/login` for every registered
//! mount.
//!
//! The token is random (256 bits), returned once, and stored only as a keyed
//! digest. It never outlives what the login proved (a JWT's `exp`), nor the
//! workload's max TTL. Login failures are 400 (Vault's semantics); a token
//! header sent with a login is ignored.

use leash_attest::Issuers;
use leash_attest::login::{
    AppRoleLogin, Attested, JwtLogin, KubernetesLogin, LoginFailure, LoginMethod, LoginNotes,
    LoginRequest,
};
use leash_domain::{Mutation, TokenRecord};

use super::{Answer, Broker, IfNotApplied, Pending, Req, ServiceError};
use crate::audit::Record;
use crate::lease::{self, Holder, IssueError, secs};
use crate::wire::{AuthBlock, Envelope, Reply};

/// A login method as the registry holds it: its body type erased.
pub(crate) trait Login: Send + Sync {
    /// The auth mount it serves.
    fn mount(&self) -> &'static str;
    /// The operation its events record.
    fn operation(&self) -> &'static str;
    /// The auth path recorded on its tokens.
    fn auth_path(&self) -> &'static str;
    /// Parses the body and checks the proof.
    fn run<'p>(
        &self,
        req: &Req<'_>,
        login: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<Attested<'p>, ServiceError>;
}

impl<M: LoginMethod> Login for M {
    fn mount(&self) -> &'static str {
        M::MOUNT
    }

    fn operation(&self) -> &'static str {
        M::OPERATION
    }

    fn auth_path(&self) -> &'static str {
        M::AUTH_PATH
    }

    fn run<'p>(
        &self,
        req: &Req<'_>,
        login: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<Attested<'p>, ServiceError> {
        let body: M::Body = req.json()?;
        Ok(self.attest(body, login, notes)?)
    }
}

impl From<LoginFailure> for ServiceError {
    fn from(f: LoginFailure) -> Self {
        ServiceError::BadRequest {
            shown: f.shown,
            reason: f.reason,
        }
    }
}

/// The login methods this broker serves, by auth mount.
pub struct LoginMethods {
    list: Vec<Box<dyn Login>>,
}

impl std::fmt::Debug for LoginMethods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|m| m.mount()))
            .finish()
    }
}

impl LoginMethods {
    /// The methods Leash ships, one line each.
    pub fn builtin(issuers: &Issuers) -> Self {
        let jwt = JwtLogin::new(issuers.clone());
        Self {
            list: vec![
                Box::new(KubernetesLogin::new(jwt.clone())),
                Box::new(jwt),
                Box::new(AppRoleLogin),
            ],
        }
    }

    /// The method serving `auth/<mount>/login`.
    pub(crate) fn get(&self, mount: &str) -> Option<&dyn Login> {
        self.list
            .iter()
            .find(|m| m.mount() == mount)
            .map(|m| m.as_ref())
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

impl Broker {
    /// `auth/<mount>/login` through `method`: the proof checked, the
    /// workload's conditions checked, a token issued.
    pub(crate) async fn login(
        &self,
        method: &dyn Login,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op(method.operation());
        req.require_method(&["POST", "PUT"])?;
        let policies = self.policies.current();
        let mut notes = LoginNotes::default();
        let attested = method.run(
            req,
            LoginRequest {
                policies: &policies,
                peer: req.inc.peer,
                now: req.now,
            },
            &mut notes,
        );
        if let Some(w) = &notes.workload {
            rec.workload(w);
        }
        if let Some(a) = notes.attestation {
            rec.attestation(a);
        }
        let a = attested?;
        self.limits.login_of(
            &a.workload.name,
            &a.issuer,
            &a.subject,
            std::time::Instant::now(),
        )?;
        a.workload
            .check_conditions(req.inc.peer, req.now)
            .map_err(|d| ServiceError::bad_request(format!("login refused: {d}")))?;
        let not_after = a
            .not_after
            .unwrap_or_else(|| req.now + chrono::Duration::seconds(secs(a.workload.lease.max_ttl)));
        let holder = Holder {
            issuer: a.issuer,
            subject: a.subject,
            not_after,
            auth_path: method.auth_path(),
            meta: a.meta,
        };
        let issued = lease::issue_token(&self.hasher, a.workload, holder, req.inc.peer, req.now)
            .map_err(|e| match e {
                IssueError::NoTimeLeft => ServiceError::bad_request(
                    "error validating token: invalid expiration time (exp) claim: token is expired",
                ),
                IssueError::Random(e) => ServiceError::unavailable("random source", e),
            })?;
        rec.session(&std::sync::Arc::new(issued.record.clone()));
        let mut env = Envelope::<()>::empty(&req.inc.request_id);
        env.auth = Some(auth_block(
            &issued.record,
            issued.token.expose().to_owned(),
            issued.granted,
        ));
        Ok(Pending::mutate(
            Mutation::InsertToken(issued.record),
            Answer::Reply(Reply::json(200, &env)),
            IfNotApplied::LoginNotRecorded,
        ))
    }
}
