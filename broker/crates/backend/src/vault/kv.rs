//! The KV calls: reads, version history, writes and deletes on an upstream
//! KV v1 or v2 mount, and the mapping of their answers onto Leash's types
//! (a missing secret is `None`, a deleted or destroyed v2 version has no
//! data). Create-only and update-only writes ride on KV v2's check-and-set
//! (atomic); KV v1 has none, so they are checked by reading first (not
//! atomic). KV v1 keeps one value and no history: it is "version 1".
//!
//! Must never happen: a secret value anywhere but in [`SecretData`] (every
//! string of an upstream answer's copy is scrubbed before it is dropped);
//! an empty, `.` or `..` path segment sent upstream; an answer of the wrong
//! kind taken for a secret.

use chrono::{DateTime, Utc};
use leash_domain::{NotApplied, WriteRule};
use serde_json::Value;
use vaultrs::api::kv2::responses::{ReadSecretResponse, SecretVersionMetadata};
use zeroize::Zeroize;

use super::client::{Inner, Op, Reply};
use super::fault::{Fault, unexpected_reply};
use crate::{BackendError, SecretData, SecretVersion, VersionInfo, Written};

impl Inner {
    pub(super) async fn read_v2(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        let version = version.filter(|v| *v > 0);
        match self.run(Op::Kv2Read { path, version }).await {
            Ok(Reply::Kv2(r)) => {
                let ReadSecretResponse { data, metadata } = r;
                let meta = version_fields(&metadata);
                let data = match data {
                    Value::Null => None,
                    other => Some(secret_data(other).map_err(Fault::into_backend)?),
                };
                let (created_time, deletion_time) = meta.map_err(Fault::into_backend)?;
                let deleted = deletion_time.is_some() || metadata.destroyed;
                Ok(Some(SecretVersion {
                    data: if deleted { None } else { data },
                    version: metadata.version,
                    created_time,
                    deletion_time,
                    destroyed: metadata.destroyed,
                }))
            }
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::NotFound) => Ok(None),
            Err(Fault::Deleted(metadata)) => {
                let (created_time, deletion_time) =
                    version_fields(&metadata).map_err(Fault::into_backend)?;
                Ok(Some(SecretVersion {
                    data: None,
                    version: metadata.version,
                    created_time,
                    deletion_time,
                    destroyed: metadata.destroyed,
                }))
            }
            Err(f) => Err(f.into_backend()),
        }
    }

    pub(super) async fn read_v1(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        // KV v1 keeps one value and no history: only "version 1" exists.
        if version.is_some_and(|v| v > 1) {
            return Ok(None);
        }
        match self.run(Op::Kv1Read(path)).await {
            Ok(Reply::Kv1(value)) => Ok(Some(SecretVersion {
                data: Some(secret_data(value).map_err(Fault::into_backend)?),
                version: 1,
                created_time: DateTime::UNIX_EPOCH,
                deletion_time: None,
                destroyed: false,
            })),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::NotFound) => Ok(None),
            Err(f) => Err(f.into_backend()),
        }
    }

    pub(super) async fn metadata_v2(
        &self,
        path: &str,
    ) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        match self.run(Op::Kv2Metadata(path)).await {
            Ok(Reply::Metadata(m)) => {
                let mut out = Vec::with_capacity(m.versions.len());
                for (number, v) in &m.versions {
                    let version = number.parse::<u64>().map_err(|_| {
                        BackendError::Upstream("the upstream version list is malformed".to_owned())
                    })?;
                    out.push(VersionInfo {
                        version,
                        created_time: parse_time(&v.created_time).map_err(Fault::into_backend)?,
                        deletion_time: parse_deletion(&v.deletion_time)
                            .map_err(Fault::into_backend)?,
                        destroyed: v.destroyed,
                        stages: Vec::new(),
                    });
                }
                out.sort_by_key(|v| v.version);
                Ok((!out.is_empty()).then_some(out))
            }
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::NotFound) => Ok(None),
            Err(f) => Err(f.into_backend()),
        }
    }

    /// The current version of a KV v2 secret (0 when it has none).
    async fn current_version(&self, path: &str) -> Result<u64, BackendError> {
        match self.run(Op::Kv2Metadata(path)).await {
            Ok(Reply::Metadata(m)) => Ok(m.current_version),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::NotFound) => Ok(0),
            Err(f) => Err(f.into_backend()),
        }
    }

    pub(super) async fn write_v2(
        &self,
        path: &str,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        // Create-only and update-only ride on check-and-set, so the store
        // enforces them atomically.
        let cas = match (rule, cas) {
            (WriteRule::Any, cas) => cas,
            (WriteRule::CreateOnly, None | Some(0)) => Some(0),
            (WriteRule::CreateOnly, Some(_)) => {
                return Err(BackendError::NotApplied(NotApplied::AlreadyExists));
            }
            (WriteRule::UpdateOnly, Some(0)) => {
                return Err(BackendError::NotApplied(NotApplied::Missing));
            }
            (WriteRule::UpdateOnly, Some(n)) => Some(n),
            (WriteRule::UpdateOnly, None) => match self.current_version(path).await? {
                0 => return Err(BackendError::NotApplied(NotApplied::Missing)),
                n => Some(n),
            },
        };
        let cas = cas
            .map(u32::try_from)
            .transpose()
            .map_err(|_| BackendError::NotApplied(NotApplied::CasMismatch))?;
        let mut value: Value = serde_json::from_str(data.expose_json())
            .map_err(|_| BackendError::BadRequest("data must be a JSON object".to_owned()))?;
        let r = self
            .run(Op::Kv2Write {
                path,
                data: &value,
                cas,
            })
            .await;
        scrub(&mut value);
        match r {
            Ok(Reply::Written(meta)) => Ok(Written {
                version: meta.version,
                created_time: Some(parse_time(&meta.created_time).map_err(Fault::into_backend)?),
            }),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::CasMismatch) if rule == WriteRule::CreateOnly => {
                Err(BackendError::NotApplied(NotApplied::AlreadyExists))
            }
            Err(f) => Err(f.into_backend()),
        }
    }

    pub(super) async fn write_v1(
        &self,
        path: &str,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        if rule != WriteRule::Any || cas.is_some() {
            // KV v1 has no condition to write under: checked first, which
            // is not atomic (documented). Its one value is "version 1".
            let exists = self.read_v1(path, None).await?.is_some();
            match (rule, exists, cas) {
                (_, true, Some(0)) | (_, false, Some(1..)) | (_, _, Some(2..)) => {
                    return Err(BackendError::NotApplied(NotApplied::CasMismatch));
                }
                (WriteRule::CreateOnly, true, _) => {
                    return Err(BackendError::NotApplied(NotApplied::AlreadyExists));
                }
                (WriteRule::UpdateOnly, false, _) => {
                    return Err(BackendError::NotApplied(NotApplied::Missing));
                }
                _ => {}
            }
        }
        match self
            .run(Op::Kv1Write {
                path,
                json: data.expose_json(),
            })
            .await
        {
            // KV v1 keeps neither versions nor times.
            Ok(Reply::Done) => Ok(Written {
                version: 1,
                created_time: None,
            }),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(f) => Err(f.into_backend()),
        }
    }

    pub(super) async fn delete_latest(&self, path: &str) -> Result<(), BackendError> {
        let op = if self.upstream_kv == 1 {
            Op::Kv1Delete(path)
        } else {
            Op::Kv2DeleteLatest(path)
        };
        match self.run(op).await {
            Ok(Reply::Done) | Err(Fault::NotFound) => Ok(()),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(f) => Err(f.into_backend()),
        }
    }

    pub(super) async fn list_keys(&self, folder: &str) -> Result<Vec<String>, BackendError> {
        let op = if self.upstream_kv == 1 {
            Op::Kv1List(folder)
        } else {
            Op::Kv2List(folder)
        };
        match self.run(op).await {
            Ok(Reply::Keys(keys)) => Ok(keys),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::NotFound) => Ok(Vec::new()),
            Err(f) => Err(f.into_backend()),
        }
    }
}

