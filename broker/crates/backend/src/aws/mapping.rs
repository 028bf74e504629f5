//! The mapping of Secrets Manager onto KV v2: a secret's name is the
//! mount's `prefix` plus the path; a JSON-object `SecretString` is the data
//! map, any other string becomes `{"value": …}` and a `SecretBinary`
//! becomes `{"value_base64": …}`. Versions (ids with staging labels) are
//! numbered `1..=n` in creation order up to the `AWSCURRENT` version, which
//! is `n`; versions created after it (a rotation's `AWSPENDING`) stay hidden
//! until they are promoted. Each exposed version carries its staging labels.
//! Numbers are positional: when AWS drops a deprecated version, the numbers
//! of the ones after it move down. Writes store the data map as a JSON
//! `SecretString` (`PutSecretValue`, or `CreateSecret` for a new secret),
//! with check-and-set, create-only and update-only checked against the
//! version list right before the call (not atomic: AWS has no conditional
//! put).
//!
//! Must never happen: a secret value outside [`SecretData`] once it leaves
//! the SDK (values are decoded in zeroising buffers); a name sent to AWS
//! that AWS would not accept; a missing secret read as anything but
//! `Ok(None)`.

use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use leash_domain::{NotApplied, WriteRule};
use zeroize::Zeroizing;

use super::AwsBackend;
use super::fault::{Failure, classify};
use super::settings::is_aws_name;
use crate::{BackendError, SecretData, SecretVersion, VersionInfo, Written};

/// Page size for `ListSecrets` and `ListSecretVersionIds` (the AWS maximum).
pub(super) const PAGE_SIZE: i32 = 100;
/// Most `ListSecretVersionIds` pages one secret's history reads.
const MAX_VERSION_PAGES: usize = 20;

impl AwsBackend {
    /// Writes `data` as the secret's new current version, under `rule`
    /// and `cas`, checked against the version list first (not atomic).
    pub(super) async fn write_inner(
        &self,
        name: &str,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let exists = self.exists(name).await?;
        let current = if exists {
            self.versions(name).await?.map_or(0, |v| v.len())
        } else {
            0
        };
        let current = u64::try_from(current).unwrap_or(u64::MAX);
        if let Some(cas) = cas
            && cas != current
        {
            return Err(BackendError::NotApplied(NotApplied::CasMismatch));
        }
        match (rule, exists) {
            (WriteRule::CreateOnly, true) => {
                return Err(BackendError::NotApplied(NotApplied::AlreadyExists));
            }
            (WriteRule::UpdateOnly, false) => {
                return Err(BackendError::NotApplied(NotApplied::Missing));
            }
            _ => {}
        }
        // The SDK's request buffers hold a copy of the value; like its
        // response buffers, they are not zeroised.
        if exists {
            let r = self
                .client
                .put_secret_value()
                .secret_id(name)
                .secret_string(data.expose_json())
                .send()
                .await;
            if let Err(e) = r {
                return Err(
                    match classify("PutSecretValue", e, &["ResourceNotFoundException"]) {
                        Failure::Missing => BackendError::NotApplied(NotApplied::CasMismatch),
                        Failure::Error(e) => e,
                    },
                );
            }
        } else {
            let r = self
                .client
                .create_secret()
                .name(name)
                .secret_string(data.expose_json())
                .send()
                .await;
            if let Err(e) = r {
                return Err(
                    match classify("CreateSecret", e, &["ResourceExistsException"]) {
                        // Created meanwhile by someone else.
                        Failure::Missing => BackendError::NotApplied(NotApplied::CasMismatch),
                        Failure::Error(e) => e,
                    },
                );
            }
        }
        let versions = self.versions(name).await?.unwrap_or_default();
        let Some(last) = versions.last() else {
            return Err(BackendError::Upstream(
                "the written version is missing from the version list".into(),
            ));
        };
        Ok(Written {
            version: u64::try_from(versions.len()).unwrap_or(u64::MAX),
            created_time: Some(last.created),
        })
    }

