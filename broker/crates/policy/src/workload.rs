//! A loaded workload and the decisions made for it: claims (JWT) at login
//! (an AppRole secret id is checked by [`AppRoleLogin`](crate::AppRoleLogin)),
//! conditions — including an AppRole's bound networks — and scopes on every
//! request. Nothing here may do I/O, allow by default, let an allow outrank
//! a matching deny, decide on scopes before the conditions held, or hand
//! out a [`Grant`] other than through [`Workload::decide`] or
//! [`Admitted::decide`] (the one bypass, [`unchecked_grant_for_tests`], is
//! named for grepping).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::capability::{CapSet, Capability};
use crate::conditions::{Conditions, normalize_peer};
use crate::denial::Denial;
use crate::detection::DetectionPolicy;
use crate::login::Login;
use crate::path::CanonicalPath;
use crate::pattern::{Matcher, Pattern};

/// A workload whose conditions held for one request (its peer, its time):
/// only [`Workload::admit`] makes one. Its scope decisions need no second
/// look at the conditions.
#[derive(Debug, Clone)]
pub struct Admitted {
    workload: Arc<Workload>,
}

impl Admitted {
    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Decides `cap` on `resource` by the scopes (the conditions held when
    /// this was made): deny by default, a matching deny wins.
    pub fn decide(&self, cap: Capability, resource: &CanonicalPath) -> Result<Grant, Denial> {
        self.workload.decide_scopes(cap, resource)
    }
}

/// Proof that [`Workload::decide`] allowed `capability` on `resource` for
/// `workload`. Functions that touch a secret take a `&Grant`. There is no
/// public constructor; see [`unchecked_grant_for_tests`] for the one bypass.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    workload: String,
    capability: Capability,
    resource: CanonicalPath,
}

impl Grant {
    /// The workload the grant is for.
    pub fn workload(&self) -> &str {
        &self.workload
    }

    /// What it allows.
    pub fn capability(&self) -> Capability {
        self.capability
    }

    /// On which canonical resource.
    pub fn resource(&self) -> &CanonicalPath {
        &self.resource
    }
}

/// **Tests only.** Makes a [`Grant`] without any policy decision, so tests
/// of code that takes a `&Grant` need no policy. Production code must never
/// call this; grep for `unchecked_grant_for_tests` in review.
pub fn unchecked_grant_for_tests(
    workload: &str,
    capability: Capability,
    resource: CanonicalPath,
) -> Grant {
    Grant {
        workload: workload.to_owned(),
        capability,
        resource,
    }
}

/// Lease lifetimes: `1s ≤ ttl ≤ max_ttl ≤ 30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLimits {
    /// The TTL granted at issue and on each renewal.
    pub ttl: Duration,
    /// No lease or token lives longer than this.
    pub max_ttl: Duration,
}

/// One scope, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The pattern text.
    pub pattern: String,
    /// An explicit deny of every capability.
    pub deny: bool,
    /// What an allow scope grants (empty for a deny).
    pub capabilities: Vec<Capability>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) pattern: Pattern,
    pub(crate) deny: bool,
    pub(crate) caps: CapSet,
}

/// One workload: who it is, how it logs in, what it may do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Its unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// How it logs in.
    pub login: Login,
    /// Lease lifetimes.
    pub lease: LeaseLimits,
    pub(crate) conditions: Conditions,
    pub(crate) detection: DetectionPolicy,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) matcher: Matcher,
    pub(crate) source: PathBuf,
}

impl Workload {
    /// Compiles rules into the matcher. `scopes` and `rules` are parallel.
    pub(crate) fn compile(rules: &[Rule]) -> Matcher {
        let mut m = Matcher::default();
        for (i, r) in rules.iter().enumerate() {
            // A workload holds far fewer than u32::MAX scopes; the loader
            // bounds the count.
            m.insert(&r.pattern, u32::try_from(i).unwrap_or(u32::MAX));
        }
        m
    }

    /// The conditions.
    pub fn conditions(&self) -> &Conditions {
        &self.conditions
    }

    /// What counts as abuse of this workload's identity, and the response
    /// (`[detection]`; the defaults when the file has none).
    pub fn detection(&self) -> &DetectionPolicy {
        &self.detection
    }

    /// The scopes, in file order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The file it was loaded from.
    pub fn source_file(&self) -> &Path {
        &self.source
    }

