//! Loading a policy set from TOML files, with every problem reported by
//! file and line, and the [`PolicySet`] that results. This is the only
//! module that reads files, and only when a set is loaded (at start-up or on
//! reload), never while deciding a request. Nothing here may accept a set
//! with any problem in it: a set loads completely or not at all. Workloads
//! are indexed by name and, for AppRole, by role id; a secret id digest is
//! never echoed in a problem.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::capability::{CapSet, Capability};
use crate::claims::BoundClaim;
use crate::conditions::{Conditions, TimeWindow};
use crate::duration::parse_duration;
use crate::pattern::parse_pattern;
use crate::text::{escape_message, escape_untrusted};
use crate::workload::{AppRoleLogin, LeaseLimits, Login, LoginMethod, Rule, Scope, Workload};

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

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<String, Workload>,
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
                escape_message(&e.to_string())
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
                    escape_message(&e.to_string())
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
                        escape_message(&e.to_string())
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
                    escape_message(&e.to_string())
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
        let mut by_name: HashMap<String, Workload> = HashMap::with_capacity(sources.len());
        let mut by_role_id: HashMap<String, String> = HashMap::new();
        for (file, src) in sources {
            let mut fc = FileCheck {
                file,
                src,
                problems: Vec::new(),
            };
            let parsed = fc.parse(ctx);
            if let Some(Parsed {
                workload: w,
                name_span,
                role_id_span,
            }) = parsed
            {
                if let Some(first) = by_name.get(&w.name) {
                    let reason = format!(
                        "workload `{}` is already defined in {}",
                        w.name,
                        escape_message(&first.source.display().to_string())
                    );
                    fc.problem(name_span, reason);
                }
                let role_id = w.login.approle.as_ref().map(|a| a.role_id.clone());
                if let (Some(role_id), Some(span)) = (&role_id, role_id_span)
                    && let Some(first) = by_role_id.get(role_id).and_then(|n| by_name.get(n))
                {
                    let reason = format!(
                        "role_id `{}` is already used by workload `{}` in {}",
                        escape_untrusted(role_id),
                        first.name,
                        escape_message(&first.source.display().to_string())
                    );
                    fc.problem(span, reason);
                }
                if fc.problems.is_empty() {
                    if let Some(role_id) = role_id {
                        by_role_id.insert(role_id, w.name.clone());
                    }
                    by_name.insert(w.name.clone(), w);
                }
            }
            fc.problems.sort_by_key(|p| p.line);
            problems.extend(fc.problems);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut names: Vec<String> = by_name.keys().cloned().collect();
        names.sort();
        Ok(PolicySet {
            inner: Arc::new(Inner {
                by_name,
                by_role_id,
                names,
            }),
        })
    }

    /// The workload called `name`.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.inner.by_name.get(name)
    }

    /// The AppRole workload whose `login.role_id` is `role_id` (an index
    /// built at load; role ids are unique across the set).
    pub fn workload_by_role_id(&self, role_id: &str) -> Option<&Workload> {
        self.inner
            .by_role_id
            .get(role_id)
            .and_then(|name| self.inner.by_name.get(name))
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
    }
}

// ---- the file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<Spanned<String>>,
    login: Spanned<RawLogin>,
    #[serde(default)]
    lease: Option<RawLease>,
    #[serde(default)]
    conditions: Option<RawConditions>,
    #[serde(default)]
    scope: Vec<RawScope>,
}

type RawClaims = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    method: Spanned<String>,
    #[serde(default)]
    issuer: Option<Spanned<String>>,
    #[serde(default)]
    bound_claims: Option<Spanned<RawClaims>>,
    #[serde(default)]
    role_id: Option<Spanned<String>>,
    #[serde(default)]
    secret_id_sha256: Option<Spanned<String>>,
    #[serde(default)]
    bound_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    #[serde(default)]
    ttl: Option<Spanned<toml::Value>>,
    #[serde(default)]
    max_ttl: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    #[serde(default)]
    source_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    time_windows: Option<Spanned<Vec<RawWindow>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Spanned<Vec<Spanned<String>>>,
    start: Spanned<String>,
    end: Spanned<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    path: Spanned<String>,
    #[serde(default)]
    capabilities: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    deny: Option<Spanned<bool>>,
}

/// A file that checked out: its workload, and where to point at its name
/// and (AppRole) role id should they clash with another file's.
struct Parsed {
    workload: Workload,
    name_span: Range<usize>,
    role_id_span: Option<Range<usize>>,
}