    /// The AWS secret name for a path under the mount, or `None` when the
    /// path is a folder or cannot be an AWS name (so no such secret exists).
    pub(super) fn secret_name(&self, path: &str) -> Option<String> {
        if path.is_empty() || path.ends_with('/') {
            return None;
        }
        let name = format!("{}{path}", self.prefix);
        is_aws_name(&name).then_some(name)
    }

    /// Whether the secret exists and is not scheduled for deletion.
    async fn exists(&self, name: &str) -> Result<bool, BackendError> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(out.deleted_date.is_none()),
            Err(e) => match classify("DescribeSecret", e, &["ResourceNotFoundException"]) {
                Failure::Missing => Ok(false),
                Failure::Error(e) => Err(e),
            },
        }
    }

    /// The exposed versions of `name`, oldest first, the `AWSCURRENT` one
    /// last; `None` when the secret does not exist.
    async fn versions(&self, name: &str) -> Result<Option<Vec<AwsVersion>>, BackendError> {
        let mut all: Vec<AwsVersion> = Vec::new();
        let mut token: Option<String> = None;
        for page in 0.. {
            if page == MAX_VERSION_PAGES {
                return Err(BackendError::Upstream(
                    "the secret has too many versions to list".into(),
                ));
            }
            let out = match self
                .client
                .list_secret_version_ids()
                .secret_id(name)
                .include_deprecated(true)
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    return match classify("ListSecretVersionIds", e, &["ResourceNotFoundException"])
                    {
                        Failure::Missing => Ok(None),
                        Failure::Error(e) => Err(e),
                    };
                }
            };
            for v in out.versions.unwrap_or_default() {
                let Some(id) = v.version_id else { continue };
                let stages = v.version_stages.unwrap_or_default();
                let current = stages.iter().any(|s| s == "AWSCURRENT");
                all.push(AwsVersion {
                    id,
                    created: to_chrono(v.created_date.as_ref()),
                    current,
                    stages,
                });
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(Some(order_versions(all)))
    }

    /// `GetSecretValue` for the current version, or for `version_id`.
    async fn get_value(
        &self,
        name: &str,
        version_id: Option<&str>,
    ) -> Result<Option<GetSecretValueOutput>, BackendError> {
        let req = self
            .client
            .get_secret_value()
            .secret_id(name)
            .set_version_id(version_id.map(str::to_owned));
        match req.send().await {
            Ok(out) => Ok(Some(out)),
            // InvalidRequestException: the secret is scheduled for deletion.
            Err(e) => match classify(
                "GetSecretValue",
                e,
                &["ResourceNotFoundException", "InvalidRequestException"],
            ) {
                Failure::Missing => Ok(None),
                Failure::Error(e) => Err(e),
            },
        }
    }

    pub(super) async fn read_inner(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        let (out, number, created) = match version {
            None => {
                let Some(out) = self.get_value(name, None).await? else {
                    return Ok(None);
                };
                let Some(versions) = self.versions(name).await? else {
                    return Ok(None);
                };
                let id = out.version_id.as_deref().unwrap_or_default();
                let Some((i, v)) = versions.iter().enumerate().find(|(_, v)| v.id == id) else {
                    return Err(BackendError::Upstream(
                        "the current version is missing from the version list".into(),
                    ));
                };
                (out, i + 1, v.created)
            }
            Some(n) => {
                if !self.exists(name).await? {
                    return Ok(None);
                }
                let Some(versions) = self.versions(name).await? else {
                    return Ok(None);
                };
                let Some(v) = usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| versions.get(i))
                else {
                    return Ok(None);
                };
                let Some(out) = self.get_value(name, Some(&v.id)).await? else {
                    return Ok(None);
                };
                (out, usize::try_from(n).unwrap_or(usize::MAX), v.created)
            }
        };
        Ok(Some(SecretVersion {
            data: Some(into_data(out)?),
            version: u64::try_from(number).unwrap_or(u64::MAX),
            created_time: created,
            deletion_time: None,
            destroyed: false,
        }))
    }

    pub(super) async fn metadata_inner(
        &self,
        name: &str,
    ) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        if !self.exists(name).await? {
            return Ok(None);
        }
        let Some(versions) = self.versions(name).await? else {
            return Ok(None);
        };
        if versions.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            versions
                .iter()
                .enumerate()
                .map(|(i, v)| VersionInfo {
                    version: u64::try_from(i + 1).unwrap_or(u64::MAX),
                    created_time: v.created,
                    deletion_time: None,
                    destroyed: false,
                    stages: v.stages.clone(),
                })
                .collect(),
        ))
    }
}

