//! KV routes: `<mount>/data/<path>` and `<mount>/metadata/<path>` (v2),
//! `<mount>/<path>` (v1) — reads and lists ([`read`]), writes, patches and
//! deletes ([`write`]).
//!
//! Order matters and is the point of this module: authenticate, decide
//! (policy, conditions) — and only then touch the backend, so a refusal
//! looks the same whether or not the path exists. A read hands its value
//! out only after its lease row and audit row have committed; if the token
//! was revoked while the read was in flight, the lease insert does not
//! apply and the caller gets 403 instead of the value.

mod read;
mod write;

use std::sync::Arc;

use leash_backend::SecretBackend;
use leash_policy::{CanonicalPath, Capability, Grant};

use super::{Broker, Denied, Pending, Req, ServiceError};
use crate::attest::Session;
use crate::audit::Record;

/// How a mount speaks KV to Vault clients: v2 (`data/` and `metadata/`
/// infixes, versions, check-and-set) or v1 (flat data at the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// KV version 1.
    V1,
    /// KV version 2.
    V2,
}

impl Shape {
    /// How many leading segments are not the secret's path: the mount, and
    /// for v2 the `data/` or `metadata/` infix.
    fn skip(self) -> usize {
        match self {
            Shape::V1 => 1,
            Shape::V2 => 2,
        }
    }

    /// The mount and the secret's path segments of the request.
    fn split<'r>(self, req: &'r Req<'_>) -> (&'r str, &'r [String]) {
        let segments = req.segments();
        (req.path.first(), segments.get(self.skip()..).unwrap_or(&[]))
    }

    /// The public part of a lease id: the path the client read.
    fn lease_path(self, mount: &str, rest: &[String]) -> String {
        match self {
            Shape::V1 => format!("{mount}/{}", rest.join("/")),
            Shape::V2 => format!("{mount}/data/{}", rest.join("/")),
        }
    }

    /// The canonical resource of the request's (already canonical) path:
    /// `secret/data/a/b` and `secret/metadata/a/b` are both `secret/a/b`.
    /// Folders (lists) end in `/`.
    fn resource(self, req: &Req<'_>, folder: bool) -> Result<CanonicalPath, ServiceError> {
        let path = match self {
            Shape::V1 => req.path.clone(),
            Shape::V2 => req
                .path
                .remove_segment(1)
                .ok_or_else(|| ServiceError::bad_request("invalid path"))?,
        };
        Ok(if path.trailing_slash() == folder {
            path
        } else {
            path.with_trailing_slash(folder)
        })
    }
}

/// `LIST`, or `GET` with `?list=true|1|…` (Go's boolean parsing).
fn wants_list(req: &Req<'_>) -> Result<bool, ServiceError> {
    match (req.method(), req.query("list").as_deref()) {
        ("LIST", _) => Ok(true),
        ("GET", Some("true" | "1" | "t" | "T" | "TRUE" | "True")) => Ok(true),
        ("GET", Some("false" | "0" | "f" | "F" | "FALSE" | "False") | None) => Ok(false),
        ("GET", Some(_)) => Err(ServiceError::bad_request("invalid value for list")),
        _ => Ok(false),
    }
}

/// What every KV route establishes before anything else: the canonical
/// resource (what is matched and logged), the caller's live session, and
/// the mount's backend. Only then may a route ask for a [`Grant`].
struct Target<'r> {
    mount: &'r str,
    rest: &'r [String],
    res: CanonicalPath,
    session: Session,
    backend: Arc<dyn SecretBackend>,
}

impl Target<'_> {
    /// The policy decision for `cap` on this resource (the conditions
    /// held when the session was resolved, for this request).
    fn decide(&self, cap: Capability) -> Result<Grant, ServiceError> {
        self.session
            .admitted
            .decide(cap, &self.res)
            .map_err(|d| Denied::Policy(d).into())
    }
}

impl Broker {
    /// Resolves a KV request's target. `folder` for lists; other routes
    /// need a secret path (no trailing `/`).
    async fn kv_target<'r>(
        &self,
        req: &'r Req<'_>,
        rec: &mut Record,
        shape: Shape,
        folder: bool,
    ) -> Result<Target<'r>, ServiceError> {
        let (mount, rest) = shape.split(req);
        let res = shape.resource(req, folder)?;
        rec.path(res.as_str());
        if !folder && (rest.is_empty() || req.trailing_slash()) {
            return Err(ServiceError::bad_request(
                "invalid path: a secret path cannot end in `/`",
            ));
        }
        let session = self.session(req, rec).await?;
        let backend = self
            .backends
            .get(mount)
            .cloned()
            .ok_or(ServiceError::NotFound("no such mount"))?;
        Ok(Target {
            mount,
            rest,
            res,
            session,
            backend,
        })
    }

    /// `<mount>/data/<path>` (v2) or `<mount>/<path>` (v1), by method.
    pub(crate) async fn kv_data(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        shape: Shape,
    ) -> Result<Pending, ServiceError> {
        if shape == Shape::V1 && wants_list(req).inspect_err(|_| rec.op("kv.list"))? {
            return self.kv_list(req, rec, shape).await;
        }
        match (req.method(), shape) {
            ("GET" | "HEAD", _) => self.kv_read(req, rec, shape).await,
            ("POST" | "PUT", _) => self.kv_write(req, rec, shape, false).await,
            ("PATCH", Shape::V2) => self.kv_write(req, rec, shape, true).await,
            ("DELETE", _) => self.kv_delete(req, rec, shape).await,
            _ => {
                rec.op("kv.unknown");
                Err(ServiceError::MethodNotAllowed("unsupported operation"))
            }
        }
    }

    /// `<mount>/metadata/<path>` (v2): a list or the version history.
    pub(crate) async fn kv_metadata(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        let list = wants_list(req).inspect_err(|_| rec.op("kv.list"))?;
        if list {
            return self.kv_list(req, rec, Shape::V2).await;
        }
        self.kv_metadata_read(req, rec).await
    }
}
