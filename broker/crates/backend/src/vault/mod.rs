//! The OpenBao / HashiCorp Vault backend: one Leash mount served from a KV
//! v1 or v2 mount on an upstream server, through `vaultrs` — read-only
//! unless the operator made the mount `writable`.
//!
//! The module as a whole owns: the upstream settings and their validation; Leash's own
//! upstream token (read from a file, or obtained by AppRole login) and the
//! background task that renews it at about two thirds of its TTL or logs in
//! again; and the mapping of upstream answers onto [`SecretBackend`]
//! results (outage → `Unavailable`, refusal → `Upstream`, 404 → absent).
//! Writes (only on a writable mount): KV v2 create/update with
//! check-and-set, soft delete of the latest version; KV v1 write and
//! delete. Create-only and update-only writes are enforced with KV v2's
//! check-and-set (atomic); on KV v1, which has none, by reading first (not
//! atomic).
//!
//! Must never happen: a secret value anywhere but in [`SecretData`] (not in
//! a log, a tracing field — those carry mount and path only — an error or a
//! `Debug` output); Leash's upstream token or AppRole secret id printed,
//! logged or put in an error; an upstream response body in an error; a path
//! read that does not come from the grant; a token sent over plain HTTP to a
//! non-loopback host, or to any host the operator did not name (redirects
//! are never followed); a panic on any upstream answer; a lock held across
//! an `.await`; an outage answered with anything but an error (fail closed);
//! a write or delete sent upstream from a mount that is not writable.
//!
//! Layout: `settings` (the operator's settings and their checks),
//! `credentials` (the token file and the AppRole secret id), `client` (the
//! HTTP connection and one bounded call per operation), `token` (Leash's
//! own token: first login, renewal, replacement), `kv` (the KV v1/v2 calls)
//! and `fault` (upstream failures into [`BackendError`]); this file holds
//! the [`SecretBackend`] implementation.

mod client;
mod credentials;
mod fault;
mod kv;
mod settings;
mod token;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use leash_domain::WriteRule;
use leash_policy::{Capability, Grant};
use tokio::task::JoinHandle;
use zeroize::Zeroize;

use self::client::{Inner, Op, Reply};
use self::fault::unexpected_reply;
use self::kv::check_path;
use self::token::upkeep;
use crate::{
    BackendError, BuildContext, BuildError, MountConfig, SecretBackend, SecretData, SecretVersion,
    VersionInfo, WRITE_CAPS, WriteOp, WritePath, Written, granted_path,
};

pub use self::settings::{AppRoleAuth, VaultSettings};
pub use self::token::VaultAuthStatus;

#[async_trait]
impl MountConfig for VaultSettings {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut paths: Vec<&mut PathBuf> = [self.token_file.as_mut(), self.ca_cert_file.as_mut()]
            .into_iter()
            .flatten()
            .collect();
        if let Some(a) = self.approle.as_mut() {
            paths.push(&mut a.secret_id_file);
        }
        paths
    }

    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn SecretBackend>, BuildError> {
        let backend = VaultBackend::connect(ctx.mount, ctx.kv_version, self.clone())
            .await
            .map_err(|source| BuildError::Backend {
                context: format!("mount {:?}: cannot reach its OpenBao/Vault", ctx.mount),
                source,
            })?;
        Ok(Arc::new(backend.with_writes(ctx.writable)))
    }
}

/// A Leash mount backed by an OpenBao/Vault KV mount.
pub struct VaultBackend {
    inner: Arc<Inner>,
    upkeep: JoinHandle<()>,
    writable: bool,
}

impl fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBackend")
            .field("mount", &self.inner.mount)
            .field("address", &self.inner.address)
            .field("upstream_mount", &self.inner.upstream_mount)
            .field("upstream_kv_version", &self.inner.upstream_kv)
            .field("auth", &self.inner.auth.name())
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

impl Drop for VaultBackend {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

impl VaultBackend {
    /// `mount` is the Leash mount name (first path segment clients use);
    /// reads of `<mount>/<p>` go to `<settings.mount>/<p>` upstream, shown
    /// to clients as KV version `kv_version_to_clients`. Reads the token
    /// file (and checks the token with lookup-self) or logs in with AppRole
    /// now, and fails if it cannot.
    pub async fn connect(
        mount: &str,
        kv_version_to_clients: u8,
        settings: VaultSettings,
    ) -> Result<Self, BackendError> {
        let checked = settings.check(mount, kv_version_to_clients)?;
        let inner = Inner::new(mount, kv_version_to_clients, &settings, checked).await?;
        let acquired = inner.initial_token().await?;
        inner.adopt(acquired);
        let inner = Arc::new(inner);
        let upkeep = tokio::spawn(upkeep(Arc::downgrade(&inner), inner.wake.clone()));
        tracing::info!(
            mount = %inner.mount,
            upstream_mount = %inner.upstream_mount,
            auth = inner.auth.name(),
            "vault backend connected"
        );
        Ok(Self {
            inner,
            upkeep,
            writable: false,
        })
    }

