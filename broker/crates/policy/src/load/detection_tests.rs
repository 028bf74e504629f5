//! Tests of `[detection]`: defaults, every knob, every refusal with its
//! line, canary coverage, and the compiled policy's answers. Test code
//! only; never compiled into the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::detection::{
    DetectionPolicy, DetectorKind, EnumerationRule, Response, RevokeScope, ThresholdRule,
    VolumeRule,
};
use crate::load::{LoadContext, PolicySet, Problem};
use crate::path::canonicalize;

const HEAD: &str = "name = \"w\"\n[login]\nmethod = \"jwt\"\nissuer = \"dev\"\n[login.bound_claims]\nsub = \"w\"\n[[scope]]\npath = \"secret/w/*\"\ncapabilities = [\"read\", \"list\"]\n[[scope]]\npath = \"secret/w/admin/*\"\ndeny = true\n";

fn load(extra: &str) -> Result<PolicySet, Vec<Problem>> {
    let src = format!("{HEAD}{extra}");
    PolicySet::from_sources(
        &[(PathBuf::from("p/w.toml"), src)],
        &LoadContext {
            issuers: vec!["dev".into()],
        },
    )
}

fn policy(extra: &str) -> DetectionPolicy {
    let set = load(extra).unwrap_or_else(|p| panic!("{p:#?}"));
    set.workload("w").unwrap().detection().clone()
}

