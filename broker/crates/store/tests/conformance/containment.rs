//! Conformance cases for containment's state (signals, quarantines,
//! detections, the alert outbox, revocation by subject), run against both
//! databases by the `conformance!` list in `conformance.rs`.
//! Must never happen: a case here missing from that list.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leash_domain::audit::Decision;
use leash_domain::detection::{AlertDelivery, Detection, Quarantine, Signal, Subject};
use leash_domain::records::{CommitUnit, Mutation, NotApplied, Outcome, TokenSelector};
use leash_store::{AlertAttempt, AttemptOutcome, Revocation, Store};

use crate::common::*;

fn subject_of(workload: &str, subject: &str) -> Subject {
    let mut t = token();
    t.workload = workload.into();
    t.subject = subject.into();
    Subject::of(&t)
}

/// The subject of [`token`].
fn alice() -> Subject {
    Subject::of(&token())
}

fn signal(s: &Subject, at: DateTime<Utc>, operation: &str, path: &str) -> Signal {
    Signal {
        subject: s.clone(),
        at,
        request_id: format!("req-{}", at.timestamp_micros()),
        operation: operation.into(),
        path: path.into(),
        kind: "scope".into(),
    }
}

fn quarantine(s: &Subject, since: DateTime<Utc>, until: Option<DateTime<Utc>>) -> Quarantine {
    Quarantine {
        subject: s.clone(),
        since,
        until,
        reason: "probing".into(),
        by: "scope_violations".into(),
        detection_id: Some("det_1".into()),
    }
}

fn detection(id: &str, s: &Subject, at: DateTime<Utc>) -> Detection {
    Detection {
        id: id.into(),
        at,
        detector: "enumeration".into(),
        rule: "10 paths in 1m".into(),
        subject: s.clone(),
        summary: "listed \"everything\"".into(),
        evidence: vec!["req-1".into(), "req-2".into()],
        responses: vec!["revoke".into(), "alert".into()],
        dry_run: false,
        paths: vec!["secret/a".into(), "secret/ü/b".into()],
    }
}

fn alert(id: &str, at: DateTime<Utc>) -> AlertDelivery {
    AlertDelivery {
        delivery_id: id.into(),
        detection_id: "det_1".into(),
        target: "pager".into(),
        body: format!("{{\"id\":\"{id}\",\"x\":\"\\u00fc\"}}\n").into_bytes(),
        created_at: at,
    }
}

/// A refused read whose consequences are `m`.
fn with(m: Vec<Mutation>) -> CommitUnit {
    let mut u = CommitUnit::event(event("kv.read"));
    u.event.decision = Decision::Denied;
    u.event.status = 403;
    u.consequences = m;
    u
}

async fn consequences(s: &dyn Store, m: Vec<Mutation>) -> u64 {
    s.commit(&[with(m)]).await.unwrap()[0].consequences_affected
}

pub async fn signals_count_in_their_window_per_subject(h: &Harness) {
    let s = &*h.store;
    let (a, b) = (alice(), subject_of("payments-api", "someone-else"));
    let signals = [
        signal(&a, t0() - secs(100), "kv.read", "secret/p0"),
        signal(&a, t0(), "kv.read", "secret/p1"),
        signal(&a, t0() + secs(1), "list", "secret/p1"),
        signal(&a, t0() + secs(2), "kv.read", "secret/p2"),
        signal(&b, t0(), "list", "secret/p9"),
    ];
    for sig in &signals {
        let n = consequences(s, vec![Mutation::RecordSignal(sig.clone())]).await;
        assert_eq!(n, 1);
    }
    let st = s.signal_stats(&a, t0()).await.unwrap();
    assert_eq!((st.refusals, st.distinct_paths, st.lists), (3, 2, 1));
    let st = s.signal_stats(&a, t0() - secs(200)).await.unwrap();
    assert_eq!((st.refusals, st.distinct_paths, st.lists), (4, 3, 1));
    let st = s.signal_stats(&b, t0() - secs(200)).await.unwrap();
    assert_eq!((st.refusals, st.distinct_paths, st.lists), (1, 1, 1));
    let nobody = subject_of("billing", "nobody");
    assert_eq!(
        s.signal_stats(&nobody, t0() - secs(200)).await.unwrap(),
        Default::default()
    );
    let st = s.signal_stats(&a, t0() + secs(3)).await.unwrap();
    assert_eq!(st.refusals, 0, "none in the window");
    // Newest first, limited, within the window, of the subject only.
    let got = s.signals(&a, t0(), 10).await.unwrap();
    assert_eq!(
        got,
        vec![signals[3].clone(), signals[2].clone(), signals[1].clone()]
    );
    assert_eq!(s.signals(&a, t0(), 2).await.unwrap().len(), 2);
    // Reaping deletes the old ones only.
    assert_eq!(s.reap_signals(t0()).await.unwrap(), 1);
    let st = s.signal_stats(&a, t0() - secs(200)).await.unwrap();
    assert_eq!(st.refusals, 3);
    assert!(verify_chain(s, &h.hasher).await.is_ok());
}

