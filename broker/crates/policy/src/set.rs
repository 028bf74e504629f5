//! The [`PolicySet`]: a complete, valid set of workloads and its two
//! indexes, by name and by AppRole role id, built once at load and shared
//! read-only afterwards. Nothing here may read a file, validate a policy
//! (the loader does that before a workload gets here), or let two
//! workloads share a name or a role id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::workload::Workload;

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<String, Arc<Workload>>,
    /// AppRole role id → workload name.
    by_role_id: HashMap<String, String>,
    names: Vec<String>,
}

/// A complete, valid set of workloads. Cloning is cheap (shared).
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    inner: Arc<Inner>,
}

impl PolicySet {
    /// The workload called `name`.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.inner.by_name.get(name).map(|w| &**w)
    }

    /// The workload called `name`, shared: a request holds it for its whole
    /// life without looking it up again.
    pub fn shared(&self, name: &str) -> Option<Arc<Workload>> {
        self.inner.by_name.get(name).cloned()
    }

    /// The AppRole workload whose `login.role_id` is `role_id` (an index
    /// built at load; role ids are unique across the set).
    pub fn workload_by_role_id(&self, role_id: &str) -> Option<&Workload> {
        self.inner
            .by_role_id
            .get(role_id)
            .and_then(|name| self.inner.by_name.get(name))
            .map(|w| &**w)
    }

    /// How many workloads.
    pub fn len(&self) -> usize {
        self.inner.names.len()
    }

    /// Whether there are none (every request is then denied).
    pub fn is_empty(&self) -> bool {
        self.inner.names.is_empty()
    }

    /// The workload names, sorted.
    pub fn names(&self) -> &[String] {
        &self.inner.names
    }

    /// The workloads, sorted by name.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.inner
            .names
            .iter()
            .filter_map(|n| self.inner.by_name.get(n))
            .map(|w| &**w)
    }
}

/// A set being built by the loader: the indexes so far, which it asks
/// about clashes before it inserts a workload.
#[derive(Debug, Default)]
pub(crate) struct SetBuilder {
    by_name: HashMap<String, Arc<Workload>>,
    by_role_id: HashMap<String, String>,
}

impl SetBuilder {
    /// An empty set with room for `n` workloads.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            by_name: HashMap::with_capacity(n),
            by_role_id: HashMap::new(),
        }
    }

    /// The workload already in the set under `name`.
    pub(crate) fn named(&self, name: &str) -> Option<&Workload> {
        self.by_name.get(name).map(|w| &**w)
    }

    /// The workload already in the set with AppRole `role_id`.
    pub(crate) fn with_role_id(&self, role_id: &str) -> Option<&Workload> {
        self.by_role_id
            .get(role_id)
            .and_then(|n| self.by_name.get(n))
            .map(|w| &**w)
    }

    /// Adds a workload, indexing its role id if it logs in with AppRole.
    /// The caller has checked that neither its name nor its role id is
    /// taken; a clash would replace the earlier entry.
    pub(crate) fn insert(&mut self, w: Workload) {
        if let Some(role_id) = w.login.approle().map(|a| a.role_id.clone()) {
            self.by_role_id.insert(role_id, w.name.clone());
        }
        self.by_name.insert(w.name.clone(), Arc::new(w));
    }

    /// The finished set.
    pub(crate) fn finish(self) -> PolicySet {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        PolicySet {
            inner: Arc::new(Inner {
                by_name: self.by_name,
                by_role_id: self.by_role_id,
                names,
            }),
        }
    }
}
