//! The Vault router: which service handler serves a request, from its path
//! as Vault lays paths out (by mount, not by fixed patterns), plus the
//! checks Vault makes before any route (token headers, response wrapping,
//! namespaces, a path cleaned of empty segments).
//!
//! Owns: the mapping from Vault paths to operations.
//! Must never happen: a route chosen from anything but the canonical path
//! (decoded once, by the policy crate); a request that reaches no handler
//! without being audited.

use leash_domain::audit::escape_untrusted;
use leash_policy::{PathError, canonicalize};

use super::admin;
use crate::audit::{MAX_LOGGED, Record};
use crate::service::{
    Broker, Denied, Incoming, Pending, Req, STATUS_ENDPOINTS, ServiceError, Shape,
};
use crate::wire::Reply;

/// The unaudited status endpoint `inc` asks for, if any.
pub(crate) fn status_endpoint(inc: &Incoming) -> Option<&'static str> {
    let which = inc.raw_path.as_deref()?.trim_end_matches('/');
    STATUS_ENDPOINTS.iter().copied().find(|e| *e == which)
}

/// Vault's answer to a path with empty segments: a redirect to the cleaned
/// path, which is then checked like any other (node-vault's `auth//login`).
fn cleaned(raw: &str, query: Option<&str>) -> String {
    let mut cleaned = String::from("/v1/");
    cleaned.push_str(
        &raw.split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/"),
    );
    if raw.ends_with('/') {
        cleaned.push('/');
    }
    if let Some(q) = query {
        cleaned.push('?');
        cleaned.push_str(q);
    }
    cleaned
}

/// Whether `segments` name a login (`auth/<mount>/login` of a served
/// method).
fn is_login(b: &Broker, segments: &[String]) -> bool {
    matches!(segments, [auth, mount, login]
        if auth == "auth" && login == "login" && b.logins.get(mount).is_some())
}

/// Routes one request to its handler.
pub(crate) async fn route(
    b: &Broker,
    inc: &Incoming,
    rec: &mut Record,
) -> Result<Pending, ServiceError> {
    let Some(raw) = inc.raw_path.as_deref() else {
        return Err(ServiceError::NotFound("path outside /v1/"));
    };
    if let Some(problem) = inc.token_problem {
        return Err(ServiceError::bad_request(problem));
    }
    if inc.wants_wrapping {
        return Err(ServiceError::bad_request(
            "response wrapping (X-Vault-Wrap-TTL) is not supported by Leash",
        ));
    }
    if let Some(ns) = inc.namespace.as_deref()
        && !matches!(ns.trim_matches('/'), "" | "root")
    {
        return Err(ServiceError::NamespaceNotFound);
    }
    let path = canonicalize(raw);
    // Every routed request draws on its source's bucket before any work:
    // a login on the logins', anything else (a path that does not
    // canonicalize too) on the requests'.
    let now = std::time::Instant::now();
    match &path {
        Ok(p) if is_login(b, p.segments()) => b.limits.login_from(inc.peer, now)?,
        _ => b.limits.request_from(inc.peer, now)?,
    }
    let path = match path {
        Ok(p) => p,
        Err(PathError::EmptySegment { .. }) => {
            rec.op("redirect");
            rec.note("redirect to the path without empty segments");
            return Ok(Pending::reply(Reply::Redirect {
                location: cleaned(raw, inc.query.as_deref()),
            }));
        }
        Err(e) => return Err(ServiceError::bad_request(e.to_string())),
    };
    rec.path(&escape_untrusted(path.as_str(), MAX_LOGGED));
    let req = Req {
        inc,
        path: &path,
        now: rec.now(),
    };
    let seg: Vec<&str> = path.segments().iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["auth", mount, "login"] if let Some(m) = b.logins.get(mount) => {
            b.login(m, &req, rec).await
        }
        ["sys", "internal", "ui", "mounts", ..] => b.mounts_preflight(&req, rec).await,
        ["auth", "token", "lookup-self"] => b.token_lookup_self(&req, rec).await,
        ["auth", "token", "renew-self"] => b.token_renew_self(&req, rec).await,
        ["auth", "token", "revoke-self"] => b.token_revoke_self(&req, rec).await,
        ["sys", "leases", "lookup", ..] => b.lease_lookup(&req, rec).await,
        ["sys", "leases", "renew", ..] => b.lease_renew(&req, rec).await,
        ["sys", "leases", "revoke", ..] => b.lease_revoke(&req, rec, 3).await,
        ["sys", "leases", "revoke-prefix", ..] => b.lease_revoke_prefix(&req, rec, 3).await,
        // node-vault's revokePrefix still uses the pre-0.7 Vault path.
        ["sys", "revoke-prefix", ..] => b.lease_revoke_prefix(&req, rec, 2).await,
        ["leash", ..] => admin::route(b, &req, rec).await,
        [mount, "data", ..] if b.kv_version(mount) == Some(2) => {
            b.kv_data(&req, rec, Shape::V2).await
        }
        [mount, "metadata", ..] if b.kv_version(mount) == Some(2) => b.kv_metadata(&req, rec).await,
        [mount, ..] if b.kv_version(mount) == Some(1) => b.kv_data(&req, rec, Shape::V1).await,
        ["auth", ..] => {
            // An auth path Leash does not serve: Vault answers 403 to a
            // caller without a root token, and so does Leash (it says
            // nothing about which auth methods exist).
            rec.op("auth.unknown");
            Err(Denied::NoSuchAuthMethod.into())
        }
        _ => {
            rec.op("unknown");
            Err(ServiceError::NoRoute(escape_untrusted(path.as_str(), 128)))
        }
    }
}
