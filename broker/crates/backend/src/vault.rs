//! The OpenBao / HashiCorp Vault backend: one Leash mount served from a KV
//! v1 or v2 mount on an upstream server, through `vaultrs` — read-only
//! unless the operator made the mount `writable`.
//!
//! It owns: the upstream settings and their validation; Leash's own
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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::{Mutation, NotApplied, WriteRule};
use leash_policy::{Capability, Grant};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex as AsyncMutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::{
    ReadSecretMetadataResponse, ReadSecretResponse, SecretVersionMetadata,
};
use vaultrs::api::token::responses::LookupTokenResponse;
use vaultrs::api::{AuthInfo, EndpointMiddleware};
use vaultrs::client::VaultClientSettings;
use vaultrs::error::ClientError;
use zeroize::{Zeroize, Zeroizing};

use crate::{
    BackendError, SecretBackend, SecretData, SecretVersion, VersionInfo, WRITE_CAPS, WriteOp,
    WritePath, Written, granted_path,
};

/// What a refused upstream call reports when Leash's token lacks access.
const PERMISSION_DENIED: &str = "permission denied upstream";
/// The longest per-request timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Token and secret id files larger than this are refused.
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;
/// Never act on the token more often than this.
const MIN_STEP: Duration = Duration::from_millis(500);
/// The longest wait between retries of a failed renewal or login.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// How to reach one upstream OpenBao/Vault KV mount. Holds no secret: the
/// token and the AppRole secret id are read from files.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// `https://vault:8200`; `http` only to 127.0.0.0/8, `::1` or
    /// `localhost`.
    pub address: String,
    /// The upstream mount, e.g. `secret`.
    pub mount: String,
    /// The upstream mount's KV version (1 or 2).
    #[serde(default = "default_kv_version")]
    pub kv_version: u8,
    /// Sent as `X-Vault-Namespace` when set.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM bundle of extra CAs trusted for the upstream's certificate.
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    /// Authenticate with the token in this file…
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// …or by AppRole login (exactly one of the two).
    #[serde(default)]
    pub approle: Option<AppRoleAuth>,
    /// Allow plain `http` to a host that is not loopback. Only for a
    /// private network you trust end to end (the compose demo): the
    /// upstream token then travels in clear.
    #[serde(default)]
    pub insecure_allow_plaintext: bool,
    /// Per-request upstream timeout: `"10s"`, `"500ms"`, `"1m30s"`, or whole
    /// seconds.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

/// AppRole login settings. The secret id stays in its file until login.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleAuth {
    /// The role id (an identifier, not a secret).
    pub role_id: String,
    /// The file holding the secret id; read again at every login, so it
    /// can be rotated.
    pub secret_id_file: PathBuf,
    /// The AppRole auth mount.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

