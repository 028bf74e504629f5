//! The built-in secret store, for both databases: the shapes it persists,
//! its writes (inside a commit, as a [`Mutation`], or on their own) and its
//! reads, and folder listing.
//!
//! Owns: [`KvVersion`], [`KvVersionMeta`]; the write rules (create-only,
//! update-only, check-and-set) decided in the one statement that bumps the
//! version; how a folder's direct children are derived from stored paths.
//! Must never happen: a sealed value printed by `Debug`; a write rule
//! checked by a read before the write (a race); a listing that treats a
//! folder name as a pattern (prefixes are literal).
//!
//! [`Mutation`]: leash_domain::records::Mutation

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use leash_domain::records::{NotApplied, Outcome, WriteRule};
use serde::Serialize;
use sqlx::Pool;

use crate::codec::{self, KvMetaRow, KvRow, micros};
use crate::dialect::{Dialect, begin_write};
use crate::{StoreError, sql};

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
fn folder_prefix(folder: &str) -> String {
    if folder.is_empty() || folder.ends_with('/') {
        folder.to_owned()
    } else {
        format!("{folder}/")
    }
}

/// The direct children of `prefix` among `paths`: leaf names, and `sub/`
/// for sub-folders; sorted, without duplicates.
fn children(prefix: &str, paths: impl IntoIterator<Item = String>) -> Vec<String> {
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

/// Writes a new version of `path` inside a commit, if `rule` and `cas`
/// allow it ([`Mutation::KvWrite`]).
///
/// [`Mutation::KvWrite`]: leash_domain::records::Mutation::KvWrite
pub(crate) async fn write<DB: Dialect>(
    conn: &mut DB::Connection,
    mount: &str,
    path: &str,
    sealed: &[u8],
    rule: WriteRule,
    cas: Option<u64>,
    now: i64,
) -> Result<Outcome, StoreError> {
    // One statement decides and bumps the version, so the rule and the
    // check-and-set hold under concurrency in both databases.
    let (statement, cas_bind, refused) = match (rule, cas) {
        (_, Some(0)) => (sql::KV_CREATE, None, NotApplied::CasMismatch),
        (WriteRule::CreateOnly, Some(_)) => {
            return Ok(Outcome::NotApplied(NotApplied::AlreadyExists));
        }
        (_, Some(c)) => (
            sql::KV_UPDATE_CAS,
            Some(i64::try_from(c).unwrap_or(i64::MAX)),
            NotApplied::CasMismatch,
        ),
        (WriteRule::CreateOnly, None) => (sql::KV_CREATE, None, NotApplied::AlreadyExists),
        (WriteRule::UpdateOnly, None) => (sql::KV_UPDATE, None, NotApplied::Missing),
        (WriteRule::Any, None) => (sql::KV_BUMP, None, NotApplied::Missing),
    };
    let mut q = DB::query(statement).bind(mount).bind(path).bind(now);
    if let Some(c) = cas_bind {
        q = q.bind(c);
    }
    let bumped: Option<(i64,)> = q.fetch_optional(&mut *conn).await?;
    let Some((v,)) = bumped else {
        return Ok(Outcome::NotApplied(refused));
    };
    DB::query(sql::KV_INSERT)
        .bind(mount)
        .bind(path)
        .bind(v)
        .bind(now)
        .bind(sealed)
        .execute(conn)
        .await?;
    Ok(Outcome::Written {
        version: codec::version(v)?,
    })
}

/// Soft-deletes the latest version of `path` inside a commit
/// ([`Mutation::KvDelete`]); the rows changed (0 when there is none).
///
/// [`Mutation::KvDelete`]: leash_domain::records::Mutation::KvDelete
pub(crate) async fn delete_latest<DB: Dialect>(
    conn: &mut DB::Connection,
    mount: &str,
    path: &str,
    now: i64,
) -> Result<u64, StoreError> {
    DB::query(sql::KV_DELETE_LATEST)
        .bind(mount)
        .bind(path)
        .bind(now)
        .execute(conn)
        .await
}

/// [`KvStore::kv_put`](crate::KvStore::kv_put): a new version,
/// unconditionally, in a write transaction of its own on `writer`.
pub(crate) async fn put<DB: Dialect>(
    writer: &Pool<DB>,
    mount: &str,
    path: &str,
    sealed: &[u8],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut tx = begin_write(writer).await?;
    let (v,): (i64,) = DB::query(sql::KV_BUMP)
        .bind(mount)
        .bind(path)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await?;
    DB::query(sql::KV_INSERT)
        .bind(mount)
        .bind(path)
        .bind(v)
        .bind(micros(now))
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    codec::version(v)
}

/// [`KvStore::kv_get`](crate::KvStore::kv_get).
pub(crate) async fn get<DB: Dialect>(
    readers: &Pool<DB>,
    mount: &str,
    path: &str,
    version: Option<u64>,
) -> Result<Option<KvVersion>, StoreError> {
    let row: Option<KvRow> = match version {
        None => {
            DB::query(sql::KV_LATEST)
                .bind(mount)
                .bind(path)
                .fetch_optional(readers)
                .await?
        }
        Some(v) => {
            let Ok(v) = i64::try_from(v) else {
                return Ok(None);
            };
            DB::query(sql::KV_VERSION)
                .bind(mount)
                .bind(path)
                .bind(v)
                .fetch_optional(readers)
                .await?
        }
    };
    row.map(KvVersion::try_from).transpose()
}

/// [`KvStore::kv_versions`](crate::KvStore::kv_versions).
pub(crate) async fn versions<DB: Dialect>(
    readers: &Pool<DB>,
    mount: &str,
    path: &str,
) -> Result<Vec<KvVersionMeta>, StoreError> {
    let rows: Vec<KvMetaRow> = DB::query(sql::KV_VERSIONS)
        .bind(mount)
        .bind(path)
        .fetch_all(readers)
        .await?;
    rows.into_iter().map(KvVersionMeta::try_from).collect()
}

/// [`KvStore::kv_list`](crate::KvStore::kv_list).
pub(crate) async fn list<DB: Dialect>(
    readers: &Pool<DB>,
    mount: &str,
    folder: &str,
) -> Result<Vec<String>, StoreError> {
    let prefix = folder_prefix(folder);
    let paths: Vec<(String,)> = DB::query(sql::KV_LIST)
        .bind(mount)
        .bind(prefix.as_str())
        .fetch_all(readers)
        .await?;
    Ok(children(&prefix, paths.into_iter().map(|(p,)| p)))
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