/// The problems of one file, and how to place them.
struct FileCheck<'a> {
    file: &'a Path,
    src: &'a str,
    problems: Vec<Problem>,
}

/// 1-based line of a byte offset.
fn line_at(src: &str, offset: usize) -> usize {
    let upto = src.as_bytes().get(..offset).unwrap_or(src.as_bytes());
    upto.iter().filter(|b| **b == b'\n').count() + 1
}

fn valid_name(s: &str) -> bool {
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

fn valid_role_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ROLE_ID
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// SHA-256 of the empty string: a digest that only an empty secret id has.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Parses a SHA-256 digest written as 64 hex digits (either case). The
/// error is a load problem's reason; it never repeats the value, which may
/// be a secret id pasted by mistake.
fn parse_sha256_hex(s: &str) -> Result<[u8; 32], String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !s.bytes().all(|c| nibble(c).is_some()) {
        return Err("login.secret_id_sha256 is not hexadecimal: write only the 64 hex digits that `sha256sum` prints (without the trailing ` -`)".to_owned());
    }
    if s.len() != 64 {
        return Err(format!(
            "login.secret_id_sha256 has {} hex digits; a SHA-256 digest has 64",
            s.len()
        ));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (
            pair.first().copied().and_then(nibble),
            pair.get(1).copied().and_then(nibble),
        ) else {
            return Err("login.secret_id_sha256 is not hexadecimal".to_owned());
        };
        *byte = hi << 4 | lo;
    }
    if out == EMPTY_SHA256 {
        return Err(
            "login.secret_id_sha256 is the SHA-256 of an empty secret id; hash the real secret id"
                .to_owned(),
        );
    }
    Ok(out)
}

fn fmt_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Parses `HH:MM` (00:00–23:59, and 24:00 when `allow_24` is set) into
/// minutes after midnight.
fn parse_clock(s: &str, allow_24: bool) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digits = [b[0], b[1], b[3], b[4]];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d = |i: usize| u32::from(digits[i] - b'0');
    let h = d(0) * 10 + d(1);
    let m = d(2) * 10 + d(3);
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn day_index(s: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| *d == s)
}

fn claim_value(v: &toml::Value) -> Result<String, &'static str> {
    match v {
        toml::Value::String(s) if s.is_empty() => Err("an empty string never matches"),
        toml::Value::String(s) if s.len() > 1024 => Err("a value is longer than 1024 bytes"),
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Float(_) => Err("floats are not allowed; write the value as a string"),
        _ => Err("values must be strings, integers, booleans, or a list of them"),
    }
}