fn default_kv_version() -> u8 {
    2
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

impl fmt::Debug for VaultSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSettings")
            .field("address", &printable_address(&self.address))
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("namespace", &self.namespace)
            .field("ca_cert_file", &self.ca_cert_file)
            .field("token_file", &self.token_file)
            .field("approle", &self.approle)
            .field("insecure_allow_plaintext", &self.insecure_allow_plaintext)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The address for `Debug`, without any user:password part.
fn printable_address(address: &str) -> String {
    match url::Url::parse(address.trim()) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1m30s` or bare whole seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("invalid duration `{t}` (expected e.g. \"10s\", \"500ms\", \"1m30s\")");
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"10s\", \"500ms\", \"1m30s\", or whole seconds")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

fn config_error(mount: &str, what: impl fmt::Display) -> BackendError {
    BackendError::BadRequest(format!("vault backend for mount `{mount}`: {what}"))
}

/// Checks the address: a plain URL with no credentials, query or path;
/// `https`, or `http` to a loopback host only.
fn check_address(address: &str, allow_plaintext: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(address.trim()).map_err(|e| format!("address is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("address must not contain credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err("address must be scheme://host[:port] only, with no path or query".to_owned());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err("address has no host".to_owned()),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback || allow_plaintext => Ok(url),
        "http" => Err(
            "plain http is allowed only to a loopback address (127.0.0.0/8, ::1, localhost); use https"
                .to_owned(),
        ),
        other => Err(format!("address scheme `{other}` is not http or https")),
    }
}

/// A mount name: `/`-separated segments of `[A-Za-z0-9._-]`, no `.`/`..`.
fn check_mount_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Whether `s` can travel in an HTTP header (vaultrs panics otherwise).
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4096 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a token or secret id file: bounded, trimmed, header-safe.
async fn read_credential_file(path: &Path, what: &str) -> Result<SecretString, String> {
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    if meta.len() > MAX_CREDENTIAL_FILE {
        return Err(format!("{what} file {shown} is larger than 64 KiB"));
    }
    let raw = Zeroizing::new(
        tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read {what} file {shown}: {e}"))?,
    );
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(format!("{what} file {shown} is empty"));
    }
    if !header_safe(trimmed) {
        return Err(format!(
            "{what} file {shown} holds characters a {what} cannot contain"
        ));
    }
    Ok(SecretString::from(trimmed))
}

// ---------------------------------------------------------------------------
// Upstream failures
// ---------------------------------------------------------------------------

/// The safe description of an upstream outage, kept as the source of
/// [`BackendError::Unavailable`]. Never holds a body, token or value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UpstreamFault(String);

/// How an upstream call failed, before it becomes a [`BackendError`].
enum Fault {
    /// 401/403: Leash's token lacks access, expired or was revoked.
    Denied,
    /// 404 with an empty error list: nothing there.
    NotFound,
    /// KV v2: the version exists but was deleted or destroyed.
    Deleted(SecretVersionMetadata),
    /// Connection failure, timeout, 5xx, 429.
    Unavailable(String),
    /// KV v2: a check-and-set write saw another version.
    CasMismatch,
    /// KV v2: the upstream mount requires check-and-set.
    CasRequired,
    /// Anything else Leash cannot use; a safe, fixed description.
    Upstream(String),
}

impl Fault {
    fn into_backend(self) -> BackendError {
        match self {
            Fault::Denied => BackendError::Upstream(PERMISSION_DENIED.to_owned()),
            Fault::NotFound => BackendError::Upstream("unexpected upstream 404".to_owned()),
            Fault::Deleted(_) => {
                BackendError::Upstream("unexpected deleted-version answer".to_owned())
            }
            Fault::Unavailable(m) => BackendError::Unavailable(Box::new(UpstreamFault(m))),
            Fault::CasMismatch => BackendError::NotApplied(NotApplied::CasMismatch),
            Fault::CasRequired => BackendError::BadRequest(
                "check-and-set parameter required for this call".to_owned(),
            ),
            Fault::Upstream(m) => BackendError::Upstream(m),
        }
    }
}

fn status_fault(code: u16, errors_empty: bool) -> Fault {
    match code {
        401 | 403 => Fault::Denied,
        404 if errors_empty => Fault::NotFound,
        404 => Fault::Upstream(
            "the upstream mount, namespace or route does not exist (HTTP 404)".to_owned(),
        ),
        408 | 412 | 429 | 500..=599 => {
            Fault::Unavailable(format!("the upstream store answered HTTP {code}"))
        }
        300..=399 => Fault::Upstream(format!(
            "the upstream store answered HTTP {code}; redirects are not followed"
        )),
        _ => Fault::Upstream(format!("the upstream store answered HTTP {code}")),
    }
}

/// Maps a vaultrs error. Bodies carried inside it are zeroised, never kept.
fn classify(e: ClientError) -> Fault {
    match e {
        // Vault's own fixed texts for check-and-set (never a value).
        ClientError::APIError { code: 400, errors }
            if errors
                .iter()
                .any(|e| e.contains("check-and-set parameter did not match")) =>
        {
            Fault::CasMismatch
        }
        ClientError::APIError { code: 400, errors }
            if errors
                .iter()
                .any(|e| e.contains("check-and-set parameter required")) =>
        {
            Fault::CasRequired
        }
        ClientError::APIError { code, errors } => status_fault(code, errors.is_empty()),
        ClientError::RestClientError { source } => classify_rest(source),
        ClientError::JsonParseError { .. }
        | ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError
        | ClientError::ResponseWrapError
        | ClientError::WrapInvalidError => {
            Fault::Upstream("the upstream answer does not have the expected shape".to_owned())
        }
        _ => Fault::Upstream("the upstream request could not be made".to_owned()),
    }
}

fn classify_rest(e: rustify::errors::ClientError) -> Fault {
    use rustify::errors::ClientError as R;
    match e {
        R::ServerResponseError { code, content } => {
            let content = content.map(Zeroizing::new);
            if code == 404
                && let Some(meta) = content.as_deref().and_then(|c| deleted_version(c))
            {
                return Fault::Deleted(meta);
            }
            drop(content);
            status_fault(code, false)
        }
        R::RequestError { source, .. } => Fault::Unavailable(format!(
            "could not reach the upstream store: {}",
            source.root_cause()
        )),
        R::ResponseError { .. } => {
            Fault::Unavailable("the upstream connection failed during the answer".to_owned())
        }
        R::ResponseParseError { content, .. } => {
            drop(content.map(Zeroizing::new));
            Fault::Upstream("the upstream answer is not the expected JSON".to_owned())
        }
        R::ResponseConversionError { content, .. } => {
            drop(Zeroizing::new(content));
            Fault::Upstream("the upstream answer is not UTF-8".to_owned())
        }
        _ => Fault::Upstream("the upstream request could not be built".to_owned()),
    }
}

/// The 404 envelope OpenBao/Vault send for a deleted or destroyed v2
/// version: `data.data` null and the version's metadata.
fn deleted_version(body: &str) -> Option<SecretVersionMetadata> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Body,
    }
    #[derive(Deserialize)]
    struct Body {
        data: Option<serde::de::IgnoredAny>,
        metadata: SecretVersionMetadata,
    }
    let env: Envelope = serde_json::from_str(body).ok()?;
    match env.data.data {
        None => Some(env.data.metadata),
        Some(_) => None,
    }
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

// ---------------------------------------------------------------------------
// The token and its upkeep
// ---------------------------------------------------------------------------

/// How Leash authenticates upstream.
enum AuthMethod {
    TokenFile(PathBuf),
    AppRole {
        role_id: String,
        secret_id_file: PathBuf,
        mount: String,
        /// The secret id last read; used if the file cannot be read again.
        secret_id: RwLock<Arc<SecretString>>,
    },
}

impl AuthMethod {
    fn is_approle(&self) -> bool {
        matches!(self, AuthMethod::AppRole { .. })
    }

    fn name(&self) -> &'static str {
        match self {
            AuthMethod::TokenFile(_) => "token_file",
            AuthMethod::AppRole { .. } => "approle",
        }
    }
}

/// A token fresh from a login or a token file.
struct Acquired {
    token: SecretString,
    ttl: Duration,
    base_ttl: Duration,
    renewable: bool,
}

/// The current token and when to act on it.
struct TokenState {
    token: Arc<SecretString>,
    /// Bumped on every new token, so concurrent refusals log in once.
    generation: u64,
    renewable: bool,
    /// The TTL a renewal resets to; a shorter answer means max TTL is near.
    base_ttl: Duration,
    /// The TTL as of `refreshed`; zero means the token never expires.
    ttl: Duration,
    refreshed: Instant,
    /// A renewal came back shorter than `base_ttl`.
    capped: bool,
    /// When the upkeep task acts next; `None` when there is nothing to do.
    next: Option<Instant>,
    backoff: Duration,
    logins: u64,
    renewals: u64,
    failures: u64,
}

impl TokenState {
    fn expired(&self, now: Instant) -> bool {
        !self.ttl.is_zero() && now >= self.refreshed + self.ttl
    }
}

/// What the token upkeep has done so far (for health and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultAuthStatus {
    /// Tokens taken into use: logins, and token files loaded.
    pub logins: u64,
    /// Successful renew-self calls.
    pub renewals: u64,
    /// Failed renewals and logins.
    pub failures: u64,
    /// Whether the current token can be renewed.
    pub renewable: bool,
    /// How long the current token has left; `None` if it never expires.
    pub expires_in: Option<Duration>,
}

/// A `vaultrs` client for one call, carrying a copy of the token that is
/// zeroised when the call ends. Not `Debug`.
struct Call<'a> {
    inner: &'a Inner,
    middle: EndpointMiddleware,
}

impl<'a> Call<'a> {
    fn new(inner: &'a Inner, token: &str) -> Self {
        let mut middle = inner.middle.clone();
        middle.token = token.to_owned();
        Self { inner, middle }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.middle.token.zeroize();
    }
}

impl vaultrs::client::Client for Call<'_> {
    fn http(&self) -> &rustify::clients::reqwest::Client {
        &self.inner.http
    }

    fn middle(&self) -> &EndpointMiddleware {
        &self.middle
    }

    fn settings(&self) -> &VaultClientSettings {
        &self.inner.settings
    }

    fn set_token(&mut self, token: &str) {
        self.middle.token.zeroize();
        token.clone_into(&mut self.middle.token);
    }
}

/// One upstream operation.
enum Op<'p> {
    Kv2Read {
        path: &'p str,
        version: Option<u64>,
    },
    Kv2Metadata(&'p str),
    Kv2List(&'p str),
    Kv1Read(&'p str),
    Kv1List(&'p str),
    /// KV v2 write; `data` is scrubbed by the caller afterwards.
    Kv2Write {
        path: &'p str,
        data: &'p Value,
        cas: Option<u32>,
    },
    Kv2DeleteLatest(&'p str),
    /// KV v1 write of the JSON object text.
    Kv1Write {
        path: &'p str,
        json: &'p str,
    },
    Kv1Delete(&'p str),
    LookupSelf,
    RenewSelf,
}

/// Its answer. Not `Debug`: it may hold a value.
enum Reply {
    Kv2(ReadSecretResponse),
    Metadata(ReadSecretMetadataResponse),
    Keys(Vec<String>),
    Kv1(Value),
    Lookup(LookupTokenResponse),
    Auth(AuthInfo),
    Written(SecretVersionMetadata),
    Done,
}

fn unexpected_reply() -> Fault {
    Fault::Upstream("unexpected answer kind".to_owned())
}

struct Inner {
    /// The Leash mount.
    mount: String,
    upstream_mount: String,
    client_kv: u8,
    upstream_kv: u8,
    address: String,
    timeout: Duration,
    http: rustify::clients::reqwest::Client,
    settings: VaultClientSettings,
    /// Version prefix and namespace; the token is set per call.
    middle: EndpointMiddleware,
    auth: AuthMethod,
    state: RwLock<TokenState>,
    /// One re-login at a time.
    relogin: AsyncMutex<()>,
    /// Wakes the upkeep task when the plan changes.
    wake: Arc<Notify>,
}

impl Inner {
    fn state(&self) -> RwLockReadGuard<'_, TokenState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, TokenState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> (Arc<SecretString>, u64) {
        let s = self.state();
        (s.token.clone(), s.generation)
    }

    /// When the upkeep task should act next for state `s`.
    fn plan(&self, s: &TokenState) -> Option<Instant> {
        if s.ttl.is_zero() {
            return None;
        }
        if !self.auth.is_approle() && (!s.renewable || s.capped) {
            // A token file's token cannot be replaced by Leash; once it can
            // no longer be extended there is nothing to do.
            return None;
        }
        Some(s.refreshed + (s.ttl * 2 / 3).max(MIN_STEP))
    }

    fn adopt(&self, a: Acquired) {
        let now = Instant::now();
        {
            let mut s = self.state_mut();
            s.token = Arc::new(a.token);
            s.generation += 1;
            s.renewable = a.renewable;
            s.base_ttl = a.base_ttl;
            s.ttl = a.ttl;
            s.refreshed = now;
            s.capped = false;
            s.backoff = Duration::ZERO;
            s.logins += 1;
            s.next = self.plan(&s);
        }
        self.wake.notify_one();
    }

    fn renewed(&self, generation: u64, auth: AuthInfo) {
        let AuthInfo {
            client_token,
            lease_duration,
            renewable,
            ..
        } = auth;
        drop(Zeroizing::new(client_token));
        let now = Instant::now();
        let mut s = self.state_mut();
        if s.generation != generation {
            return;
        }
        let ttl = Duration::from_secs(lease_duration);
        s.capped = ttl < s.base_ttl;
        s.ttl = ttl;
        s.renewable = renewable;
        s.refreshed = now;
        s.backoff = Duration::ZERO;
        s.renewals += 1;
        s.next = self.plan(&s);
    }

    /// After a failed renewal or login: try again later, with backoff.
    fn retry_later(&self, generation: u64) {
        let now = Instant::now();
        let mut s = self.state_mut();
        s.failures += 1;
        if s.generation != generation {
            return;
        }
        s.backoff = (s.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        s.next = if !self.auth.is_approle() && s.expired(now) {
            None
        } else {
            Some(now + s.backoff)
        };
    }

    /// Runs one operation with `token`, bounded by the timeout.
    async fn exec(&self, op: &Op<'_>, token: &SecretString) -> Result<Reply, Fault> {
        let call = Call::new(self, token.expose_secret());
        let m = self.upstream_mount.as_str();
        let work = async {
            let r = match *op {
                Op::Kv2Read { path, version } => {
                    let ep = ReadSecretRequest::builder()
                        .mount(m)
                        .path(path)
                        .version(version)
                        .build()
                        .map_err(|_| {
                            Fault::Upstream("the upstream request could not be built".to_owned())
                        })?;
                    vaultrs::api::exec_with_result(&call, ep)
                        .await
                        .map(Reply::Kv2)
                }
                Op::Kv2Metadata(path) => vaultrs::kv2::read_metadata(&call, m, path)
                    .await
                    .map(Reply::Metadata),
                Op::Kv2List(path) => vaultrs::kv2::list(&call, m, path).await.map(Reply::Keys),
                Op::Kv1Read(path) => vaultrs::kv1::get_raw(&call, m, path)
                    .await
                    .map(|r| Reply::Kv1(r.data)),
                Op::Kv1List(path) => vaultrs::kv1::list(&call, m, path)
                    .await
                    .map(|r| Reply::Keys(r.data.keys)),
                Op::Kv2Write { path, data, cas } => {
                    let mut b = SetSecretRequest::builder();
                    // The endpoint's copy of the value is vaultrs's buffer,
                    // not zeroised (like the HTTP client's).
                    b.mount(m).path(path).data(data.clone());
                    if let Some(cas) = cas {
                        b.options(SetSecretRequestOptions { cas });
                    }
                    let ep = b.build().map_err(|_| {
                        Fault::Upstream("the upstream request could not be built".to_owned())
                    })?;
                    vaultrs::api::exec_with_result(&call, ep)
                        .await
                        .map(Reply::Written)
                }
                Op::Kv2DeleteLatest(path) => vaultrs::kv2::delete_latest(&call, m, path)
                    .await
                    .map(|()| Reply::Done),
                Op::Kv1Write { path, json } => {
                    let ep = vaultrs::api::kv1::requests::SetSecretRequest::builder()
                        .mount(m)
                        .path(path)
                        .data(json.as_bytes().to_vec())
                        .build()
                        .map_err(|_| {
                            Fault::Upstream("the upstream request could not be built".to_owned())
                        })?;
                    vaultrs::api::exec_with_empty(&call, ep)
                        .await
                        .map(|()| Reply::Done)
                }
                Op::Kv1Delete(path) => vaultrs::kv1::delete(&call, m, path)
                    .await
                    .map(|()| Reply::Done),
                Op::LookupSelf => vaultrs::token::lookup_self(&call).await.map(Reply::Lookup),
                Op::RenewSelf => vaultrs::token::renew_self(&call, None)
                    .await
                    .map(Reply::Auth),
            };
            r.map_err(classify)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Unavailable(format!(
                "the upstream store did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Runs an operation with the current token. On a refusal, checks
    /// whether the token itself is dead; if so, logs in again (AppRole) or
    /// re-reads the token file, and retries once.
    async fn run(&self, op: Op<'_>) -> Result<Reply, Fault> {
        let (token, seen) = self.current();
        match self.exec(&op, &token).await {
            Err(Fault::Denied) => {}
            other => return other,
        }
        drop(token);
        if !self.reauthenticate(seen, true).await? {
            return Err(Fault::Denied);
        }
        let (token, _) = self.current();
        self.exec(&op, &token).await
    }

    /// Replaces a dead token. `Ok(false)` when there is no better token
    /// (token file unchanged, or the token is alive and the refusal was a
    /// policy denial). With `check_first`, asks lookup-self before acting,
    /// so a policy denial never turns into a login per request.
    async fn reauthenticate(&self, seen: u64, check_first: bool) -> Result<bool, Fault> {
        let _one = self.relogin.lock().await;
        let (current, generation) = self.current();
        if generation != seen {
            return Ok(true);
        }
        if check_first {
            match self.exec(&Op::LookupSelf, &current).await {
                Ok(Reply::Lookup(mut l)) => {
                    l.id.zeroize();
                    return Ok(false);
                }
                Ok(_) => return Err(unexpected_reply()),
                Err(Fault::Denied) => {}
                Err(f) => return Err(f),
            }
        }
        let acquired = match &self.auth {
            AuthMethod::AppRole { .. } => self.login_approle().await?,
            AuthMethod::TokenFile(path) => {
                let fresh = read_credential_file(path, "token")
                    .await
                    .map_err(Fault::Upstream)?;
                if fresh.expose_secret() == current.expose_secret() {
                    return Ok(false);
                }
                self.lookup_token(fresh).await?
            }
        };
        tracing::info!(mount = %self.mount, auth = self.auth.name(), "new upstream token in use");
        self.adopt(acquired);
        Ok(true)
    }

    /// Learns a token's TTL and renewability with lookup-self.
    async fn lookup_token(&self, token: SecretString) -> Result<Acquired, Fault> {
        match self.exec(&Op::LookupSelf, &token).await? {
            Reply::Lookup(mut l) => {
                l.id.zeroize();
                let ttl = Duration::from_secs(l.ttl);
                Ok(Acquired {
                    token,
                    ttl,
                    base_ttl: Duration::from_secs(l.creation_ttl).max(ttl),
                    renewable: l.renewable.unwrap_or(false),
                })
            }
            _ => Err(unexpected_reply()),
        }
    }

    async fn login_approle(&self) -> Result<Acquired, Fault> {
        let AuthMethod::AppRole {
            role_id,
            secret_id_file,
            mount,
            secret_id,
        } = &self.auth
        else {
            return Err(Fault::Upstream("not an AppRole backend".to_owned()));
        };
        let sid = match read_credential_file(secret_id_file, "secret id").await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *secret_id.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                fresh
            }
            Err(e) => {
                tracing::warn!(mount = %self.mount, "{e}; using the secret id read before");
                secret_id.read().unwrap_or_else(|p| p.into_inner()).clone()
            }
        };
        let call = Call::new(self, "");
        let login = vaultrs::auth::approle::login(&call, mount, role_id, sid.expose_secret());
        let auth = match tokio::time::timeout(self.timeout, login).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(Fault::Unavailable(format!(
                "the upstream store did not answer the AppRole login within {:?}",
                self.timeout
            ))),
        };
        let auth = auth.map_err(|f| match f {
            Fault::Denied => Fault::Upstream(format!(
                "{PERMISSION_DENIED}: AppRole login at auth/{mount} was refused (is AppRole enabled there?)"
            )),
            Fault::Upstream(m) => Fault::Upstream(format!(
                "AppRole login at auth/{mount} failed: {m} (wrong role_id or secret_id?)"
            )),
            other => other,
        })?;
        let AuthInfo {
            client_token,
            lease_duration,
            renewable,
            ..
        } = auth;
        let raw = Zeroizing::new(client_token);
        if !header_safe(&raw) {
            return Err(Fault::Upstream(
                "the AppRole login returned an unusable token".to_owned(),
            ));
        }
        let ttl = Duration::from_secs(lease_duration);
        Ok(Acquired {
            token: SecretString::from(raw.as_str()),
            ttl,
            base_ttl: ttl,
            renewable,
        })
    }

    /// One upkeep step, if one is due.
    async fn maintain(&self) {
        let now = Instant::now();
        let (generation, due, renewable, capped, expired) = {
            let s = self.state();
            (s.generation, s.next, s.renewable, s.capped, s.expired(now))
        };
        let Some(due) = due else { return };
        if now < due {
            return;
        }
        if self.auth.is_approle() && (capped || !renewable || expired) {
            self.background_login(generation).await;
            return;
        }
        let (token, generation) = self.current();
        match self.exec(&Op::RenewSelf, &token).await {
            Ok(Reply::Auth(auth)) => {
                tracing::debug!(mount = %self.mount, "upstream token renewed");
                self.renewed(generation, auth);
            }
            Ok(_) => self.retry_later(generation),
            Err(Fault::Denied) => {
                tracing::warn!(mount = %self.mount, "upstream token renewal refused");
                drop(token);
                match self.reauthenticate(generation, false).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // A dead token and no other: reads fail closed.
                        let mut s = self.state_mut();
                        s.failures += 1;
                        if s.generation == generation {
                            s.next = None;
                        }
                    }
                    Err(_) => self.retry_later(generation),
                }
            }
            Err(f) => {
                let why = match &f {
                    Fault::Unavailable(m) | Fault::Upstream(m) => m.as_str(),
                    _ => "unexpected answer",
                };
                tracing::warn!(mount = %self.mount, "upstream token renewal failed: {why}");
                if self.auth.is_approle() && expired {
                    self.background_login(generation).await;
                } else {
                    self.retry_later(generation);
                }
            }
        }
    }

    async fn background_login(&self, generation: u64) {
        if let Err(f) = self.reauthenticate(generation, false).await {
            let why = match &f {
                Fault::Unavailable(m) | Fault::Upstream(m) => m.as_str(),
                _ => "unexpected answer",
            };
            tracing::warn!(mount = %self.mount, "upstream login failed: {why}");
            self.retry_later(generation);
        }
    }

    // -- KV ------------------------------------------------------------------

    async fn read_v2(
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

    async fn read_v1(
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

    async fn metadata_v2(&self, path: &str) -> Result<Option<Vec<VersionInfo>>, BackendError> {
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

    async fn write_v2(
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
                created_time: parse_time(&meta.created_time).map_err(Fault::into_backend)?,
            }),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(Fault::CasMismatch) if rule == WriteRule::CreateOnly => {
                Err(BackendError::NotApplied(NotApplied::AlreadyExists))
            }
            Err(f) => Err(f.into_backend()),
        }
    }

    async fn write_v1(
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
            Ok(Reply::Done) => Ok(Written {
                version: 1,
                created_time: Utc::now(),
            }),
            Ok(_) => Err(unexpected_reply().into_backend()),
            Err(f) => Err(f.into_backend()),
        }
    }

    async fn delete_latest(&self, path: &str) -> Result<(), BackendError> {
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

    async fn list_keys(&self, folder: &str) -> Result<Vec<String>, BackendError> {
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
fn check_path(path: &str) -> Result<(), BackendError> {
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

/// The upkeep task: sleeps until the next planned step (or a change of
/// plan), then acts. Ends when the backend is dropped.
async fn upkeep(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = match inner.upgrade() {
            Some(i) => i.state().next,
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
        let Some(i) = inner.upgrade() else { return };
        i.maintain().await;
    }
}

// ---------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------

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
        let err = |what: String| config_error(mount, what);
        if !matches!(kv_version_to_clients, 1 | 2) {
            return Err(err("the KV version shown to clients must be 1 or 2".into()));
        }
        if !matches!(settings.kv_version, 1 | 2) {
            return Err(err("kv_version must be 1 or 2".into()));
        }
        if mount.is_empty() || mount.contains('/') {
            return Err(err("invalid Leash mount name".into()));
        }
        let upstream_mount = settings.mount.trim_end_matches('/');
        if !check_mount_name(upstream_mount) {
            return Err(err(
                "mount must be `/`-separated segments of letters, digits, `.`, `_`, `-`".into(),
            ));
        }
        if settings.timeout.is_zero() || settings.timeout > MAX_TIMEOUT {
            return Err(err("timeout must be between 1ms and 10m".into()));
        }
        let url =
            check_address(&settings.address, settings.insecure_allow_plaintext).map_err(err)?;
        let namespace = match settings.namespace.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(ns) if header_safe(ns) => Some(ns.to_owned()),
            Some(_) => return Err(err("namespace holds characters a header cannot".into())),
        };
        if !header_safe(
            settings
                .approle
                .as_ref()
                .map_or("x", |a| a.role_id.as_str()),
        ) {
            return Err(err(
                "approle.role_id is empty or holds invalid characters".into()
            ));
        }
        let auth = match (&settings.token_file, &settings.approle) {
            (Some(path), None) => AuthMethod::TokenFile(path.clone()),
            (None, Some(a)) => {
                if !check_mount_name(&a.mount) {
                    return Err(err("approle.mount is not a valid mount name".into()));
                }
                let secret_id = read_credential_file(&a.secret_id_file, "secret id")
                    .await
                    .map_err(err)?;
                AuthMethod::AppRole {
                    role_id: a.role_id.clone(),
                    secret_id_file: a.secret_id_file.clone(),
                    mount: a.mount.clone(),
                    secret_id: RwLock::new(Arc::new(secret_id)),
                }
            }
            (Some(_), Some(_)) => {
                return Err(err("set either token_file or approle, not both".into()));
            }
            (None, None) => return Err(err("set token_file or approle".into())),
        };

        let https = url.scheme() == "https";
        let mut http = reqwest_vault::Client::builder()
            .tls_backend_rustls()
            .timeout(settings.timeout)
            .redirect(reqwest_vault::redirect::Policy::none())
            .https_only(https);
        if https {
            if let Some(ca) = &settings.ca_cert_file {
                let pem = tokio::fs::read(ca)
                    .await
                    .map_err(|e| err(format!("cannot read ca_cert_file {}: {e}", ca.display())))?;
                let certs = reqwest_vault::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| {
                        err(format!(
                            "ca_cert_file {} holds no PEM certificate",
                            ca.display()
                        ))
                    })?;
                http = http.tls_certs_merge(certs);
            }
        } else {
            // No TLS at all for a loopback http address (as vaultrs does).
            http = http.tls_certs_only(Vec::new());
        }
        let http = http
            .build()
            .map_err(|_| err("could not build the HTTP client".into()))?;
        let http = rustify::clients::reqwest::Client::new(url.as_str(), http);
        let client_settings = VaultClientSettings {
            address: url.clone(),
            ca_certs: Vec::new(),
            identity: None,
            timeout: Some(settings.timeout),
            token: String::new(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: namespace.clone(),
            proxy: None,
        };
        let middle = EndpointMiddleware {
            token: String::new(),
            version: "v1".to_owned(),
            wrap: None,
            namespace,
        };

        let inner = Inner {
            mount: mount.to_owned(),
            upstream_mount: upstream_mount.to_owned(),
            client_kv: kv_version_to_clients,
            upstream_kv: settings.kv_version,
            address: url.to_string(),
            timeout: settings.timeout,
            http,
            settings: client_settings,
            middle,
            auth,
            state: RwLock::new(TokenState {
                token: Arc::new(SecretString::from("")),
                generation: 0,
                renewable: false,
                base_ttl: Duration::ZERO,
                ttl: Duration::ZERO,
                refreshed: Instant::now(),
                capped: false,
                next: None,
                backoff: Duration::ZERO,
                logins: 0,
                renewals: 0,
                failures: 0,
            }),
            relogin: AsyncMutex::new(()),
            wake: Arc::new(Notify::new()),
        };
        let acquired = match &inner.auth {
            AuthMethod::TokenFile(path) => {
                let token = read_credential_file(path, "token").await.map_err(err)?;
                inner.lookup_token(token).await.map_err(|f| match f {
                    Fault::Denied => BackendError::Upstream(format!(
                        "{PERMISSION_DENIED}: the token in {} was refused by lookup-self \
                         (revoked, expired, or without the default policy)",
                        path.display()
                    )),
                    other => other.into_backend(),
                })?
            }
            AuthMethod::AppRole { .. } => {
                inner.login_approle().await.map_err(Fault::into_backend)?
            }
        };
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
        let now = Instant::now();
        let s = self.inner.state();
        VaultAuthStatus {
            logins: s.logins,
            renewals: s.renewals,
            failures: s.failures,
            renewable: s.renewable,
            expires_in: (!s.ttl.is_zero())
                .then(|| (s.refreshed + s.ttl).saturating_duration_since(now)),
        }
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

    async fn prepare_write(
        &self,
        grant: &Grant,
        _data: &SecretData,
        _rule: WriteRule,
        _cas: Option<u64>,
        _now: DateTime<Utc>,
    ) -> Result<Mutation, BackendError> {
        granted_path(grant, &self.inner.mount, WRITE_CAPS)?;
        Err(BackendError::ReadOnly)
    }

    fn prepare_delete(&self, grant: &Grant, _now: DateTime<Utc>) -> Result<Mutation, BackendError> {
        granted_path(grant, &self.inner.mount, &[Capability::Delete])?;
        Err(BackendError::ReadOnly)
    }

    async fn list(&self, grant: &Grant) -> Result<Vec<String>, BackendError> {
        let folder = granted_path(grant, &self.inner.mount, &[Capability::List])?;
        check_path(folder)?;
        tracing::debug!(mount = %self.inner.mount, path = folder, "upstream list");
        self.inner.list_keys(folder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "10 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "https://vault:8200",
            "https://vault.example.com",
            "http://127.0.0.1:8200",
            "http://127.8.9.10:1",
            "http://[::1]:8200/",
            "http://localhost:8200",
        ] {
            assert!(check_address(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://vault:8200",
            "http://10.0.0.1:8200",
            "http://[::2]:8200",
            "ftp://127.0.0.1",
            "https://user:pw@vault",
            "https://vault/prefix",
            "https://vault?x=1",
            "vault:8200",
        ] {
            assert!(check_address(bad, false).is_err(), "{bad}");
        }
        // Plain http elsewhere only with the explicit opt-in, and never to
        // a non-URL or with credentials.
        assert!(check_address("http://vault:8200", true).is_ok());
        assert!(check_address("http://user:pw@vault:8200", true).is_err());
        assert!(!printable_address("https://user:pw@vault").contains("pw"));
    }

    #[test]
    fn deleted_envelope() {
        let body = r#"{"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,
          "data":{"data":null,"metadata":{"created_time":"2026-11-26T19:33:47.261749839Z",
          "custom_metadata":null,"deletion_time":"2026-11-26T19:33:51.894054049Z",
          "destroyed":false,"version":2}},"wrap_info":null,"warnings":null,"auth":null}"#;
        let m = deleted_version(body).map(|m| m.version);
        assert_eq!(m, Some(2));
        assert!(deleted_version(r#"{"errors":[]}"#).is_none());
        assert!(
            deleted_version(
                r#"{"data":{"data":{"k":"v"},"metadata":{"created_time":"","deletion_time":"","destroyed":false,"version":1}}}"#
            )
            .is_none()
        );
    }

    #[test]
    fn scrub_empties_strings() {
        let mut v = serde_json::json!({"a": "secret", "b": ["x", {"c": "y"}]});
        scrub(&mut v);
        assert_eq!(v, serde_json::json!({}));
    }
}
