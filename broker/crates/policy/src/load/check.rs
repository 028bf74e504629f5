//! Checking one policy file: parsing it into the raw schema, placing each
//! problem on its line, and assembling the workload from the sections
//! (`login`, `lease`, `conditions`, `scope`, `detection`, each checked in
//! its own module). Nothing here may stop at the first problem when more
//! can be found, or return a workload from a file that has any problem.

use std::ops::Range;
use std::path::Path;

use leash_domain::text::{escape_message, escape_untrusted};

use crate::conditions::Conditions;
use crate::workload::Workload;
use crate::{MAX_MESSAGE, MAX_QUOTED};

use super::detection::ScopeView;
use super::raw::RawFile;
use super::{LoadContext, MAX_FILE_BYTES, MAX_SCOPES, Problem};

/// A file that checked out: its workload, and where to point at its name
/// and (AppRole) role id should they clash with another file's.
pub(super) struct Parsed {
    pub(super) workload: Workload,
    pub(super) name_span: Range<usize>,
    pub(super) role_id_span: Option<Range<usize>>,
}

/// The problems of one file, and how to place them.
pub(super) struct FileCheck<'a> {
    file: &'a Path,
    src: &'a str,
    /// Problems found so far, in the order found.
    pub(super) problems: Vec<Problem>,
}

/// 1-based line of a byte offset.
fn line_at(src: &str, offset: usize) -> usize {
    let upto = src.as_bytes().get(..offset).unwrap_or(src.as_bytes());
    upto.iter().filter(|b| **b == b'\n').count() + 1
}

/// Whether `s` is a valid workload name: 1-64 of `a-z 0-9 - _ .`,
/// starting with a letter or digit.
pub(super) fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && b.len() <= 64
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
}

impl<'a> FileCheck<'a> {
    /// Starts checking `src`, read from `file`.
    pub(super) fn new(file: &'a Path, src: &'a str) -> Self {
        Self {
            file,
            src,
            problems: Vec::new(),
        }
    }

    /// Whether no problem has been found.
    pub(super) fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems found, by line.
    pub(super) fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| p.line);
        self.problems
    }

    /// Records a problem at the line where `span` starts.
    pub(super) fn problem(&mut self, span: Range<usize>, reason: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: line_at(self.src, span.start),
            reason,
        });
    }

    /// Parses and checks one file; the workload comes back only with no
    /// problems, together with the spans of its `name` and `role_id`.
    pub(super) fn parse(&mut self, ctx: &LoadContext) -> Option<Parsed> {
        if self.src.len() as u64 > MAX_FILE_BYTES {
            self.problems.push(Problem {
                file: self.file.to_path_buf(),
                line: 0,
                reason: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
            return None;
        }
        let raw: RawFile = match toml::from_str(self.src) {
            Ok(r) => r,
            Err(e) => {
                let reason = escape_message(e.message(), MAX_MESSAGE);
                match e.span() {
                    Some(span) => self.problem(span, reason),
                    None => self.problems.push(Problem {
                        file: self.file.to_path_buf(),
                        line: 0,
                        reason,
                    }),
                }
                return None;
            }
        };

        let name = raw.name.get_ref().clone();
        if !valid_name(&name) {
            self.problem(
                raw.name.span(),
                format!(
                    "invalid workload name `{}`: use 1-64 of a-z 0-9 - _ . starting with a letter or digit",
                    escape_untrusted(&name, MAX_QUOTED)
                ),
            );
        }
        let description = raw.description.map(|d| {
            let text = d.get_ref();
            if text.len() > 1024 || text.chars().any(char::is_control) {
                self.problem(
                    d.span(),
                    "description must be at most 1024 bytes, without control characters".to_owned(),
                );
            }
            d.into_inner()
        });
        let login = self.login(raw.login, ctx);
        let lease = self.lease(raw.lease);
        let conditions = match raw.conditions {
            Some(c) => self.conditions(c),
            None => Conditions::default(),
        };
        if raw.scope.len() > MAX_SCOPES {
            self.problems.push(Problem {
                file: self.file.to_path_buf(),
                line: 0,
                reason: format!("more than {MAX_SCOPES} scopes"),
            });
        }
        let mut scopes = Vec::with_capacity(raw.scope.len());
        let mut rules = Vec::with_capacity(raw.scope.len());
        let scope_count = raw.scope.len();
        for s in raw.scope {
            if let Some((scope, rule)) = self.scope(s) {
                scopes.push(scope);
                rules.push(rule);
            }
        }
        let view = ScopeView {
            scopes: &scopes,
            rules: (rules.len() == scope_count).then_some(rules.as_slice()),
        };
        let detection = self.detection(raw.detection, &view, &conditions);
        let (Some((login, role_id_span)), Some(lease), Some(detection)) = (login, lease, detection)
        else {
            return None;
        };
        if !self.problems.is_empty() {
            return None;
        }
        let matcher = Workload::compile(&rules);
        Some(Parsed {
            workload: Workload {
                name,
                description,
                login,
                lease,
                conditions,
                detection,
                scopes,
                rules,
                matcher,
                source: self.file.to_path_buf(),
            },
            name_span: raw.name.span(),
            role_id_span,
        })
    }
}
