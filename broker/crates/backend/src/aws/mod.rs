//! AWS Secrets Manager behind a Vault-style KV v2 mount, read-only unless
//! the operator made it `writable`.
//!
//! The module as a whole owns the mapping between the two models and every
//! call to AWS: the secret named by a grant is `prefix` + the path under the mount;
//! a JSON-object `SecretString` is the data map, any other string becomes
//! `{"value": …}` and a `SecretBinary` becomes `{"value_base64": …}`.
//! Secrets Manager versions (ids with staging labels) are shown as numbers
//! `1..=n` in creation order up to the `AWSCURRENT` version, which is `n`;
//! versions created after it (a rotation's `AWSPENDING`) stay hidden until
//! they are promoted. Each exposed version carries its staging labels
//! (`AWSCURRENT`, `AWSPREVIOUS`, custom stages). Numbers are positional:
//! when AWS drops a deprecated version, the numbers of the ones after it
//! move down. Listing uses
//! `ListSecrets` with a name-prefix filter, re-checked exactly (AWS matches
//! loosely), and caches each folder's children briefly because `ListSecrets`
//! is rate-limited upstream. Credentials come from the standard AWS chain
//! (environment, profile or an operator-supplied credentials file, web
//! identity, ECS, IMDS).
//!
//! Writes (writable mounts only) store the data map as a JSON
//! `SecretString`: `PutSecretValue` on an existing secret, `CreateSecret`
//! for a new one. Check-and-set, create-only and update-only are checked
//! against the version list right before the call: AWS has no conditional
//! put, so this is not atomic against a writer that bypasses Leash or a
//! concurrent write (documented). A delete is refused: AWS deletes whole
//! secrets (with a recovery window), not versions.
//!
//! Must never happen: a write reaching AWS from a mount that is not
//! writable, or a delete reaching AWS at all; a secret value outside
//! [`SecretData`] once it leaves the SDK (in an error, a log line or a
//! `Debug` output); an AWS error message or
//! body copied into a [`BackendError`]; a call without a bound in time
//! (each method as a whole is bounded by `timeout_secs`); a missing or
//! unreachable store read as anything but `Ok(None)` (it does not exist) or
//! an error (fail closed). The SDK's own HTTP buffers are outside Leash's
//! control and are not zeroised.
//!
//! Layout: `settings` (the operator's settings and their checks), `client`
//! (the SDK client and its credential chain), `mapping` (secrets, versions
//! and staging labels as KV v2, and writes), `listing` (folder listings and
//! their cache) and `fault` (SDK errors into [`BackendError`]); this file
//! holds the [`SecretBackend`] implementation.

mod client;
mod fault;
mod listing;
mod mapping;
mod settings;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use leash_domain::WriteRule;
use leash_policy::{Capability, Grant};

use self::fault::unavailable;
use self::listing::ListCache;
use self::settings::is_aws_name;
use crate::{
    BackendError, BuildContext, BuildError, MountCommon, MountConfig, MountRefusal, SecretBackend,
    SecretData, SecretVersion, VersionInfo, WRITE_CAPS, WriteOp, WritePath, Written, granted_path,
};

pub use self::settings::AwsSettings;

#[async_trait]
impl MountConfig for AwsSettings {
    /// Secrets Manager is shown as KV version 2 only.
    fn check(&self, common: &MountCommon) -> Result<(), MountRefusal> {
        if common.kv_version == 2 {
            Ok(())
        } else {
            Err(MountRefusal::Shape)
        }
    }

    fn shape_note() -> Option<&'static str> {
        Some("aws mounts are KV version 2")
    }

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.credentials_file.as_mut().into_iter().collect()
    }

    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn SecretBackend>, BuildError> {
        let backend = AwsBackend::connect(ctx.mount, self.clone())
            .await
            .map_err(|source| BuildError::Backend {
                context: format!("mount {:?}: cannot set up AWS Secrets Manager", ctx.mount),
                source,
            })?;
        Ok(Arc::new(backend.with_writes(ctx.writable)))
    }
}

