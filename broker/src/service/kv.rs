//! KV reads and lists: `<mount>/data/<path>` and `<mount>/metadata/<path>`.
//!
//! Order matters and is the point of this module: authenticate, decide
//! (policy, conditions) — and only then touch the backend, so a refusal
//! looks the same whether or not the path exists. A read hands its value
//! out only after its lease row and audit row have committed; if the token
//! was revoked while the read was in flight, the lease insert does not
//! apply and the caller gets 403 instead of the value.
//!
//! Writes go where the mount keeps its secrets ([`WritePath`]). The
//! built-in store's write is a mutation committed in the same transaction
//! as the request's audit event. An external store (OpenBao/Vault, AWS)
//! cannot join that transaction, so its write is audited ahead: the
//! decision is committed first as an event of its own (status 202), and
//! only then is the store called — if that commit fails the caller gets 503
//! and nothing is sent upstream. The outcome is then the request's own
//! event, under the same request id with the operation suffixed `.result`
//! (`kv.write.result`). So an external write produces two linked events:
//! the decision and the outcome. A value in a request body never reaches
//! an event, a log line or an error.

use std::sync::Arc;

use leash_backend::{BackendError, SecretVersion, WriteOp, WritePath};
use leash_backend::{SecretBackend, SecretData};
use leash_domain::crypto::new_lease_suffix;
use leash_domain::{CommitUnit, Decision, LeaseRecord, Mutation, Refusal, WriteRule};
use leash_policy::{CanonicalPath, Capability, Grant, canonicalize};
use serde::Deserialize;

use super::{AuditCtx, Broker, Pending, Refused, Req, Session, expiry, secs};
use crate::wire::{Envelope, KvBody, KvData, KvMetadata, Reply, rfc3339};

/// The canonical resource for `mount` and the path segments after the
/// `data/` or `metadata/` infix: `secret/data/a/b` and `secret/metadata/a/b`
/// are both `secret/a/b`. Folders (lists) end in `/`.
fn resource(mount: &str, rest: &[String], folder: bool) -> Result<CanonicalPath, Refused> {
    let mut s = String::from(mount);
    for seg in rest {
        s.push('/');
        s.push_str(seg);
    }
    if folder {
        s.push('/');
    }
    canonicalize(&s).map_err(|e| Refused::bad_request(e.to_string()))
}

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
    /// The mount and the secret's path segments of the request.
    fn split<'r>(self, req: &'r Req<'_>) -> (&'r str, &'r [String]) {
        let skip = match self {
            Shape::V1 => 1,
            Shape::V2 => 2,
        };
        (
            req.segments[0].as_str(),
            req.segments.get(skip..).unwrap_or(&[]),
        )
    }

    /// The public part of a lease id: the path the client read.
    fn lease_path(self, mount: &str, rest: &[String]) -> String {
        match self {
            Shape::V1 => format!("{mount}/{}", rest.join("/")),
            Shape::V2 => format!("{mount}/data/{}", rest.join("/")),
        }
    }
}

/// `LIST`, or `GET` with `?list=true|1|…` (Go's boolean parsing).
fn wants_list(req: &Req<'_>) -> Result<bool, Refused> {
    match (req.method(), req.query("list").as_deref()) {
        ("LIST", _) => Ok(true),
        ("GET", Some("true" | "1" | "t" | "T" | "TRUE" | "True")) => Ok(true),
        ("GET", Some("false" | "0" | "f" | "F" | "FALSE" | "False") | None) => Ok(false),
        ("GET", Some(_)) => Err(Refused::bad_request("invalid value for list")),
        _ => Ok(false),
    }
}

fn backend_refusal(e: &BackendError) -> Refused {
    match e {
        BackendError::Unavailable(_) => Refused::unavailable("secret store", e),
        BackendError::BadRequest(m) => Refused::bad_request(m.clone()),
        BackendError::ReadOnly => Refused::status(405, "this mount is read-only through Leash"),
        BackendError::Unsupported(m) => Refused::status(405, *m),
        BackendError::NotApplied(why) => {
            let r = why.refusal(None);
            Refused::status(r.status, r.reason).reason_is(why.as_str())
        }
        BackendError::Upstream(_) => Refused::bad_gateway(e),
        BackendError::GrantMismatch | BackendError::Corrupt(_) => Refused::bad_gateway(e),
    }
}

