//! The shapes the built-in secret store persists, and folder listing.
//!
//! Owns: [`KvVersion`], [`KvVersionMeta`] and how a folder's direct children
//! are derived from stored paths.
//! Must never happen: a sealed value printed by `Debug`, or a listing that
//! treats a folder name as a pattern (prefixes are literal).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One version of a secret in the built-in store. `sealed` is the value as
/// the backend encrypted it; the store never sees plaintext. `Debug` shows
/// only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct KvVersion {
    /// The version number, from 1.
    pub version: u64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Whether its value was destroyed.
    pub destroyed: bool,
    /// The sealed value; `None` once destroyed.
    pub sealed: Option<Vec<u8>>,
}

impl fmt::Debug for KvVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvVersion")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("deleted_at", &self.deleted_at)
            .field("destroyed", &self.destroyed)
            .field(
                "sealed",
                &self.sealed.as_ref().map(|s| format!("<{} bytes>", s.len())),
            )
            .finish()
    }
}

/// A version's metadata, without its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KvVersionMeta {
    /// The version number, from 1.
    pub version: u64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Whether its value was destroyed.
    pub destroyed: bool,
}

/// The folder as a literal prefix: `""` or ending in `/`.
pub(crate) fn folder_prefix(folder: &str) -> String {
    if folder.is_empty() || folder.ends_with('/') {
        folder.to_owned()
    } else {
        format!("{folder}/")
    }
}

/// The direct children of `prefix` among `paths`: leaf names, and `sub/`
/// for sub-folders; sorted, without duplicates.
pub(crate) fn children(prefix: &str, paths: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for p in paths {
        let Some(rest) = p.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        match rest.find('/') {
            Some(i) => out.insert(rest[..=i].to_owned()),
            None => out.insert(rest.to_owned()),
        };
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_direct_and_sorted() {
        let paths = ["a/b/c", "a/b/d", "a/x", "b", "a/b"].map(String::from);
        assert_eq!(children("", paths.clone()), vec!["a/", "b"]);
        assert_eq!(children("a/", paths.clone()), vec!["b", "b/", "x"]);
        assert_eq!(children("a/b/", paths.clone()), vec!["c", "d"]);
        assert!(children("z/", paths).is_empty());
        assert_eq!(folder_prefix("a/b"), "a/b/");
        assert_eq!(folder_prefix(""), "");
    }

    #[test]
    fn debug_hides_the_sealed_value() {
        let v = KvVersion {
            version: 1,
            created_at: DateTime::UNIX_EPOCH,
            deleted_at: None,
            destroyed: false,
            sealed: Some(b"sealed-bytes".to_vec()),
        };
        let s = format!("{v:?}");
        assert!(!s.contains("sealed-bytes") && !s.contains("115"));
        assert!(s.contains("<12 bytes>"));
    }
}