/// A KV v2 mount backed by AWS Secrets Manager.
pub struct AwsBackend {
    mount: String,
    writable: bool,
    client: Client,
    prefix: String,
    timeout: Duration,
    list_ttl: Duration,
    list_cache: Mutex<ListCache>,
}

impl fmt::Debug for AwsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackend")
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("list_ttl", &self.list_ttl)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

impl AwsBackend {
    /// A backend for `mount`. Credentials come from the standard chain
    /// (with `profile` and `credentials_file` applied); the endpoint
    /// override, if any, replaces the regional endpoint. Nothing is sent to
    /// AWS here, so the broker starts while AWS is unreachable and the mount
    /// answers `Unavailable` until it is reachable.
    pub async fn connect(mount: &str, settings: AwsSettings) -> Result<Self, BackendError> {
        settings.validate()?;
        let timeout = Duration::from_secs(settings.timeout_secs);
        let client = client::sdk_client(&settings, timeout).await?;
        Ok(Self {
            mount: mount.to_owned(),
            writable: false,
            client,
            prefix: settings.prefix.unwrap_or_default(),
            timeout,
            list_ttl: Duration::from_secs(settings.list_cache_secs),
            list_cache: Mutex::new(ListCache::default()),
        })
    }

    /// Lets workloads write through Leash (the operator's `writable =
    /// true`); read-only otherwise. Deletes are never taken.
    #[must_use]
    pub fn with_writes(mut self, writable: bool) -> Self {
        self.writable = writable;
        self
    }

    /// Runs `fut` within the backend's timeout.
    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unavailable(op, "timed out"))?
    }
}

#[async_trait]
impl SecretBackend for AwsBackend {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn mount(&self) -> &str {
        &self.mount
    }

    async fn read(
        &self,
        grant: &Grant,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        let path = granted_path(grant, &self.mount, &[Capability::Read, Capability::Patch])?;
        // A patch reads before it writes; refuse before touching AWS.
        if grant.capability() == Capability::Patch && !self.writable {
            return Err(BackendError::ReadOnly);
        }
        let Some(name) = self.secret_name(path) else {
            return Ok(None);
        };
        self.bounded("read", self.read_inner(&name, version)).await
    }

    async fn metadata(&self, grant: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        let path = granted_path(grant, &self.mount, &[Capability::Read])?;
        let Some(name) = self.secret_name(path) else {
            return Ok(None);
        };
        self.bounded("metadata", self.metadata_inner(&name)).await
    }

    fn writes(&self, op: WriteOp) -> Result<WritePath, BackendError> {
        match (self.writable, op) {
            (false, _) => Err(BackendError::ReadOnly),
            (true, WriteOp::Write) => Ok(WritePath::Upstream),
            (true, WriteOp::Delete) => Err(BackendError::Unsupported(
                "deleting through Leash is not supported on an AWS Secrets Manager mount: \
                 AWS deletes a whole secret, not a version; delete it in AWS",
            )),
        }
    }

    async fn write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let path = granted_path(grant, &self.mount, WRITE_CAPS)?;
        if !self.writable {
            return Err(BackendError::ReadOnly);
        }
        let Some(name) = self.secret_name(path) else {
            return Err(BackendError::BadRequest(
                "invalid path: not a name AWS Secrets Manager accepts".into(),
            ));
        };
        let r = self
            .bounded("write", self.write_inner(&name, data, rule, cas))
            .await;
        // A new secret changes its folder's listing.
        self.list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        r
    }

    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError> {
        // List resources are folders: `aws/` lists the mount's root.
        let folder = granted_path(grant, &self.mount, &[Capability::List])?;
        let mut full = format!("{}{folder}", self.prefix);
        if !folder.is_empty() && !full.ends_with('/') {
            full.push('/');
        }
        if !is_aws_name(&full) {
            return Ok(Vec::new());
        }
        let cached = self
            .list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&full, self.list_ttl);
        if let Some(children) = cached {
            return Ok(children);
        }
        let children = self.bounded("list", self.list_children(&full)).await?;
        self.list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(full, &children, self.list_ttl);
        Ok(children)
    }
}
