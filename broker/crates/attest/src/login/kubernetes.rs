//! `auth/kubernetes/login`: a projected service-account token — a JWT from
//! the cluster's issuer, checked offline against its keys like any JWT
//! login (no TokenReview: pod deletion is bounded by the token's own short
//! expiry) — answered with Vault's Kubernetes metadata.
//!
//! Must never happen: anything a JWT login would not also refuse being
//! accepted here; a claim value in the metadata unescaped.

use std::collections::BTreeMap;

use leash_domain::audit::escape_untrusted;

use super::jwt::{JwtBody, JwtLogin, attested};
use super::{Attested, LoginFailure, LoginMethod, LoginNotes, LoginRequest};

/// Kubernetes service-account login, through the JWT issuers.
#[derive(Debug, Clone)]
pub struct KubernetesLogin {
    jwt: JwtLogin,
}

impl KubernetesLogin {
    /// Verifies service-account tokens like `jwt` verifies any JWT.
    pub fn new(jwt: JwtLogin) -> Self {
        Self { jwt }
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

impl LoginMethod for KubernetesLogin {
    type Body = JwtBody;
    const MOUNT: &'static str = "kubernetes";
    const OPERATION: &'static str = "auth.kubernetes.login";
    const AUTH_PATH: &'static str = "auth/kubernetes/login";

    fn attest<'p>(
        &self,
        body: JwtBody,
        req: LoginRequest<'p>,
        notes: &mut LoginNotes,
    ) -> Result<Attested<'p>, LoginFailure> {
        let (workload, verified) = self.jwt.verify(body, req, notes)?;
        let mut a = attested(workload, &verified);
        kubernetes_meta(&verified.claims, &mut a.meta);
        Ok(a)
    }
}
