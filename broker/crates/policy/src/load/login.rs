//! Checking the `[login]` section: the method, and for JWT the issuer and
//! bound claims, for AppRole the role id, the secret id digest and the
//! bound networks. Nothing here may accept a key of the other method, a
//! login that binds nothing, or repeat a `secret_id_sha256` value in a
//! problem (it may be a secret id pasted by mistake).

use std::ops::Range;

use leash_domain::text::escape_untrusted;
use toml::Spanned;

use crate::MAX_QUOTED;
use crate::claims::BoundClaim;
use crate::login::{AppRoleLogin, JwtLogin, Login};

use super::check::FileCheck;
use super::raw::{RawClaims, RawLogin};
use super::{LoadContext, MAX_ROLE_ID};

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
    /// Checks `[login]`; with it comes the span of the AppRole `role_id`.
    pub(super) fn login(
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
                approle
                    .filter(|_| clean)
                    .map(|a| (Login::AppRole(a), role_id_span))
            }
            other => {
                self.problem(
                    raw.method.span(),
                    format!(
                        "unsupported login method `{}` (use `jwt` or `approle`)",
                        escape_untrusted(other, MAX_QUOTED)
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
                    let known: Vec<String> = ctx
                        .issuers
                        .iter()
                        .map(|i| escape_untrusted(i, MAX_QUOTED))
                        .collect();
                    self.problem(
                        raw_issuer.span(),
                        format!(
                            "unknown issuer `{}` (configured issuers: {})",
                            escape_untrusted(&issuer, MAX_QUOTED),
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
                                format!(
                                    "bound claim `{}`: {why}",
                                    escape_untrusted(key.get_ref(), MAX_QUOTED)
                                ),
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
        ok.then_some(Login::Jwt(JwtLogin {
            issuer,
            bound_claims: claims,
        }))
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
                        escape_untrusted(r.get_ref(), MAX_QUOTED)
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
}