pub async fn quarantine_is_active_until_expiry_or_release(h: &Harness) {
    let s = &*h.store;
    let a = alice();
    let q1 = quarantine(&a, t0(), Some(t0() + secs(60)));
    let n = consequences(s, vec![Mutation::Quarantine(q1.clone())]).await;
    assert_eq!(n, 1);
    // Idempotent while one is in force.
    let again = quarantine(&a, t0() + secs(10), None);
    assert_eq!(
        commit1(s, Mutation::Quarantine(again)).await.outcome,
        Outcome::Applied { affected: 0 }
    );
    assert_eq!(
        s.active_quarantine(&a, t0() + secs(30)).await.unwrap(),
        Some(q1.clone())
    );
    assert_eq!(
        s.active_quarantine(&a, t0() + secs(60)).await.unwrap(),
        None
    );
    let other = subject_of("payments-api", "other");
    assert_eq!(s.active_quarantine(&other, t0()).await.unwrap(), None);
    // Expired: a new one applies; released, it is over.
    let mut q2 = quarantine(&a, t0() + secs(100), None);
    q2.by = "operator".into();
    q2.detection_id = None;
    assert_eq!(
        commit1(s, Mutation::Quarantine(q2.clone())).await.outcome,
        Outcome::Applied { affected: 1 }
    );
    assert_eq!(
        s.active_quarantine(&a, t0() + secs(10_000)).await.unwrap(),
        Some(q2.clone())
    );
    let release = |at| Mutation::ReleaseQuarantine {
        subject: a.clone(),
        at,
    };
    assert_eq!(
        commit1(s, release(t0() + secs(200))).await.outcome,
        Outcome::Applied { affected: 1 }
    );
    assert_eq!(
        commit1(s, release(t0() + secs(201))).await.outcome,
        Outcome::Applied { affected: 0 }
    );
    assert_eq!(
        s.active_quarantine(&a, t0() + secs(300)).await.unwrap(),
        None
    );
    // History, newest first; a released one ends at its release.
    let mut ended = q2.clone();
    ended.until = Some(t0() + secs(200));
    assert_eq!(s.quarantines(&a).await.unwrap(), vec![ended, q1]);
    assert!(s.quarantines(&other).await.unwrap().is_empty());
    assert!(verify_chain(s, &h.hasher).await.is_ok());
}

pub async fn logins_are_refused_while_quarantined(h: &Harness) {
    let s = &*h.store;
    let a = alice();
    commit1(s, Mutation::InsertToken(token())).await; // PostgreSQL learns the head
    let q = quarantine(&a, t0(), Some(t0() + secs(600)));
    commit1(s, Mutation::Quarantine(q)).await;
    // Alone, and in a batch with a bystander's login.
    let refused = token();
    let c = commit1(s, Mutation::InsertToken(refused.clone())).await;
    assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::Quarantined));
    let e = event_at(s, c.seq).await.event;
    assert_eq!(e.decision, Decision::Denied);
    assert_eq!(
        (e.status, e.reason.as_str()),
        (400, "refused: identity quarantined")
    );
    assert_eq!(s.token(&refused.hash).await.unwrap(), None);
    let (mut bystander, also) = (token(), token());
    bystander.subject = "another".into();
    let out = s
        .commit(&[
            unit(Mutation::InsertToken(also.clone())),
            unit(Mutation::InsertToken(bystander.clone())),
        ])
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(|c| c.outcome).collect::<Vec<_>>(),
        vec![
            Outcome::NotApplied(NotApplied::Quarantined),
            Outcome::Applied { affected: 1 },
        ]
    );
    assert_eq!(s.token(&also.hash).await.unwrap(), None);
    assert_eq!(s.token(&bystander.hash).await.unwrap(), Some(bystander));
    // After the quarantine's end, a login applies (one-statement again on
    // PostgreSQL).
    let mut late = token();
    late.created_at = t0() + secs(600);
    let c = commit1(s, Mutation::InsertToken(late.clone())).await;
    assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
    // A quarantine without end, released.
    commit1(
        s,
        Mutation::Quarantine(quarantine(&a, t0() + secs(700), None)),
    )
    .await;
    let mut t = token();
    t.created_at = t0() + secs(800);
    assert_eq!(
        commit1(s, Mutation::InsertToken(t.clone())).await.outcome,
        Outcome::NotApplied(NotApplied::Quarantined)
    );
    commit1(
        s,
        Mutation::ReleaseQuarantine {
            subject: a.clone(),
            at: t0() + secs(850),
        },
    )
    .await;
    assert_eq!(
        commit1(s, Mutation::InsertToken(t)).await.outcome,
        Outcome::Applied { affected: 1 }
    );
    assert!(verify_chain(s, &h.hasher).await.is_ok());
}

