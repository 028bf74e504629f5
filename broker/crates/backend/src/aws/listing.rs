//! Folder listings: `ListSecrets` with a name-prefix filter, re-checked
//! exactly (AWS matches loosely), reduced to the folder's direct children,
//! and a short cache of each folder's children, bounded in number, because
//! `ListSecrets` is rate-limited upstream.
//!
//! Must never happen: a child listed that is not under the folder byte for
//! byte, or that could not be a Leash path segment; an unbounded cache or
//! an unbounded number of pages read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::AwsBackend;
use super::fault::{Failure, classify};
use super::mapping::PAGE_SIZE;
use crate::BackendError;

/// Most folders whose children are cached at once.
const LIST_CACHE_MAX_FOLDERS: usize = 1024;
/// Most `ListSecrets` pages one listing reads (10 000 secrets).
const MAX_LIST_PAGES: usize = 100;

impl AwsBackend {
    /// The direct children of the folder whose full name prefix is `full`.
    pub(super) async fn list_children(&self, full: &str) -> Result<Vec<String>, BackendError> {
        let mut children = BTreeSet::new();
        let mut token: Option<String> = None;
        for page in 0.. {
            if page == MAX_LIST_PAGES {
                return Err(BackendError::Upstream(
                    "too many secrets under this folder to list".into(),
                ));
            }
            let mut req = self
                .client
                .list_secrets()
                .max_results(PAGE_SIZE)
                .set_next_token(token.take());
            if !full.is_empty() {
                req = req.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .values(full)
                        .build(),
                );
            }
            let out = req
                .send()
                .await
                .map_err(|e| match classify("ListSecrets", e, &[]) {
                    Failure::Missing => BackendError::Upstream("unexpected answer".into()),
                    Failure::Error(e) => e,
                })?;
            for entry in out.secret_list.unwrap_or_default() {
                if let Some(child) = entry.name.as_deref().and_then(|n| direct_child(full, n)) {
                    children.insert(child.to_owned());
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(children.into_iter().collect())
    }
}

/// The direct child of folder `full` that secret `name` lies in: a leaf
/// name, or `sub/` for a deeper one. `None` when `name` is not under `full`
/// exactly (AWS's name filter is looser than a byte prefix) or the child
/// could not be a Leash path segment.
fn direct_child<'n>(full: &str, name: &'n str) -> Option<&'n str> {
    let rest = name.strip_prefix(full)?;
    let child = match rest.find('/') {
        Some(i) => rest.get(..=i)?,
        None => rest,
    };
    let segment = child.strip_suffix('/').unwrap_or(child);
    if segment.is_empty() || segment == "." || segment == ".." {
        return None;
    }
    Some(child)
}

/// Children of recently listed folders, bounded in number; the oldest
/// entry is evicted first.
#[derive(Default)]
pub(super) struct ListCache {
    entries: HashMap<String, CachedList>,
    seq: u64,
}

struct CachedList {
    at: Instant,
    seq: u64,
    children: Arc<[String]>,
}

impl ListCache {
    /// Forgets every listing.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(super) fn get(&self, key: &str, ttl: Duration) -> Option<Vec<String>> {
        let hit = self.entries.get(key)?;
        (hit.at.elapsed() < ttl).then(|| hit.children.to_vec())
    }

    pub(super) fn put(&mut self, key: String, children: &[String], ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.entries.retain(|_, e| e.at.elapsed() < ttl);
        while self.entries.len() >= LIST_CACHE_MAX_FOLDERS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
        self.seq = self.seq.wrapping_add(1);
        self.entries.insert(
            key,
            CachedList {
                at: Instant::now(),
                seq: self.seq,
                children: Arc::from(children),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_children_are_exact() {
        assert_eq!(direct_child("prod/", "prod/db"), Some("db"));
        assert_eq!(direct_child("prod/", "prod/payments/db"), Some("payments/"));
        assert_eq!(direct_child("prod/", "Prod/db"), None);
        assert_eq!(direct_child("prod/", "prodX/db"), None);
        assert_eq!(direct_child("prod/", "prod/"), None);
        assert_eq!(direct_child("prod/", "prod//x"), None);
        assert_eq!(direct_child("prod/", "prod/../x"), None);
        assert_eq!(direct_child("", "top"), Some("top"));
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let mut c = ListCache::default();
        let ttl = Duration::from_secs(60);
        for i in 0..LIST_CACHE_MAX_FOLDERS + 10 {
            c.put(format!("f{i}/"), &[format!("x{i}")], ttl);
        }
        assert_eq!(c.entries.len(), LIST_CACHE_MAX_FOLDERS);
        assert!(c.get("f0/", ttl).is_none());
        assert_eq!(
            c.get(&format!("f{}/", LIST_CACHE_MAX_FOLDERS + 9), ttl),
            Some(vec![format!("x{}", LIST_CACHE_MAX_FOLDERS + 9)])
        );
        c.put("z/".into(), &[], Duration::ZERO);
        assert!(c.get("z/", Duration::ZERO).is_none());
    }
}
