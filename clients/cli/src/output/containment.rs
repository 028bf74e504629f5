//! Text renderings of containment's answers: detection lines, one
//! detection, and an identity with its quarantines and detections. Every
//! field came from the broker (and, through detections, from callers), so
//! each is sanitised.

use std::fmt::Write as _;

use leash_client::{DetectionView, IdentityView, QuarantineView};

use super::{list, opt, sanitize, table};

/// A field for a space-separated line: `-` when empty, spaces as `_`.
fn field(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        sanitize(s).replace(' ', "_")
    }
}

/// One `leash detections list` line:
/// `seq at detector workload subject responses summary` (`responses`
/// reads `dry-run:…` for a detection that changed nothing).
pub(crate) fn detection_line(d: &DetectionView) -> String {
    let mut responses = list(&d.responses);
    if d.dry_run {
        responses = format!("dry-run:{responses}");
    }
    format!(
        "{} {} {} {} {} {} {}\n",
        d.seq,
        field(&d.at),
        field(&d.detector),
        field(&d.workload),
        field(&d.subject),
        field(&responses),
        // Last on the line, so it may keep its spaces.
        if d.summary.is_empty() {
            "-".into()
        } else {
            sanitize(&d.summary)
        },
    )
}

/// `leash detections show`: the fields, then the evidence and the probed
/// paths one per line.
pub(crate) fn detection_text(d: &DetectionView) -> String {
    let mut out = table(&[
        ("id", d.id.clone()),
        ("seq", d.seq.to_string()),
        ("at", d.at.clone()),
        ("detector", d.detector.clone()),
        ("rule", opt(Some(&d.rule))),
        ("workload", d.workload.clone()),
        ("issuer", d.issuer.clone()),
        ("subject", d.subject.clone()),
        ("responses", list(&d.responses)),
        ("dry_run", d.dry_run.to_string()),
        ("summary", opt(Some(&d.summary))),
    ]);
    for (title, items) in [("evidence", &d.evidence), ("paths", &d.paths)] {
        if !items.is_empty() {
            let _ = writeln!(out, "{title}:");
            for i in items {
                let _ = writeln!(out, "  {}", sanitize(i));
            }
        }
    }
    out
}

/// One quarantine: `since until by reason` (`until` is `-` for "until
/// released").
fn quarantine_line(q: &QuarantineView) -> String {
    format!(
        "  {} {} {}{} {}\n",
        field(&q.since),
        field(q.until.as_deref().unwrap_or_default()),
        field(&q.by),
        if q.active { " (active)" } else { "" },
        if q.reason.is_empty() {
            "-".into()
        } else {
            sanitize(&q.reason)
        },
    )
}

/// `leash identity show`.
pub(crate) fn identity_text(v: &IdentityView) -> String {
    let state = match &v.quarantine {
        Some(q) => format!(
            "quarantined since {} until {} by {}",
            q.since,
            q.until.as_deref().unwrap_or("released"),
            q.by
        ),
        None => "not quarantined".into(),
    };
    let mut out = table(&[
        ("workload", v.workload.clone()),
        ("issuer", v.issuer.clone()),
        ("subject", v.subject.clone()),
        ("state", state),
    ]);
    let _ = writeln!(out, "quarantines: {}", v.history.len());
    for q in &v.history {
        out.push_str(&quarantine_line(q));
    }
    let _ = writeln!(out, "detections: {}", v.detections.len());
    for d in &v.detections {
        out.push_str("  ");
        out.push_str(&detection_line(d));
    }
    out
}

/// The line after `leash identity quarantine`.
pub(crate) fn quarantine_result(applied: u64) -> String {
    if applied == 0 {
        "already quarantined\n".into()
    } else {
        "quarantined; logins refused on every replica (open sessions: `leash revoke`)\n".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection() -> DetectionView {
        DetectionView {
            seq: 4,
            id: "det_4".into(),
            at: "2024-01-01T00:00:00Z".into(),
            detector: "enumeration".into(),
            rule: "default".into(),
            workload: "app".into(),
            issuer: "i".into(),
            subject: "svc one".into(),
            summary: "9 paths\nprobed".into(),
            evidence: vec!["r1".into(), "r2".into()],
            responses: vec!["revoke".into(), "quarantine".into()],
            dry_run: false,
            paths: vec!["secret/data/admin/".into()],
        }
    }

    #[test]
    fn detection_lines_escape_and_mark_dry_runs() {
        let mut d = detection();
        assert_eq!(
            detection_line(&d),
            "4 2024-01-01T00:00:00Z enumeration app svc_one revoke,quarantine 9 paths\\nprobed\n"
        );
        d.dry_run = true;
        d.responses.clear();
        d.summary.clear();
        assert_eq!(
            detection_line(&d),
            "4 2024-01-01T00:00:00Z enumeration app svc_one dry-run:- -\n"
        );
        let text = detection_text(&detection());
        assert!(text.starts_with("id         det_4\n"), "{text}");
        assert!(
            text.ends_with("evidence:\n  r1\n  r2\npaths:\n  secret/data/admin/\n"),
            "{text}"
        );
    }

    #[test]
    fn identity_text_shows_state_history_and_detections() {
        let q = QuarantineView {
            workload: "app".into(),
            issuer: "i".into(),
            subject: "s".into(),
            since: "t0".into(),
            until: None,
            reason: "probing paths".into(),
            by: "operator".into(),
            detection_id: None,
            active: true,
        };
        let v = IdentityView {
            workload: "app".into(),
            issuer: "i".into(),
            subject: "s".into(),
            quarantine: Some(q.clone()),
            history: vec![q],
            detections: vec![detection()],
        };
        let text = identity_text(&v);
        assert!(
            text.contains("state     quarantined since t0 until released by operator\n"),
            "{text}"
        );
        assert!(
            text.contains("quarantines: 1\n  t0 - operator (active) probing paths\n"),
            "{text}"
        );
        assert!(text.contains("detections: 1\n  4 "), "{text}");
        let empty = IdentityView::default();
        assert!(identity_text(&empty).contains("not quarantined"));
        assert_eq!(quarantine_result(0), "already quarantined\n");
    }
}