/// Asserts exactly one problem, on the line of `extra` that contains
/// `marker`, whose reason contains `needle`.
fn refused(extra: &str, marker: &str, needle: &str) {
    let src = format!("{HEAD}{extra}");
    let line = src
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {marker:?} not in {extra}"))
        + 1;
    let p = match load(extra) {
        Ok(_) => panic!("loaded:\n{extra}"),
        Err(p) => p,
    };
    assert_eq!(p.len(), 1, "{extra}\n{p:#?}");
    assert_eq!(p[0].file, PathBuf::from("p/w.toml"));
    assert_eq!(p[0].line, line, "{extra}\n{}", p[0]);
    assert!(p[0].reason.contains(needle), "{extra}\n{}", p[0]);
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_when_absent_contain_abuse() {
    let d = policy("");
    let contain = Response {
        revoke: Some(RevokeScope::Identity),
        quarantine: true,
        alert: true,
        quarantine_for: None,
    };
    assert!(!d.dry_run());
    assert!(d.egress().is_empty());
    assert!(d.canaries().is_empty());
    assert_eq!(
        *d.scope_violations(),
        ThresholdRule {
            threshold: 5,
            window: secs(300),
            response: contain
        }
    );
    assert_eq!(
        *d.enumeration(),
        EnumerationRule {
            distinct_paths: 4,
            lists: 2,
            window: secs(600),
            response: contain
        }
    );
    for rule in [d.new_source(), d.off_hours(), d.canary()] {
        assert_eq!(rule.response, contain, "{}", rule.rule());
    }
    assert_eq!(
        *d.volume(),
        VolumeRule {
            factor: 10,
            min_requests: 100,
            window: secs(60),
            response: Response::ALERT
        }
    );
    assert!(d.volume().response.alert && d.volume().response.revoke.is_none());
    // An empty table is the same as none.
    let empty = policy("[detection]\n");
    for kind in DetectorKind::ALL {
        assert_eq!(empty.response(kind), d.response(kind));
    }
}

#[test]
fn rule_names_are_stable() {
    let d = DetectionPolicy::default();
    assert_eq!(d.scope_violations().rule(), "detection.scope_violations");
    assert_eq!(d.enumeration().rule(), "detection.enumeration");
    assert_eq!(d.new_source().rule(), "detection.new_source");
    assert_eq!(d.off_hours().rule(), "detection.off_hours");
    assert_eq!(d.canary().rule(), "detection.canary");
    assert_eq!(d.volume().rule(), "detection.volume");
    for kind in DetectorKind::ALL {
        assert!(kind.rule().starts_with("detection."));
    }
    assert_eq!(d.canary().kind(), DetectorKind::Canary);
}

#[test]
fn every_knob_is_parsed() {
    let d = policy(
        r#"[conditions]
[[conditions.time_windows]]
days = ["mon"]
start = "08:00"
end = "18:00"
[detection]
dry_run = true
egress = ["10.1.0.0/24", "192.0.2.7", "fd00::/64"]
canaries = ["secret/w/decoy/*", "secret/w/old-root-key"]
[detection.scope_violations]
threshold = 7
window = "2m"
respond = ["alert", "revoke"]
revoke = "subject"
[detection.enumeration]
distinct_paths = 9
lists = 3
window = 900
respond = ["quarantine"]
quarantine_for = "1h"
[detection.new_source]
respond = []
[detection.off_hours]
respond = ["alert"]
[detection.canary]
respond = ["revoke", "quarantine", "alert"]
revoke = "identity"
quarantine_for = "1d"
[detection.volume]
factor = 20
min_requests = 500
window = "5m"
respond = ["alert", "quarantine"]
quarantine_for = 60
"#,
    );
    assert!(d.dry_run());
    let nets: Vec<String> = d.egress().iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.1.0.0/24", "192.0.2.7/32", "fd00::/64"]);
    assert_eq!(d.canaries(), ["secret/w/decoy/*", "secret/w/old-root-key"]);
    let sv = d.scope_violations();
    assert_eq!((sv.threshold, sv.window), (7, secs(120)));
    assert_eq!(
        sv.response,
        Response {
            revoke: Some(RevokeScope::Subject),
            quarantine: false,
            alert: true,
            quarantine_for: None
        }
    );
    let en = d.enumeration();
    assert_eq!((en.distinct_paths, en.lists, en.window), (9, 3, secs(900)));
    assert_eq!(
        en.response,
        Response {
            revoke: None,
            quarantine: true,
            alert: false,
            quarantine_for: Some(secs(3600))
        }
    );
    assert!(d.new_source().response.is_record_only());
    assert_eq!(d.off_hours().response, Response::ALERT);
    assert_eq!(
        d.canary().response,
        Response {
            quarantine_for: Some(secs(86_400)),
            ..Response::CONTAIN
        }
    );
    let v = d.volume();
    assert_eq!((v.factor, v.min_requests, v.window), (20, 500, secs(300)));
    assert_eq!(
        v.response,
        Response {
            revoke: None,
            quarantine: true,
            alert: true,
            quarantine_for: Some(secs(60))
        }
    );
    // A table that sets only a threshold keeps the default response.
    let d = policy("[detection.scope_violations]\nthreshold = 1\n");
    assert_eq!(d.scope_violations().threshold, 1);
    assert_eq!(d.scope_violations().response, Response::CONTAIN);
}

#[test]
fn bad_values_are_refused_on_their_line() {
    let t = "[detection.scope_violations]\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{t}threshold = 0\n"),
            "threshold",
            "between 1 and 10000",
        ),
        (
            format!("{t}threshold = 10001\n"),
            "threshold",
            "between 1 and 10000",
        ),
        (
            format!("{t}threshold = -1\n"),
            "threshold",
            "between 1 and 10000",
        ),
        (
            format!("{t}threshold = \"5\"\n"),
            "threshold",
            "expected i64",
        ),
        (
            format!("{t}window = \"0s\"\n"),
            "window",
            "between 1s and 86400s",
        ),
        (
            format!("{t}window = \"25h\"\n"),
            "window",
            "between 1s and 86400s",
        ),
        (format!("{t}window = \"5ms\"\n"), "window", "whole seconds"),
        (
            format!("{t}window = \"5 minutes\"\n"),
            "window",
            "scope_violations.window",
        ),
        (
            format!("{t}window = -5\n"),
            "window",
            "must not be negative",
        ),
        (format!("{t}window = true\n"), "window", "duration string"),
        (
            format!("{t}respond = [\"ban\"]\n"),
            "respond",
            "unknown response `ban`",
        ),
        (
            format!("{t}respond = [\"alert\", \"alert\"]\n"),
            "respond",
            "listed twice",
        ),
        (
            format!("{t}revoke = \"everyone\"\n"),
            "revoke",
            "\"identity\" or \"subject\"",
        ),
        (
            format!("{t}respond = [\"alert\"]\nrevoke = \"subject\"\n"),
            "revoke =",
            "does not include \"revoke\"",
        ),
        (
            format!("{t}respond = [\"revoke\"]\nquarantine_for = \"1h\"\n"),
            "quarantine_for",
            "does not include \"quarantine\"",
        ),
        (
            format!("{t}quarantine_for = \"59s\"\n"),
            "quarantine_for",
            "at least 60s",
        ),
        (
            "[detection.enumeration]\ndistinct_paths = 0\n".into(),
            "distinct_paths",
            "detection.enumeration.distinct_paths must be between 1 and 10000",
        ),
        (
            "[detection.enumeration]\nlists = 100000\n".into(),
            "lists",
            "detection.enumeration.lists",
        ),
        (
            "[detection.enumeration]\nwindow = \"2d\"\n".into(),
            "window",
            "detection.enumeration.window",
        ),
        (
            "[detection.volume]\nfactor = 1\n".into(),
            "factor",
            "between 2 and 1000",
        ),
        (
            "[detection.volume]\nfactor = 1001\n".into(),
            "factor",
            "between 2 and 1000",
        ),
        (
            "[detection.volume]\nmin_requests = 0\n".into(),
            "min_requests",
            "between 1 and 1000000",
        ),
        (
            "[detection.volume]\nrevoke = \"identity\"\n".into(),
            "revoke",
            "detection.volume.revoke has no effect",
        ),
        (
            "[detection.volume]\nquarantine_for = \"1h\"\n".into(),
            "quarantine_for",
            "detection.volume.quarantine_for has no effect",
        ),
        (
            "[detection.new_source]\nrespond = [\"alert\", 1]\n".into(),
            "respond",
            "string",
        ),
        (
            "[detection.canary]\nrespond = [\"page\"]\n".into(),
            "respond",
            "detection.canary.respond",
        ),
        ("[detection]\ndry_run = \"yes\"\n".into(), "dry_run", "bool"),
        (
            "[detection]\negress = [\"10.1.0.1/24\"]\n".into(),
            "egress",
            "host bits set",
        ),
        (
            "[detection]\negress = [\"nowhere\"]\n".into(),
            "egress",
            "invalid CIDR",
        ),
        (
            "[detection]\negress = [\"0.0.0.0/0\"]\n".into(),
            "egress",
            "matches every address",
        ),
        (
            "[detection]\negress = [\"::ffff:10.0.0.0/104\"]\n".into(),
            "egress",
            "IPv4-mapped",
        ),
        (
            "[detection]\ncanaries = [\"secret/w/*/x\"]\n".into(),
            "canaries",
            "invalid canary `secret/w/*/x`",
        ),
    ];
    for (extra, marker, needle) in &cases {
        refused(extra, marker, needle);
    }
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    for (extra, marker) in [
        ("[detection]\ndryrun = true\n", "dryrun"),
        (
            "[detection.scope_violations]\nthreshhold = 5\n",
            "threshhold",
        ),
        ("[detection.enumeration]\nthreshold = 5\n", "threshold"),
        ("[detection.new_source]\nwindow = \"1m\"\n", "window"),
        ("[detection.canary]\nrespnd = []\n", "respnd"),
        ("[detection.volume]\nlists = 2\n", "lists"),
        ("[detection.brute_force]\nthreshold = 2\n", "brute_force"),
    ] {
        refused(extra, marker, "unknown field");
    }
}

