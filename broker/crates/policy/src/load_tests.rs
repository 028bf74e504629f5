//! Tests of loading: problems with file and line, directory handling, the
//! shipped policy sets, and scale. Test code only; never compiled into the
//! library.

#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::valid_name;
use super::*;
use crate::capability::Capability;
use crate::login::LoginMethod;
use crate::path::canonicalize;
use crate::workload::LeaseLimits;

fn ctx() -> LoadContext {
    LoadContext {
        issuers: vec!["dev".into(), "github".into(), "k8s".into()],
    }
}

fn load(src: &str) -> Result<PolicySet, Vec<Problem>> {
    PolicySet::from_sources(&[(PathBuf::from("p/w.toml"), src.to_owned())], &ctx())
}

fn problems(src: &str) -> Vec<Problem> {
    match load(src) {
        Ok(_) => panic!("loaded without problems:\n{src}"),
        Err(p) => p,
    }
}

/// Asserts exactly one problem, at `line`, whose reason contains `needle`.
fn one_problem(src: &str, line: usize, needle: &str) {
    let p = problems(src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].file, PathBuf::from("p/w.toml"));
    assert_eq!(p[0].line, line, "{}", p[0]);
    assert!(p[0].reason.contains(needle), "{}", p[0]);
}

const GOOD: &str = r#"name = "payments-api"                 # required
description = "Payments service"

[login]
method = "jwt"
issuer = "dev"
[login.bound_claims]
sub = "payments-api"
"/kubernetes.io/namespace" = ["payments", "payments-canary"]

[lease]
ttl = "5m"
max_ttl = "1h"

[conditions]
source_cidrs = ["127.0.0.0/8", "::1/128"]
[[conditions.time_windows]]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "07:00"
end = "19:00"
timezone = "Europe/Berlin"

[[scope]]
path = "secret/payments/*"
capabilities = ["read", "list"]

[[scope]]
path = "secret/payments/admin/*"
deny = true
"#;

/// A minimal valid file with `extra` appended.
fn minimal(extra: &str) -> String {
    format!(
        "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n{extra}"
    )
}

#[test]
fn loads_the_documented_example() {
    let set = load(GOOD).unwrap();
    assert_eq!(set.len(), 1);
    assert!(!set.is_empty());
    assert_eq!(set.names(), ["payments-api"]);
    let w = set.workload("payments-api").unwrap();
    assert_eq!(w.name, "payments-api");
    assert_eq!(w.description.as_deref(), Some("Payments service"));
    assert_eq!(w.login.method(), LoginMethod::Jwt);
    assert_eq!(w.login.jwt().unwrap().issuer, "dev");
    assert_eq!(w.login.jwt().unwrap().bound_claims.len(), 2);
    assert_eq!(w.lease.ttl, Duration::from_secs(300));
    assert_eq!(w.lease.max_ttl, Duration::from_secs(3600));
    assert_eq!(w.conditions().source_cidrs().map(<[_]>::len), Some(2));
    assert_eq!(w.conditions().time_windows().map(<[_]>::len), Some(1));
    let tw = &w.conditions().time_windows().unwrap()[0];
    assert_eq!((tw.start_minute(), tw.end_minute()), (420, 1140));
    assert_eq!(tw.timezone(), chrono_tz::Europe::Berlin);
    assert_eq!(w.scopes().len(), 2);
    assert_eq!(
        w.scopes()[0].capabilities,
        vec![Capability::Read, Capability::List]
    );
    assert!(w.scopes()[1].deny);
    assert_eq!(w.source_file(), Path::new("p/w.toml"));
    assert_eq!(set.workloads().count(), 1);
    assert!(set.workload("nope").is_none());
}

#[test]
fn defaults() {
    let set = load(&minimal("")).unwrap();
    let w = set.workload("w").unwrap();
    assert_eq!(w.lease.ttl, DEFAULT_TTL);
    assert_eq!(w.lease.max_ttl, DEFAULT_MAX_TTL);
    assert!(w.conditions().source_cidrs().is_none());
    assert!(w.conditions().time_windows().is_none());
    assert!(w.scopes().is_empty());
    assert!(w.description.is_none());
}

