//! Leash's own upstream token and its lifecycle: the first token (from the
//! token file, checked with lookup-self, or from an AppRole login), the
//! upkeep task that renews it at about two thirds of its TTL or logs in
//! again when it can no longer be renewed, and the replacement of a token
//! the upstream refused (one re-login at a time, however many requests saw
//! the refusal).
//!
//! Must never happen: the token printed, logged or put in an error (it
//! lives in `SecretString`; tokens in upstream answers are zeroised); a
//! policy denial turned into a login per request (lookup-self first); a
//! lock held across an `.await`; a busy loop (never act more often than
//! `MIN_STEP`, back off up to `MAX_BACKOFF` after failures); an upkeep task
//! that outlives its backend.

use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::time::Instant;
use vaultrs::api::AuthInfo;
use zeroize::{Zeroize, Zeroizing};

use super::client::{Call, Inner, Op, Reply};
use super::credentials::{AuthMethod, header_safe, read_credential_file};
use super::fault::{Fault, PERMISSION_DENIED, classify, unexpected_reply};
use super::settings::config_error;
use crate::BackendError;

/// Never act on the token more often than this.
const MIN_STEP: Duration = Duration::from_millis(500);
/// The longest wait between retries of a failed renewal or login.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A token fresh from a login or a token file.
pub(super) struct Acquired {
    token: SecretString,
    ttl: Duration,
    base_ttl: Duration,
    renewable: bool,
}

/// The current token and when to act on it.
pub(super) struct TokenState {
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
    /// Before the first token is taken into use.
    pub(super) fn empty() -> Self {
        TokenState {
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
        }
    }

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

impl Inner {
    /// What the token upkeep has done so far.
    pub(super) fn auth_status(&self) -> VaultAuthStatus {
        let now = Instant::now();
        let s = self.state();
        VaultAuthStatus {
            logins: s.logins,
            renewals: s.renewals,
            failures: s.failures,
            renewable: s.renewable,
            expires_in: (!s.ttl.is_zero())
                .then(|| (s.refreshed + s.ttl).saturating_duration_since(now)),
        }
    }

    fn state(&self) -> RwLockReadGuard<'_, TokenState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, TokenState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn current(&self) -> (Arc<SecretString>, u64) {
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

    pub(super) fn adopt(&self, a: Acquired) {
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

    /// The first token, at start-up: the token file's, checked with
    /// lookup-self, or an AppRole login's.
    pub(super) async fn initial_token(&self) -> Result<Acquired, BackendError> {
        let err = |what: String| config_error(&self.mount, what);
        match &self.auth {
            AuthMethod::TokenFile(path) => {
                let token = read_credential_file(path, "token").await.map_err(err)?;
                self.lookup_token(token).await.map_err(|f| match f {
                    Fault::Denied => BackendError::Upstream(format!(
                        "{PERMISSION_DENIED}: the token in {} was refused by lookup-self \
                         (revoked, expired, or without the default policy)",
                        path.display()
                    )),
                    other => other.into_backend(),
                })
            }
            AuthMethod::AppRole { .. } => self.login_approle().await.map_err(Fault::into_backend),
        }
    }

    /// Replaces a dead token. `Ok(false)` when there is no better token
    /// (token file unchanged, or the token is alive and the refusal was a
    /// policy denial). With `check_first`, asks lookup-self before acting,
    /// so a policy denial never turns into a login per request.
    pub(super) async fn reauthenticate(&self, seen: u64, check_first: bool) -> Result<bool, Fault> {
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
}

/// The upkeep task: sleeps until the next planned step (or a change of
/// plan), then acts. Ends when the backend is dropped.
pub(super) async fn upkeep(inner: Weak<Inner>, wake: Arc<Notify>) {
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