#[test]
fn several_problems_are_all_reported() {
    let p = load(
        "[detection]\negress = [\"x\"]\n[detection.scope_violations]\nthreshold = 0\n[detection.volume]\nfactor = 0\n",
    )
    .unwrap_err();
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, [14, 16, 18], "{p:#?}");
}

#[test]
fn off_hours_needs_time_windows() {
    refused(
        "[detection.off_hours]\nrespond = [\"alert\"]\n",
        "[detection.off_hours]",
        "declares no conditions.time_windows",
    );
}

#[test]
fn a_canary_must_answer_like_a_real_secret() {
    // Not under any scope.
    refused(
        "[detection]\ncanaries = [\"secret/decoy/*\"]\n",
        "canaries",
        "canary `secret/decoy/*` is not covered by a scope that grants read",
    );
    // Only partly under the read scope (`+` reaches `secret/other/decoy`).
    refused(
        "[detection]\ncanaries = [\"secret/+/decoy\"]\n",
        "canaries",
        "not covered",
    );
    // Under a deny scope, or touching one: the read would be refused.
    refused(
        "[detection]\ncanaries = [\"secret/w/admin/decoy\"]\n",
        "canaries",
        "overlaps deny scope `secret/w/admin/*`",
    );
    refused(
        "[detection]\ncanaries = [\"secret/w/+/backup\"]\n",
        "canaries",
        "overlaps deny scope",
    );
    // A scope that grants list but not read does not cover it.
    refused(
        "[[scope]]\npath = \"kv/decoy/*\"\ncapabilities = [\"list\"]\n[detection]\ncanaries = [\"kv/decoy/x\"]\n",
        "canaries",
        "not covered",
    );
    // Each canary is judged on its own, on its own line.
    refused(
        "[detection]\ncanaries = [\n  \"secret/w/decoy\",\n  \"secret/other\",\n]\n",
        "secret/other",
        "`secret/other` is not covered",
    );
    // Covered: by the broad read scope, or by a dedicated decoy scope.
    let d = policy("[detection]\ncanaries = [\"secret/w/decoy/*\", \"secret/w/apps/+/backup\"]\n");
    assert_eq!(d.canaries().len(), 2);
    let d = policy(
        "[[scope]]\npath = \"kv/decoy/*\"\ncapabilities = [\"read\"]\n[detection]\ncanaries = [\"kv/decoy/*\"]\n",
    );
    assert_eq!(d.canaries(), ["kv/decoy/*"]);
    // A broken scope elsewhere yields its own problem, not a false
    // coverage complaint.
    let p = load(
        "[[scope]]\npath = \"secret/*/x\"\ncapabilities = [\"read\"]\n[detection]\ncanaries = [\"secret/w/decoy\"]\n",
    )
    .unwrap_err();
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].reason.contains("invalid scope path"), "{}", p[0]);
}