#[test]
fn durations() {
    let w = |lease: &str| {
        let set = load(&minimal(lease)).unwrap();
        set.workload("w").unwrap().lease
    };
    assert_eq!(
        w("[lease]\nttl = 30\nmax_ttl = \"1h30m\"\n"),
        LeaseLimits {
            ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(5400)
        }
    );
    assert_eq!(
        w("[lease]\nttl = \"2d\"\nmax_ttl = \"30d\"\n")
            .max_ttl
            .as_secs(),
        2_592_000
    );
    one_problem(&minimal("[lease]\nttl = \"0s\"\n"), 8, "at least 1s");
    one_problem(&minimal("[lease]\nttl = -5\n"), 8, "negative");
    one_problem(&minimal("[lease]\nttl = 1.5\n"), 8, "duration string");
    one_problem(&minimal("[lease]\nmax_ttl = \"31d\"\n"), 8, "at most 30d");
    one_problem(
        &minimal("[lease]\nttl = \"2h\"\n"),
        8,
        "longer than lease.max_ttl",
    );
}

#[test]
fn syntax_error_line() {
    let src = "name = \"w\"\n[login]\nmethod = \"jwt\nissuer = \"dev\"\n";
    let p = problems(src);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, 3, "{}", p[0]);
    assert!(p[0].to_string().starts_with("p/w.toml:3: "), "{}", p[0]);
    // The reason is one line: toml's rendered excerpt is not included.
    assert!(!p[0].reason.contains('\n'));
}

#[test]
fn unknown_keys_are_problems_with_lines() {
    one_problem(
        &format!("colour = \"blue\"\n{}", minimal("")),
        1,
        "unknown field `colour`",
    );
    let src = "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\nbound = 1\n";
    one_problem(src, 5, "unknown field `bound`");
    one_problem(
        &minimal(
            "[[scope]]\npath = \"secret/*\"\ncapabilities = [\"read\"]\ncapability = [\"list\"]\n",
        ),
        10,
        "unknown field `capability`",
    );
    one_problem(
        &minimal("[lease]\nttl = \"5m\"\nmax = \"1h\"\n"),
        9,
        "unknown field `max`",
    );
    one_problem(
        &minimal("[conditions]\nsource_cidr = [\"10.0.0.0/8\"]\n"),
        8,
        "unknown field `source_cidr`",
    );
    // Hostile key text is escaped in the reason.
    let p = problems(&format!("\"a\\u202eb\" = 1\n{}", minimal("")));
    assert!(p[0].reason.contains("\\u{202e}"), "{}", p[0]);
}

#[test]
fn bad_patterns() {
    for (pattern, needle) in [
        ("secret/*/db", "last character"),
        ("secret/**", "`**`"),
        ("", "empty pattern"),
        ("secret/../admin", "`..`"),
        ("secret//x", "empty segment"),
        ("/secret/x", "leading"),
        ("secret/{{identity.entity.id}}", "templates"),
        ("secret/a b", "space"),
    ] {
        let src = minimal(&format!(
            "\n[[scope]]\npath = \"{pattern}\"\ncapabilities = [\"read\"]\n"
        ));
        one_problem(&src, 9, needle);
    }
}

#[test]
fn scope_shape_problems() {
    one_problem(
        &minimal("[[scope]]\npath = \"secret/*\"\n"),
        8,
        "grants nothing",
    );
    one_problem(
        &minimal("[[scope]]\npath = \"secret/*\"\ncapabilities = []\n"),
        9,
        "is empty",
    );
    one_problem(
        &minimal("[[scope]]\npath = \"secret/*\"\ncapabilities = [\"read\",\n  \"sudo\"]\n"),
        10,
        "unknown capability `sudo`",
    );
    one_problem(
        &minimal("[[scope]]\npath = \"secret/*\"\ndeny = true\ncapabilities = [\"read\"]\n"),
        10,
        "deny scope",
    );
    // deny = false with capabilities is an ordinary allow.
    let set = load(&minimal(
        "[[scope]]\npath = \"secret/*\"\ndeny = false\ncapabilities = [\"read\"]\n",
    ))
    .unwrap();
    assert!(!set.workload("w").unwrap().scopes()[0].deny);
}

