//! Capabilities a scope can grant, and small sets of them. Nothing here may
//! accept a capability name other than the six listed, or grant anything
//! implicitly (`update` does not imply `create`, nor `read` imply `list`).

use std::fmt;
use std::str::FromStr;

/// One thing a caller may do to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Read a secret.
    Read,
    /// List the keys under a folder.
    List,
    /// Create a secret.
    Create,
    /// Overwrite a secret.
    Update,
    /// Patch a secret.
    Patch,
    /// Delete a secret.
    Delete,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 6] = [
        Capability::Read,
        Capability::List,
        Capability::Create,
        Capability::Update,
        Capability::Patch,
        Capability::Delete,
    ];

    /// The lower-case name used in policies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::List => "list",
            Capability::Create => "create",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Capability::Read => 1,
            Capability::List => 2,
            Capability::Create => 4,
            Capability::Update => 8,
            Capability::Patch => 16,
            Capability::Delete => 32,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability name that is not one of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown capability `{}` (expected read, list, create, update, patch or delete)",
    leash_domain::text::escape_untrusted(.0, crate::MAX_QUOTED)
)]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    /// Exact, lower-case names only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCapability(s.to_owned()))
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CapSet(u8);

impl CapSet {
    pub(crate) fn insert(&mut self, c: Capability) {
        self.0 |= c.bit();
    }

    pub(crate) fn contains(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    pub(crate) fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn to_vec(self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        for c in Capability::ALL {
            assert_eq!(c.to_string().parse::<Capability>(), Ok(c));
        }
        assert!("READ".parse::<Capability>().is_err());
        assert!("sudo".parse::<Capability>().is_err());
        assert!(" read".parse::<Capability>().is_err());
        assert!("".parse::<Capability>().is_err());
        let e = "re\u{202e}ad"
            .parse::<Capability>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\u{202e}"), "{e}");
    }

    #[test]
    fn sets() {
        let mut s = CapSet::default();
        assert!(s.is_empty());
        s.insert(Capability::Read);
        s.insert(Capability::List);
        assert!(s.contains(Capability::Read));
        assert!(!s.contains(Capability::Delete));
        assert_eq!(s.to_vec(), vec![Capability::Read, Capability::List]);
        let mut d = CapSet::default();
        d.insert(Capability::Delete);
        assert!(s.union(d).contains(Capability::Delete));
    }
}
