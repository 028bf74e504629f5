//! `auth/approle/login`: a role id and a secret id, from inside the role's
//! bound networks. Lower assurance than a signed attestation, so opt-in per
//! workload. Every failure gets the same answer; the audit log records
//! which part failed.
//!
//! Must never happen: the secret id compared in variable time, stored,
//! logged or shown; a failure that tells an unknown role from a wrong
//! secret.

use std::collections::BTreeMap;

use leash_domain::audit::escape_untrusted;
use serde::Deserialize;

use super::{Attested, LoginFailure, LoginMethod, LoginNotes, LoginRequest};

/// The body. Not `Debug`: it holds the secret id.
#[derive(Default, Deserialize)]
pub struct AppRoleBody {
    #[serde(default)]
    role_id: Option<String>,
    #[serde(default)]
    secret_id: Option<String>,
}

/// AppRole login.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppRoleLogin;

impl LoginMethod for AppRoleLogin {
    type Body = AppRoleBody;
    const MOUNT: &'static str = "approle";
    const OPERATION: &'static str = "auth.approle.login";
    const AUTH_PATH: &'static str = "auth/approle/login";

    fn attest<'p>(
        &self,
        body: AppRoleBody,
        req: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<Attested<'p>, LoginFailure> {
        let role_id = body
            .role_id
            .filter(|r| !r.is_empty())
            .ok_or_else(|| LoginFailure::new("missing role_id"))?;
        let secret_id = body
            .secret_id
            .filter(|r| !r.is_empty())
            .ok_or_else(|| LoginFailure::new("missing secret_id"))?;
        let invalid = |why: &str| LoginFailure::because("invalid role or secret ID", why);
        let workload = req
            .policies
            .workload_by_role_id(&role_id)
            .ok_or_else(|| invalid("unknown role_id"))?;
        notes.workload = Some(workload.name.clone());
        let app = workload
            .login
            .approle()
            .ok_or_else(|| invalid("not an approle workload"))?;
        notes.attestation = Some(serde_json::json!({
            "method": "approle",
            "role_id": escape_untrusted(&app.role_id, 128),
            "source": req.peer.to_string(),
        }));
        if !app.secret_matches(&secret_id) {
            return Err(invalid("secret_id does not match"));
        }
        if !app.allows_source(req.peer) {
            return Err(invalid("source address outside the role's bound_cidrs"));
        }
        let mut meta = BTreeMap::new();
        meta.insert("role_name".to_owned(), workload.name.clone());
        Ok(Attested {
            workload,
            issuer: "approle".into(),
            subject: escape_untrusted(&app.role_id, 128),
            not_after: None,
            meta,
        })
    }
}