#[test]
fn names_issuers_methods() {
    let src = "name = \"Bad Name\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n";
    one_problem(src, 1, "invalid workload name");
    let src = "name = \"w\"\n[login]\nmethod = \"oidc\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n";
    one_problem(src, 3, "unsupported login method");
    let src = "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"elsewhere\"\n[login.bound_claims]\nsub = \"w\"\n";
    one_problem(
        src,
        4,
        "unknown issuer `elsewhere` (configured issuers: dev, github, k8s)",
    );
    assert!(load(&format!("name = \"{}\"\n", "a".repeat(65))).is_err());
    for good in ["a", "0", "a.b_c-d", &"a".repeat(64)] {
        assert!(valid_name(good), "{good}");
    }
    for bad in ["", "-a", "_a", ".a", "A", "a b", "a/b", "é"] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn bound_claim_problems() {
    let base = "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n";
    one_problem(base, 2, "bound_claims is missing");
    one_problem(
        &format!("{base}[login.bound_claims]\n"),
        5,
        "bound_claims is empty",
    );
    one_problem(
        &format!("{base}[login.bound_claims]\nsub = []\n"),
        6,
        "empty list",
    );
    one_problem(
        &format!("{base}[login.bound_claims]\nsub = \"\"\n"),
        6,
        "empty string",
    );
    one_problem(
        &format!("{base}[login.bound_claims]\nsub = 1.5\n"),
        6,
        "floats",
    );
    one_problem(
        &format!("{base}[login.bound_claims]\nsub = [\"a\", [\"b\"]]\n"),
        6,
        "strings, integers, booleans",
    );
    one_problem(
        &format!("{base}[login.bound_claims]\nsub = \"w\"\n\"/a~2\" = \"x\"\n"),
        7,
        "JSON pointer",
    );
    let set = load(&format!(
        "{base}[login.bound_claims]\nsub = \"w\"\nrepository_id = 12345\nprivileged = false\n"
    ))
    .unwrap();
    let w = set.workload("w").unwrap();
    let claims = serde_json::json!({"sub": "w", "repository_id": 12345, "privileged": false});
    let serde_json::Value::Object(claims) = claims else {
        unreachable!()
    };
    assert_eq!(w.check_claims(&claims), Ok(()));
}

#[test]
fn condition_problems() {
    one_problem(
        &minimal("[conditions]\nsource_cidrs = []\n"),
        8,
        "source_cidrs is empty",
    );
    one_problem(
        &minimal("[conditions]\nsource_cidrs = [\"10.0.0.0/8\",\n \"10.0.0.300/32\"]\n"),
        9,
        "invalid CIDR",
    );
    one_problem(
        &minimal("[conditions]\nsource_cidrs = [\"10.0.0.5/8\"]\n"),
        8,
        "did you mean `10.0.0.0/8`",
    );
    one_problem(
        &minimal("[conditions]\nsource_cidrs = [\"::ffff:10.0.0.0/104\"]\n"),
        8,
        "IPv4-mapped",
    );
    one_problem(
        &minimal("[conditions]\ntime_windows = []\n"),
        8,
        "time_windows is empty",
    );
    let window = |body: &str| minimal(&format!("[[conditions.time_windows]]\n{body}"));
    one_problem(
        &window(
            "days = [\"mon\"]\nstart = \"07:00\"\nend = \"19:00\"\ntimezone = \"Mars/Olympus\"\n",
        ),
        11,
        "unknown time zone `Mars/Olympus`",
    );
    one_problem(
        &window("days = [\"mon\"]\nstart = \"19:00\"\nend = \"07:00\"\n"),
        9,
        "start must be before end",
    );
    one_problem(
        &window("days = [\"mon\"]\nstart = \"7:00\"\nend = \"19:00\"\n"),
        9,
        "invalid start",
    );
    one_problem(
        &window("days = [\"mon\"]\nstart = \"07:00\"\nend = \"24:01\"\n"),
        10,
        "invalid end",
    );
    one_problem(
        &window("days = [\"monday\"]\nstart = \"07:00\"\nend = \"19:00\"\n"),
        8,
        "unknown day",
    );
    one_problem(
        &window("days = []\nstart = \"07:00\"\nend = \"19:00\"\n"),
        8,
        "days` is empty",
    );
    // A bare address is a host network; 24:00 is a valid end; UTC default.
    let set = load(&minimal(
        "[conditions]\nsource_cidrs = [\"192.0.2.7\", \"2001:db8::1\"]\n[[conditions.time_windows]]\ndays = [\"sat\", \"sun\"]\nstart = \"00:00\"\nend = \"24:00\"\n",
    ))
    .unwrap();
    let c = set.workload("w").unwrap().conditions();
    assert_eq!(c.source_cidrs().unwrap()[0].to_string(), "192.0.2.7/32");
    assert_eq!(c.source_cidrs().unwrap()[1].to_string(), "2001:db8::1/128");
    assert_eq!(c.time_windows().unwrap()[0].timezone(), chrono_tz::UTC);
}

#[test]
fn all_problems_are_collected() {
    let src = r#"name = "w"
[login]
method = "jwt"
issuer = "nope"
[login.bound_claims]
sub = "w"
[lease]
ttl = "5x"
max_ttl = "1h"
[conditions]
source_cidrs = ["bogus"]
[[conditions.time_windows]]
days = ["mon"]
start = "07:00"
end = "19:00"
timezone = "Nowhere/Land"
[[scope]]
path = "secret/*/x"
capabilities = ["read"]
[[scope]]
path = "secret/ok/*"
capabilities = ["write"]
"#;
    let p = problems(src);
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![4, 8, 11, 16, 18, 22], "{p:#?}");
    let a = PathBuf::from("a.toml");
    let b = PathBuf::from("b.toml");
    // Problems in several files are all reported, per file.
    let r = PolicySet::from_sources(
        &[
            (a.clone(), "name = \n".to_owned()),
            (b.clone(), minimal("[lease]\nttl = \"2h\"\n")),
        ],
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!((r[0].file.clone(), r[0].line), (a, 1));
    assert_eq!((r[1].file.clone(), r[1].line), (b, 8));
}

#[test]
fn duplicate_names_across_files() {
    let first = PathBuf::from("dir/a.toml");
    let second = PathBuf::from("dir/b.toml");
    let body = "# a comment\nname = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n";
    let r = PolicySet::from_sources(
        &[(first, body.to_owned()), (second.clone(), body.to_owned())],
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].file, second);
    assert_eq!(r[0].line, 2);
    assert!(
        r[0].reason
            .contains("workload `w` is already defined in dir/a.toml"),
        "{}",
        r[0]
    );
}

