//! KV writes: create/update (POST/PUT), merge patch (PATCH, v2) and soft
//! delete (DELETE), wherever the mount keeps its secrets
//! ([`WritePath`]).
//!
//! The built-in store's write is a mutation committed in the same
//! transaction as the request's audit event. An external store
//! (OpenBao/Vault, AWS) cannot join that transaction, so its write is
//! audited ahead: the decision is committed first as an event of its own
//! (status 202), and only then is the store called — if that commit fails
//! the caller gets 503 and nothing is sent upstream. The outcome is then the
//! request's own event, under the same request id with the operation
//! suffixed `.result` (`kv.write.result`). So an external write produces
//! two linked events: the decision and the outcome.
//! Must never happen: a value from a request body in an event, a log line
//! or an error; an upstream write without its decision committed first.

use leash_backend::{BackendError, SecretData, WriteOp, WritePath};
use leash_domain::{CommitUnit, Decision, WriteRule};
use leash_policy::Capability;
use serde::Deserialize;

use super::Shape;
use crate::audit::Record;
use crate::service::{Answer, Broker, IfNotApplied, Pending, Req, ServiceError};
use crate::wire::{Envelope, KvMetadata, Reply};

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

type Map = serde_json::Map<String, serde_json::Value>;

impl WriteBody {
    /// The data map and the check-and-set version, validated.
    fn parts(self) -> Result<(Map, Option<u64>), ServiceError> {
        let data = match self.data {
            None | Some(serde_json::Value::Null) => {
                return Err(ServiceError::bad_request("no data provided"));
            }
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(ServiceError::bad_request("data must be a JSON object")),
        };
        let cas = match self.options.and_then(|o| o.cas) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ServiceError::bad_request("options.cas must be a non-negative integer")
            })?),
        };
        Ok((data, cas))
    }
}

/// RFC 7386 JSON merge patch: `null` removes a key, objects merge
/// recursively, anything else replaces.
fn merge_patch(target: &mut Map, patch: Map) {
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

impl Broker {
    /// A write (POST/PUT, `create`/`update`) or a merge patch (PATCH,
    /// `patch`), committed with its audit event.
    pub(super) async fn kv_write(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        shape: Shape,
        patch: bool,
    ) -> Result<Pending, ServiceError> {
        rec.op(if patch { "kv.patch" } else { "kv.write" });
        let t = self.kv_target(req, rec, shape, false).await?;
        let (data, cas) = match shape {
            Shape::V2 => req.json::<WriteBody>()?.parts()?,
            // KV v1: the body is the secret itself.
            Shape::V1 => (req.json::<Map>()?, None),
        };
        let (grant, rule, cas, value) = if patch {
            let grant = t.decide(Capability::Patch)?;
            t.backend.writes(WriteOp::Write)?;
            let current = t
                .backend
                .read(&grant, None)
                .await?
                .ok_or(ServiceError::NotFound("secret not found"))?;
            let Some(old) = current.data.as_ref() else {
                return Err(ServiceError::NotFound("latest version deleted"));
            };
            let mut merged: Map = serde_json::from_str(old.expose_json()).map_err(|_| {
                ServiceError::BadGateway(Box::new(BackendError::Corrupt("stored value".into())))
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
            match (t.decide(Capability::Create), t.decide(Capability::Update)) {
                (Ok(g), Ok(_)) => (g, WriteRule::Any, cas, data),
                (Ok(g), Err(_)) => (g, WriteRule::CreateOnly, cas, data),
                (Err(_), Ok(g)) => (g, WriteRule::UpdateOnly, cas, data),
                (Err(d), Err(_)) => return Err(d),
            }
        };
        let value = SecretData::from_map(&value)?;
        if t.backend.writes(WriteOp::Write)? == WritePath::Upstream {
            self.write_ahead(rec).await?;
            let w = t.backend.write(&grant, &value, rule, cas).await?;
            return Ok(Pending::reply(match shape {
                Shape::V1 => Reply::Empty { status: 204 },
                Shape::V2 => Reply::json(
                    200,
                    &Envelope::data(
                        &req.inc.request_id,
                        KvMetadata::written(w.created_time.unwrap_or(req.now), w.version),
                    ),
                ),
            }));
        }
        let mutation = t
            .backend
            .prepare_write(&grant, &value, rule, cas, req.now)
            .await?;
        let answer = match shape {
            // KV v1 answers a write with 204.
            Shape::V1 => Answer::Reply(Reply::Empty { status: 204 }),
            // The version metadata, once the store assigns the version.
            Shape::V2 => Answer::Written,
        };
        Ok(Pending::mutate(mutation, answer, IfNotApplied::Denied))
    }

    /// Soft-deletes the latest version (`delete`).
    pub(super) async fn kv_delete(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        shape: Shape,
    ) -> Result<Pending, ServiceError> {
        rec.op("kv.delete");
        let t = self.kv_target(req, rec, shape, false).await?;
        let grant = t.decide(Capability::Delete)?;
        if t.backend.writes(WriteOp::Delete)? == WritePath::Upstream {
            self.write_ahead(rec).await?;
            t.backend.delete(&grant).await?;
            return Ok(Pending::reply(Reply::Empty { status: 204 }));
        }
        let mutation = t.backend.prepare_delete(&grant, req.now)?;
        Ok(Pending::mutate(
            mutation,
            Answer::Reply(Reply::Empty { status: 204 }),
            IfNotApplied::Denied,
        ))
    }

    /// Commits the decision to write to an external store as an event of
    /// its own, before the store is called; the request's own event then
    /// records the outcome (operation `<op>.result`, same request id).
    /// No commit, no upstream write: the caller gets 503.
    async fn write_ahead(&self, rec: &mut Record) -> Result<(), ServiceError> {
        let mut decision = rec.event().clone();
        decision.decision = Decision::Allowed;
        decision.status = 202;
        decision.reason = "allowed; the write to the external store follows".into();
        self.committer
            .commit(CommitUnit::event(decision))
            .await
            .map_err(|e| ServiceError::unavailable("audit log", e))?;
        rec.as_result();
        Ok(())
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