fn metadata(v: &SecretVersion) -> KvMetadata {
    KvMetadata {
        created_time: rfc3339(v.created_time),
        custom_metadata: None,
        deletion_time: v.deletion_time.map(rfc3339).unwrap_or_default(),
        destroyed: v.destroyed,
        version: v.version,
    }
}

/// The body of a KV v2 write or patch. Not `Debug`: it holds the value.
#[derive(Default, Deserialize)]
struct WriteBody {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    options: Option<WriteOptions>,
}

#[derive(Default, Deserialize)]
struct WriteOptions {
    #[serde(default)]
    cas: Option<serde_json::Value>,
}

impl WriteBody {
    /// The data map and the check-and-set version, validated.
    fn parts(self) -> Result<(serde_json::Map<String, serde_json::Value>, Option<u64>), Refused> {
        let data = match self.data {
            None | Some(serde_json::Value::Null) => {
                return Err(Refused::bad_request("no data provided"));
            }
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(Refused::bad_request("data must be a JSON object")),
        };
        let cas = match self.options.and_then(|o| o.cas) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                Refused::bad_request("options.cas must be a non-negative integer")
            })?),
        };
        Ok((data, cas))
    }
}

/// RFC 7386 JSON merge patch: `null` removes a key, objects merge
/// recursively, anything else replaces.
fn merge_patch(
    target: &mut serde_json::Map<String, serde_json::Value>,
    patch: serde_json::Map<String, serde_json::Value>,
) {
    for (k, v) in patch {
        match v {
            serde_json::Value::Null => {
                target.remove(&k);
            }
            serde_json::Value::Object(p) => {
                let entry = target
                    .entry(k)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if !entry.is_object() {
                    *entry = serde_json::Value::Object(Default::default());
                }
                if let Some(t) = entry.as_object_mut() {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k, other);
            }
        }
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
    /// The policy decision for `cap` on this resource, now.
    fn decide(&self, cap: Capability, req: &Req<'_>) -> Result<Grant, Refused> {
        self.session
            .workload()?
            .decide(cap, &self.res, req.inc.peer, req.now)
            .map_err(|d| Refused::denied(d.to_string()))
    }
}

impl Broker {
    /// Resolves a KV request's target. `folder` for lists; other routes
    /// need a secret path (no trailing `/`).
    async fn kv_target<'r>(
        &self,
        req: &'r Req<'_>,
        ctx: &mut AuditCtx,
        shape: Shape,
        folder: bool,
    ) -> Result<Target<'r>, Refused> {
        let (mount, rest) = shape.split(req);
        let res = resource(mount, rest, folder)?;
        ctx.path(res.as_str());
        if !folder && (rest.is_empty() || req.trailing_slash) {
            return Err(Refused::bad_request(
                "invalid path: a secret path cannot end in `/`",
            ));
        }
        let session = self.authenticate(req, ctx).await?;
        let backend = self
            .backends
            .get(mount)
            .cloned()
            .ok_or_else(|| Refused::not_found("no such mount"))?;
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
        ctx: &mut AuditCtx,
        shape: Shape,
    ) -> Result<Pending, Refused> {
        if shape == Shape::V1 && wants_list(req).inspect_err(|_| ctx.op("kv.list"))? {
            return self.kv_list(req, ctx, shape).await;
        }
        match (req.method(), shape) {
            ("GET" | "HEAD", _) => self.kv_read(req, ctx, shape).await,
            ("POST" | "PUT", _) => self.kv_write(req, ctx, shape, false).await,
            ("PATCH", Shape::V2) => self.kv_write(req, ctx, shape, true).await,
            ("DELETE", _) => self.kv_delete(req, ctx, shape).await,
            _ => {
                ctx.op("kv.unknown");
                Err(Refused::status(405, "unsupported operation"))
            }
        }
    }

    /// A write (POST/PUT, `create`/`update`) or a merge patch (PATCH,
    /// `patch`), committed with its audit event.
    async fn kv_write(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        shape: Shape,
        patch: bool,
    ) -> Result<Pending, Refused> {
        ctx.op(if patch { "kv.patch" } else { "kv.write" });
        let t = self.kv_target(req, ctx, shape, false).await?;
        let (data, cas) = match shape {
            Shape::V2 => req.json::<WriteBody>()?.parts()?,
            // KV v1: the body is the secret itself.
            Shape::V1 => (
                req.json::<serde_json::Map<String, serde_json::Value>>()?,
                None,
            ),
        };
        let (grant, rule, cas, value) = if patch {
            let grant = t.decide(Capability::Patch, req)?;
            t.backend
                .writes(WriteOp::Write)
                .map_err(|e| backend_refusal(&e))?;
            let current = t
                .backend
                .read(&grant, None)
                .await
                .map_err(|e| backend_refusal(&e))?
                .ok_or_else(|| Refused::not_found("secret not found"))?;
            let Some(old) = current.data.as_ref() else {
                return Err(Refused::not_found("latest version deleted"));
            };
            let mut merged: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(old.expose_json()).map_err(|_| {
                    Refused::bad_gateway(&leash_backend::BackendError::Corrupt(
                        "stored value".into(),
                    ))
                })?;
            merge_patch(&mut merged, data);
            (
                grant,
                WriteRule::UpdateOnly,
                cas.or(Some(current.version)),
                merged,
            )
        } else {
            // `create` and `update` are separate capabilities; the store
            // enforces which applies in the statement that writes.
            match (
                t.decide(Capability::Create, req),
                t.decide(Capability::Update, req),
            ) {
                (Ok(g), Ok(_)) => (g, WriteRule::Any, cas, data),
                (Ok(g), Err(_)) => (g, WriteRule::CreateOnly, cas, data),
                (Err(_), Ok(g)) => (g, WriteRule::UpdateOnly, cas, data),
                (Err(d), Err(_)) => return Err(d),
            }
        };
        let value = SecretData::from_map(&value).map_err(|e| backend_refusal(&e))?;
        let path = t
            .backend
            .writes(WriteOp::Write)
            .map_err(|e| backend_refusal(&e))?;
        if path == WritePath::Upstream {
            self.write_ahead(ctx).await?;
            let w = t
                .backend
                .write(&grant, &value, rule, cas)
                .await
                .map_err(|e| backend_refusal(&e))?;
            return Ok(Pending::reply(match shape {
                Shape::V1 => Reply::Empty { status: 204 },
                Shape::V2 => Reply::json(
                    200,
                    &Envelope::data(
                        &req.inc.request_id,
                        KvMetadata {
                            created_time: rfc3339(w.created_time),
                            custom_metadata: None,
                            deletion_time: String::new(),
                            destroyed: false,
                            version: w.version,
                        },
                    ),
                ),
            }));
        }
        let mutation = t
            .backend
            .prepare_write(&grant, &value, rule, cas, req.now)
            .await
            .map_err(|e| backend_refusal(&e))?;
        let refusal = Refusal {
            status: 403,
            reason: "permission denied".into(),
        };
        Ok(match shape {
            // KV v1 answers a write with 204.
            Shape::V1 => Pending::mutate(mutation, Reply::Empty { status: 204 }, refusal),
            // Replaced by the version metadata once the store assigns it;
            // the status is what the audit event records.
            Shape::V2 => Pending::mutate(mutation, Reply::Empty { status: 200 }, refusal).written(),
        })
    }

    /// Soft-deletes the latest version (`delete`).
    async fn kv_delete(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        shape: Shape,
    ) -> Result<Pending, Refused> {
        ctx.op("kv.delete");
        let t = self.kv_target(req, ctx, shape, false).await?;
        let grant = t.decide(Capability::Delete, req)?;
        let path = t
            .backend
            .writes(WriteOp::Delete)
            .map_err(|e| backend_refusal(&e))?;
        if path == WritePath::Upstream {
            self.write_ahead(ctx).await?;
            t.backend
                .delete(&grant)
                .await
                .map_err(|e| backend_refusal(&e))?;
            return Ok(Pending::reply(Reply::Empty { status: 204 }));
        }
        let mutation = t
            .backend
            .prepare_delete(&grant, req.now)
            .map_err(|e| backend_refusal(&e))?;
        Ok(Pending::mutate(
            mutation,
            Reply::Empty { status: 204 },
            Refusal {
                status: 403,
                reason: "permission denied".into(),
            },
        ))
    }

    /// Commits the decision to write to an external store as an event of
    /// its own, before the store is called; the request's own event then
    /// records the outcome (operation `<op>.result`, same request id).
    /// No commit, no upstream write: the caller gets 503.
    async fn write_ahead(&self, ctx: &mut AuditCtx) -> Result<(), Refused> {
        let mut decision = ctx.event.clone();
        decision.decision = Decision::Allowed;
        decision.status = 202;
        decision.reason = "allowed; the write to the external store follows".into();
        self.committer
            .commit(CommitUnit::event(decision))
            .await
            .map_err(|e| Refused::unavailable("audit log", &e))?;
        ctx.event.operation = format!("{}.result", ctx.event.operation);
        Ok(())
    }

    async fn kv_read(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        shape: Shape,
    ) -> Result<Pending, Refused> {
        ctx.op("kv.read");
        let t = self.kv_target(req, ctx, shape, false).await?;
        let version = match req.query("version").filter(|_| shape == Shape::V2) {
            None => None,
            Some(v) if v.is_empty() || v == "0" => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                Refused::bad_request("invalid version: expected a positive integer")
            })?),
        };
        let grant = t.decide(Capability::Read, req)?;
        let workload = t.session.workload()?;
        let secret = t
            .backend
            .read(&grant, version)
            .await
            .map_err(|e| backend_refusal(&e))?
            .ok_or_else(|| Refused::not_found("secret not found"))?;
        let Some(data) = secret.data.as_ref() else {
            if shape == Shape::V1 {
                return Err(Refused::not_found("secret deleted"));
            }
            // A deleted or destroyed version: Vault's 404 with a full body.
            let env = Envelope::data(
                &req.inc.request_id,
                KvData {
                    data: None,
                    metadata: metadata(&secret),
                },
            );
            ctx.note("version deleted or destroyed");
            return Ok(Pending::reply(Reply::json(404, &env)));
        };

        let lease_path = shape.lease_path(t.mount, t.rest);
        let suffix = new_lease_suffix(req.now.timestamp_micros())
            .map_err(|e| Refused::unavailable("random source", &e))?;
        let lease_id = format!("{lease_path}/{suffix}");
        let hash = self.hasher.lease(&lease_id);
        let max = (req.now + chrono::Duration::seconds(secs(workload.lease.max_ttl)))
            .min(t.session.token.max_expires_at);
        let ttl = secs(workload.lease.ttl);
        let (expires_at, granted) = expiry(req.now, ttl, max);
        if granted <= 0 {
            return Err(Refused::denied("token at its max TTL"));
        }
        ctx.lease(&hash);
        let raw = data.as_raw().map_err(|e| backend_refusal(&e))?;
        let leased = |data| Envelope {
            request_id: &req.inc.request_id,
            lease_id: &lease_id,
            renewable: true,
            lease_duration: granted,
            data: Some(data),
            wrap_info: None,
            warnings: None,
            auth: None,
        };
        let reply = match shape {
            Shape::V1 => Reply::json(200, &leased(KvBody::V1(raw))),
            Shape::V2 => Reply::json(
                200,
                &leased(KvBody::V2(KvData {
                    data: Some(raw),
                    metadata: metadata(&secret),
                })),
            ),
        };
        let lease = LeaseRecord {
            hash,
            token_hash: t.session.token.hash,
            workload: workload.name.clone(),
            path: t.res.as_str().to_owned(),
            lease_path,
            issued_at: req.now,
            expires_at,
            max_expires_at: max,
            ttl_secs: ttl,
            renewable: true,
            last_renewal: None,
            revoked_at: None,
        };
        Ok(Pending::mutate(
            Mutation::InsertLease(lease),
            reply,
            Refusal {
                status: 403,
                reason: "permission denied".into(),
            },
        ))
    }

    /// `<mount>/metadata/<path>` (v2): a list or the version history.
    pub(crate) async fn kv_metadata(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        let list = wants_list(req).inspect_err(|_| ctx.op("kv.list"))?;
        if list {
            return self.kv_list(req, ctx, Shape::V2).await;
        }
        self.kv_metadata_read(req, ctx).await
    }

    /// The keys under a folder.
    async fn kv_list(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
        shape: Shape,
    ) -> Result<Pending, Refused> {
        ctx.op("kv.list");
        let t = self.kv_target(req, ctx, shape, true).await?;
        let grant = t.decide(Capability::List, req)?;
        let keys = t
            .backend
            .list(&grant)
            .await
            .map_err(|e| backend_refusal(&e))?;
        if keys.is_empty() {
            return Err(Refused::not_found("nothing to list"));
        }
        Ok(Pending::reply(Self::envelope(
            req,
            serde_json::json!({ "keys": keys }),
        )))
    }
}