    /// Lets workloads write and delete through Leash (the operator's
    /// `writable = true`); read-only otherwise.
    #[must_use]
    pub fn with_writes(mut self, writable: bool) -> Self {
        self.writable = writable;
        self
    }

    /// The upstream path of a write or delete grant, checked.
    fn write_target<'g>(
        &self,
        grant: &'g Grant,
        caps: &[Capability],
    ) -> Result<&'g str, BackendError> {
        let path = granted_path(grant, &self.inner.mount, caps)?;
        if !self.writable {
            return Err(BackendError::ReadOnly);
        }
        if path.is_empty() || path.ends_with('/') {
            return Err(BackendError::BadRequest(
                "invalid path: a secret path cannot end in `/`".to_owned(),
            ));
        }
        check_path(path)?;
        Ok(path)
    }

    /// Checks the upstream and Leash's token there (lookup-self).
    pub async fn ping(&self) -> Result<(), BackendError> {
        match self.inner.run(Op::LookupSelf).await {
            Ok(Reply::Lookup(mut l)) => {
                l.id.zeroize();
                Ok(())
            }
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(f) => Err(f.into_backend()),
        }
    }
    /// What the token upkeep has done so far.
    pub fn auth_status(&self) -> VaultAuthStatus {
        self.inner.auth_status()
    }
}

#[async_trait]
impl SecretBackend for VaultBackend {
    fn kind(&self) -> &'static str {
        "vault"
    }

    fn mount(&self) -> &str {
        &self.inner.mount
    }

    fn kv_version(&self) -> u8 {
        self.inner.client_kv
    }

    async fn read(
        &self,
        grant: &Grant,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        let path = granted_path(
            grant,
            &self.inner.mount,
            &[Capability::Read, Capability::Patch],
        )?;
        if grant.capability() == Capability::Patch && !self.writable {
            // A patch reads to merge, then writes: refuse before reading.
            return Err(BackendError::ReadOnly);
        }
        if path.is_empty() || path.ends_with('/') {
            return Ok(None);
        }
        check_path(path)?;
        tracing::debug!(mount = %self.inner.mount, path, "upstream read");
        if self.inner.upstream_kv == 1 {
            self.inner.read_v1(path, version).await
        } else {
            self.inner.read_v2(path, version).await
        }
    }

    async fn metadata(&self, grant: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        let path = granted_path(grant, &self.inner.mount, &[Capability::Read])?;
        if path.is_empty() || path.ends_with('/') {
            return Ok(None);
        }
        check_path(path)?;
        tracing::debug!(mount = %self.inner.mount, path, "upstream metadata");
        if self.inner.upstream_kv == 1 {
            let exists = self.inner.read_v1(path, None).await?;
            Ok(exists.map(|v| {
                vec![VersionInfo {
                    version: 1,
                    created_time: v.created_time,
                    deletion_time: None,
                    destroyed: false,
                    stages: Vec::new(),
                }]
            }))
        } else {
            self.inner.metadata_v2(path).await
        }
    }

    fn writes(&self, _op: WriteOp) -> Result<WritePath, BackendError> {
        if self.writable {
            Ok(WritePath::Upstream)
        } else {
            Err(BackendError::ReadOnly)
        }
    }

    async fn write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
    ) -> Result<Written, BackendError> {
        let path = self.write_target(grant, WRITE_CAPS)?;
        tracing::debug!(mount = %self.inner.mount, path, "upstream write");
        if self.inner.upstream_kv == 1 {
            self.inner.write_v1(path, data, rule, cas).await
        } else {
            self.inner.write_v2(path, data, rule, cas).await
        }
    }

    async fn delete(&self, grant: &Grant) -> Result<(), BackendError> {
        let path = self.write_target(grant, &[Capability::Delete])?;
        tracing::debug!(mount = %self.inner.mount, path, "upstream delete");
        self.inner.delete_latest(path).await
    }

    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError> {
        let folder = granted_path(grant, &self.inner.mount, &[Capability::List])?;
        check_path(folder)?;
        tracing::debug!(mount = %self.inner.mount, path = folder, "upstream list");
        self.inner.list_keys(folder).await
    }
}
