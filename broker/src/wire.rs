//! The Vault-shaped wire format: the response envelope, the `auth` block,
//! the error body. Only shapes live here; no decisions.
//!
//! Every envelope carries all eight keys (`lease_id` is `""`, never null),
//! numbers are JSON integers, and bodies end with a newline — real Vault
//! clients (vaultrs, ESO) fail on anything looser.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

/// What the service answers; the HTTP layer only renders it.
#[derive(Debug)]
pub enum Reply {
    /// A JSON body (already serialised, newline-terminated).
    Json {
        /// HTTP status.
        status: u16,
        /// The body.
        body: Vec<u8>,
    },
    /// A 307 to `location` (a path cleaned of empty segments).
    Redirect {
        /// The target, starting with `/v1/`.
        location: String,
    },
    /// No body.
    Empty {
        /// HTTP status (204 or 202).
        status: u16,
    },
}

impl Reply {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json { status, .. } | Reply::Empty { status } => *status,
            Reply::Redirect { .. } => 307,
        }
    }

    /// Serialises `value` with a trailing newline.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Reply::Json { status, body }
            }
            Err(_) => Reply::error(500, &["internal error"]),
        }
    }

    /// `{"errors":[...]}`.
    pub fn error(status: u16, errors: &[&str]) -> Reply {
        let mut body = serde_json::to_vec(&serde_json::json!({ "errors": errors }))
            .unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        body.push(b'\n');
        Reply::Json { status, body }
    }
}

/// The standard response envelope.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, D: Serialize> {
    /// The request id.
    pub request_id: &'a str,
    /// `""` unless the response carries a lease.
    pub lease_id: &'a str,
    /// Whether the lease may be renewed.
    pub renewable: bool,
    /// The lease TTL in seconds.
    pub lease_duration: i64,
    /// The payload.
    pub data: Option<D>,
    /// Always null: Leash refuses response wrapping.
    pub wrap_info: Option<()>,
    /// Warnings, or null.
    pub warnings: Option<Vec<String>>,
    /// The auth block of logins and renew-self.
    pub auth: Option<AuthBlock>,
}

impl<'a, D: Serialize> Envelope<'a, D> {
    /// An envelope around `data` without a lease.
    pub fn data(request_id: &'a str, data: D) -> Self {
        Self {
            request_id,
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: Some(data),
            wrap_info: None,
            warnings: None,
            auth: None,
        }
    }
}

impl<'a> Envelope<'a, ()> {
    /// An envelope with neither data nor lease.
    pub fn empty(request_id: &'a str) -> Self {
        Self {
            request_id,
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: None,
            wrap_info: None,
            warnings: None,
            auth: None,
        }
    }
}

/// Vault's `auth` block.
#[derive(Serialize)]
pub struct AuthBlock {
    /// The token: shown only in the login answer.
    pub client_token: String,
    /// Its non-secret handle.
    pub accessor: String,
    /// Policies: `workload/<name>`.
    pub policies: Vec<String>,
    /// Same as `policies`.
    pub token_policies: Vec<String>,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// The token's TTL in seconds.
    pub lease_duration: i64,
    /// Whether renew-self works.
    pub renewable: bool,
    /// Vault entity id: the accessor.
    pub entity_id: String,
    /// Always `service`.
    pub token_type: &'static str,
    /// Always true for logins.
    pub orphan: bool,
    /// Always null.
    pub mfa_requirement: Option<()>,
    /// Always 0.
    pub num_uses: u32,
}

impl std::fmt::Debug for AuthBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBlock")
            .field("accessor", &self.accessor)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

/// KV v2 version metadata.
#[derive(Debug, Serialize)]
pub struct KvMetadata {
    /// RFC 3339.
    pub created_time: String,
    /// Always null for the built-in store.
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// RFC 3339 or `""`.
    pub deletion_time: String,
    /// Destroyed.
    pub destroyed: bool,
    /// The version.
    pub version: u64,
}

impl KvMetadata {
    /// The metadata of a version just written at `time`.
    pub fn written(time: chrono::DateTime<chrono::Utc>, version: u64) -> Self {
        Self {
            created_time: rfc3339(time),
            custom_metadata: None,
            deletion_time: String::new(),
            destroyed: false,
            version,
        }
    }
}

/// KV v2 read payload.
#[derive(Debug, Serialize)]
pub struct KvData<'a> {
    /// The secret (raw JSON), or null for a deleted version.
    pub data: Option<&'a RawValue>,
    /// Its metadata.
    pub metadata: KvMetadata,
}

/// The `data` of a leased KV read: flat for v1, wrapped with metadata for v2.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum KvBody<'a> {
    /// KV v1: the secret itself.
    V1(&'a RawValue),
    /// KV v2: the secret and its version metadata.
    V2(KvData<'a>),
}

/// RFC 3339 with nanoseconds and `Z`, as Vault writes times.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
