//! The raw TOML schema of a policy file: serde structs that keep the span
//! of every value so that each problem can name its line. Nothing here may
//! validate or interpret a value (the section checkers do), or accept an
//! unknown key: every struct denies unknown fields.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: Option<Spanned<String>>,
    pub(super) login: Spanned<RawLogin>,
    #[serde(default)]
    pub(super) lease: Option<RawLease>,
    #[serde(default)]
    pub(super) conditions: Option<RawConditions>,
    #[serde(default)]
    pub(super) scope: Vec<RawScope>,
}

pub(super) type RawClaims = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub(super) method: Spanned<String>,
    #[serde(default)]
    pub(super) issuer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) bound_claims: Option<Spanned<RawClaims>>,
    #[serde(default)]
    pub(super) role_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) secret_id_sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) bound_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLease {
    #[serde(default)]
    pub(super) ttl: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) max_ttl: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConditions {
    #[serde(default)]
    pub(super) source_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) time_windows: Option<Spanned<Vec<RawWindow>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) days: Spanned<Vec<Spanned<String>>>,
    pub(super) start: Spanned<String>,
    pub(super) end: Spanned<String>,
    #[serde(default)]
    pub(super) timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScope {
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) capabilities: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) deny: Option<Spanned<bool>>,
}