/// Logins racing a revocation by subject and a quarantine in one commit:
/// every login either is refused or is revoked by it; none outlives it.
pub async fn a_login_racing_a_quarantine_never_outlives_it(h: &Harness) {
    let a = alice();
    for round in 0..5 {
        let s = h.store.clone();
        let second = h.another().await;
        let logins: Vec<_> = (0..12)
            .map(|i| {
                let s = if i % 2 == 0 {
                    s.clone()
                } else {
                    second.clone()
                };
                tokio::spawn(async move {
                    let t = token();
                    let c = commit1(&*s, Mutation::InsertToken(t.clone())).await;
                    (t, c.outcome)
                })
            })
            .collect();
        let at = t0() + secs(round);
        let contain = with(vec![
            Mutation::RevokeTokens {
                selector: TokenSelector::Subject(a.clone()),
                now: at,
            },
            Mutation::Quarantine(quarantine(&a, at, None)),
        ]);
        s.commit(&[contain]).await.unwrap();
        for l in logins {
            let (t, outcome) = l.await.unwrap();
            match outcome {
                Outcome::Applied { .. } => {
                    let stored = s.token(&t.hash).await.unwrap().unwrap();
                    assert!(stored.revoked_at.is_some(), "a login outlived it");
                }
                Outcome::NotApplied(NotApplied::Quarantined) => {
                    assert_eq!(s.token(&t.hash).await.unwrap(), None);
                }
                other => panic!("{other:?}"),
            }
        }
        commit1(
            &*s,
            Mutation::ReleaseQuarantine {
                subject: a.clone(),
                at,
            },
        )
        .await;
    }
    assert!(verify_chain(&*h.store, &h.hasher).await.is_ok());
}

pub async fn revoke_by_subject_and_by_attestation(h: &Harness) {
    let s = &*h.store;
    let (a1, a2) = (token(), token());
    let mut b = token();
    b.subject = "someone-else".into();
    let mut c = token();
    c.workload = "billing".into();
    let mut leases = Vec::new();
    for t in [&a1, &a2, &b, &c] {
        commit1(s, Mutation::InsertToken(t.clone())).await;
        let l = lease(t, &format!("secret/data/{}", t.accessor));
        commit1(s, Mutation::InsertLease(l.clone())).await;
        leases.push((t.hash, l.hash));
    }
    let mut feed = s.subscribe().await.unwrap();
    let token_revoked = |hash| async move { s.token(&hash).await.unwrap().unwrap().revoked_at };
    let lease_revoked = |hash| async move { s.lease(&hash).await.unwrap().unwrap().revoked_at };
    let check = |revoked: Vec<(leash_domain::Digest, Option<DateTime<Utc>>)>| {
        let leases = leases.clone();
        async move {
            for (t, when) in revoked {
                assert_eq!(token_revoked(t).await, when);
                let (_, l) = leases.iter().find(|(tt, _)| *tt == t).unwrap();
                assert_eq!(lease_revoked(*l).await, when);
            }
        }
    };
    let a = Subject::of(&a1);
    let out = commit1(
        s,
        Mutation::RevokeTokens {
            selector: TokenSelector::Subject(a.clone()),
            now: t0(),
        },
    )
    .await;
    assert_eq!(out.outcome, Outcome::Applied { affected: 4 });
    check(vec![
        (a1.hash, Some(t0())),
        (a2.hash, Some(t0())),
        (b.hash, None),
        (c.hash, None),
    ])
    .await;
    let later = t0() + secs(5);
    let out = commit1(
        s,
        Mutation::RevokeTokens {
            selector: TokenSelector::Attestation {
                issuer: a.issuer.clone(),
                subject: a.subject.clone(),
            },
            now: later,
        },
    )
    .await;
    assert_eq!(out.outcome, Outcome::Applied { affected: 2 }, "c's");
    check(vec![
        (a1.hash, Some(t0())),
        (b.hash, None),
        (c.hash, Some(later)),
    ])
    .await;
    if let Some(feed) = feed.as_mut() {
        let expected = [
            Revocation::Subject(a.clone()),
            Revocation::Attestation {
                issuer: a.issuer.clone(),
                subject: a.subject.clone(),
            },
        ];
        for e in expected {
            let got = tokio::time::timeout(Duration::from_secs(10), feed.next())
                .await
                .expect("announced")
                .unwrap();
            assert_eq!(got, e);
        }
    }
}

