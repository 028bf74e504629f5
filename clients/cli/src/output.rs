//! Renders answers as text or JSON. Pure functions returning strings, so
//! each format is unit-tested.
//!
//! Text that came from the broker or from other callers (audit fields,
//! secret keys and values, error messages) has control characters escaped so
//! it cannot forge lines or drive the terminal. Only `leash login` prints a
//! token; lookups and renewals drop it.

use std::borrow::Cow;
use std::fmt::Write as _;

use leash_client::{
    AuditEvent, AuditVerify, Auth, KvSecret, LeaseInfo, LeaseRenewal, Status, TokenInfo,
};
use serde_json::{Value, json};

mod containment;

pub(crate) use containment::{detection_line, detection_text, identity_text, quarantine_result};

/// Escapes control characters (newlines, ESC, ...) as `\n`, `\u{1b}`.
pub(crate) fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Pretty JSON with a trailing newline.
pub(crate) fn json_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// Aligned `name  value` rows.
fn table(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<width$}  {}", sanitize(v));
    }
    out
}

fn opt(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// A JSON value as one text cell: strings bare, the rest as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `leash status`.
pub(crate) fn status_text(s: &Status) -> String {
    table(&[
        ("version", s.version.clone()),
        (
            "store",
            format!(
                "{} ({})",
                s.store,
                if s.store_ok { "ok" } else { "UNREACHABLE" }
            ),
        ),
        ("workloads", s.workloads.to_string()),
        ("live_tokens", s.live_tokens.to_string()),
        ("live_leases", s.live_leases.to_string()),
        ("audit_events", s.audit_events.to_string()),
        (
            "connections",
            format!(
                "{} open; refused {} at the overall cap, {} at the per-peer cap; {} timed out; {} handler timeouts",
                s.connections.open,
                s.connections.refused_overall,
                s.connections.refused_per_peer,
                s.connections.timed_out,
                s.connections.handler_timeouts
            ),
        ),
        (
            "audit_head_seq",
            s.audit_head_seq
                .map_or_else(|| "-".into(), |n| n.to_string()),
        ),
    ])
}

/// `leash login` in JSON: the full auth block, token included (that is
/// what the command is for).
pub(crate) fn login_json(a: &Auth) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

/// The stderr hint after a text-mode login.
pub(crate) fn login_hint(role: &str, a: &Auth) -> String {
    format!(
        "hint: token for {} valid {}s; use it with: export LEASH_TOKEN=$(leash login jwt --role {} --jwt-file ...)\n",
        sanitize(role),
        a.lease_duration,
        sanitize(role)
    )
}

/// `leash kv get` in text: the lease, then `key = value` sorted by key.
pub(crate) fn kv_text(s: &KvSecret) -> String {
    let mut out = format!(
        "lease_id: {}\nlease_duration: {}\n",
        sanitize(&s.lease_id),
        s.lease_duration
    );
    let mut pairs: Vec<(&String, &Value)> = s.data.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in pairs {
        let _ = writeln!(out, "{} = {}", sanitize(k), sanitize(&cell(v)));
    }
    out
}

/// `leash kv get` in JSON: the Vault envelope with the secret's data.
pub(crate) fn kv_json(s: &KvSecret) -> Value {
    json!({
        "request_id": s.request_id,
        "lease_id": s.lease_id,
        "lease_duration": s.lease_duration,
        "renewable": s.renewable,
        "data": { "data": s.data, "metadata": s.metadata },
    })
}

/// `leash kv list` in text: one key per line.
pub(crate) fn keys_text(keys: &[String]) -> String {
    keys.iter().map(|k| format!("{}\n", sanitize(k))).collect()
}

/// `leash lease lookup`.
pub(crate) fn lease_info_text(l: &LeaseInfo) -> String {
    table(&[
        ("id", l.id.clone()),
        ("path", opt(Some(&l.path))),
        ("issue_time", l.issue_time.clone()),
        ("expire_time", opt(l.expire_time.as_deref())),
        ("last_renewal", opt(l.last_renewal.as_deref())),
        ("renewable", l.renewable.to_string()),
        ("ttl", l.ttl.to_string()),
    ])
}

/// `leash lease renew`.
pub(crate) fn renewal_text(r: &LeaseRenewal) -> String {
    table(&[
        ("lease_id", r.lease_id.clone()),
        ("lease_duration", r.lease_duration.to_string()),
        ("renewable", r.renewable.to_string()),
    ])
}

/// Warnings, one `warning: ...` line each, for stderr.
pub(crate) fn warnings_text(w: &[String]) -> String {
    w.iter()
        .map(|w| format!("warning: {}\n", sanitize(w)))
        .collect()
}

/// `leash token lookup` in text; never the token itself.
pub(crate) fn token_info_text(t: &TokenInfo) -> String {
    let meta = t
        .meta
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "-".into());
    table(&[
        ("accessor", t.accessor.clone()),
        ("display_name", opt(Some(&t.display_name))),
        ("entity_id", opt(Some(&t.entity_id))),
        ("path", opt(Some(&t.path))),
        ("policies", list(&t.policies)),
        ("meta", meta),
        ("type", opt(Some(&t.token_type))),
        ("issue_time", opt(t.issue_time.as_deref())),
        ("expire_time", opt(t.expire_time.as_deref())),
        ("ttl", t.ttl.to_string()),
        ("renewable", t.renewable.to_string()),
        ("orphan", t.orphan.to_string()),
    ])
}