impl Broker {
    /// `GET <mount>/metadata/<path>`: the version history, no values.
    async fn kv_metadata_read(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Pending, Refused> {
        ctx.op("kv.metadata");
        if req.method() != "GET" {
            return Err(Refused::status(405, "unsupported operation"));
        }
        let t = self.kv_target(req, ctx, Shape::V2, false).await?;
        let grant = t.decide(Capability::Read, req)?;
        let versions = t
            .backend
            .metadata(&grant)
            .await
            .map_err(|e| backend_refusal(&e))?
            .ok_or_else(|| Refused::not_found("secret not found"))?;
        let (Some(first), Some(last)) = (versions.first(), versions.last()) else {
            return Err(Refused::not_found("secret not found"));
        };
        let history: serde_json::Map<String, serde_json::Value> = versions
            .iter()
            .map(|v| {
                (
                    v.version.to_string(),
                    serde_json::json!({
                        "created_time": rfc3339(v.created_time),
                        "deletion_time": v.deletion_time.map(rfc3339).unwrap_or_default(),
                        "destroyed": v.destroyed,
                    }),
                )
            })
            .collect();
        // Named versions (AWS staging labels): stage → version number, as
        // Vault's string-to-string custom metadata.
        let stages: serde_json::Map<String, serde_json::Value> = versions
            .iter()
            .flat_map(|v| {
                v.stages
                    .iter()
                    .map(|s| (s.clone(), serde_json::Value::from(v.version.to_string())))
            })
            .collect();
        let custom = if stages.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(stages)
        };
        let data = serde_json::json!({
            "cas_required": false,
            "created_time": rfc3339(first.created_time),
            "current_version": last.version,
            "custom_metadata": custom,
            "delete_version_after": "0s",
            "max_versions": 0,
            "oldest_version": first.version,
            "updated_time": rfc3339(last.created_time),
            "versions": history,
        });
        Ok(Pending::reply(Self::envelope(req, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "x": 1})
            .as_object()
            .cloned()
            .unwrap();
        let p = json!({"a": "z", "c": {"f": null}, "x": null, "n": {"k": "v"}})
            .as_object()
            .cloned()
            .unwrap();
        merge_patch(&mut t, p);
        assert_eq!(
            serde_json::Value::Object(t),
            json!({"a": "z", "c": {"d": "e"}, "n": {"k": "v"}})
        );
    }
}
