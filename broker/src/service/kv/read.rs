//! KV reads: a leased read of a secret, a folder listing, and the version
//! history (`metadata/`, no values).
//!
//! Must never happen: the backend consulted before the policy decided; a
//! value released before its lease row and audit row committed (a read's
//! answer is a [`Pending`] whose mutation is the lease).

use leash_backend::SecretVersion;
use leash_domain::Mutation;
use leash_policy::Capability;

use super::Shape;
use crate::audit::Record;
use crate::lease::{self, IssueError};
use crate::service::{Answer, Broker, Denied, IfNotApplied, Pending, Req, ServiceError};
use crate::wire::{Envelope, KvBody, KvData, KvMetadata, Reply, rfc3339};

/// The metadata of a stored version.
fn metadata(v: &SecretVersion) -> KvMetadata {
    KvMetadata {
        created_time: rfc3339(v.created_time),
        custom_metadata: None,
        deletion_time: v.deletion_time.map(rfc3339).unwrap_or_default(),
        destroyed: v.destroyed,
        version: v.version,
    }
}

impl Broker {
    /// A leased read (`read`).
    pub(super) async fn kv_read(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        shape: Shape,
    ) -> Result<Pending, ServiceError> {
        rec.op("kv.read");
        let t = self.kv_target(req, rec, shape, false).await?;
        let version = match req.query("version").filter(|_| shape == Shape::V2) {
            None => None,
            Some(v) if v.is_empty() || v == "0" => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                ServiceError::bad_request("invalid version: expected a positive integer")
            })?),
        };
        let grant = t.decide(Capability::Read)?;
        let workload = t.session.workload();
        let secret = t
            .backend
            .read(&grant, version)
            .await?
            .ok_or(ServiceError::NotFound("secret not found"))?;
        let Some(data) = secret.data.as_ref() else {
            if shape == Shape::V1 {
                return Err(ServiceError::NotFound("secret deleted"));
            }
            // A deleted or destroyed version: Vault's 404 with a full body.
            let env = Envelope::data(
                &req.inc.request_id,
                KvData {
                    data: None,
                    metadata: metadata(&secret),
                },
            );
            rec.note("version deleted or destroyed");
            return Ok(Pending::reply(Reply::json(404, &env)));
        };

        let issued = lease::issue_lease(
            &self.hasher,
            &t.session.token,
            workload,
            &t.res,
            shape.lease_path(t.mount, t.rest),
            req.now,
        )
        .map_err(|e| match e {
            IssueError::NoTimeLeft => ServiceError::from(Denied::TokenAtMaxTtl),
            IssueError::Random(e) => ServiceError::unavailable("random source", e),
        })?;
        rec.lease(&issued.record.hash);
        let raw = data.as_raw()?;
        let leased = |data| Envelope {
            request_id: &req.inc.request_id,
            lease_id: &issued.id,
            renewable: true,
            lease_duration: issued.granted,
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
        Ok(Pending::mutate(
            Mutation::InsertLease(issued.record),
            Answer::Reply(reply),
            IfNotApplied::Denied,
        ))
    }

    /// The keys under a folder (`list`).
    pub(super) async fn kv_list(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
        shape: Shape,
    ) -> Result<Pending, ServiceError> {
        rec.op("kv.list");
        let t = self.kv_target(req, rec, shape, true).await?;
        let grant = t.decide(Capability::List)?;
        let keys = t.backend.list(&grant).await?;
        if keys.is_empty() {
            return Err(ServiceError::NotFound("nothing to list"));
        }
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, serde_json::json!({ "keys": keys })),
        )))
    }

    /// `GET <mount>/metadata/<path>`: the version history, no values.
    pub(super) async fn kv_metadata_read(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("kv.metadata");
        if req.method() != "GET" {
            return Err(ServiceError::MethodNotAllowed("unsupported operation"));
        }
        let t = self.kv_target(req, rec, Shape::V2, false).await?;
        let grant = t.decide(Capability::Read)?;
        let versions = t
            .backend
            .metadata(&grant)
            .await?
            .ok_or(ServiceError::NotFound("secret not found"))?;
        let (Some(first), Some(last)) = (versions.first(), versions.last()) else {
            return Err(ServiceError::NotFound("secret not found"));
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
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, data),
        )))
    }
}
