//! [`LeashClient`]: one method per API call, over `reqwest`.
//!
//! URLs are built only from the validated base address, fixed path text and
//! [`crate::path`]-encoded segments. Lease ids travel in JSON bodies, the
//! token only in a sensitive `X-Vault-Token` header (never on login), and
//! redirects are not followed, so the token cannot be sent anywhere else.

use std::fmt;
use std::time::Duration;

use leash_api::{AuditPage, RevokeRequest, RevokeTarget, Revoked};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::path;
use crate::types::{Envelope, KeyList, KvData};
use crate::{
    AuditEvent, AuditVerify, Auth, ClientError, KvSecret, LeaseInfo, LeaseRenewal, Status,
    TokenInfo,
};

const TOKEN_HEADER: &str = "X-Vault-Token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one Leash broker, optionally holding a token.
///
/// Cheap to clone (the connection pool is shared). `Debug` never shows the
/// token.
#[derive(Clone)]
pub struct LeashClient {
    http: reqwest::Client,
    /// The base address without a trailing `/`.
    base: String,
    token: Option<String>,
}

impl fmt::Debug for LeashClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeashClient")
            .field("addr", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An unparsed answer, from [`LeashClient::raw`].
#[derive(Clone)]
pub struct RawResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl RawResponse {
    /// Parses the body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_str(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

impl fmt::Debug for RawResponse {
    /// The body may hold secret data or a token: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// Whether a request carries the client's token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenUse {
    Send,
    Omit,
}

impl LeashClient {
    /// A client for the broker at `addr`, e.g. `http://127.0.0.1:8200`.
    ///
    /// The address must be `http` or `https` with a host, and may carry a
    /// path prefix but no query, fragment or credentials. Requests time out
    /// after 30 seconds.
    pub fn new(addr: &str) -> Result<Self, ClientError> {
        let url = Url::parse(addr.trim())
            .map_err(|e| ClientError::InvalidAddress(format!("{addr:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::InvalidAddress(format!(
                "{addr:?}: the scheme must be http or https"
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ClientError::InvalidAddress(format!("{addr:?}: no host")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ClientError::InvalidAddress(format!(
                "{addr:?}: no query or fragment allowed"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ClientError::InvalidAddress(
                "credentials in the address are not allowed".into(),
            ));
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("leash-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            token: None,
        })
    }

    /// A copy of this client that sends `token` in `X-Vault-Token`.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()),
        }
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The base address, without a trailing `/`.
    pub fn addr(&self) -> &str {
        &self.base
    }

    // ----- workload API -----

    /// `POST /v1/auth/jwt/login`. Never sends a token header.
    pub async fn jwt_login(&self, role: &str, jwt: &str) -> Result<Auth, ClientError> {
        let body = json!({ "role": role, "jwt": jwt });
        let env: Envelope<Value> = self
            .envelope(
                Method::POST,
                "/v1/auth/jwt/login",
                Some(&body),
                TokenUse::Omit,
            )
            .await?;
        env.auth
            .ok_or_else(|| ClientError::Decode("the login answer has no `auth`".into()))
    }

    /// `GET /v1/{mount}/data/{path}[?version=N]`: a KV v2 read.
    pub async fn kv_read(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<KvSecret, ClientError> {
        let mut url = format!(
            "/v1/{}/data/{}",
            path::mount(mount)?,
            path::path(path, "the secret path", false)?
        );
        if let Some(v) = version {
            url.push_str(&format!("?version={v}"));
        }
        let env: Envelope<KvData> = self
            .envelope(Method::GET, &url, None, TokenUse::Send)
            .await?;
        let data = required(env.data, "data")?;
        Ok(KvSecret {
            request_id: env.request_id,
            lease_id: env.lease_id,
            lease_duration: env.lease_duration,
            renewable: env.renewable,
            data: data.data,
            metadata: data.metadata,
        })
    }

    /// `LIST /v1/{mount}/metadata/{path}`: the keys under a path (`dir/`
    /// for sub-paths). A 404 (nothing there) is an empty list.
    pub async fn kv_list(&self, mount: &str, path: &str) -> Result<Vec<String>, ClientError> {
        let url = format!(
            "/v1/{}/metadata/{}",
            path::mount(mount)?,
            path::path(path, "the secret path", true)?
        );
        let list = Method::from_bytes(b"LIST")
            .map_err(|e| ClientError::InvalidInput(format!("method LIST: {e}")))?;
        match self
            .envelope::<KeyList>(list, &url, None, TokenUse::Send)
            .await
        {
            Ok(env) => Ok(env.data.map(|d| d.keys).unwrap_or_default()),
            Err(ClientError::Api { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/sys/leases/lookup`.
    pub async fn lease_lookup(&self, lease_id: &str) -> Result<LeaseInfo, ClientError> {
        let body = json!({ "lease_id": lease_id });
        let env: Envelope<LeaseInfo> = self
            .envelope(
                Method::PUT,
                "/v1/sys/leases/lookup",
                Some(&body),
                TokenUse::Send,
            )
            .await?;
        required(env.data, "data")
    }

    /// `PUT /v1/sys/leases/renew`. `None` (or 0) asks for the workload's TTL.
    pub async fn lease_renew(
        &self,
        lease_id: &str,
        increment_secs: Option<u64>,
    ) -> Result<LeaseRenewal, ClientError> {
        let mut body = json!({ "lease_id": lease_id });
        if let Some(inc) = increment_secs {
            body["increment"] = json!(inc);
        }
        let env: Envelope<Value> = self
            .envelope(
                Method::PUT,
                "/v1/sys/leases/renew",
                Some(&body),
                TokenUse::Send,
            )
            .await?;
        Ok(LeaseRenewal {
            lease_id: env.lease_id,
            lease_duration: env.lease_duration,
            renewable: env.renewable,
            warnings: env.warnings,
        })
    }

    /// `PUT /v1/sys/leases/revoke`. Unknown ids succeed too.
    pub async fn lease_revoke(&self, lease_id: &str) -> Result<(), ClientError> {
        let body = json!({ "lease_id": lease_id });
        self.no_content(Method::PUT, "/v1/sys/leases/revoke", Some(&body))
            .await
    }

    /// `PUT /v1/sys/leases/revoke-prefix/{prefix}`: the caller's own leases
    /// under `prefix`.
    pub async fn lease_revoke_prefix(&self, prefix: &str) -> Result<(), ClientError> {
        let url = format!(
            "/v1/sys/leases/revoke-prefix/{}",
            path::path(prefix, "the prefix", false)?
        );
        self.no_content(Method::PUT, &url, None).await
    }

    /// `GET /v1/auth/token/lookup-self`.
    pub async fn token_lookup_self(&self) -> Result<TokenInfo, ClientError> {
        let env: Envelope<TokenInfo> = self
            .envelope(
                Method::GET,
                "/v1/auth/token/lookup-self",
                None,
                TokenUse::Send,
            )
            .await?;
        required(env.data, "data")
    }

    /// `POST /v1/auth/token/renew-self`. `None` asks for the default TTL.
    pub async fn token_renew_self(&self, increment_secs: Option<u64>) -> Result<Auth, ClientError> {
        let body = increment_secs.map(|inc| json!({ "increment": inc }));
        let env: Envelope<Value> = self
            .envelope(
                Method::POST,
                "/v1/auth/token/renew-self",
                body.as_ref(),
                TokenUse::Send,
            )
            .await?;
        required(env.auth, "auth")
    }

    /// `POST /v1/auth/token/revoke-self`: revokes the token and its leases.
    pub async fn token_revoke_self(&self) -> Result<(), ClientError> {
        self.no_content(Method::POST, "/v1/auth/token/revoke-self", None)
            .await
    }

    /// `GET /v1/sys/health`: the status code and the bare JSON body, for any
    /// status (503 means the store is unreachable).
    pub async fn health(&self) -> Result<(u16, Value), ClientError> {
        let raw = self
            .send(Method::GET, "/v1/sys/health", None, TokenUse::Omit)
            .await?;
        match serde_json::from_str(&raw.body) {
            Ok(v) => Ok((raw.status, v)),
            Err(_) if !is_success(raw.status) => Err(api_error(raw.status, &raw.body)),
            Err(e) => Err(ClientError::Decode(e.to_string())),
        }
    }

    // ----- operator API -----

    /// `GET /v1/leash/status`.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let env: Envelope<Status> = self
            .envelope(Method::GET, "/v1/leash/status", None, TokenUse::Send)
            .await?;
        required(env.data, "data")
    }

    /// `POST /v1/leash/leases/revoke {"lease_id"}`: how many were revoked.
    pub async fn admin_revoke_lease(&self, lease_id: &str) -> Result<u64, ClientError> {
        self.admin_revoke(RevokeTarget::Lease(lease_id.to_owned()))
            .await
    }

    /// `POST /v1/leash/leases/revoke {"prefix"}`: how many were revoked.
    pub async fn admin_revoke_prefix(&self, prefix: &str) -> Result<u64, ClientError> {
        self.admin_revoke(RevokeTarget::Prefix(prefix.to_owned()))
            .await
    }

    /// `POST /v1/leash/leases/revoke` `{"accessor"}`: revokes the token with
    /// this accessor and all its leases, on every replica. Returns how many
    /// tokens and leases were revoked.
    pub async fn admin_revoke_accessor(&self, accessor: &str) -> Result<u64, ClientError> {
        self.admin_revoke(RevokeTarget::Accessor(accessor.to_owned()))
            .await
    }

    /// `POST /v1/leash/leases/revoke` `{"workload"}`: revokes every token of
    /// the workload and all their leases, on every replica. Returns how many
    /// tokens and leases were revoked.
    pub async fn admin_revoke_workload(&self, workload: &str) -> Result<u64, ClientError> {
        self.admin_revoke(RevokeTarget::Workload(workload.to_owned()))
            .await
    }

    async fn admin_revoke(&self, target: RevokeTarget) -> Result<u64, ClientError> {
        let body = serde_json::to_value(RevokeRequest::from(target))
            .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        let env: Envelope<Revoked> = self
            .envelope(
                Method::POST,
                "/v1/leash/leases/revoke",
                Some(&body),
                TokenUse::Send,
            )
            .await?;
        Ok(required(env.data, "data")?.revoked)
    }

    /// `GET /v1/leash/audit?after=SEQ&limit=N`: events after `after`, in
    /// seq order (the broker caps `limit` at 1000).
    pub async fn audit_events(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, ClientError> {
        let url = format!("/v1/leash/audit?after={after}&limit={limit}");
        let env: Envelope<AuditPage> = self
            .envelope(Method::GET, &url, None, TokenUse::Send)
            .await?;
        Ok(required(env.data, "data")?.events)
    }

    /// `GET /v1/leash/audit/verify`.
    pub async fn audit_verify(&self) -> Result<AuditVerify, ClientError> {
        let env: Envelope<AuditVerify> = self
            .envelope(Method::GET, "/v1/leash/audit/verify", None, TokenUse::Send)
            .await?;
        required(env.data, "data")
    }

    // ----- escape hatch -----

    /// Sends any request (with the token, if set) and returns the answer
    /// unparsed, whatever its status. `path_and_query` must start with `/`.
    pub async fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<RawResponse, ClientError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::InvalidInput(format!("bad method {method:?}")))?;
        if !path_and_query.starts_with('/') || path_and_query.starts_with("//") {
            return Err(ClientError::InvalidInput(
                "the path must start with a single `/`".into(),
            ));
        }
        self.send(method, path_and_query, body.as_ref(), TokenUse::Send)
            .await
    }

    // ----- plumbing -----

    /// Sends a request and reads the whole answer.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        token_use: TokenUse,
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let parsed =
            Url::parse(&url).map_err(|e| ClientError::InvalidInput(format!("bad path: {e}")))?;
        if !parsed.as_str().starts_with(&self.base) {
            return Err(ClientError::InvalidInput(
                "the path leaves the broker's address".into(),
            ));
        }
        let mut req = self.http.request(method, parsed);
        if token_use == TokenUse::Send
            && let Some(token) = &self.token
        {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                ClientError::InvalidInput(
                    "the token holds characters not allowed in a header".into(),
                )
            })?;
            value.set_sensitive(true);
            req = req.header(TOKEN_HEADER, value);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// Sends a request and parses a success answer as an envelope.
    async fn envelope<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        token_use: TokenUse,
    ) -> Result<Envelope<T>, ClientError> {
        let raw = self.send(method, path_and_query, body, token_use).await?;
        if !is_success(raw.status) {
            return Err(api_error(raw.status, &raw.body));
        }
        if raw.status == 204 || raw.body.trim().is_empty() {
            return Err(ClientError::Decode(format!(
                "HTTP {} with an empty body where an envelope was expected",
                raw.status
            )));
        }
        serde_json::from_str(&raw.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Sends a request that answers 204 (or 202, or 200 with any body).
    async fn no_content(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(), ClientError> {
        let raw = self
            .send(method, path_and_query, body, TokenUse::Send)
            .await?;
        if is_success(raw.status) {
            Ok(())
        } else {
            Err(api_error(raw.status, &raw.body))
        }
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

fn required<T>(v: Option<T>, what: &str) -> Result<T, ClientError> {
    v.ok_or_else(|| ClientError::Decode(format!("the answer has no `{what}`")))
}

/// Maps an error answer to [`ClientError::Api`], keeping only the
/// `errors` strings (never the raw body, which could be anything).
fn api_error(status: u16, body: &str) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Option<Vec<String>>,
    }
    let errors = serde_json::from_str::<Errors>(body)
        .ok()
        .and_then(|e| e.errors)
        .unwrap_or_default();
    ClientError::Api { status, errors }
}

mod containment;

#[cfg(test)]
mod tests;
