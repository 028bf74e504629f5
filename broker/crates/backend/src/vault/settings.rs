//! The settings of a `vault` mount and their validation: where the upstream
//! is (address, namespace, CA bundle), which KV mount and version it serves,
//! how Leash authenticates there (a token file or AppRole, exactly one) and
//! the per-request timeout.
//!
//! Must never happen: a secret in these settings (the token and the AppRole
//! secret id stay in their files); an address accepted that carries
//! credentials, a path or a query, or that sends a token over plain HTTP to
//! a non-loopback host without the operator's explicit opt-in; a `Debug`
//! output that shows a user:password part of the address.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::credentials::header_safe;
use crate::BackendError;

/// The longest per-request timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// seconds (Leash's one duration grammar, [`leash_domain::duration`]).
    #[serde(
        default = "default_timeout",
        deserialize_with = "leash_domain::duration::serde_str::deserialize"
    )]
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

pub(super) fn config_error(mount: &str, what: impl fmt::Display) -> BackendError {
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

/// How Leash authenticates upstream, as the settings choose it.
pub(super) enum AuthChoice<'s> {
    /// With the token in this file.
    TokenFile(&'s Path),
    /// By AppRole login.
    AppRole(&'s AppRoleAuth),
}

/// Settings that passed [`VaultSettings::check`].
pub(super) struct Checked<'s> {
    /// The upstream address.
    pub(super) url: url::Url,
    /// The upstream mount, without a trailing `/`.
    pub(super) upstream_mount: &'s str,
    /// Sent as `X-Vault-Namespace` when set.
    pub(super) namespace: Option<String>,
    /// How to authenticate.
    pub(super) auth: AuthChoice<'s>,
}

impl VaultSettings {
    /// Checks the settings of Leash mount `mount`, shown to clients as KV
    /// version `kv_version_to_clients`. Reads no file.
    pub(super) fn check(
        &self,
        mount: &str,
        kv_version_to_clients: u8,
    ) -> Result<Checked<'_>, BackendError> {
        let err = |what: String| config_error(mount, what);
        if !matches!(kv_version_to_clients, 1 | 2) {
            return Err(err("the KV version shown to clients must be 1 or 2".into()));
        }
        if !matches!(self.kv_version, 1 | 2) {
            return Err(err("kv_version must be 1 or 2".into()));
        }
        if mount.is_empty() || mount.contains('/') {
            return Err(err("invalid Leash mount name".into()));
        }
        let upstream_mount = self.mount.trim_end_matches('/');
        if !check_mount_name(upstream_mount) {
            return Err(err(
                "mount must be `/`-separated segments of letters, digits, `.`, `_`, `-`".into(),
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(err("timeout must be between 1ms and 10m".into()));
        }
        let url = check_address(&self.address, self.insecure_allow_plaintext).map_err(err)?;
        let namespace = match self.namespace.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(ns) if header_safe(ns) => Some(ns.to_owned()),
            Some(_) => return Err(err("namespace holds characters a header cannot".into())),
        };
        if !header_safe(self.approle.as_ref().map_or("x", |a| a.role_id.as_str())) {
            return Err(err(
                "approle.role_id is empty or holds invalid characters".into()
            ));
        }
        let auth = match (&self.token_file, &self.approle) {
            (Some(path), None) => AuthChoice::TokenFile(path),
            (None, Some(a)) => {
                if !check_mount_name(&a.mount) {
                    return Err(err("approle.mount is not a valid mount name".into()));
                }
                AuthChoice::AppRole(a)
            }
            (Some(_), Some(_)) => {
                return Err(err("set either token_file or approle, not both".into()));
            }
            (None, None) => return Err(err("set token_file or approle".into())),
        };
        Ok(Checked {
            url,
            upstream_mount,
            namespace,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_takes_the_shared_duration_grammar() {
        let parse = |t: serde_json::Value| {
            serde_json::from_value::<VaultSettings>(
                serde_json::json!({"address": "https://v", "mount": "m", "timeout": t}),
            )
            .map(|s| s.timeout)
        };
        assert_eq!(parse("500ms".into()).unwrap(), Duration::from_millis(500));
        assert_eq!(parse(7.into()).unwrap(), Duration::from_secs(7));
        for (text, want) in [
            ("10", Duration::from_secs(10)),
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse(text.into()).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "10 s",
            "99999999999999999999h",
        ] {
            assert!(parse(bad.into()).is_err(), "{bad}");
        }
        assert!(parse((-1).into()).is_err());
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
}