/// One Secrets Manager version as Leash numbers it.
#[derive(Debug)]
struct AwsVersion {
    id: String,
    created: DateTime<Utc>,
    current: bool,
    /// Its staging labels.
    stages: Vec<String>,
}

/// Orders by creation date (stable, so AWS's order breaks ties) and drops
/// what comes after the `AWSCURRENT` version, which becomes the highest.
/// No current version: nothing is exposed.
fn order_versions(mut all: Vec<AwsVersion>) -> Vec<AwsVersion> {
    all.sort_by_key(|v| v.created);
    match all.iter().position(|v| v.current) {
        Some(i) => {
            all.truncate(i + 1);
            all
        }
        None => Vec::new(),
    }
}

fn to_chrono(d: Option<&aws_sdk_secretsmanager::primitives::DateTime>) -> DateTime<Utc> {
    d.and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The data map of a `GetSecretValue` answer; the value never leaves
/// zeroising buffers on the way.
fn into_data(out: GetSecretValueOutput) -> Result<SecretData, BackendError> {
    let GetSecretValueOutput {
        secret_string,
        secret_binary,
        ..
    } = out;
    if let Some(text) = secret_string {
        let text = Zeroizing::new(text);
        let object = text.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        if object {
            return SecretData::from_json(text);
        }
        return single_field("value", &text);
    }
    if let Some(blob) = secret_binary {
        let bytes = Zeroizing::new(blob.into_inner());
        let mut encoded = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
        base64::engine::general_purpose::STANDARD.encode_string(&*bytes, &mut encoded);
        return single_field("value_base64", &encoded);
    }
    Err(BackendError::Upstream(
        "the secret version has no value".into(),
    ))
}

/// `{"<key>": "<value>"}` built in a zeroising buffer large enough for the
/// worst-case escaping, so it never reallocates (and leaves no copy).
fn single_field(key: &str, value: &str) -> Result<SecretData, BackendError> {
    let cap = (key.len() + value.len())
        .saturating_mul(6)
        .saturating_add(8);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap));
    let corrupt = || BackendError::Corrupt("secret value could not be encoded".into());
    buf.push(b'{');
    serde_json::to_writer(&mut *buf, key).map_err(|_| corrupt())?;
    buf.push(b':');
    serde_json::to_writer(&mut *buf, value).map_err(|_| corrupt())?;
    buf.push(b'}');
    let text = String::from_utf8(std::mem::take(&mut *buf)).map_err(|e| {
        drop(Zeroizing::new(e.into_bytes()));
        corrupt()
    })?;
    SecretData::from_json(Zeroizing::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_end_at_current() {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let v = |id: &str, s, current| AwsVersion {
            id: id.into(),
            created: t(s),
            current,
            stages: Vec::new(),
        };
        let ordered = order_versions(vec![
            v("pending", 30, false),
            v("cur", 20, true),
            v("old", 10, false),
            v("older-tie", 10, false),
        ]);
        let ids: Vec<&str> = ordered.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["old", "older-tie", "cur"]);
        assert!(order_versions(vec![v("x", 1, false)]).is_empty());
    }

    #[test]
    fn single_field_escapes() {
        let d = single_field("value", "a\"b\\c\u{1}é").unwrap();
        let back: serde_json::Value = serde_json::from_str(d.expose_json()).unwrap();
        assert_eq!(back["value"], "a\"b\\c\u{1}é");
    }
}
