//! `[[mounts]]`: one mount as the operator writes it — its path, its
//! `kind`, the KV version clients see, `writable`, `[mounts.cache]`, and
//! the section of its kind (`[mounts.vault]`, `[mounts.aws]`; none for
//! `builtin`), read into the backend crate's [`MountKind`] registry.
//!
//! The table is read by hand rather than derived, because its kind
//! sections come from the registry instead of one field per kind; it reads
//! exactly what the derived form did, with the same messages: unknown and
//! duplicate fields, an unknown kind, a missing `path` or `kind`.
//!
//! Must never happen: a mount whose sections do not fit its kind accepted
//! (a vault mount without `[mounts.vault]`, a builtin mount with any
//! section); a field silently ignored.

use std::fmt;

use leash_backend::{MountKind, MountKindName};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::CacheSettings;

/// The KV version clients see when `version` is not written.
const DEFAULT_KV_VERSION: u8 = 2;

/// `[[mounts]]`
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// The first path segment, e.g. `secret`.
    pub path: String,
    /// The kind of store (`kind = "…"`) with its settings (its section).
    pub kind: MountKind,
    /// The KV API version Vault clients see: 2 (default) or 1.
    pub version: u8,
    /// `[mounts.cache]`: the guard in front of an external store.
    pub cache: CacheSettings,
    /// Whether workloads may write through Leash (their policy still
    /// decides each write). External stores (`vault`, `aws`) default to
    /// `false`; the built-in store is always writable.
    pub writable: Option<bool>,
}

impl MountSettings {
    /// Whether writes through Leash reach this mount's store.
    pub fn writable(&self) -> bool {
        self.writable
            .unwrap_or_else(|| self.kind.config().writable_by_default())
    }
}

/// The message for a mount whose sections or KV version do not fit its
/// kind, listing every kind's rule.
pub(super) fn misfit(path: &str, kind: MountKindName) -> String {
    let mut own: Vec<String> = MountKindName::ALL
        .iter()
        .filter(|k| k.has_section())
        .map(|k| format!("[mounts.{0}] for {0}", k.as_str()))
        .collect();
    own.extend(
        MountKindName::ALL
            .iter()
            .filter(|k| !k.has_section())
            .map(|k| format!("none for {}", k.as_str())),
    );
    let notes: String = MountKindName::ALL
        .iter()
        .filter_map(|k| k.shape_note())
        .map(|n| format!("; {n}"))
        .collect();
    format!(
        "mounts: {path:?} of kind {} needs exactly its own section ({}){notes}",
        kind.label(),
        own.join(", ")
    )
}

/// The fields of a mount, in the order messages list them.
fn fields() -> &'static [&'static str] {
    static FIELDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut f = vec!["path", "kind", "version"];
        f.extend_from_slice(MountKindName::sections());
        f.extend(["cache", "writable"]);
        f
    })
}

/// A key of the mount table.
enum Field {
    Path,
    Kind,
    Version,
    Cache,
    Writable,
    /// The section of this kind.
    Section(MountKindName),
}

/// Reads a key, refusing unknown ones as it is read (so the message points
/// at the key).
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
        Ok(match key {
            "path" => Field::Path,
            "kind" => Field::Kind,
            "version" => Field::Version,
            "cache" => Field::Cache,
            "writable" => Field::Writable,
            other => match MountKindName::of_section(other) {
                Some(kind) => Field::Section(kind),
                None => return Err(E::unknown_field(other, fields())),
            },
        })
    }
}

impl<'de> Deserialize<'de> for MountSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MountVisitor)
    }
}

struct MountVisitor;

impl<'de> Visitor<'de> for MountVisitor {
    type Value = MountSettings;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct MountSettings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MountSettings, A::Error> {
        fn once<T, E: de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        let mut path: Option<String> = None;
        let mut kind: Option<MountKindName> = None;
        let mut version: Option<u8> = None;
        let mut cache: Option<CacheSettings> = None;
        let mut writable: Option<Option<bool>> = None;
        let mut sections: Vec<MountKind> = Vec::new();
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::Path => {
                    once(&path, "path")?;
                    path = Some(map.next_value()?);
                }
                Field::Kind => {
                    once(&kind, "kind")?;
                    kind = Some(map.next_value()?);
                }
                Field::Version => {
                    once(&version, "version")?;
                    version = Some(map.next_value()?);
                }
                Field::Cache => {
                    once(&cache, "cache")?;
                    cache = Some(map.next_value()?);
                }
                Field::Writable => {
                    once(&writable, "writable")?;
                    writable = Some(map.next_value()?);
                }
                Field::Section(name) => {
                    if sections.iter().any(|s| s.name() == name) {
                        return Err(de::Error::duplicate_field(name.as_str()));
                    }
                    sections.push(MountKind::from_section(name, &mut map)?);
                }
            }
        }
        let path = path.ok_or_else(|| de::Error::missing_field("path"))?;
        let name = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let kind = MountKind::assemble(name, sections)
            .ok_or_else(|| de::Error::custom(misfit(&path, name)))?;
        Ok(MountSettings {
            path,
            kind,
            version: version.unwrap_or(DEFAULT_KV_VERSION),
            cache: cache.unwrap_or_default(),
            writable: writable.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MountSettings, String> {
        toml::from_str::<MountSettings>(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn reads_each_kind_with_its_section() {
        let m = parse("path = \"kv\"\nkind = \"builtin\"\n").unwrap();
        assert!(matches!(m.kind, MountKind::Builtin(_)));
        assert_eq!((m.version, m.writable, m.writable()), (2, None, true));
        let m = parse(
            "path = \"ext\"\nkind = \"vault\"\nversion = 1\n\
             [vault]\naddress = \"https://v\"\nmount = \"secret\"\n",
        )
        .unwrap();
        assert!(matches!(&m.kind, MountKind::Vault(v) if v.mount == "secret"));
        assert_eq!((m.version, m.writable()), (1, false));
        let m = parse(
            "path = \"aws\"\nkind = \"aws\"\nwritable = true\n[aws]\nregion = \"eu-central-1\"\n",
        )
        .unwrap();
        assert!(matches!(&m.kind, MountKind::Aws(a) if a.region == "eu-central-1"));
        assert!(m.writable());
    }

    #[test]
    fn refuses_what_the_derived_form_refused() {
        assert_eq!(
            parse("path = \"kv\"\nkind = \"builtin\"\nbogus = 1\n").unwrap_err(),
            "unknown field `bogus`, expected one of `path`, `kind`, `version`, `vault`, \
             `aws`, `cache`, `writable`"
        );
        assert_eq!(
            parse("path = \"kv\"\nkind = \"builtin\"\n[builtin]\n").unwrap_err(),
            "unknown field `builtin`, expected one of `path`, `kind`, `version`, `vault`, \
             `aws`, `cache`, `writable`"
        );
        assert_eq!(
            parse("path = \"kv\"\nkind = \"bao\"\n").unwrap_err(),
            "unknown variant `bao`, expected one of `builtin`, `vault`, `aws`"
        );
        assert_eq!(
            parse("kind = \"builtin\"\n").unwrap_err(),
            "missing field `path`"
        );
        assert_eq!(
            parse("path = \"kv\"\n").unwrap_err(),
            "missing field `kind`"
        );
        assert!(
            parse("path = \"kv\"\nkind = \"vault\"\n[aws]\nregion = \"eu-central-1\"\n")
                .unwrap_err()
                .starts_with("mounts: \"kv\" of kind Vault needs exactly its own section")
        );
    }
}