/// `leash token lookup` in JSON; `id` (the token) is dropped.
pub(crate) fn token_info_json(t: &TokenInfo) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
    }
    v
}

/// `leash token renew` in text.
pub(crate) fn token_renew_text(a: &Auth) -> String {
    table(&[
        ("accessor", a.accessor.clone()),
        ("lease_duration", a.lease_duration.to_string()),
        ("renewable", a.renewable.to_string()),
        ("policies", list(&a.policies)),
    ])
}

/// `leash token renew` in JSON: the auth block without `client_token`.
pub(crate) fn token_renew_json(a: &Auth) -> Value {
    let mut v = login_json(a);
    if let Some(o) = v.as_object_mut() {
        o.remove("client_token");
    }
    v
}

/// One `leash audit list` line:
/// `seq time decision status operation path workload reason`.
pub(crate) fn audit_line(e: &AuditEvent) -> String {
    let field = |s: &str| -> String {
        if s.is_empty() {
            "-".into()
        } else {
            sanitize(s).replace(' ', "_")
        }
    };
    format!(
        "{} {} {} {} {} {} {} {}\n",
        e.seq,
        field(&e.time),
        field(&e.decision),
        e.status,
        field(&e.operation),
        field(&e.path),
        field(e.workload.as_deref().unwrap_or_default()),
        // Last on the line, so it may keep its spaces.
        if e.reason.is_empty() {
            Cow::Borrowed("-")
        } else {
            sanitize(&e.reason)
        },
    )
}

/// `leash audit verify` in text, when the chain is intact.
pub(crate) fn verify_ok_text(v: &AuditVerify) -> String {
    format!(
        "audit chain ok: {} events, head seq {}\n",
        v.events,
        v.head_seq.map_or_else(|| "-".into(), |n| n.to_string())
    )
}

