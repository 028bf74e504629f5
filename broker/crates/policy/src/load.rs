//! Loading a policy set from TOML files, with every problem reported by
//! file and line: reading the directory, checking each file (in
//! `load/check.rs`, one module per section: `login`, `lease`,
//! `conditions`, `scopes`, `detection`, over the raw schema in
//! `load/raw.rs`), and
//! refusing names and role ids that clash across files. This is the only
//! module that reads files, and only when a set is loaded (at start-up or
//! on reload), never while deciding a request. Nothing here may accept a
//! set with any problem in it: a set loads completely or not at all. A
//! secret id digest is never echoed in a problem.

mod check;
mod conditions;
mod detection;
mod lease;
mod login;
mod raw;
mod scopes;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leash_domain::text::{escape_message, escape_untrusted};

pub use crate::set::PolicySet;
use crate::set::SetBuilder;
use crate::{MAX_MESSAGE, MAX_QUOTED};

use check::{FileCheck, Parsed};
pub use detection::MAX_DETECTION_LIST;

/// Largest policy file, in bytes.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// Most scopes in one workload.
pub const MAX_SCOPES: usize = 1024;
/// Longest lease the format allows.
pub const MAX_LEASE: Duration = Duration::from_secs(30 * 86_400);
/// Default `lease.ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// Default `lease.max_ttl`.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest AppRole `role_id`, in bytes.
pub const MAX_ROLE_ID: usize = 128;

/// What the loader needs to know about the broker's configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadContext {
    /// Names of the issuers configured in the broker.
    pub issuers: Vec<String>,
}

/// One thing wrong with a policy set. `line` is 1-based; 0 means the
/// problem is about the file (or directory) as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory).
    pub file: PathBuf,
    /// 1-based line, or 0.
    pub line: usize,
    /// What is wrong, log-safe.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        }
    }
}

impl std::error::Error for Problem {}

impl PolicySet {
    /// Loads every `*.toml` file directly in `dir` (not recursive; sorted
    /// by name; hidden files and other files ignored).
    pub fn load_dir(dir: &Path, ctx: &LoadContext) -> Result<PolicySet, Vec<Problem>> {
        let whole = |reason: String| Problem {
            file: dir.to_path_buf(),
            line: 0,
            reason,
        };
        let entries = fs::read_dir(dir).map_err(|e| {
            vec![whole(format!(
                "cannot read policy directory: {}",
                escape_message(&e.to_string(), MAX_MESSAGE)
            ))]
        })?;
        let mut problems = Vec::new();
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if name.ends_with(".toml") && !name.starts_with('.') {
                        paths.push(e.path());
                    }
                }
                Err(e) => problems.push(whole(format!(
                    "cannot list policy directory: {}",
                    escape_message(&e.to_string(), MAX_MESSAGE)
                ))),
            }
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let at = |reason: String| Problem {
                file: path.clone(),
                line: 0,
                reason,
            };
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(at(format!(
                        "cannot read: {}",
                        escape_message(&e.to_string(), MAX_MESSAGE)
                    )));
                    continue;
                }
            };
            if meta.is_dir() {
                continue;
            }
            if !meta.is_file() {
                problems.push(at("not a regular file".to_owned()));
                continue;
            }
            if meta.len() > MAX_FILE_BYTES {
                problems.push(at(format!("larger than {MAX_FILE_BYTES} bytes")));
                continue;
            }
            match fs::read(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => sources.push((path, text)),
                    Err(_) => problems.push(at("not valid UTF-8".to_owned())),
                },
                Err(e) => problems.push(at(format!(
                    "cannot read: {}",
                    escape_message(&e.to_string(), MAX_MESSAGE)
                ))),
            }
        }
        match Self::from_sources(&sources, ctx) {
            Ok(set) if problems.is_empty() => Ok(set),
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }

    /// Loads a set from in-memory files, in the given order.
    pub fn from_sources(
        sources: &[(PathBuf, String)],
        ctx: &LoadContext,
    ) -> Result<PolicySet, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut set = SetBuilder::with_capacity(sources.len());
        for (file, src) in sources {
            let mut fc = FileCheck::new(file, src);
            let parsed = fc.parse(ctx);
            if let Some(Parsed {
                workload: w,
                name_span,
                role_id_span,
            }) = parsed
            {
                if let Some(first) = set.named(&w.name) {
                    let reason = format!(
                        "workload `{}` is already defined in {}",
                        w.name,
                        escape_message(&first.source.display().to_string(), MAX_MESSAGE)
                    );
                    fc.problem(name_span, reason);
                }
                let role_id = w.login.approle().map(|a| a.role_id.as_str());
                if let (Some(role_id), Some(span)) = (role_id, role_id_span)
                    && let Some(first) = set.with_role_id(role_id)
                {
                    let reason = format!(
                        "role_id `{}` is already used by workload `{}` in {}",
                        escape_untrusted(role_id, MAX_QUOTED),
                        first.name,
                        escape_message(&first.source.display().to_string(), MAX_MESSAGE)
                    );
                    fc.problem(span, reason);
                }
                if fc.is_clean() {
                    set.insert(w);
                }
            }
            problems.extend(fc.into_problems());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(set.finish())
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