impl FileCheck<'_> {
    fn problem(&mut self, span: Range<usize>, reason: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: line_at(self.src, span.start),
            reason,
        });
    }

    /// Parses and checks one file; the workload comes back only with no
    /// problems, together with the spans of its `name` and `role_id`.
    fn parse(&mut self, ctx: &LoadContext) -> Option<Parsed> {
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
                let reason = escape_message(e.message());
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
                    escape_untrusted(&name)
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
        for s in raw.scope {
            if let Some((scope, rule)) = self.scope(s) {
                scopes.push(scope);
                rules.push(rule);
            }
        }
        let (Some((login, role_id_span)), Some(lease)) = (login, lease) else {
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
                scopes,
                rules,
                matcher,
                source: self.file.to_path_buf(),
            },
            name_span: raw.name.span(),
            role_id_span,
        })
    }

    /// Checks `[login]`; with it comes the span of the AppRole `role_id`.
    fn login(
        &mut self,
        raw: Spanned<RawLogin>,
        ctx: &LoadContext,
    ) -> Option<(Login, Option<Range<usize>>)> {
        let login_span = raw.span();
        let raw = raw.into_inner();
        let before = self.problems.len();
        match raw.method.get_ref().as_str() {
            "jwt" => {
                let role_id = raw.role_id.as_ref().map(Spanned::span);
                let secret = raw.secret_id_sha256.as_ref().map(Spanned::span);
                let cidrs = raw.bound_cidrs.as_ref().map(Spanned::span);
                self.not_for("jwt", "role_id", role_id, "it is an AppRole setting");
                self.not_for(
                    "jwt",
                    "secret_id_sha256",
                    secret,
                    "it is an AppRole setting",
                );
                self.not_for(
                    "jwt",
                    "bound_cidrs",
                    cidrs,
                    "it is an AppRole setting; restrict a JWT workload with conditions.source_cidrs",
                );
                let clean = self.problems.len() == before;
                let login = self.jwt_login(login_span, raw.issuer, raw.bound_claims, ctx);
                login.filter(|_| clean).map(|l| (l, None))
            }
            "approle" => {
                let issuer = raw.issuer.as_ref().map(Spanned::span);
                let claims = raw.bound_claims.as_ref().map(Spanned::span);
                let why = "AppRole binds no issuer or claims";
                self.not_for("approle", "issuer", issuer, why);
                self.not_for("approle", "bound_claims", claims, why);
                let clean = self.problems.len() == before;
                let role_id_span = raw.role_id.as_ref().map(Spanned::span);
                let approle = self.approle_login(
                    login_span,
                    raw.role_id,
                    raw.secret_id_sha256,
                    raw.bound_cidrs,
                );
                approle.filter(|_| clean).map(|a| {
                    (
                        Login {
                            method: LoginMethod::AppRole,
                            issuer: String::new(),
                            bound_claims: Vec::new(),
                            approle: Some(a),
                        },
                        role_id_span,
                    )
                })
            }
            other => {
                self.problem(
                    raw.method.span(),
                    format!(
                        "unsupported login method `{}` (use `jwt` or `approle`)",
                        escape_untrusted(other)
                    ),
                );
                None
            }
        }
    }

    /// A problem for `login.<key>` when it is present under a method that
    /// does not use it.
    fn not_for(&mut self, method: &str, key: &str, span: Option<Range<usize>>, why: &str) {
        if let Some(span) = span {
            self.problem(
                span,
                format!("login.{key} is not allowed with method `{method}` ({why}); remove it"),
            );
        }
    }

    fn jwt_login(
        &mut self,
        login_span: Range<usize>,
        issuer: Option<Spanned<String>>,
        bound_claims: Option<Spanned<RawClaims>>,
        ctx: &LoadContext,
    ) -> Option<Login> {
        let mut ok = true;
        let issuer = match issuer {
            None => {
                self.problem(
                    login_span.clone(),
                    "login.issuer is missing: name an issuer configured in the broker".to_owned(),
                );
                ok = false;
                String::new()
            }
            Some(raw_issuer) => {
                let issuer = raw_issuer.get_ref().clone();
                if !ctx.issuers.contains(&issuer) {
                    let known: Vec<String> =
                        ctx.issuers.iter().map(|i| escape_untrusted(i)).collect();
                    self.problem(
                        raw_issuer.span(),
                        format!(
                            "unknown issuer `{}` (configured issuers: {})",
                            escape_untrusted(&issuer),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    ok = false;
                }
                issuer
            }
        };
        let mut claims = Vec::new();
        match bound_claims {
            Some(map) if !map.get_ref().is_empty() => {
                for (key, value) in map.into_inner() {
                    let values = match value.get_ref() {
                        toml::Value::Array(items) if items.is_empty() => {
                            Err("an empty list never matches")
                        }
                        toml::Value::Array(items) => items.iter().map(claim_value).collect(),
                        v => claim_value(v).map(|s| vec![s]),
                    };
                    let values = match values {
                        Ok(v) => v,
                        Err(why) => {
                            self.problem(
                                value.span(),
                                format!("bound claim `{}`: {why}", escape_untrusted(key.get_ref())),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    match BoundClaim::new(key.get_ref(), values) {
                        Ok(bc) => claims.push(bc),
                        Err(why) => {
                            self.problem(key.span(), why);
                            ok = false;
                        }
                    }
                }
            }
            Some(map) => {
                self.problem(
                    map.span(),
                    "login.bound_claims is empty: bind at least one claim (e.g. sub)".to_owned(),
                );
                ok = false;
            }
            None => {
                self.problem(
                    login_span,
                    "login.bound_claims is missing: bind at least one claim (e.g. sub)".to_owned(),
                );
                ok = false;
            }
        }
        ok.then_some(Login {
            method: LoginMethod::Jwt,
            issuer,
            bound_claims: claims,
            approle: None,
        })
    }

    fn approle_login(
        &mut self,
        login_span: Range<usize>,
        role_id: Option<Spanned<String>>,
        secret_id_sha256: Option<Spanned<String>>,
        bound_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Option<AppRoleLogin> {
        let role_id = match role_id {
            None => {
                self.problem(
                    login_span.clone(),
                    "login.role_id is missing: an AppRole workload needs a role id".to_owned(),
                );
                None
            }
            Some(r) if !valid_role_id(r.get_ref()) => {
                self.problem(
                    r.span(),
                    format!(
                        "invalid login.role_id `{}`: use 1-{MAX_ROLE_ID} of A-Z a-z 0-9 . _ -",
                        escape_untrusted(r.get_ref())
                    ),
                );
                None
            }
            Some(r) => Some(r.into_inner()),
        };
        let digest = match secret_id_sha256 {
            None => {
                self.problem(
                    login_span.clone(),
                    "login.secret_id_sha256 is missing: the SHA-256 of the secret id as 64 hex digits (printf %s \"$SECRET_ID\" | sha256sum)".to_owned(),
                );
                None
            }
            Some(d) => match parse_sha256_hex(d.get_ref()) {
                Ok(digest) => Some(digest),
                Err(why) => {
                    self.problem(d.span(), why);
                    None
                }
            },
        };
        let cidrs = match bound_cidrs {
            None => {
                self.problem(
                    login_span,
                    "login.bound_cidrs is missing: an AppRole workload must be bound to the networks it logs in from".to_owned(),
                );
                None
            }
            Some(list) if list.get_ref().is_empty() => {
                self.problem(
                    list.span(),
                    "login.bound_cidrs is empty, which would allow no source; list the networks the role logs in from".to_owned(),
                );
                None
            }
            Some(list) => {
                let mut ok = true;
                let mut nets = Vec::with_capacity(list.get_ref().len());
                for raw in list.into_inner() {
                    let span = raw.span();
                    match self.cidr(raw) {
                        Some(net) if net.prefix_len() == 0 => {
                            self.problem(
                                span,
                                format!(
                                    "login.bound_cidrs `{net}` matches every address, which binds nothing; list the networks the role logs in from"
                                ),
                            );
                            ok = false;
                        }
                        Some(net) => nets.push(net),
                        None => ok = false,
                    }
                }
                ok.then_some(nets)
            }
        };
        let (Some(role_id), Some(digest), Some(cidrs)) = (role_id, digest, cidrs) else {
            return None;
        };
        Some(AppRoleLogin::new(role_id, digest, cidrs))
    }

    fn duration(&mut self, key: &str, v: Spanned<toml::Value>) -> Option<Duration> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| format!("lease.{key} must not be negative")),
            toml::Value::String(s) => parse_duration(s).map_err(|e| format!("lease.{key}: {e}")),
            _ => Err(format!(
                "lease.{key} must be a duration string (\"30s\", \"5m\", \"1h30m\", \"2d\") or integer seconds"
            )),
        };
        let d = match parsed {
            Ok(d) => d,
            Err(why) => {
                self.problem(v.span(), why);
                return None;
            }
        };
        if d < Duration::from_secs(1) {
            self.problem(v.span(), format!("lease.{key} must be at least 1s"));
            return None;
        }
        if d > MAX_LEASE {
            self.problem(
                v.span(),
                format!(
                    "lease.{key} must be at most 30d ({})",
                    fmt_duration(MAX_LEASE)
                ),
            );
            return None;
        }
        Some(d)
    }

    fn lease(&mut self, raw: Option<RawLease>) -> Option<LeaseLimits> {
        let Some(raw) = raw else {
            return Some(LeaseLimits {
                ttl: DEFAULT_TTL,
                max_ttl: DEFAULT_MAX_TTL,
            });
        };
        let ttl_span = raw.ttl.as_ref().map(Spanned::span);
        let max_span = raw.max_ttl.as_ref().map(Spanned::span);
        let ttl = match raw.ttl {
            Some(v) => self.duration("ttl", v),
            None => Some(DEFAULT_TTL),
        };
        let max_ttl = match raw.max_ttl {
            Some(v) => self.duration("max_ttl", v),
            None => Some(DEFAULT_MAX_TTL),
        };
        let (ttl, max_ttl) = (ttl?, max_ttl?);
        if ttl > max_ttl {
            let span = ttl_span.or(max_span).unwrap_or(0..0);
            self.problem(
                span,
                format!(
                    "lease.ttl ({}) is longer than lease.max_ttl ({})",
                    fmt_duration(ttl),
                    fmt_duration(max_ttl)
                ),
            );
            return None;
        }
        Some(LeaseLimits { ttl, max_ttl })
    }

    fn cidr(&mut self, raw: Spanned<String>) -> Option<IpNet> {
        let text = raw.get_ref().trim();
        let net = match text.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(a) => IpNet::from(a),
                Err(_) => {
                    self.problem(
                        raw.span(),
                        format!(
                            "invalid CIDR `{}` (expected e.g. 10.0.0.0/8 or fd00::/8)",
                            escape_untrusted(raw.get_ref())
                        ),
                    );
                    return None;
                }
            },
        };
        if net.trunc() != net {
            self.problem(
                raw.span(),
                format!(
                    "CIDR `{}` has host bits set; did you mean `{}`?",
                    escape_untrusted(raw.get_ref()),
                    net.trunc()
                ),
            );
            return None;
        }
        if let IpNet::V6(v6) = net
            && v6.addr().to_ipv4_mapped().is_some()
            && v6.prefix_len() >= 96
        {
            self.problem(
                raw.span(),
                format!(
                    "CIDR `{}` is IPv4-mapped IPv6; write it as IPv4 (mapped peers are compared as IPv4)",
                    escape_untrusted(raw.get_ref())
                ),
            );
            return None;
        }
        Some(net)
    }

    fn window(&mut self, raw: RawWindow) -> Option<TimeWindow> {
        let mut ok = true;
        let mut days = [false; 7];
        if raw.days.get_ref().is_empty() {
            self.problem(
                raw.days.span(),
                "time window `days` is empty; it would never match".to_owned(),
            );
            ok = false;
        }
        for d in raw.days.into_inner() {
            match day_index(d.get_ref()) {
                Some(i) => days[i] = true,
                None => {
                    self.problem(
                        d.span(),
                        format!(
                            "unknown day `{}` (use mon, tue, wed, thu, fri, sat, sun)",
                            escape_untrusted(d.get_ref())
                        ),
                    );
                    ok = false;
                }
            }
        }
        let start = parse_clock(raw.start.get_ref(), false);
        if start.is_none() {
            self.problem(
                raw.start.span(),
                format!(
                    "invalid start `{}` (expected HH:MM, 00:00-23:59)",
                    escape_untrusted(raw.start.get_ref())
                ),
            );
        }
        let end = parse_clock(raw.end.get_ref(), true);
        if end.is_none() {
            self.problem(
                raw.end.span(),
                format!(
                    "invalid end `{}` (expected HH:MM, 00:00-24:00)",
                    escape_untrusted(raw.end.get_ref())
                ),
            );
        }
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            self.problem(
                raw.start.span(),
                "time window start must be before end (a window cannot cross midnight; use two windows)"
                    .to_owned(),
            );
            ok = false;
        }
        let timezone = match &raw.timezone {
            None => Some(Tz::UTC),
            Some(tz) => match tz.get_ref().parse::<Tz>() {
                Ok(z) => Some(z),
                Err(_) => {
                    self.problem(
                        tz.span(),
                        format!(
                            "unknown time zone `{}` (use an IANA name such as Europe/Berlin)",
                            escape_untrusted(tz.get_ref())
                        ),
                    );
                    None
                }
            },
        };
        let (Some(start_minute), Some(end_minute), Some(timezone)) = (start, end, timezone) else {
            return None;
        };
        ok.then_some(TimeWindow {
            days,
            start_minute,
            end_minute,
            timezone,
        })
    }

    fn conditions(&mut self, raw: RawConditions) -> Conditions {
        let source_cidrs = raw.source_cidrs.map(|list| {
            if list.get_ref().is_empty() {
                self.problem(
                    list.span(),
                    "conditions.source_cidrs is empty, which would allow no source; remove it to allow any source"
                        .to_owned(),
                );
            }
            list.into_inner()
                .into_iter()
                .filter_map(|c| self.cidr(c))
                .collect()
        });
        let time_windows = raw.time_windows.map(|list| {
            if list.get_ref().is_empty() {
                self.problem(
                    list.span(),
                    "conditions.time_windows is empty, which would allow no time; remove it to allow any time"
                        .to_owned(),
                );
            }
            list.into_inner()
                .into_iter()
                .filter_map(|w| self.window(w))
                .collect()
        });
        Conditions {
            source_cidrs,
            time_windows,
        }
    }

    fn scope(&mut self, raw: RawScope) -> Option<(Scope, Rule)> {
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

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