#[test]
fn problem_display() {
    let p = Problem {
        file: PathBuf::from("policies/dev/x.toml"),
        line: 7,
        reason: "bad".into(),
    };
    assert_eq!(p.to_string(), "policies/dev/x.toml:7: bad");
    let p = Problem { line: 0, ..p };
    assert_eq!(p.to_string(), "policies/dev/x.toml: bad");
}

#[test]
fn load_dir_reads_toml_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    write("b.toml", &minimal("").replace("\"w\"", "\"bbb\""));
    write("a.toml", &minimal("").replace("\"w\"", "\"aaa\""));
    write("README.md", "not a policy");
    write("c.toml.bak", "garbage = ");
    write(".hidden.toml", "garbage = ");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/x.toml"), "garbage = ").unwrap();
    std::fs::create_dir(dir.path().join("dir.toml")).unwrap();
    let set = PolicySet::load_dir(dir.path(), &ctx()).unwrap();
    assert_eq!(set.names(), ["aaa", "bbb"]);
    assert_eq!(
        set.workload("aaa").unwrap().source_file(),
        dir.path().join("a.toml")
    );

    // A bad file fails the whole set, with its path.
    write("c.toml", "name = \"ccc\"\n[login]\n");
    let p = PolicySet::load_dir(dir.path(), &ctx()).unwrap_err();
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].file, dir.path().join("c.toml"));

    // Invalid UTF-8.
    std::fs::write(dir.path().join("c.toml"), b"name = \"\xff\"\n").unwrap();
    let p = PolicySet::load_dir(dir.path(), &ctx()).unwrap_err();
    assert!(p[0].reason.contains("UTF-8"), "{p:#?}");

    // Too large.
    std::fs::write(dir.path().join("c.toml"), vec![b'#'; 300 * 1024]).unwrap();
    let p = PolicySet::load_dir(dir.path(), &ctx()).unwrap_err();
    assert!(p[0].reason.contains("larger than"), "{p:#?}");

    // A missing directory.
    let missing = dir.path().join("missing");
    let p = PolicySet::load_dir(&missing, &ctx()).unwrap_err();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].file, missing);
    assert!(p[0].reason.contains("cannot read policy directory"));

    // An empty directory is a valid, empty set that denies everything.
    let empty = tempfile::tempdir().unwrap();
    assert!(
        PolicySet::load_dir(empty.path(), &ctx())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn shipped_policy_sets_load_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../policies");
    let dev = PolicySet::load_dir(
        &root.join("dev"),
        &LoadContext {
            issuers: vec!["dev".into()],
        },
    )
    .unwrap_or_else(|p| panic!("policies/dev: {p:#?}"));
    assert_eq!(
        dev.names(),
        ["ci-deployer", "payments-api", "reporting-agent"]
    );
    for w in dev.workloads() {
        let jwt = w.login.jwt().unwrap();
        assert_eq!(jwt.issuer, "dev");
        assert!(jwt.bound_claims.iter().any(|c| c.claim == "sub"));
    }
    let examples = PolicySet::load_dir(
        &root.join("examples"),
        &LoadContext {
            issuers: vec!["github".into(), "k8s".into()],
        },
    )
    .unwrap_or_else(|p| panic!("policies/examples: {p:#?}"));
    assert!(examples.len() >= 2);
}