    /// Checks a login token's claims: every bound claim must be present and
    /// match. String, number and boolean claims compare by their string
    /// form; arrays, objects, null and missing claims are denied.
    pub fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), Denial> {
        let Login::Jwt(jwt) = &self.login else {
            return Err(Denial::NotJwt {
                method: self.login.method(),
            });
        };
        if jwt.bound_claims.is_empty() {
            // The loader refuses this; stay closed if it ever happens.
            return Err(Denial::NoBoundClaims);
        }
        for bc in &jwt.bound_claims {
            bc.check(claims)?;
        }
        Ok(())
    }

    /// Checks the source address and time conditions and, for an AppRole
    /// workload, that the peer is inside `login.bound_cidrs` (so the
    /// binding holds for the token's use as well as for the login).
    /// IPv4-mapped IPv6 peers are compared as IPv4.
    pub fn check_conditions(&self, peer: IpAddr, now: DateTime<Utc>) -> Result<(), Denial> {
        if let Login::AppRole(approle) = &self.login
            && !approle.allows_source(peer)
        {
            return Err(Denial::OutsideBoundNetworks {
                peer: normalize_peer(peer),
            });
        }
        self.conditions.check(peer, now)
    }

    /// Decides one request: conditions first, then scopes. Denied by
    /// default; a matching deny scope wins over every allow; otherwise
    /// allowed if a matching allow scope grants `cap`.
    pub fn decide(
        &self,
        cap: Capability,
        resource: &CanonicalPath,
        peer: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Grant, Denial> {
        self.check_conditions(peer, now)?;
        self.decide_scopes(cap, resource)
    }

    /// Checks the conditions for `peer` at `now` once, for a request that
    /// then decides on as many resources as it needs through the
    /// [`Admitted`] it gets back.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, now: DateTime<Utc>) -> Result<Admitted, Denial> {
        self.check_conditions(peer, now)?;
        Ok(Admitted {
            workload: self.clone(),
        })
    }

    /// The scopes' decision alone; only after the conditions held.
    fn decide_scopes(&self, cap: Capability, resource: &CanonicalPath) -> Result<Grant, Denial> {
        let mut deny: Option<u32> = None;
        let mut allowed = CapSet::default();
        self.matcher.for_each_match(resource, |i| {
            let Some(rule) = self.rules.get(i as usize) else {
                return;
            };
            if rule.deny {
                deny = Some(deny.map_or(i, |d| d.min(i)));
            } else {
                allowed = allowed.union(rule.caps);
            }
        });
        if let Some(i) = deny {
            let rule = i as usize;
            let pattern = self
                .scopes
                .get(rule)
                .map(|s| s.pattern.as_str())
                .unwrap_or("?");
            return Err(Denial::ExplicitDeny {
                capability: cap,
                resource: resource.clone(),
                rule,
                pattern: pattern.to_owned(),
            });
        }
        if allowed.contains(cap) {
            Ok(Grant {
                workload: self.name.clone(),
                capability: cap,
                resource: resource.clone(),
            })
        } else {
            Err(Denial::OutOfScope {
                capability: cap,
                resource: resource.clone(),
            })
        }
    }

    /// Whether any allow scope could match some path under `mount` (a
    /// single segment; a trailing `/` is ignored). For the KV preflight.
    pub fn has_access_under(&self, mount: &str) -> bool {
        let mount = mount.strip_suffix('/').unwrap_or(mount);
        if mount.is_empty() || mount.contains('/') {
            return false;
        }
        self.rules
            .iter()
            .any(|r| !r.deny && !r.caps.is_empty() && r.pattern.may_match_under(mount))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::TimeZone;

    use super::*;
    use crate::load::{LoadContext, PolicySet};
    use crate::login::{AppRoleLogin, LoginMethod};
    use crate::path::canonicalize;

    fn workload(scopes: &str, extra: &str) -> Workload {
        let src = format!(
            "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n{extra}\n{scopes}"
        );
        let set = PolicySet::from_sources(
            &[(PathBuf::from("w.toml"), src)],
            &LoadContext {
                issuers: vec!["dev".into()],
            },
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
        set.workload("w").unwrap().clone()
    }

    fn scopes(list: &[(&str, &[&str])]) -> String {
        let mut s = String::new();
        for (path, caps) in list {
            s.push_str(&format!("[[scope]]\npath = \"{path}\"\n"));
            if caps.is_empty() {
                s.push_str("deny = true\n");
            } else {
                let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
                s.push_str(&format!("capabilities = [{}]\n", caps.join(", ")));
            }
        }
        s
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 5, 10, 0, 0).unwrap()
    }

    fn peer() -> IpAddr {
        "10.0.0.1".parse().unwrap()
    }

    fn decide(w: &Workload, cap: Capability, path: &str) -> Result<Grant, Denial> {
        w.decide(cap, &canonicalize(path).unwrap(), peer(), now())
    }

    #[test]
    fn empty_scope_list_denies_everything() {
        // Catalogue item 30.
        let w = workload("", "");
        for cap in Capability::ALL {
            for path in ["secret/x", "secret/", "a", "secret/a/b/c"] {
                let e = decide(&w, cap, path).unwrap_err();
                assert!(e.to_string().starts_with("no scope grants"), "{e}");
            }
        }
        assert!(!w.has_access_under("secret"));
    }

    #[test]
    fn deny_wins_over_broader_allow() {
        // Catalogue item 28.
        let w = workload(
            &scopes(&[
                ("secret/*", &["read", "list", "update", "delete"]),
                ("secret/payments/admin/*", &[]),
                ("secret/payments/root", &[]),
            ]),
            "",
        );
        assert!(decide(&w, Capability::Read, "secret/payments/db").is_ok());
        for cap in Capability::ALL {
            let e = decide(&w, cap, "secret/payments/admin/key").unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "{cap} on secret/payments/admin/key denied by scope `secret/payments/admin/*`"
                )
            );
        }
        assert!(decide(&w, Capability::List, "secret/payments/admin/").is_err());
        assert!(decide(&w, Capability::Read, "secret/payments/root").is_err());
        // Vault semantics: `admin/*` does not cover `admin` itself.
        assert!(decide(&w, Capability::Read, "secret/payments/admin").is_ok());
        // Case matters: this is a different (allowed) path, not a bypass.
        assert!(decide(&w, Capability::Read, "secret/payments/Admin/key").is_ok());
    }

    #[test]
    fn deny_wins_regardless_of_order_or_specificity() {
        // Catalogue item 27: unlike Vault's priority order, a matching deny
        // always wins, whichever pattern is more specific.
        let allow_specific = workload(
            &scopes(&[("secret/*", &[]), ("secret/+/+/foo/*", &["read"])]),
            "",
        );
        let e = decide(&allow_specific, Capability::Read, "secret/a/b/foo/x").unwrap_err();
        assert!(e.to_string().contains("denied by scope `secret/*`"), "{e}");
        let deny_specific = workload(
            &scopes(&[("secret/+/+/foo/*", &[]), ("secret/*", &["read"])]),
            "",
        );
        assert!(decide(&deny_specific, Capability::Read, "secret/a/b/foo/x").is_err());
        assert!(decide(&deny_specific, Capability::Read, "secret/a/b/bar/x").is_ok());
        // The first matching deny (in file order) is the one named.
        let two = workload(
            &scopes(&[
                ("secret/*", &["read"]),
                ("secret/a*", &[]),
                ("secret/a/*", &[]),
            ]),
            "",
        );
        let e = decide(&two, Capability::Read, "secret/a/x").unwrap_err();
        assert!(e.to_string().contains("`secret/a*`"), "{e}");
    }

    #[test]
    fn allows_union_across_scopes() {
        let w = workload(
            &scopes(&[("secret/app/*", &["read"]), ("secret/+/db", &["update"])]),
            "",
        );
        assert!(decide(&w, Capability::Read, "secret/app/db").is_ok());
        assert!(decide(&w, Capability::Update, "secret/app/db").is_ok());
        assert!(decide(&w, Capability::Update, "secret/app/other").is_err());
        assert!(decide(&w, Capability::Delete, "secret/app/db").is_err());
        let e = decide(&w, Capability::Delete, "secret/app/db").unwrap_err();
        assert_eq!(e.to_string(), "no scope grants delete on secret/app/db");
    }

    #[test]
    fn glob_edge_cases_through_decide() {
        // Catalogue item 25, and LIST on folders (item 22).
        let w = workload(
            &scopes(&[("secret/bar/*", &["read", "list"]), ("kv/foo*", &["read"])]),
            "",
        );
        assert!(decide(&w, Capability::Read, "secret/bar/zip").is_ok());
        assert!(decide(&w, Capability::List, "secret/bar/").is_ok());
        assert!(decide(&w, Capability::Read, "secret/bars/zip").is_err());
        assert!(decide(&w, Capability::Read, "secret/bar").is_err());
        assert!(decide(&w, Capability::Read, "kv/foobar").is_ok());
        assert!(decide(&w, Capability::Read, "kv/foo/deep/x").is_ok());
        assert!(decide(&w, Capability::Read, "kv/fo").is_err());
    }

    #[test]
    fn grant_carries_the_decision() {
        let w = workload(&scopes(&[("secret/app/*", &["read"])]), "");
        let path = canonicalize("secret/app/db").unwrap();
        let g = w.decide(Capability::Read, &path, peer(), now()).unwrap();
        assert_eq!(g.workload(), "w");
        assert_eq!(g.capability(), Capability::Read);
        assert_eq!(g.resource(), &path);
        assert_eq!(
            unchecked_grant_for_tests("w", Capability::Read, path.clone()),
            g
        );
    }

    #[test]
    fn conditions_are_checked_on_every_decision() {
        let w = workload(
            &scopes(&[("secret/app/*", &["read"])]),
            "[conditions]\nsource_cidrs = [\"10.0.0.0/8\"]\n[[conditions.time_windows]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nstart = \"07:00\"\nend = \"19:00\"\ntimezone = \"Europe/Berlin\"\n",
        );
        let path = canonicalize("secret/app/db").unwrap();
        // Wed 10:00 UTC = 12:00 CEST.
        assert!(w.decide(Capability::Read, &path, peer(), now()).is_ok());
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
        assert!(w.decide(Capability::Read, &path, mapped, now()).is_ok());
        let outside: IpAddr = "192.168.1.1".parse().unwrap();
        let e = w
            .decide(Capability::Read, &path, outside, now())
            .unwrap_err();
        assert!(e.to_string().contains("allowed networks"), "{e}");
        let night = Utc.with_ymd_and_hms(2024, 6, 5, 20, 0, 0).unwrap();
        let e = w
            .decide(Capability::Read, &path, peer(), night)
            .unwrap_err();
        assert!(e.to_string().contains("time windows"), "{e}");
        assert!(w.check_conditions(peer(), now()).is_ok());
        assert!(w.check_conditions(outside, now()).is_err());
    }

    #[test]
    fn kv_preflight() {
        let w = workload(
            &scopes(&[
                ("secret/app/*", &["read"]),
                ("kv/*", &[]),
                ("+/shared/x", &["read"]),
            ]),
            "",
        );
        assert!(w.has_access_under("secret"));
        assert!(w.has_access_under("secret/"));
        assert!(w.has_access_under("other"));
        assert!(w.has_access_under("kv"));
        assert!(!w.has_access_under(""));
        assert!(!w.has_access_under("secret/app"));
        let only_deny = workload(&scopes(&[("secret/*", &[])]), "");
        assert!(!only_deny.has_access_under("secret"));
        let narrow = workload(&scopes(&[("secret/app/*", &["read"])]), "");
        assert!(!narrow.has_access_under("kv"));
    }

    #[test]
    fn templates_cannot_be_injected() {
        // Catalogue item 29: templated scopes do not exist, and `{`, `}`
        // are rejected at load; paths can never contain `*` or `+`-globs.
        let set = PolicySet::from_sources(
            &[(
                PathBuf::from("w.toml"),
                "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n[[scope]]\npath = \"secret/{{identity.entity.id}}/*\"\ncapabilities = [\"read\"]\n".to_owned(),
            )],
            &LoadContext {
                issuers: vec!["dev".into()],
            },
        );
        assert!(set.is_err());
        // A literal `+` segment in a request is just a name: it cannot
        // widen a `+` pattern into more than one segment.
        let w = workload(&scopes(&[("secret/+/db", &["read"])]), "");
        assert!(decide(&w, Capability::Read, "secret/+/db").is_ok());
        assert!(decide(&w, Capability::Read, "secret/a/b/db").is_err());
    }

    /// SHA-256 of `s3cr3t-id`.
    const DIGEST: &str = "b4b9736f947900ee51532ca77c008d8ad3de953a61e091c0eaefabcc6648ab9b";
    /// SHA-256 of `other-secret`.
    const OTHER_DIGEST: &str = "9c0ee26e4a1fbb028187486a7ea91f81f8ab81fcf467cba75107dbd3a64244d7";

    fn approle_workload(digest: &str, extra: &str) -> Workload {
        let src = format!(
            "name = \"batch\"\n[login]\nmethod = \"approle\"\nrole_id = \"batch-reports\"\nsecret_id_sha256 = \"{digest}\"\nbound_cidrs = [\"10.0.0.0/8\", \"127.0.0.1/32\", \"fd00::/8\"]\n{extra}[[scope]]\npath = \"secret/reports/*\"\ncapabilities = [\"read\"]\n"
        );
        let set = PolicySet::from_sources(
            &[(PathBuf::from("batch.toml"), src)],
            &LoadContext { issuers: vec![] },
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
        set.workload_by_role_id("batch-reports").unwrap().clone()
    }

    #[test]
    fn approle_secret_matches() {
        let w = approle_workload(DIGEST, "");
        let a = w.login.approle().unwrap();
        assert!(a.secret_matches("s3cr3t-id"));
        assert!(!a.secret_matches("other-secret"));
        assert!(!a.secret_matches("s3cr3t-i"));
        assert!(!a.secret_matches("S3CR3T-ID"));
        assert!(!a.secret_matches(""));
        // The digest itself is not the secret.
        assert!(!a.secret_matches(DIGEST));
        // A digest of a different secret.
        let other = approle_workload(OTHER_DIGEST, "");
        let b = other.login.approle().unwrap();
        assert!(b.secret_matches("other-secret"));
        assert!(!b.secret_matches("s3cr3t-id"));
        assert!(!b.secret_matches(""));
        assert_ne!(a, b);
        // Debug shows the role but never the digest.
        let debug = format!("{a:?}");
        assert!(debug.contains("batch-reports") && debug.contains("10.0.0.0/8"));
        assert!(
            !debug.contains(DIGEST) && !debug.contains("b4b9"),
            "{debug}"
        );
        assert!(debug.contains("<redacted>"), "{debug}");
        let raw = AppRoleLogin::new("r".into(), [0xab; 32], vec![]);
        assert!(!format!("{raw:?}").contains("abab"));
    }

    #[test]
    fn approle_allows_source() {
        let w = approle_workload(DIGEST, "");
        let a = w.login.approle().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(a.allows_source(ip("10.1.2.3")));
        assert!(a.allows_source(ip("127.0.0.1")));
        assert!(a.allows_source(ip("fd12::1")));
        assert!(!a.allows_source(ip("127.0.0.2")));
        assert!(!a.allows_source(ip("192.168.1.1")));
        assert!(!a.allows_source(ip("::1")));
        // IPv4-mapped IPv6 peers are compared as IPv4.
        assert!(a.allows_source(ip("::ffff:10.9.9.9")));
        assert!(a.allows_source(ip("::ffff:127.0.0.1")));
        assert!(!a.allows_source(ip("::ffff:192.168.1.1")));
        // IPv4-compatible (deprecated) form is not unmapped.
        assert!(!a.allows_source(ip("::a01:203")));
        // No networks: nothing is allowed.
        let none = AppRoleLogin::new("r".into(), [0; 32], vec![]);
        assert!(!none.allows_source(ip("10.1.2.3")));
    }

    #[test]
    fn approle_binding_holds_on_every_request() {
        let w = approle_workload(DIGEST, "");
        let path = canonicalize("secret/reports/q3").unwrap();
        let inside: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let outside: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(w.decide(Capability::Read, &path, inside, now()).is_ok());
        assert!(w.decide(Capability::Read, &path, mapped, now()).is_ok());
        let e = w
            .decide(Capability::Read, &path, outside, now())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "source address 203.0.113.9 is not in the AppRole's bound networks"
        );
        assert!(w.check_conditions(outside, now()).is_err());
        // Conditions still apply on top of the binding.
        let narrower = approle_workload(DIGEST, "[conditions]\nsource_cidrs = [\"10.1.0.0/16\"]\n");
        assert!(
            narrower
                .check_conditions("10.1.0.1".parse().unwrap(), now())
                .is_ok()
        );
        let e = narrower.check_conditions(inside, now()).unwrap_err();
        assert!(e.to_string().contains("allowed networks"), "{e}");
        // A workload claiming AppRole without settings cannot be built any
        // more: `Login::AppRole` holds them.
        // An AppRole workload never passes a JWT claims check.
        let claims = serde_json::Map::new();
        let e = w.check_claims(&claims).unwrap_err();
        assert_eq!(e.to_string(), "workload logs in with approle, not a JWT");
        assert_eq!(LoginMethod::AppRole.to_string(), "approle");
        assert_eq!(LoginMethod::Jwt.as_str(), "jwt");
    }

    #[test]
    fn claims_check_via_workload() {
        let w = workload("", "");
        let ok = serde_json::json!({"sub": "w"});
        let bad = serde_json::json!({"sub": ["w"]});
        let (serde_json::Value::Object(ok), serde_json::Value::Object(bad)) = (ok, bad) else {
            unreachable!()
        };
        assert!(w.check_claims(&ok).is_ok());
        assert!(w.check_claims(&bad).is_err());
        assert!(w.check_claims(&serde_json::Map::new()).is_err());
    }
}
