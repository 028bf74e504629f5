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
    #[serde(default)]
    pub(super) detection: Option<RawDetection>,
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

pub(super) type RawList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetection {
    #[serde(default)]
    pub(super) dry_run: Option<bool>,
    #[serde(default)]
    pub(super) egress: Option<RawList>,
    #[serde(default)]
    pub(super) canaries: Option<RawList>,
    #[serde(default)]
    pub(super) scope_violations: Option<RawThreshold>,
    #[serde(default)]
    pub(super) enumeration: Option<RawEnumeration>,
    #[serde(default)]
    pub(super) new_source: Option<RawEvent>,
    #[serde(default)]
    pub(super) off_hours: Option<Spanned<RawEvent>>,
    #[serde(default)]
    pub(super) canary: Option<RawEvent>,
    #[serde(default)]
    pub(super) volume: Option<RawVolume>,
}

/// The response keys every detector table has (serde cannot flatten them
/// into a struct that denies unknown fields, so each table repeats them).
pub(super) struct RawResponse {
    pub(super) respond: Option<RawList>,
    pub(super) quarantine_for: Option<Spanned<toml::Value>>,
    pub(super) revoke: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
    #[serde(default)]
    pub(super) threshold: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) window: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) respond: Option<RawList>,
    #[serde(default)]
    pub(super) quarantine_for: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) revoke: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnumeration {
    #[serde(default)]
    pub(super) distinct_paths: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) lists: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) window: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) respond: Option<RawList>,
    #[serde(default)]
    pub(super) quarantine_for: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) revoke: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent {
    #[serde(default)]
    pub(super) respond: Option<RawList>,
    #[serde(default)]
    pub(super) quarantine_for: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) revoke: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVolume {
    #[serde(default)]
    pub(super) factor: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) min_requests: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) window: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) respond: Option<RawList>,
    #[serde(default)]
    pub(super) quarantine_for: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) revoke: Option<Spanned<String>>,
}