#[test]
fn dev_policies_behave_as_documented() {
    use chrono::{TimeZone, Utc};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../policies/dev");
    let set = PolicySet::load_dir(
        &root,
        &LoadContext {
            issuers: vec!["dev".into()],
        },
    )
    .unwrap();
    let now = Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap();
    let local = "127.0.0.1".parse().unwrap();
    let remote = "203.0.113.9".parse().unwrap();
    let p = |s: &str| canonicalize(s).unwrap();

    let pay = set.workload("payments-api").unwrap();
    assert_eq!(pay.lease.ttl, Duration::from_secs(300));
    assert_eq!(pay.lease.max_ttl, Duration::from_secs(3600));
    assert!(
        pay.decide(Capability::Read, &p("secret/payments/db"), local, now)
            .is_ok()
    );
    assert!(
        pay.decide(Capability::List, &p("secret/payments/"), local, now)
            .is_ok()
    );
    assert!(
        pay.decide(Capability::Update, &p("secret/payments/db"), local, now)
            .is_err()
    );
    assert!(
        pay.decide(
            Capability::Read,
            &p("secret/payments/admin/root"),
            local,
            now
        )
        .is_err()
    );
    assert!(
        pay.decide(Capability::Read, &p("secret/payments/db"), remote, now)
            .is_err()
    );
    assert!(
        pay.decide(Capability::Read, &p("secret/reporting/x"), local, now)
            .is_err()
    );

    let rep = set.workload("reporting-agent").unwrap();
    assert_eq!(rep.lease.ttl, Duration::from_secs(120));
    assert_eq!(rep.lease.max_ttl, Duration::from_secs(900));
    assert!(
        rep.decide(Capability::Read, &p("secret/reporting/q3"), remote, now)
            .is_ok()
    );
    assert!(
        rep.decide(Capability::List, &p("secret/reporting/"), remote, now)
            .is_err()
    );

    let ci = set.workload("ci-deployer").unwrap();
    assert_eq!(ci.lease.ttl, Duration::from_secs(600));
    assert_eq!(ci.lease.max_ttl, Duration::from_secs(1800));
    assert!(
        ci.decide(Capability::Read, &p("secret/ci/deploy-key"), remote, now)
            .is_ok()
    );
    let claims = |v: serde_json::Value| match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    assert!(
        ci.check_claims(&claims(
            serde_json::json!({"sub": "ci-deployer", "environment": "production"})
        ))
        .is_ok()
    );
    assert!(
        ci.check_claims(&claims(
            serde_json::json!({"sub": "ci-deployer", "environment": "staging"})
        ))
        .is_err()
    );
    assert!(
        ci.check_claims(&claims(serde_json::json!({"sub": "ci-deployer"})))
            .is_err()
    );
}

