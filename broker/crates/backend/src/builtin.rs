//! The built-in secret store: versioned key/value secrets kept in Leash's
//! own database, sealed with AES-256-GCM before they reach it.
//!
//! The database only ever sees ciphertext. Each value is bound to its mount
//! and path as associated data, so a row copied to another path fails to
//! open. The sealing key comes from the operator's key file; without it the
//! backend does not start (fail closed).

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::crypto::random_bytes;
use leash_domain::{Mutation, WriteRule};
use leash_policy::{Capability, Grant};
use leash_store::Store;
use zeroize::Zeroizing;

use crate::{
    BackendError, BuildContext, BuildError, MountCommon, MountConfig, MountRefusal, SecretBackend,
    SecretData, SecretVersion, VersionInfo, WRITE_CAPS, WriteOp, WritePath, granted_path,
};

const NONCE_LEN: usize = 12;
const SEAL_VERSION: u8 = 1;

/// The settings of a `builtin` mount: none of its own (no section); the
/// sealing key is `keys.builtin_key_file`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinSettings {}

#[async_trait]
impl MountConfig for BuiltinSettings {
    fn check(&self, common: &MountCommon) -> Result<(), MountRefusal> {
        if common.writable == Some(false) {
            return Err(MountRefusal::Other(
                "is builtin, which is always writable; limit writes with policy capabilities",
            ));
        }
        if !common.builtin_key_file {
            return Err(MountRefusal::Other(
                "is builtin but keys.builtin_key_file is not set",
            ));
        }
        Ok(())
    }

    fn writable_by_default(&self) -> bool {
        true
    }

    /// Leash's own database: not cached, retried or broken off.
    fn guarded(&self) -> bool {
        false
    }

    fn without_section() -> Option<Self> {
        Some(Self::default())
    }

    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn SecretBackend>, BuildError> {
        let key = (ctx.builtin_key)().map_err(BuildError::Key)?;
        let backend = BuiltinBackend::new(ctx.mount, ctx.store.clone(), &key, ctx.kv_version)
            .map_err(|source| BuildError::Backend {
                context: "keys.builtin_key_file".to_owned(),
                source,
            })?;
        Ok(Arc::new(backend))
    }
}

/// The built-in backend.
pub struct BuiltinBackend {
    mount: String,
    kv_version: u8,
    store: Arc<dyn Store>,
    cipher: Aes256Gcm,
}

impl fmt::Debug for BuiltinBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinBackend")
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl BuiltinBackend {
    /// A backend for `mount`, sealing with `key` (exactly 32 bytes), shown
    /// to clients as KV version `kv_version` (1 or 2).
    pub fn new(
        mount: &str,
        store: Arc<dyn Store>,
        key: &[u8],
        kv_version: u8,
    ) -> Result<Self, BackendError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| {
            BackendError::BadRequest("the built-in store key must be exactly 32 bytes".into())
        })?;
        Ok(Self {
            mount: mount.to_owned(),
            kv_version,
            store,
            cipher,
        })
    }

    fn aad(&self, path: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.mount.len() + path.len() + 1);
        aad.extend_from_slice(self.mount.as_bytes());
        aad.push(0);
        aad.extend_from_slice(path.as_bytes());
        aad
    }

    fn seal(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, BackendError> {
        let nonce_bytes: [u8; NONCE_LEN] =
            random_bytes().map_err(|e| BackendError::Unavailable(Box::new(e)))?;
        let aad = self.aad(path);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| BackendError::Corrupt("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, path: &str, sealed: &[u8]) -> Result<Zeroizing<String>, BackendError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEAL_VERSION {
            return Err(BackendError::Corrupt("unknown sealed value format".into()));
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let aad = self.aad(path);
        let pt = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| BackendError::Corrupt("sealed value failed authentication".into()))?,
        );
        let text = std::str::from_utf8(&pt)
            .map_err(|_| BackendError::Corrupt("sealed value is not UTF-8".into()))?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// Writes a new version of `path` (operator import and development
    /// seeding; workload writes arrive with the compatibility work).
    pub async fn import(
        &self,
        path: &str,
        data: &SecretData,
        now: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        let sealed = self.seal(path, data.expose_json().as_bytes())?;
        self.store
            .kv_put(&self.mount, path, &sealed, now)
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))
    }

    /// Whether the mount holds no secret at all.
    pub async fn is_empty(&self) -> Result<bool, BackendError> {
        let keys = self
            .store
            .kv_list(&self.mount, "")
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))?;
        Ok(keys.is_empty())
    }
}

#[async_trait]
impl SecretBackend for BuiltinBackend {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    fn mount(&self) -> &str {
        &self.mount
    }

    fn kv_version(&self) -> u8 {
        self.kv_version
    }

    async fn read(
        &self,
        grant: &Grant,
        version: Option<u64>,
    ) -> Result<Option<SecretVersion>, BackendError> {
        // A patch reads the current value to merge into, server-side.
        let path = granted_path(grant, &self.mount, &[Capability::Read, Capability::Patch])?;
        if path.is_empty() || path.ends_with('/') {
            return Ok(None);
        }
        let row = self
            .store
            .kv_get(&self.mount, path, version)
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))?;
        let Some(row) = row else { return Ok(None) };
        let data = match (&row.sealed, row.deleted_at, row.destroyed) {
            (Some(sealed), None, false) => Some(SecretData::from_json(self.open(path, sealed)?)?),
            _ => None,
        };
        Ok(Some(SecretVersion {
            data,
            version: row.version,
            created_time: row.created_at,
            deletion_time: row.deleted_at,
            destroyed: row.destroyed,
        }))
    }

    async fn metadata(&self, grant: &Grant) -> Result<Option<Vec<VersionInfo>>, BackendError> {
        let path = granted_path(grant, &self.mount, &[Capability::Read])?;
        let versions = self
            .store
            .kv_versions(&self.mount, path)
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))?;
        if versions.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            versions
                .into_iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    created_time: v.created_at,
                    deletion_time: v.deleted_at,
                    destroyed: v.destroyed,
                    stages: Vec::new(),
                })
                .collect(),
        ))
    }

    fn writes(&self, _op: WriteOp) -> Result<WritePath, BackendError> {
        Ok(WritePath::InTransaction)
    }

    async fn prepare_write(
        &self,
        grant: &Grant,
        data: &SecretData,
        rule: WriteRule,
        cas: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Mutation, BackendError> {
        let path = granted_path(grant, &self.mount, WRITE_CAPS)?;
        if path.is_empty() || path.ends_with('/') {
            return Err(BackendError::BadRequest(
                "invalid path: a secret path cannot end in `/`".into(),
            ));
        }
        Ok(Mutation::KvWrite {
            mount: self.mount.clone(),
            path: path.to_owned(),
            sealed: self.seal(path, data.expose_json().as_bytes())?,
            rule,
            cas,
            now,
        })
    }

    fn prepare_delete(&self, grant: &Grant, now: DateTime<Utc>) -> Result<Mutation, BackendError> {
        let path = granted_path(grant, &self.mount, &[Capability::Delete])?;
        Ok(Mutation::KvDelete {
            mount: self.mount.clone(),
            path: path.to_owned(),
            now,
        })
    }

    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError> {
        // List resources are folders: `secret/` lists the mount's root.
        let folder = granted_path(grant, &self.mount, &[Capability::List])?;
        self.store
            .kv_list(&self.mount, folder)
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))
    }
}