/// The error line when the chain is broken (after `leash: `).
pub(crate) fn verify_broken_message(v: &AuditVerify) -> String {
    format!(
        "audit chain broken after checking {} events: {}",
        v.events,
        sanitize(v.error.as_deref().unwrap_or("no reason given"))
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use leash_client::KvMetadata;
    use serde_json::Map;

    use super::*;

    const TOKEN: &str = "hvs.TOP-SECRET";

    fn auth() -> Auth {
        Auth {
            client_token: TOKEN.into(),
            accessor: "acc-1".into(),
            policies: vec!["app".into()],
            token_policies: vec!["app".into()],
            metadata: Some(BTreeMap::from([("workload".into(), "app".into())])),
            lease_duration: 3600,
            renewable: true,
            entity_id: "ent".into(),
            token_type: "service".into(),
            orphan: true,
            num_uses: 0,
        }
    }

    fn secret() -> KvSecret {
        let mut data = Map::new();
        data.insert("user".into(), json!("app"));
        data.insert("password".into(), json!("p@ss word"));
        data.insert("port".into(), json!(5432));
        data.insert("evil".into(), json!("x\n\u{1b}[31mfake = line"));
        KvSecret {
            request_id: "req".into(),
            lease_id: "secret/data/app/db/abc".into(),
            lease_duration: 600,
            renewable: true,
            data,
            metadata: KvMetadata {
                created_time: "2024-01-01T00:00:00Z".into(),
                deletion_time: String::new(),
                destroyed: false,
                version: 2,
                custom_metadata: None,
            },
        }
    }

    #[test]
    fn kv_text_is_lease_then_sorted_pairs_with_escaping() {
        assert_eq!(
            kv_text(&secret()),
            "lease_id: secret/data/app/db/abc\n\
             lease_duration: 600\n\
             evil = x\\n\\u{1b}[31mfake = line\n\
             password = p@ss word\n\
             port = 5432\n\
             user = app\n"
        );
    }

    #[test]
    fn kv_json_is_the_envelope() {
        let v = kv_json(&secret());
        assert_eq!(v["lease_id"], "secret/data/app/db/abc");
        assert_eq!(v["lease_duration"], 600);
        assert_eq!(v["data"]["data"]["port"], 5432);
        assert_eq!(v["data"]["metadata"]["version"], 2);
        assert!(json_text(&v).ends_with("}\n"));
    }

    #[test]
    fn token_outputs_never_show_the_token_except_login_json() {
        let a = auth();
        assert_eq!(login_json(&a)["client_token"], TOKEN);
        assert!(!token_renew_json(&a).to_string().contains(TOKEN));
        assert!(!token_renew_text(&a).contains(TOKEN));
        assert!(!login_hint("app", &a).contains(TOKEN));
        let info = TokenInfo {
            accessor: "acc-1".into(),
            creation_time: 1,
            creation_ttl: 3600,
            display_name: "jwt-app".into(),
            entity_id: "ent".into(),
            expire_time: None,
            explicit_max_ttl: 0,
            id: TOKEN.into(),
            issue_time: Some("2024-01-01T00:00:00Z".into()),
            meta: None,
            num_uses: 0,
            orphan: true,
            path: "auth/jwt/login".into(),
            policies: vec!["a".into(), "b".into()],
            renewable: true,
            ttl: 12,
            token_type: "service".into(),
        };
        let text = token_info_text(&info);
        assert!(!text.contains(TOKEN));
        assert!(text.contains("policies      a,b\n"), "{text}");
        assert!(text.contains("expire_time   -\n"), "{text}");
        let json = token_info_json(&info);
        assert!(!json.to_string().contains(TOKEN));
        assert_eq!(json["accessor"], "acc-1");
    }

    #[test]
    fn audit_lines() {
        let mut e = AuditEvent {
            seq: 7,
            request_id: "r".into(),
            time: "2024-01-01T00:00:00Z".into(),
            identity: None,
            workload: Some("app".into()),
            peer: "127.0.0.1".into(),
            operation: "kv.read".into(),
            method: "GET".into(),
            path: "secret/data/app".into(),
            decision: "denied".into(),
            status: 403,
            reason: "no policy grants read".into(),
            lease_ref: None,
            attestation: json!({}),
        };
        assert_eq!(
            audit_line(&e),
            "7 2024-01-01T00:00:00Z denied 403 kv.read secret/data/app app no policy grants read\n"
        );
        e.workload = None;
        e.reason = "bad\nline".into();
        e.path = "a b".into();
        assert_eq!(
            audit_line(&e),
            "7 2024-01-01T00:00:00Z denied 403 kv.read a_b - bad\\nline\n"
        );
    }

    #[test]
    fn tables_and_lists() {
        let s = Status {
            version: "0.1.0".into(),
            store: "sqlite".into(),
            store_ok: true,
            workloads: 2,
            live_tokens: 1,
            live_leases: 0,
            audit_events: 5,
            audit_head_seq: None,
            ..Status::default()
        };
        let text = status_text(&s);
        assert!(
            text.starts_with("version         0.1.0\nstore           sqlite (ok)\n"),
            "{text}"
        );
        assert!(text.ends_with("audit_head_seq  -\n"), "{text}");
        assert!(
            text.contains("connections     0 open; refused 0 at"),
            "{text}"
        );
        assert_eq!(keys_text(&["a".into(), "dir/".into()]), "a\ndir/\n");
        assert_eq!(keys_text(&[]), "");
        let r = LeaseRenewal {
            lease_id: "l".into(),
            lease_duration: 60,
            renewable: true,
            warnings: vec!["capped".into()],
        };
        assert_eq!(
            renewal_text(&r),
            "lease_id        l\nlease_duration  60\nrenewable       true\n"
        );
        assert_eq!(warnings_text(&r.warnings), "warning: capped\n");
        let l = LeaseInfo {
            id: "l".into(),
            issue_time: "t0".into(),
            expire_time: Some("t1".into()),
            last_renewal: None,
            path: "secret/data/app".into(),
            renewable: true,
            ttl: 5,
        };
        assert!(lease_info_text(&l).contains("last_renewal  -\n"));
        let v = AuditVerify {
            ok: true,
            events: 9,
            head_seq: Some(9),
            error: None,
        };
        assert_eq!(verify_ok_text(&v), "audit chain ok: 9 events, head seq 9\n");
        let v = AuditVerify {
            ok: false,
            events: 4,
            head_seq: None,
            error: Some("row 5 changed".into()),
        };
        assert_eq!(
            verify_broken_message(&v),
            "audit chain broken after checking 4 events: row 5 changed"
        );
    }

    #[test]
    fn sanitize_escapes_controls_only() {
        assert_eq!(sanitize("plain ü"), "plain ü");
        assert_eq!(sanitize("a\tb\u{1b}"), "a\\tb\\u{1b}");
    }
}