#[test]
fn ten_thousand_workloads() {
    let sources: Vec<(PathBuf, String)> = (0..10_000)
        .map(|i| {
            (
                PathBuf::from(format!("w{i:05}.toml")),
                format!(
                    "name = \"w{i}\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w{i}\"\n[[scope]]\npath = \"secret/w{i}/*\"\ncapabilities = [\"read\"]\n[[scope]]\npath = \"secret/w{i}/private/*\"\ndeny = true\n"
                ),
            )
        })
        .collect();
    let set = PolicySet::from_sources(&sources, &ctx()).unwrap();
    assert_eq!(set.len(), 10_000);
    let now = chrono::Utc::now();
    let peer = "10.0.0.1".parse().unwrap();
    for i in [0, 1, 4_999, 9_999] {
        let w = set.workload(&format!("w{i}")).unwrap();
        let own = canonicalize(&format!("secret/w{i}/db")).unwrap();
        let other = canonicalize(&format!("secret/w{}/db", (i + 1) % 10_000)).unwrap();
        let private = canonicalize(&format!("secret/w{i}/private/k")).unwrap();
        let g = w.decide(Capability::Read, &own, peer, now).unwrap();
        assert_eq!(g.workload(), format!("w{i}"));
        assert!(w.decide(Capability::Read, &other, peer, now).is_err());
        assert!(w.decide(Capability::Read, &private, peer, now).is_err());
    }
    // Clones share the set.
    let clone = set.clone();
    assert_eq!(clone.len(), 10_000);
}

// ---- AppRole ----

/// SHA-256 of `s3cr3t-id`.
const DIGEST: &str = "b4b9736f947900ee51532ca77c008d8ad3de953a61e091c0eaefabcc6648ab9b";

/// An AppRole file: `[login]` is line 2, `method` line 3, `body` from line 4.
fn approle(body: &str) -> String {
    format!("name = \"w\"\n[login]\nmethod = \"approle\"\n{body}")
}

/// A complete AppRole `[login]` body (lines 4-6) for `role_id`.
fn approle_body(role_id: &str) -> String {
    format!(
        "role_id = \"{role_id}\"\nsecret_id_sha256 = \"{DIGEST}\"\nbound_cidrs = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\n"
    )
}

#[test]
fn loads_approle_workloads() {
    let src = format!(
        "{}[lease]\nttl = \"10m\"\n[[scope]]\npath = \"secret/reports/*\"\ncapabilities = [\"read\"]\n",
        approle(&approle_body("batch-reports"))
    );
    let set = load(&src).unwrap();
    let w = set.workload("w").unwrap();
    assert_eq!(w.login.method(), LoginMethod::AppRole);
    assert_eq!(w.login.method().as_str(), "approle");
    // No issuer and no bound claims: an AppRole login has no JWT part.
    assert!(w.login.jwt().is_none());
    let a = w.login.approle().unwrap();
    assert_eq!(a.role_id, "batch-reports");
    let cidrs: Vec<String> = a.bound_cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "127.0.0.1/32"]);
    assert!(a.secret_matches("s3cr3t-id"));
    assert!(!a.secret_matches("s3cr3t-id\n"));
    assert_eq!(w.lease.ttl, Duration::from_secs(600));
    // Found by role id, in O(1); role ids are case-sensitive.
    let by_role = set.workload_by_role_id("batch-reports").unwrap();
    assert_eq!(by_role.name, "w");
    assert!(set.workload_by_role_id("Batch-Reports").is_none());
    assert!(set.workload_by_role_id("w").is_none());
    assert!(set.workload_by_role_id("").is_none());
    // The digest is never printed.
    let debug = format!("{w:?}");
    assert!(!debug.contains(DIGEST), "{debug}");
    assert!(debug.contains("batch-reports"), "{debug}");
    // Upper-case hex, a bare host address, IPv6, and role id characters.
    let src = approle(&format!(
        "role_id = \"Batch.reports_2-x\"\nsecret_id_sha256 = \"{}\"\nbound_cidrs = [\"192.0.2.7\", \"fd00::/8\"]\n",
        DIGEST.to_ascii_uppercase()
    ));
    let set = load(&src).unwrap();
    let a = set.workload_by_role_id("Batch.reports_2-x").unwrap();
    let a = a.login.approle().unwrap();
    assert!(a.secret_matches("s3cr3t-id"));
    assert_eq!(a.bound_cidrs[0].to_string(), "192.0.2.7/32");
    // JWT workloads are not in the role id index and have no AppRole part.
    let jwt = load(&minimal("")).unwrap();
    assert!(jwt.workload("w").unwrap().login.approle().is_none());
    assert!(jwt.workload_by_role_id("w").is_none());
}

