//! The connection to the upstream server: the HTTP client (redirects never
//! followed, TLS with the operator's extra CAs, or none at all for a
//! loopback `http` address), one `vaultrs` call per [`Op`] carrying a copy
//! of the token that is zeroised when the call ends, each bounded by the
//! mount's timeout, and the one retry after Leash's token was refused and
//! replaced.
//!
//! Must never happen: a call without a bound in time; a token copy that
//! outlives its call un-zeroised; a redirect followed (an `X-Vault-Token`
//! must not reach a host the operator did not name); a lock held across an
//! `.await`; a `Debug` of a type that may hold a token or a value.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::{Mutex as AsyncMutex, Notify};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::{
    ReadSecretMetadataResponse, ReadSecretResponse, SecretVersionMetadata,
};
use vaultrs::api::token::responses::LookupTokenResponse;
use vaultrs::api::{AuthInfo, EndpointMiddleware};
use vaultrs::client::VaultClientSettings;
use zeroize::Zeroize;

use super::credentials::AuthMethod;
use super::fault::{Fault, classify};
use super::settings::{Checked, VaultSettings, config_error};
use super::token::TokenState;
use crate::BackendError;

/// The upstream connection of one mount, shared with the upkeep task.
pub(super) struct Inner {
    /// The Leash mount.
    pub(super) mount: String,
    /// The upstream KV mount.
    pub(super) upstream_mount: String,
    /// The KV version shown to clients.
    pub(super) client_kv: u8,
    /// The upstream mount's KV version.
    pub(super) upstream_kv: u8,
    /// For `Debug`.
    pub(super) address: String,
    /// The bound on each call.
    pub(super) timeout: Duration,
    http: rustify::clients::reqwest::Client,
    settings: VaultClientSettings,
    /// Version prefix and namespace; the token is set per call.
    middle: EndpointMiddleware,
    pub(super) auth: AuthMethod,
    /// The current token and the upkeep plan.
    pub(super) state: RwLock<TokenState>,
    /// One re-login at a time.
    pub(super) relogin: AsyncMutex<()>,
    /// Wakes the upkeep task when the plan changes.
    pub(super) wake: Arc<Notify>,
}

impl Inner {
    /// The connection of Leash mount `mount` with `settings`, already
    /// checked: reads the AppRole secret id file (if that is the method)
    /// and the CA bundle, builds the HTTP client. Holds no token yet.
    pub(super) async fn new(
        mount: &str,
        kv_version_to_clients: u8,
        settings: &VaultSettings,
        checked: Checked<'_>,
    ) -> Result<Self, BackendError> {
        let err = |what: String| config_error(mount, what);
        let Checked {
            url,
            upstream_mount,
            namespace,
            auth,
        } = checked;
        let auth = AuthMethod::load(auth).await.map_err(err)?;

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

        Ok(Inner {
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
            state: RwLock::new(TokenState::empty()),
            relogin: AsyncMutex::new(()),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Runs one operation with `token`, bounded by the timeout.
    pub(super) async fn exec(&self, op: &Op<'_>, token: &SecretString) -> Result<Reply, Fault> {
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
    pub(super) async fn run(&self, op: Op<'_>) -> Result<Reply, Fault> {
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
}

/// A `vaultrs` client for one call, carrying a copy of the token that is
/// zeroised when the call ends. Not `Debug`.
pub(super) struct Call<'a> {
    inner: &'a Inner,
    middle: EndpointMiddleware,
}

impl<'a> Call<'a> {
    pub(super) fn new(inner: &'a Inner, token: &str) -> Self {
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
pub(super) enum Op<'p> {
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
pub(super) enum Reply {
    Kv2(ReadSecretResponse),
    Metadata(ReadSecretMetadataResponse),
    Keys(Vec<String>),
    Kv1(Value),
    Lookup(LookupTokenResponse),
    Auth(AuthInfo),
    Written(SecretVersionMetadata),
    Done,
}
