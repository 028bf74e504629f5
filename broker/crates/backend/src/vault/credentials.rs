//! Leash's own credentials for the upstream: the token file, or the AppRole
//! role id and secret-id file. Files are read bounded, trimmed and checked
//! to be header-safe; the AppRole secret id is read again at every login
//! (so it can be rotated), falling back to the one read before.
//!
//! Must never happen: a token or secret id printed, logged, put in an error
//! or a `Debug` output (they live in `SecretString`, and the types here are
//! not `Debug`); a credential file read without a size bound; a value that
//! cannot travel in an HTTP header handed to `vaultrs` (it would panic).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::settings::AuthChoice;

/// Token and secret id files larger than this are refused.
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// Whether `s` can travel in an HTTP header (vaultrs panics otherwise).
pub(super) fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4096 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a token or secret id file: bounded, trimmed, header-safe.
pub(super) async fn read_credential_file(path: &Path, what: &str) -> Result<SecretString, String> {
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

/// How Leash authenticates upstream.
pub(super) enum AuthMethod {
    /// With the token in this file (re-read when the token is refused).
    TokenFile(PathBuf),
    /// By AppRole login.
    AppRole {
        role_id: String,
        secret_id_file: PathBuf,
        mount: String,
        /// The secret id last read; used if the file cannot be read again.
        secret_id: RwLock<Arc<SecretString>>,
    },
}

impl AuthMethod {
    pub(super) fn is_approle(&self) -> bool {
        matches!(self, AuthMethod::AppRole { .. })
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            AuthMethod::TokenFile(_) => "token_file",
            AuthMethod::AppRole { .. } => "approle",
        }
    }

    /// The method `choice` names. For AppRole, reads the secret id file
    /// now, so a missing or bad file stops start-up.
    pub(super) async fn load(choice: AuthChoice<'_>) -> Result<Self, String> {
        Ok(match choice {
            AuthChoice::TokenFile(path) => AuthMethod::TokenFile(path.to_owned()),
            AuthChoice::AppRole(a) => {
                let secret_id = read_credential_file(&a.secret_id_file, "secret id").await?;
                AuthMethod::AppRole {
                    role_id: a.role_id.clone(),
                    secret_id_file: a.secret_id_file.clone(),
                    mount: a.mount.clone(),
                    secret_id: RwLock::new(Arc::new(secret_id)),
                }
            }
        })
    }
}
