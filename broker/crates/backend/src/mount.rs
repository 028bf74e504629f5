//! Mount kinds: what a `[[mounts]]` entry can map to. Each kind's settings
//! type implements [`MountConfig`] in the kind's own module (its checks and
//! how it builds its backend), and [`MountKind`], declared once below, is
//! the registry: adding a kind is one module plus one line in
//! `mount_kinds!`. The broker's configuration reads a mount's `kind` as a
//! [`MountKindName`] and its section (`[mounts.<name>]`) through
//! [`MountKind::from_section`]; start-up calls [`MountConfig::build`].
//!
//! Must never happen: a kind that exists in one of these lists and not in
//! the others (the macro writes them all from the one registry line); a
//! secret in a kind's settings (they name files that hold secrets); a
//! backend built for a mount whose settings did not pass
//! [`MountConfig::check`].

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use leash_store::Store;
use serde::Deserialize;
use serde::de::MapAccess;
use zeroize::Zeroizing;

use crate::{AwsSettings, BackendError, BuiltinSettings, SecretBackend, VaultSettings};

/// An error from loading a key, as the broker reports it.
pub type KeyError = Box<dyn std::error::Error + Send + Sync>;

/// The settings a mount has whatever its kind, for [`MountConfig::check`].
#[derive(Debug, Clone, Copy)]
pub struct MountCommon {
    /// The KV version Vault clients see.
    pub kv_version: u8,
    /// `writable` as the operator wrote it (`None`: not written).
    pub writable: Option<bool>,
    /// Whether `keys.builtin_key_file` is set.
    pub builtin_key_file: bool,
}

/// Why a kind refuses a mount's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountRefusal {
    /// The mount breaks its kind's shape rule (its section, or a KV version
    /// the kind cannot serve): reported with the rules of every kind.
    Shape,
    /// Another reason, reported after the mount's path, e.g. `is builtin,
    /// which is always writable; …`.
    Other(&'static str),
}

/// What a kind's backend is built with.
pub struct BuildContext<'a> {
    /// The Leash mount path (the first path segment clients use).
    pub mount: &'a str,
    /// The KV version Vault clients see.
    pub kv_version: u8,
    /// Whether writes through Leash reach the store.
    pub writable: bool,
    /// Leash's own database.
    pub store: &'a Arc<dyn Store>,
    /// Loads the key that seals the built-in store; called only by a kind
    /// that needs it, so a configuration without such a mount never reads
    /// the key file.
    pub builtin_key: &'a (dyn Fn() -> Result<Zeroizing<Vec<u8>>, KeyError> + Send + Sync),
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The backend refused its settings or could not reach its store.
    #[error("{context}")]
    Backend {
        /// Which mount and what was being done, e.g. `mount "kv": cannot
        /// reach its OpenBao/Vault`.
        context: String,
        /// The cause.
        #[source]
        source: BackendError,
    },
    /// The context's key loader failed; shown as it reported it.
    #[error(transparent)]
    Key(KeyError),
}

/// One kind of mount, implemented by the kind's settings type.
#[async_trait]
pub trait MountConfig: Send + Sync {
    /// Checks this kind against the mount's common settings (beyond the
    /// checks every mount gets).
    fn check(&self, common: &MountCommon) -> Result<(), MountRefusal> {
        let _ = common;
        Ok(())
    }

    /// Whether workloads may write through Leash when the operator did not
    /// say (`writable` unset).
    fn writable_by_default(&self) -> bool {
        false
    }

    /// Whether the backend sits behind a [`Guarded`](crate::Guarded)
    /// (cache, retries, circuit breaker), as external stores do.
    fn guarded(&self) -> bool {
        true
    }

    /// The file paths in these settings, which the loader resolves against
    /// the configuration file's directory.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }

    /// The settings of a kind that has no section of its own; `None` (the
    /// default) for a kind whose `[mounts.<name>]` section is required.
    fn without_section() -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// A rule of this kind's shape besides its section, for the message
    /// that lists every kind's rules (e.g. `aws mounts are KV version 2`).
    fn shape_note() -> Option<&'static str>
    where
        Self: Sized,
    {
        None
    }

    /// Builds the backend of the mount `ctx` describes (not yet guarded).
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn SecretBackend>, BuildError>;
}

