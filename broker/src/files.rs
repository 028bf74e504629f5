//! Files and descriptors: reading the key and token files the
//! configuration names, refusing to start when one of them is readable by
//! group or others, creating the SQLite store's file and directory private
//! (0600 and 0700) before the driver opens them, and raising the process's
//! open-file limit to what the connection caps need.
//!
//! Must never happen: `serve` starting with a key or token file others can
//! read, unless the operator said so (`keys.allow_insecure_file_modes`),
//! and then never silently; a key's bytes in an error or a log line.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use leash_backend::MountKind;
use zeroize::Zeroizing;

use crate::config::Settings;

/// Reads a key file: base64 (standard or URL-safe) or hex text, else the
/// raw bytes.
pub fn read_key(path: &Path, what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?,
    );
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    let decoded = text.and_then(|t| {
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .ok()
        }
    });
    Ok(Zeroizing::new(decoded.unwrap_or_else(|| raw.to_vec())))
}

/// Reads a one-line secret (a token) from a file.
pub fn read_secret_line(path: &Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let raw = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("{what}: cannot read {}", path.display()))?,
    );
    let line = raw.trim();
    if line.len() < 24 {
        bail!(
            "{what}: {} must hold a token of at least 24 characters",
            path.display()
        );
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// Every secret file `settings` names, with the setting that names it.
pub fn secret_files(settings: &Settings) -> Vec<(String, PathBuf)> {
    let mut files = vec![(
        "keys.hash_key_file".to_owned(),
        settings.keys.hash_key_file.clone(),
    )];
    if let Some(k) = &settings.keys.builtin_key_file {
        files.push(("keys.builtin_key_file".into(), k.clone()));
    }
    files.push((
        "operator.token_file".into(),
        settings.operator.token_file.clone(),
    ));
    for m in &settings.mounts {
        match &m.kind {
            MountKind::Vault(v) => {
                if let Some(t) = &v.token_file {
                    files.push((format!("mounts {:?}: vault.token_file", m.path), t.clone()));
                }
                if let Some(a) = &v.approle {
                    files.push((
                        format!("mounts {:?}: vault.approle.secret_id_file", m.path),
                        a.secret_id_file.clone(),
                    ));
                }
            }
            MountKind::Aws(a) => {
                if let Some(c) = &a.credentials_file {
                    files.push((
                        format!("mounts {:?}: aws.credentials_file", m.path),
                        c.clone(),
                    ));
                }
            }
            MountKind::Builtin(_) => {}
        }
    }
    for w in &settings.alerts.webhooks {
        files.push((
            format!("alerts.webhooks.{}.secret_file", w.name),
            w.secret_file.clone(),
        ));
    }
    files
}

/// The problem with `path`'s mode, if group or others may read or write it.
/// A file that cannot be read is left to whoever reads it.
#[cfg(unix)]
pub fn exposed(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Not checked off Unix.
#[cfg(not(unix))]
pub fn exposed(_path: &Path) -> Option<u32> {
    None
}

/// Each secret file that group or others may read, as a problem that
/// names it and the fix; with `keys.allow_insecure_file_modes`, none (each
/// is logged as a warning instead).
pub fn secret_file_problems(settings: &Settings) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, path) in secret_files(settings) {
        let Some(mode) = exposed(&path) else { continue };
        if settings.keys.allow_insecure_file_modes {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{mode:04o}"),
                "{what} is readable by group or others (allowed by keys.allow_insecure_file_modes); chmod 600 it"
            );
        } else {
            problems.push(format!(
                "{what}: {} is readable by group or others (mode {mode:04o}); run `chmod 600 {}` (or set keys.allow_insecure_file_modes = true to start anyway)",
                path.display(),
                path.display()
            ));
        }
    }
    problems
}

/// Refuses to go on when a secret file is exposed ([`secret_file_problems`]).
pub fn check_secret_file_modes(settings: &Settings) -> anyhow::Result<()> {
    let problems = secret_file_problems(settings);
    if !problems.is_empty() {
        bail!("{}", problems.join("\n  "));
    }
    Ok(())
}

/// Creates an SQLite store's directory (0700, when this creates it) and
/// its file (0600, which SQLite gives its `-wal` and `-shm` files too), and
/// narrows the modes of those files when they exist. `url` is `sqlite:PATH` (with or
/// without `//` and a `?query`); other URLs, and `:memory:`, are left alone.
pub fn prepare_sqlite_files(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(());
    };
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(());
    }
    private_sqlite(Path::new(path))
        .with_context(|| format!("store.url: cannot prepare the SQLite file {path}"))
}

#[cfg(unix)]
fn private_sqlite(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // The mode is masked by the umask at creation; set it exactly.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    // SQLite creates its journal, `-wal` and `-shm` files with the main
    // file's mode; narrow any left from before.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_sqlite(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Raises this process's soft limit on open files to its hard limit, so
/// that the connection caps, not the descriptor limit, bound what peers
/// can hold; warns when the limit is below what the caps need.
pub fn raise_open_file_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut lim = getrlimit(Resource::Nofile);
        if lim.current != lim.maximum {
            let wanted = rustix::process::Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => lim = getrlimit(Resource::Nofile),
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
        }
        // The store's pool, the listener, logs and upstream connections
        // need descriptors besides the peers'.
        let needed = u64::try_from(max_connections)
            .unwrap_or(u64::MAX)
            .saturating_add(256);
        match lim.current {
            Some(n) if n < needed => tracing::warn!(
                limit = n,
                needed,
                "the open-file limit is below server.max_connections plus headroom; lower server.max_connections or raise the hard limit (ulimit -Hn)"
            ),
            _ => tracing::debug!(limit = ?lim.current, "open-file limit"),
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn sqlite_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/sub/leash.db");
        prepare_sqlite_files(&format!("sqlite:{}?mode=rwc", db.display())).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&db), 0o600);
        // Existing files are narrowed.
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        std::fs::write(&wal, "").unwrap();
        for p in [&db, &wal] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare_sqlite_files(&format!("sqlite://{}", db.display())).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        prepare_sqlite_files("sqlite::memory:").unwrap();
        prepare_sqlite_files("postgres://x@y/z").unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn exposed_modes_are_found() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(exposed(&f), Some(0o644));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposed(&f), None);
        assert_eq!(exposed(&dir.path().join("absent")), None);
    }
}