pub async fn detections_page_and_look_up(h: &Harness) {
    let s = &*h.store;
    let (a, b) = (alice(), subject_of("billing", "bob"));
    let mut all = Vec::new();
    for i in 0..5 {
        let who = if i % 2 == 0 { &a } else { &b };
        let mut d = detection(&format!("det_{i}"), who, t0() + secs(i));
        d.dry_run = i == 3;
        consequences(s, vec![Mutation::RecordDetection(d.clone())]).await;
        all.push(d);
    }
    let page = s.detections(None, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.detection.clone()).collect::<Vec<_>>(),
        all
    );
    assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
    let next = s.detections(Some(page[1].seq), 2).await.unwrap();
    assert_eq!(next, page[2..4].to_vec());
    assert!(s.detections(Some(page[4].seq), 2).await.unwrap().is_empty());
    assert_eq!(s.detection("det_3").await.unwrap(), Some(page[3].clone()));
    assert_eq!(s.detection("det_x").await.unwrap(), None);
    let of_a = s.detections_of(&a, 2).await.unwrap();
    assert_eq!(of_a, vec![page[4].clone(), page[2].clone()]);
    // An id is unique: a second one fails the whole commit.
    let dup = s
        .commit(&[with(vec![Mutation::RecordDetection(all[0].clone())])])
        .await;
    assert!(dup.is_err());
    assert_eq!(s.detections(None, 10).await.unwrap().len(), 5);
}

pub async fn outbox_claims_are_exclusive_and_retried(h: &Harness) {
    let s = h.store.clone();
    let alerts: Vec<_> = (0..20)
        .map(|i| alert(&format!("dl_{i:02}"), t0()))
        .collect();
    let m = alerts.iter().cloned().map(Mutation::EnqueueAlert).collect();
    assert_eq!(consequences(&*s, m).await, 20);
    // Eight claimers at once: every alert claimed exactly once.
    let now = t0() + secs(1);
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_alerts(now, Duration::from_secs(30), 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for c in claims {
        for a in c.await.unwrap() {
            assert!(seen.insert(a.delivery.delivery_id.clone()), "claimed twice");
            assert_eq!(a.attempts, 0);
            let want = alerts
                .iter()
                .find(|x| x.delivery_id == a.delivery.delivery_id)
                .unwrap();
            assert_eq!(&a.delivery, want, "exact bytes");
        }
    }
    assert_eq!(seen.len(), 20);
    let claim = |at, limit| {
        let s = s.clone();
        async move {
            s.claim_alerts(at, Duration::from_secs(30), limit)
                .await
                .unwrap()
                .into_iter()
                .map(|a| (a.delivery.delivery_id, a.attempts))
                .collect::<Vec<_>>()
        }
    };
    assert!(claim(now, 100).await.is_empty(), "all claimed");
    // A lapsed claim is claimable again (most overdue first: all equal).
    let again = claim(t0() + secs(32), 100).await;
    assert_eq!(again.len(), 20);
    assert_eq!(again[0].0, "dl_00");
    let attempt = |outcome, status| AlertAttempt {
        at: t0() + secs(40),
        status,
        error: (status != Some(200)).then(|| "timed out".to_owned()),
        outcome,
    };
    let rec = |id: &'static str, a: AlertAttempt| {
        let s = s.clone();
        async move { s.record_alert_attempt(id, &a).await.unwrap() }
    };
    assert!(rec("dl_00", attempt(AttemptOutcome::Delivered, Some(200))).await);
    let retry = AttemptOutcome::Retry {
        next_attempt_at: t0() + secs(100),
    };
    assert!(rec("dl_01", attempt(retry, Some(503))).await);
    assert!(rec("dl_02", attempt(AttemptOutcome::GiveUp, None)).await);
    // Delivered or given up: never again, nothing more recorded.
    assert!(!rec("dl_00", attempt(AttemptOutcome::Delivered, Some(200))).await);
    assert!(!rec("dl_02", attempt(AttemptOutcome::GiveUp, None)).await);
    assert!(!rec("dl_zz", attempt(AttemptOutcome::GiveUp, None)).await);
    // Before the retry is due, and while the others' claims hold: nothing.
    assert!(claim(t0() + secs(50), 100).await.is_empty());
    // Later: the retry (one attempt made) and the 17 lapsed claims.
    let later = claim(t0() + secs(100), 100).await;
    assert_eq!(later.len(), 18);
    let ids: HashSet<_> = later.iter().map(|(id, _)| id.as_str()).collect();
    assert!(!ids.contains("dl_00") && !ids.contains("dl_02"));
    assert!(later.contains(&("dl_01".to_owned(), 1)));
    assert!(rec("dl_01", attempt(AttemptOutcome::Delivered, Some(200))).await);
    // The attempt rows: numbered, one per recorded attempt.
    let rows = |sql: &'static str| async move { h.raw(sql).await.unwrap() };
    let count = "UPDATE alert_attempts SET at = at WHERE delivery_id = 'dl_01'";
    assert_eq!(rows(count).await, 2);
    let numbered = "UPDATE alert_attempts SET at = at WHERE delivery_id = 'dl_01' \
                    AND ((attempt = 1 AND NOT delivered AND status = 503) \
                    OR (attempt = 2 AND delivered AND status = 200))";
    assert_eq!(rows(numbered).await, 2);
    let others = "UPDATE alert_attempts SET at = at WHERE delivery_id <> 'dl_01'";
    assert_eq!(rows(others).await, 2, "dl_00 and dl_02");
}