#[test]
fn approle_missing_keys() {
    one_problem(
        &approle(&format!(
            "secret_id_sha256 = \"{DIGEST}\"\nbound_cidrs = [\"10.0.0.0/8\"]\n"
        )),
        2,
        "login.role_id is missing",
    );
    one_problem(
        &approle("role_id = \"r\"\nbound_cidrs = [\"10.0.0.0/8\"]\n"),
        2,
        "login.secret_id_sha256 is missing",
    );
    one_problem(
        &approle(&format!(
            "role_id = \"r\"\nsecret_id_sha256 = \"{DIGEST}\"\n"
        )),
        2,
        "login.bound_cidrs is missing",
    );
    // All three missing: three problems, all reported.
    let p = problems(&approle(""));
    let reasons: Vec<&str> = p.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p.iter().all(|p| p.line == 2), "{p:#?}");
    assert!(reasons[0].contains("role_id"), "{reasons:?}");
    assert!(reasons[1].contains("secret_id_sha256"), "{reasons:?}");
    assert!(reasons[2].contains("bound_cidrs"), "{reasons:?}");
}

#[test]
fn approle_digest_problems() {
    let with_digest = |d: &str| {
        approle(&format!(
            "role_id = \"r\"\nsecret_id_sha256 = \"{d}\"\nbound_cidrs = [\"10.0.0.0/8\"]\n"
        ))
    };
    // Bad hex: a non-hex character, sha256sum's ` -` suffix, whitespace.
    let mut bad = DIGEST.to_owned();
    bad.replace_range(10..11, "g");
    one_problem(&with_digest(&bad), 5, "not hexadecimal");
    one_problem(&with_digest(&format!("{DIGEST}  -")), 5, "trailing ` -`");
    one_problem(&with_digest(&format!(" {DIGEST}")), 5, "not hexadecimal");
    one_problem(
        &with_digest(&format!("0x{}", &DIGEST[2..])),
        5,
        "not hexadecimal",
    );
    // Wrong length.
    one_problem(&with_digest(&DIGEST[..63]), 5, "has 63 hex digits");
    one_problem(&with_digest(&format!("{DIGEST}00")), 5, "has 66 hex digits");
    one_problem(&with_digest(""), 5, "has 0 hex digits");
    // The digest of the empty secret id.
    one_problem(
        &with_digest("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        5,
        "empty secret id",
    );
    // A secret id pasted by mistake is never echoed.
    let p = problems(&with_digest("my-actual-secret-id"));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(!p[0].reason.contains("my-actual"), "{}", p[0]);
    // Not a string at all: the parser reports it.
    one_problem(
        &approle("role_id = \"r\"\nsecret_id_sha256 = 12\nbound_cidrs = [\"10.0.0.0/8\"]\n"),
        5,
        "string",
    );
}

#[test]
fn approle_role_id_and_cidr_problems() {
    let with = |role_id: &str, cidrs: &str| {
        approle(&format!(
            "role_id = \"{role_id}\"\nsecret_id_sha256 = \"{DIGEST}\"\nbound_cidrs = {cidrs}\n"
        ))
    };
    let ok = "[\"10.0.0.0/8\"]";
    for bad in ["", "a b", "a/b", "é", "a:b", &"a".repeat(129)] {
        one_problem(&with(bad, ok), 4, "invalid login.role_id");
    }
    assert!(load(&with(&"a".repeat(128), ok)).is_ok());
    one_problem(&with("r", "[]"), 6, "login.bound_cidrs is empty");
    one_problem(
        &with("r", "[\"10.0.0.0/8\",\n  \"10.0.0.300/32\"]"),
        7,
        "invalid CIDR",
    );
    one_problem(
        &with("r", "[\"10.0.0.5/8\"]"),
        6,
        "did you mean `10.0.0.0/8`",
    );
    one_problem(&with("r", "[\"::ffff:10.0.0.0/104\"]"), 6, "IPv4-mapped");
    one_problem(&with("r", "[\"0.0.0.0/0\"]"), 6, "binds nothing");
    one_problem(&with("r", "[\"10.0.0.0/8\", \"::/0\"]"), 6, "binds nothing");
}

#[test]
fn keys_of_the_other_method_are_problems() {
    // AppRole with an issuer or bound claims.
    one_problem(
        &approle(&format!("issuer = \"dev\"\n{}", approle_body("r"))),
        4,
        "login.issuer is not allowed with method `approle`",
    );
    one_problem(
        &approle(&format!(
            "{}[login.bound_claims]\nsub = \"w\"\n",
            approle_body("r")
        )),
        7,
        "login.bound_claims is not allowed with method `approle`",
    );
    // JWT with AppRole keys: each one is reported.
    let jwt = |extra: &str| {
        format!(
            "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n{extra}[login.bound_claims]\nsub = \"w\"\n"
        )
    };
    one_problem(
        &jwt("role_id = \"r\"\n"),
        5,
        "login.role_id is not allowed with method `jwt`",
    );
    one_problem(
        &jwt(&format!("secret_id_sha256 = \"{DIGEST}\"\n")),
        5,
        "login.secret_id_sha256 is not allowed with method `jwt`",
    );
    one_problem(
        &jwt("bound_cidrs = [\"10.0.0.0/8\"]\n"),
        5,
        "conditions.source_cidrs",
    );
    let p = problems(&jwt(&approle_body("r")));
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, [5, 6, 7], "{p:#?}");
    // JWT still needs its issuer; an unknown method names both methods.
    one_problem(
        "name = \"w\"\n[login]\nmethod = \"jwt\"\n[login.bound_claims]\nsub = \"w\"\n",
        2,
        "login.issuer is missing",
    );
    one_problem(
        &approle(&approle_body("r")).replace("approle", "AppRole"),
        3,
        "unsupported login method `AppRole` (use `jwt` or `approle`)",
    );
}

