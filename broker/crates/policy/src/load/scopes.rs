//! Checking one `[[scope]]`: its pattern and what it grants or denies.
//! Nothing here may accept a scope that grants nothing, a deny scope that
//! lists capabilities, or an unknown capability.

use crate::capability::{CapSet, Capability};
use crate::pattern::parse_pattern;
use crate::workload::{Rule, Scope};

use super::check::FileCheck;
use super::raw::RawScope;

impl FileCheck<'_> {
    pub(super) fn scope(&mut self, raw: RawScope) -> Option<(Scope, Rule)> {
        let pattern = match parse_pattern(raw.path.get_ref()) {
            Ok(p) => Some(p),
            Err(why) => {
                self.problem(raw.path.span(), why);
                None
            }
        };
        let deny = raw.deny.as_ref().is_some_and(|d| *d.get_ref());
        let mut caps = CapSet::default();
        match (&raw.capabilities, deny) {
            (Some(list), true) => {
                self.problem(
                    list.span(),
                    "a deny scope denies every capability; remove `capabilities`".to_owned(),
                );
                return None;
            }
            (None, true) => {}
            (None, false) => {
                self.problem(
                    raw.path.span(),
                    "scope grants nothing: add `capabilities` or `deny = true`".to_owned(),
                );
                return None;
            }
            (Some(list), false) => {
                if list.get_ref().is_empty() {
                    self.problem(
                        list.span(),
                        "scope grants nothing: `capabilities` is empty".to_owned(),
                    );
                    return None;
                }
                let mut ok = true;
                for c in list.get_ref() {
                    match c.get_ref().parse::<Capability>() {
                        Ok(cap) => caps.insert(cap),
                        Err(e) => {
                            self.problem(c.span(), e.to_string());
                            ok = false;
                        }
                    }
                }
                if !ok {
                    return None;
                }
            }
        }
        let pattern = pattern?;
        Some((
            Scope {
                pattern: raw.path.into_inner(),
                deny,
                capabilities: caps.to_vec(),
            },
            Rule {
                pattern,
                deny,
                caps,
            },
        ))
    }
}