/// Writes the registry: [`MountKind`], [`MountKindName`] and the dispatch
/// between them and [`MountConfig`], from one line per kind.
macro_rules! mount_kinds {
    ($( $(#[doc = $doc:literal])* $name:literal => $variant:ident($settings:ty), )+) => {
        /// The kinds of store a mount can map to, each with its settings.
        /// The one list a new kind is added to.
        #[derive(Debug, Clone)]
        pub enum MountKind {
            $( $(#[doc = $doc])* $variant($settings), )+
        }

        /// The name of a kind, as written in `kind = "…"`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(rename = "MountKind")]
        pub enum MountKindName {
            $( $(#[doc = $doc])* #[serde(rename = $name)] $variant, )+
        }

        impl MountKindName {
            /// Every kind, in the registry's order.
            pub const ALL: &'static [MountKindName] = &[$(MountKindName::$variant),+];

            /// The name as written in the configuration (`vault`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(MountKindName::$variant => $name,)+
                }
            }

            /// The kind as messages show it (`Vault`).
            pub fn label(self) -> &'static str {
                match self {
                    $(MountKindName::$variant => stringify!($variant),)+
                }
            }

            /// The kind's [`MountConfig::shape_note`].
            pub fn shape_note(self) -> Option<&'static str> {
                match self {
                    $(MountKindName::$variant => <$settings as MountConfig>::shape_note(),)+
                }
            }

            /// The kind, when it has no section of its own.
            fn sectionless(self) -> Option<MountKind> {
                match self {
                    $(MountKindName::$variant => {
                        <$settings as MountConfig>::without_section().map(MountKind::$variant)
                    })+
                }
            }
        }

        impl MountKind {
            /// Which kind this is.
            pub fn name(&self) -> MountKindName {
                match self {
                    $(MountKind::$variant(_) => MountKindName::$variant,)+
                }
            }

            /// The kind's settings, as a [`MountConfig`].
            pub fn config(&self) -> &dyn MountConfig {
                match self {
                    $(MountKind::$variant(s) => s,)+
                }
            }

            /// The kind's settings, as a [`MountConfig`], to change.
            pub fn config_mut(&mut self) -> &mut dyn MountConfig {
                match self {
                    $(MountKind::$variant(s) => s,)+
                }
            }

            /// Reads the section of kind `name` (which has one) as the next
            /// value of `map`.
            pub fn from_section<'de, A: MapAccess<'de>>(
                name: MountKindName,
                map: &mut A,
            ) -> Result<MountKind, A::Error> {
                match name {
                    $(MountKindName::$variant => map.next_value::<$settings>().map(MountKind::$variant),)+
                }
            }
        }
    };
}
// The registry: one line per kind.
mount_kinds! {
    /// The built-in encrypted store in Leash's database (no section).
    "builtin" => Builtin(BuiltinSettings),
    /// An OpenBao/Vault KV engine (`[mounts.vault]`).
    "vault" => Vault(VaultSettings),
    /// AWS Secrets Manager (`[mounts.aws]`).
    "aws" => Aws(AwsSettings),
}

impl MountKindName {
    /// Whether the kind has a `[mounts.<name>]` section.
    pub fn has_section(self) -> bool {
        self.sectionless().is_none()
    }

    /// The kind whose section is called `key`.
    pub fn of_section(key: &str) -> Option<MountKindName> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.has_section() && k.as_str() == key)
    }

    /// The names of every section, in the registry's order.
    pub fn sections() -> &'static [&'static str] {
        static SECTIONS: OnceLock<Vec<&'static str>> = OnceLock::new();
        SECTIONS.get_or_init(|| {
            Self::ALL
                .iter()
                .filter(|k| k.has_section())
                .map(|k| k.as_str())
                .collect()
        })
    }
}

impl MountKind {
    /// The mount of kind `name` whose sections are `sections` (in the order
    /// written), or `None` when they do not fit: a kind with a section
    /// needs exactly its own, a kind without one needs none.
    pub fn assemble(name: MountKindName, mut sections: Vec<MountKind>) -> Option<MountKind> {
        match name.sectionless() {
            Some(kind) => sections.is_empty().then_some(kind),
            None if sections.len() == 1 && sections[0].name() == name => sections.pop(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_each_kind_once() {
        let names: Vec<&str> = MountKindName::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["builtin", "vault", "aws"]);
        assert_eq!(MountKindName::sections(), ["vault", "aws"]);
        assert_eq!(MountKindName::of_section("aws"), Some(MountKindName::Aws));
        assert_eq!(MountKindName::of_section("builtin"), None);
        assert_eq!(MountKindName::Vault.label(), "Vault");
    }

    #[test]
    fn sections_must_fit_their_kind() {
        let aws = || {
            MountKind::Aws(
                serde_json::from_str::<AwsSettings>(r#"{"region": "eu-central-1"}"#).unwrap(),
            )
        };
        assert!(MountKind::assemble(MountKindName::Builtin, vec![]).is_some());
        assert!(MountKind::assemble(MountKindName::Builtin, vec![aws()]).is_none());
        assert!(MountKind::assemble(MountKindName::Aws, vec![aws()]).is_some());
        assert!(MountKind::assemble(MountKindName::Aws, vec![]).is_none());
        assert!(MountKind::assemble(MountKindName::Aws, vec![aws(), aws()]).is_none());
        assert!(MountKind::assemble(MountKindName::Vault, vec![aws()]).is_none());
    }
}