/// The consequences a finding calls for, in the order the detectors
/// commit them, in one unit: all of them with the event, or none.
pub async fn containment_consequences_commit_with_their_event(h: &Harness) {
    let s = &*h.store;
    let tok = token();
    commit1(s, Mutation::InsertToken(tok.clone())).await;
    let l = lease(&tok, "secret/data/held");
    commit1(s, Mutation::InsertLease(l.clone())).await;
    let a = Subject::of(&tok);
    let at = t0() + secs(30);
    let found = |id: &str| {
        vec![
            Mutation::RecordSignal(signal(&a, at, "kv.read", "secret/x")),
            Mutation::RevokeTokens {
                selector: TokenSelector::Subject(a.clone()),
                now: at,
            },
            Mutation::Quarantine(quarantine(&a, at, Some(at + secs(600)))),
            Mutation::RecordDetection(detection(id, &a, at)),
            Mutation::EnqueueAlert(alert(&format!("dl_{id}"), at)),
        ]
    };
    // A detection id already used fails the unit: nothing of it commits.
    consequences(
        s,
        vec![Mutation::RecordDetection(detection("det_used", &a, at))],
    )
    .await;
    let events = all_events(s).await.len();
    assert!(s.commit(&[with(found("det_used"))]).await.is_err());
    assert_eq!(all_events(s).await.len(), events);
    assert_eq!(s.signal_stats(&a, t0()).await.unwrap().refusals, 0);
    assert_eq!(s.active_quarantine(&a, at).await.unwrap(), None);
    assert_eq!(s.token(&tok.hash).await.unwrap().unwrap().revoked_at, None);
    assert!(
        s.claim_alerts(at, Duration::from_secs(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Then all of it, with its event.
    let u = with(found("det_new"));
    let out = s.commit(std::slice::from_ref(&u)).await.unwrap();
    assert_eq!(out[0].outcome, Outcome::Recorded);
    assert_eq!(out[0].consequences_affected, 1 + 2 + 1 + 1 + 1);
    assert_eq!(event_at(s, out[0].seq).await.event, u.event);
    assert_eq!(s.signal_stats(&a, t0()).await.unwrap().refusals, 1);
    assert_eq!(
        s.token(&tok.hash).await.unwrap().unwrap().revoked_at,
        Some(at)
    );
    assert_eq!(
        s.lease(&l.hash).await.unwrap().unwrap().revoked_at,
        Some(at)
    );
    assert!(s.active_quarantine(&a, at).await.unwrap().is_some());
    assert!(s.detection("det_new").await.unwrap().is_some());
    let claimed = s
        .claim_alerts(at, Duration::from_secs(1), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivery.delivery_id, "dl_det_new");
    assert!(verify_chain(s, &h.hasher).await.is_ok());
}
