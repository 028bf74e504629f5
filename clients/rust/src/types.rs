//! Typed answers of the Vault-shaped workload API, shaped exactly as
//! `docs/api.md` says. The operator API's types (`/v1/leash/`) are not
//! here: they are `leash_api`'s, shared with the broker, and `lib.rs`
//! re-exports them.
//!
//! Types that hold a token (`Auth::client_token`, `TokenInfo::id`) or secret
//! data (`KvSecret::data`) implement `Debug` by hand and redact those fields;
//! never derive `Debug` on them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

const REDACTED: &str = "<redacted>";

/// The Vault response envelope. Private: it holds `data` and `auth`, so it
/// has no `Debug`.
#[derive(Deserialize)]
pub(crate) struct Envelope<T> {
    #[serde(default)]
    pub(crate) request_id: String,
    #[serde(default)]
    pub(crate) lease_id: String,
    #[serde(default)]
    pub(crate) renewable: bool,
    #[serde(default)]
    pub(crate) lease_duration: u64,
    /// Missing or `null` is `None` (serde's rule for `Option` fields).
    pub(crate) data: Option<T>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) warnings: Vec<String>,
    #[serde(default)]
    pub(crate) auth: Option<Auth>,
}

/// Deserialises `null` as the type's default (Vault sends `null` for empty
/// lists and maps).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The `auth` block of a login or a token renewal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// The token itself. Redacted in `Debug`.
    pub client_token: String,
    /// The token's accessor (not a credential; it names the token in audit).
    pub accessor: String,
    /// Policies attached to the token.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policies: Vec<String>,
    /// Policies attached to the token itself.
    #[serde(default, deserialize_with = "null_as_default")]
    pub token_policies: Vec<String>,
    /// Token metadata (a string map).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Seconds the token is valid for.
    pub lease_duration: u64,
    /// Whether the token can be renewed.
    pub renewable: bool,
    /// The entity the token belongs to.
    #[serde(default)]
    pub entity_id: String,
    /// `"service"`.
    #[serde(default)]
    pub token_type: String,
    /// Always `true` for Leash tokens.
    #[serde(default)]
    pub orphan: bool,
    /// Always 0 (unlimited) for Leash tokens.
    #[serde(default)]
    pub num_uses: u64,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("client_token", &REDACTED)
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("token_policies", &self.token_policies)
            .field("metadata", &self.metadata)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("entity_id", &self.entity_id)
            .field("token_type", &self.token_type)
            .field("orphan", &self.orphan)
            .field("num_uses", &self.num_uses)
            .finish()
    }
}

/// A KV v2 secret read, with the envelope's lease fields.
#[derive(Clone, PartialEq, Serialize)]
pub struct KvSecret {
    /// The broker's request id (also in its audit log).
    pub request_id: String,
    /// `<mount>/data/<path>/<random>`; renew or revoke it when done.
    pub lease_id: String,
    /// Seconds the lease is valid for.
    pub lease_duration: u64,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// The secret's key/value pairs. Redacted in `Debug`.
    pub data: Map<String, Value>,
    /// The version metadata.
    pub metadata: KvMetadata,
}

impl fmt::Debug for KvSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvSecret")
            .field("request_id", &self.request_id)
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field(
                "data",
                &format_args!("<redacted: {} key(s)>", self.data.len()),
            )
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// `data` of a KV v2 read, as on the wire.
#[derive(Deserialize)]
pub(crate) struct KvData {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) data: Map<String, Value>,
    pub(crate) metadata: KvMetadata,
}

/// KV v2 version metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvMetadata {
    /// RFC 3339 creation time of this version.
    pub created_time: String,
    /// RFC 3339 deletion time, or `""`.
    #[serde(default)]
    pub deletion_time: String,
    /// Whether this version was destroyed.
    #[serde(default)]
    pub destroyed: bool,
    /// The version number.
    pub version: u64,
    /// Custom metadata (usually `null`).
    #[serde(default)]
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// `data` of a KV v2 list.
#[derive(Deserialize)]
pub(crate) struct KeyList {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) keys: Vec<String>,
}

/// `data` of `sys/leases/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: String,
    /// RFC 3339 issue time.
    pub issue_time: String,
    /// RFC 3339 expiry time.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// RFC 3339 time of the last renewal, if any.
    #[serde(default)]
    pub last_renewal: Option<String>,
    /// The secret path the lease was issued for.
    #[serde(default)]
    pub path: String,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// Seconds left.
    pub ttl: i64,
}

/// The answer of `sys/leases/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewal {
    /// The lease id.
    pub lease_id: String,
    /// The new duration in seconds.
    pub lease_duration: u64,
    /// Whether the lease can be renewed again.
    pub renewable: bool,
    /// E.g. that the increment was capped at the max TTL.
    pub warnings: Vec<String>,
}

/// `data` of `auth/token/lookup-self`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's accessor.
    pub accessor: String,
    /// Unix time the token was created.
    pub creation_time: i64,
    /// The TTL at creation, in seconds.
    pub creation_ttl: i64,
    /// A display name for the token.
    #[serde(default)]
    pub display_name: String,
    /// The entity the token belongs to.
    #[serde(default)]
    pub entity_id: String,
    /// RFC 3339 expiry time.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// The explicit max TTL in seconds (0 = none).
    #[serde(default)]
    pub explicit_max_ttl: i64,
    /// The token itself. Redacted in `Debug`.
    pub id: String,
    /// RFC 3339 time of the last issue or renewal.
    #[serde(default)]
    pub issue_time: Option<String>,
    /// Token metadata.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Uses left (0 = unlimited).
    #[serde(default)]
    pub num_uses: u64,
    /// Whether the token has no parent.
    #[serde(default)]
    pub orphan: bool,
    /// The auth path that created the token.
    #[serde(default)]
    pub path: String,
    /// The token's policies.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policies: Vec<String>,
    /// Whether the token can be renewed.
    pub renewable: bool,
    /// Seconds left.
    pub ttl: i64,
    /// `"service"`.
    #[serde(rename = "type", default)]
    pub token_type: String,
}

impl fmt::Debug for TokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInfo")
            .field("accessor", &self.accessor)
            .field("creation_time", &self.creation_time)
            .field("creation_ttl", &self.creation_ttl)
            .field("display_name", &self.display_name)
            .field("entity_id", &self.entity_id)
            .field("expire_time", &self.expire_time)
            .field("explicit_max_ttl", &self.explicit_max_ttl)
            .field("id", &REDACTED)
            .field("issue_time", &self.issue_time)
            .field("meta", &self.meta)
            .field("num_uses", &self.num_uses)
            .field("orphan", &self.orphan)
            .field("path", &self.path)
            .field("policies", &self.policies)
            .field("renewable", &self.renewable)
            .field("ttl", &self.ttl)
            .field("token_type", &self.token_type)
            .finish()
    }
}