fn version_fields(
    m: &SecretVersionMetadata,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), Fault> {
    Ok((
        parse_time(&m.created_time)?,
        parse_deletion(&m.deletion_time)?,
    ))
}

/// Defence in depth: the grant's path is canonical, but never send an
/// empty, `.` or `..` segment upstream.
pub(super) fn check_path(path: &str) -> Result<(), BackendError> {
    let body = path.strip_suffix('/').unwrap_or(path);
    if body.is_empty() {
        return Ok(());
    }
    if body
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(BackendError::BadRequest("invalid path".to_owned()));
    }
    Ok(())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, Fault> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Fault::Upstream("the upstream answer holds an invalid timestamp".to_owned()))
}

fn parse_deletion(text: &str) -> Result<Option<DateTime<Utc>>, Fault> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_time(text).map(Some)
    }
}

/// Overwrites every string in a JSON value before it is dropped.
fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            for (mut k, mut v) in std::mem::take(map) {
                k.zeroize();
                scrub(&mut v);
            }
        }
        _ => {}
    }
}

/// A secret value from an upstream answer into [`SecretData`]; the answer's
/// copy is scrubbed.
fn secret_data(mut value: Value) -> Result<SecretData, Fault> {
    let result = match &value {
        Value::Object(map) => SecretData::from_map(map)
            .map_err(|_| Fault::Upstream("the upstream secret could not be re-encoded".to_owned())),
        _ => Err(Fault::Upstream(
            "the upstream secret is not a JSON object".to_owned(),
        )),
    };
    scrub(&mut value);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_empties_strings() {
        let mut v = serde_json::json!({"a": "secret", "b": ["x", {"c": "y"}]});
        scrub(&mut v);
        assert_eq!(v, serde_json::json!({}));
    }
}