#[test]
fn duplicate_role_ids_across_files() {
    let first = PathBuf::from("dir/a.toml");
    let second = PathBuf::from("dir/b.toml");
    let third = PathBuf::from("dir/c.toml");
    let file = |name: &str, role_id: &str| {
        format!(
            "# {name}\nname = \"{name}\"\n[login]\nmethod = \"approle\"\n{}",
            approle_body(role_id)
        )
    };
    let r = PolicySet::from_sources(
        &[
            (first.clone(), file("a", "shared")),
            (second.clone(), file("b", "shared")),
            (third.clone(), file("c", "own")),
        ],
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].file, second);
    assert_eq!(r[0].line, 5);
    assert_eq!(
        r[0].to_string(),
        "dir/b.toml:5: role_id `shared` is already used by workload `a` in dir/a.toml"
    );
    // A duplicate name and a duplicate role id are both reported.
    let r = PolicySet::from_sources(
        &[
            (first.clone(), file("a", "shared")),
            (second, file("a", "shared")),
        ],
        &ctx(),
    )
    .unwrap_err();
    let lines: Vec<usize> = r.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 5], "{r:#?}");
    // Distinct role ids load; role ids and names are separate namespaces.
    let set = PolicySet::from_sources(&[(first, file("a", "b")), (third, file("b", "a"))], &ctx())
        .unwrap();
    assert_eq!(set.workload_by_role_id("a").unwrap().name, "b");
    assert_eq!(set.workload_by_role_id("b").unwrap().name, "a");
}

#[test]
fn shipped_approle_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../policies/examples");
    let set = PolicySet::load_dir(
        &root,
        &LoadContext {
            issuers: vec!["github".into(), "k8s".into()],
        },
    )
    .unwrap_or_else(|p| panic!("policies/examples: {p:#?}"));
    let w = set.workload_by_role_id("batch-reports").unwrap();
    assert_eq!(w.name, "batch-reports");
    assert_eq!(w.login.method(), LoginMethod::AppRole);
    assert_eq!(w.source_file(), root.join("batch-approle.toml").as_path());
    let a = w.login.approle().unwrap();
    assert!(!a.bound_cidrs.is_empty());
    assert!(!a.secret_matches(""));
}