#[test]
fn is_canary_follows_the_scope_grammar() {
    let d = policy(
        "[detection]\ncanaries = [\"secret/w/decoy/*\", \"secret/w/apps/+/backup\", \"secret/w/root-key\", \"secret/w/pay*\"]\n",
    );
    let yes = |p: &str| d.is_canary(&canonicalize(p).unwrap());
    assert!(yes("secret/w/decoy/db"));
    assert!(yes("secret/w/decoy/a/b"));
    assert!(yes("secret/w/decoy/"));
    assert!(!yes("secret/w/decoy"));
    assert!(yes("secret/w/apps/api/backup"));
    assert!(!yes("secret/w/apps/api/x/backup"));
    assert!(!yes("secret/w/apps/backup"));
    assert!(yes("secret/w/root-key"));
    assert!(!yes("secret/w/root-key2"));
    assert!(!yes("secret/w/Root-key"));
    assert!(yes("secret/w/payroll/x"));
    assert!(!yes("secret/w/db"));
    assert!(!yes("kv/w/decoy/db"));
    assert!(!DetectionPolicy::default().is_canary(&canonicalize("secret/w/decoy/db").unwrap()));
}

#[test]
fn allows_source_is_one_token_one_host_unless_an_egress_pool_holds_both() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let none = DetectionPolicy::default();
    assert!(none.allows_source(ip("10.1.0.5"), ip("10.1.0.5")));
    assert!(!none.allows_source(ip("10.1.0.5"), ip("10.1.0.6")));
    assert!(none.allows_source(ip("::1"), ip("::1")));
    // IPv4-mapped IPv6 is the IPv4 address.
    assert!(none.allows_source(ip("10.1.0.5"), ip("::ffff:10.1.0.5")));
    assert!(none.allows_source(ip("::ffff:10.1.0.5"), ip("10.1.0.5")));

    let d = policy("[detection]\negress = [\"10.1.0.0/24\", \"10.9.0.0/24\", \"fd00::/64\"]\n");
    assert!(d.allows_source(ip("10.1.0.5"), ip("10.1.0.200")));
    assert!(d.allows_source(ip("10.1.0.5"), ip("::ffff:10.1.0.9")));
    assert!(d.allows_source(ip("fd00::1"), ip("fd00::2")));
    // Moving between two declared pools is not moving within one.
    assert!(!d.allows_source(ip("10.1.0.5"), ip("10.9.0.5")));
    // Into a pool from outside it, or out of a pool.
    assert!(!d.allows_source(ip("192.0.2.1"), ip("10.1.0.5")));
    assert!(!d.allows_source(ip("10.1.0.5"), ip("192.0.2.1")));
    assert!(!d.allows_source(ip("10.1.0.5"), ip("10.1.1.5")));
    assert!(!d.allows_source(ip("fd00::1"), ip("fd01::1")));
    // Outside every pool, the same host still is the same host.
    assert!(d.allows_source(ip("192.0.2.1"), ip("192.0.2.1")));
}

#[test]
fn the_shipped_example_declares_its_detection() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../policies/examples");
    let set = PolicySet::load_dir(
        &dir,
        &LoadContext {
            issuers: vec!["github".into(), "k8s".into()],
        },
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let d = set.workload("ops-readonly-agent").unwrap().detection();
    assert!(d.is_canary(&canonicalize("secret/runbooks/payments/break-glass-root").unwrap()));
    assert!(!d.is_canary(&canonicalize("secret/runbooks/payments/db").unwrap()));
    assert_eq!(d.scope_violations().threshold, 3);
    assert_eq!(d.scope_violations().window, secs(600));
    assert_eq!(d.canary().response.revoke, Some(RevokeScope::Subject));
    assert!(d.canary().response.quarantine && d.canary().response.alert);
    assert_eq!(*d.volume(), VolumeRule::default());
}
