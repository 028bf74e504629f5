//! The store conformance suite: every case runs against PostgreSQL and
//! SQLite, each on a fresh database. Plus the few cases that only make sense
//! for one of them (an unreachable server, the SQLite file's settings).
//! Must never happen: a case that passes on one implementation and is not
//! run on the other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "conformance/containment.rs"]
mod containment;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use leash_domain::audit::{ChainBreak, Decision};
use leash_domain::records::{CommitUnit, Mutation, NotApplied, Outcome, WriteRule};
use leash_store::{PgStore, PoolOptions, Store, StoreError, StoreStats};

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::common::Harness::pg().await;
                    crate::cases::$case(&h).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::common::Harness::sqlite().await;
                    crate::cases::$case(&h).await;
                }
            )*
        }
    };
}

conformance!(
    migrate_twice_is_a_no_op,
    token_and_lease_round_trip,
    insert_lease_needs_a_live_token,
    one_batch_keeps_the_order_of_its_units,
    renew_lease_applies_and_caps,
    renew_lease_refusals,
    renew_token,
    revoke_lease_is_idempotent_and_owner_scoped,
    revoke_prefix_is_literal_and_owner_scoped,
    revoke_token_revokes_its_leases_only,
    revoke_tokens_by_accessor_and_by_workload,
    renew_racing_revoke_never_wins_after_it,
    commit_is_atomic,
    chain_verifies_after_concurrent_commits,
    several_stores_write_one_chain,
    commits_chained_in_advance_check_the_database,
    tampered_row_is_detected,
    deleted_middle_row_is_detected,
    deleted_last_row_is_detected,
    audit_log_is_append_only,
    audit_times_and_paging,
    reap_deletes_dead_rows_only,
    stats_count_live_rows,
    kv_versions_round_trip,
    kv_list_children,
    kv_write_rules_and_check_and_set,
    kv_writes_race_on_one_version,
    kv_delete_soft_deletes_the_latest,
    connect_dispatches_on_the_url,
    consequences_commit_with_their_event,
    a_refused_request_still_gets_its_consequences,
    a_revocation_among_consequences_is_announced,
    consequences_in_a_batch_of_reads_keep_the_chain,
    signals_count_in_their_window_per_subject,
    quarantine_is_active_until_expiry_or_release,
    logins_are_refused_while_quarantined,
    a_login_racing_a_quarantine_never_outlives_it,
    revoke_by_subject_and_by_attestation,
    detections_page_and_look_up,
    outbox_claims_are_exclusive_and_retried,
    containment_consequences_commit_with_their_event,
);

mod cases {
    use super::*;
    pub use crate::containment::*;

    fn write(path: &str, sealed: &[u8], rule: WriteRule, cas: Option<u64>) -> Mutation {
        Mutation::KvWrite {
            mount: "secret".into(),
            path: path.into(),
            sealed: sealed.to_vec(),
            rule,
            cas,
            now: t0(),
        }
    }

    pub async fn kv_write_rules_and_check_and_set(h: &Harness) {
        let s = &*h.store;
        let w = |p: &str, r, c| commit1(s, write(p, b"v", r, c));
        // Update-only on a missing secret; create-only creates version 1.
        assert_eq!(
            w("a", WriteRule::UpdateOnly, None).await.outcome,
            Outcome::NotApplied(NotApplied::Missing)
        );
        assert_eq!(
            w("a", WriteRule::CreateOnly, None).await.outcome,
            Outcome::Written { version: 1 }
        );
        assert_eq!(
            w("a", WriteRule::CreateOnly, None).await.outcome,
            Outcome::NotApplied(NotApplied::AlreadyExists)
        );
        assert_eq!(
            w("a", WriteRule::UpdateOnly, None).await.outcome,
            Outcome::Written { version: 2 }
        );
        assert_eq!(
            w("a", WriteRule::Any, None).await.outcome,
            Outcome::Written { version: 3 }
        );
        // Check-and-set: only the current version wins; 0 means "must not exist".
        assert_eq!(
            w("a", WriteRule::Any, Some(2)).await.outcome,
            Outcome::NotApplied(NotApplied::CasMismatch)
        );
        assert_eq!(
            w("a", WriteRule::Any, Some(3)).await.outcome,
            Outcome::Written { version: 4 }
        );
        assert_eq!(
            w("a", WriteRule::Any, Some(0)).await.outcome,
            Outcome::NotApplied(NotApplied::CasMismatch)
        );
        assert_eq!(
            w("b", WriteRule::Any, Some(0)).await.outcome,
            Outcome::Written { version: 1 }
        );
        assert_eq!(
            w("c", WriteRule::Any, Some(5)).await.outcome,
            Outcome::NotApplied(NotApplied::CasMismatch)
        );
        assert_eq!(
            w("b", WriteRule::CreateOnly, Some(1)).await.outcome,
            Outcome::NotApplied(NotApplied::AlreadyExists)
        );
        // What was written is what is read, and refused writes left nothing.
        let v = s.kv_get("secret", "a", None).await.unwrap().unwrap();
        assert_eq!((v.version, v.sealed.as_deref()), (4, Some(&b"v"[..])));
        assert!(s.kv_get("secret", "c", None).await.unwrap().is_none());
        assert_eq!(s.kv_versions("secret", "a").await.unwrap().len(), 4);
        // The refusals were audited as such.
        let events = all_events(s).await;
        assert_eq!(events.len(), 11);
        assert_eq!(
            events
                .iter()
                .filter(|e| e.event.decision == Decision::Denied)
                .count(),
            6
        );
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    pub async fn kv_writes_race_on_one_version(h: &Harness) {
        let s = h.store.clone();
        commit1(&*s, write("race", b"0", WriteRule::Any, None)).await;
        // 20 writers all saw version 1: exactly one wins.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    commit1(
                        &*s,
                        write("race", format!("{i}").as_bytes(), WriteRule::Any, Some(1)),
                    )
                    .await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap().outcome {
                Outcome::Written { version: 2 } => won += 1,
                Outcome::NotApplied(NotApplied::CasMismatch) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(won, 1);
        assert_eq!(s.kv_versions("secret", "race").await.unwrap().len(), 2);
    }

    pub async fn kv_delete_soft_deletes_the_latest(h: &Harness) {
        let s = &*h.store;
        commit1(s, write("d", b"1", WriteRule::Any, None)).await;
        commit1(s, write("d", b"2", WriteRule::Any, None)).await;
        let del = |p: &str| {
            commit1(
                s,
                Mutation::KvDelete {
                    mount: "secret".into(),
                    path: p.into(),
                    now: t0() + secs(5),
                },
            )
        };
        assert_eq!(del("d").await.outcome, Outcome::Applied { affected: 1 });
        assert_eq!(
            del("d").await.outcome,
            Outcome::Applied { affected: 0 },
            "idempotent"
        );
        assert_eq!(del("none").await.outcome, Outcome::Applied { affected: 0 });
        let latest = s.kv_get("secret", "d", None).await.unwrap().unwrap();
        assert_eq!(
            (latest.version, latest.deleted_at),
            (2, Some(t0() + secs(5)))
        );
        let v1 = s.kv_get("secret", "d", Some(1)).await.unwrap().unwrap();
        assert!(v1.deleted_at.is_none() && v1.sealed.is_some());
        // A new write after a delete is a new version.
        assert_eq!(
            commit1(s, write("d", b"3", WriteRule::UpdateOnly, None))
                .await
                .outcome,
            Outcome::Written { version: 3 }
        );
    }

    pub async fn migrate_twice_is_a_no_op(h: &Harness) {
        let s = &*h.store;
        s.migrate().await.unwrap();
        // Concurrently from a second instance, as replicas starting together.
        let other = h.another().await;
        let (a, b) = tokio::join!(s.migrate(), other.migrate());
        a.unwrap();
        b.unwrap();
        s.ping().await.unwrap();
        assert_eq!(s.audit_head().await.unwrap(), None);
        assert_eq!(s.stats(t0()).await.unwrap(), StoreStats::default());
        assert!(s.audit_events(0, 10).await.unwrap().is_empty());
        assert_eq!(s.kind(), if h.is_pg() { "postgres" } else { "sqlite" });
        assert!(s.commit(&[]).await.unwrap().is_empty());
        assert_eq!(s.audit_head().await.unwrap(), None);
    }

    pub async fn token_and_lease_round_trip(h: &Harness) {
        let s = &*h.store;
        let tok = token();
        let mut l = lease(&tok, "secret/data/payments/db");
        l.last_renewal = Some(t0() + chrono::Duration::microseconds(1));
        let out = s
            .commit(&[
                unit(Mutation::InsertToken(tok.clone())),
                unit(Mutation::InsertLease(l.clone())),
            ])
            .await
            .unwrap();
        assert_eq!(out[0].seq, 1);
        assert_eq!(out[0].outcome, Outcome::Applied { affected: 1 });
        assert_eq!(out[1].seq, 2);
        assert_eq!(out[1].outcome, Outcome::Applied { affected: 1 });
        assert_eq!(s.token(&tok.hash).await.unwrap(), Some(tok.clone()));
        assert_eq!(s.lease(&l.hash).await.unwrap(), Some(l.clone()));
        assert_eq!(s.token(&digest()).await.unwrap(), None);
        assert_eq!(s.lease(&digest()).await.unwrap(), None);

        // A revoked, non-renewable token with empty metadata also round-trips.
        let mut t2 = token();
        t2.meta.clear();
        t2.renewable = false;
        t2.revoked_at = Some(t0() + secs(1));
        commit1(s, Mutation::InsertToken(t2.clone())).await;
        assert_eq!(s.token(&t2.hash).await.unwrap(), Some(t2));

        // An event-only unit is Recorded.
        let out = s
            .commit(&[CommitUnit::event(event("kv.list"))])
            .await
            .unwrap();
        assert_eq!(out[0].outcome, Outcome::Recorded);
        assert_eq!(out[0].seq, 4);
        assert_eq!(verify_chain(s, &h.hasher).await, Ok(4));
    }

    pub async fn insert_lease_needs_a_live_token(h: &Harness) {
        let s = &*h.store;
        let live = token();
        let mut revoked = token();
        revoked.revoked_at = Some(t0() - secs(1));
        let mut expired = token();
        expired.created_at = t0() - secs(100);
        expired.expires_at = t0(); // not > issued_at
        for t in [&live, &revoked, &expired] {
            commit1(s, Mutation::InsertToken(t.clone())).await;
        }
        let unknown = token();
        for t in [&revoked, &expired, &unknown] {
            let l = lease(t, "secret/data/x");
            let c = commit1(s, Mutation::InsertLease(l.clone())).await;
            assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::TokenNotLive));
            assert_eq!(s.lease(&l.hash).await.unwrap(), None);
            let e = event_at(s, c.seq).await.event;
            assert_eq!(e.decision, Decision::Denied);
            assert_eq!(e.status, 400);
            assert_eq!(e.reason, "refused: token not live");
        }
        // Without an explicit refusal the event says 403 permission denied.
        let l = lease(&unknown, "secret/data/x");
        let out = s
            .commit(&[CommitUnit {
                mutation: Some(Mutation::InsertLease(l)),
                consequences: Vec::new(),
                event: event("kv.read"),
                on_refusal: None,
            }])
            .await
            .unwrap();
        let e = event_at(s, out[0].seq).await.event;
        assert_eq!(
            (e.status, e.reason.as_str()),
            (403, "permission denied: token not live")
        );

        let l = lease(&live, "secret/data/x");
        let c = commit1(s, Mutation::InsertLease(l.clone())).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        assert_eq!(event_at(s, c.seq).await.event.decision, Decision::Allowed);
        assert_eq!(s.lease(&l.hash).await.unwrap(), Some(l));
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    pub async fn renew_lease_applies_and_caps(h: &Harness) {
        let s = &*h.store;
        let tok = token();
        let l = lease(&tok, "secret/data/x");
        commit1(s, Mutation::InsertToken(tok.clone())).await;
        commit1(s, Mutation::InsertLease(l.clone())).await;
        let now = t0() + secs(60);
        let c = commit1(
            s,
            Mutation::RenewLease {
                lease: l.hash,
                token: tok.hash,
                now,
                expires_at: now + secs(600),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        let got = s.lease(&l.hash).await.unwrap().unwrap();
        assert_eq!(got.expires_at, now + secs(600));
        assert_eq!(got.last_renewal, Some(now));
        assert_eq!(got.revoked_at, None);

        // Never past max_expires_at, whatever the caller asks.
        let now = t0() + secs(120);
        let c = commit1(
            s,
            Mutation::RenewLease {
                lease: l.hash,
                token: tok.hash,
                now,
                expires_at: t0() + secs(999_999),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        let got = s.lease(&l.hash).await.unwrap().unwrap();
        assert_eq!(got.expires_at, l.max_expires_at);
        assert_eq!(got.last_renewal, Some(now));
    }

    pub async fn renew_lease_refusals(h: &Harness) {
        let s = &*h.store;
        let tok = token();
        let other = token();
        let mut not_renewable_tok = token();
        not_renewable_tok.renewable = false; // a lease may still renew under it
        for t in [&tok, &other, &not_renewable_tok] {
            commit1(s, Mutation::InsertToken(t.clone())).await;
        }
        let live = lease(&tok, "secret/data/live");
        let revoked = lease(&tok, "secret/data/revoked");
        let mut fixed = lease(&tok, "secret/data/fixed");
        fixed.renewable = false;
        let under_nr = lease(&not_renewable_tok, "secret/data/nr");
        for l in [&live, &revoked, &fixed, &under_nr] {
            commit1(s, Mutation::InsertLease(l.clone())).await;
        }
        commit1(
            s,
            Mutation::RevokeLease {
                lease: revoked.hash,
                owner: None,
                now: t0() + secs(1),
            },
        )
        .await;

        let now = t0() + secs(10);
        let renew = |lease: &leash_domain::records::LeaseRecord, token, now| Mutation::RenewLease {
            lease: lease.hash,
            token,
            now,
            expires_at: now + secs(60),
        };
        let cases = [
            (
                renew(&lease(&tok, "x"), tok.hash, now),
                NotApplied::LeaseNotFound,
            ),
            (renew(&live, other.hash, now), NotApplied::LeaseNotFound),
            (renew(&revoked, other.hash, now), NotApplied::LeaseNotFound),
            (renew(&revoked, tok.hash, now), NotApplied::LeaseRevoked),
            (
                renew(&live, tok.hash, live.expires_at),
                NotApplied::LeaseExpired,
            ),
            (
                renew(&live, tok.hash, live.expires_at + secs(1)),
                NotApplied::LeaseExpired,
            ),
            (renew(&fixed, tok.hash, now), NotApplied::NotRenewable),
        ];
        for (m, why) in cases {
            let c = commit1(s, m).await;
            assert_eq!(c.outcome, Outcome::NotApplied(why));
            let e = event_at(s, c.seq).await.event;
            assert_eq!(e.decision, Decision::Denied);
            assert_eq!(e.status, 400);
            assert_eq!(e.reason, format!("refused: {}", why.as_str()));
        }
        // A non-renewable token does not stop its leases renewing.
        let c = commit1(s, renew(&under_nr, not_renewable_tok.hash, now)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });

        // Token expired: its lease is still live, but does not renew.
        let c = commit1(s, renew(&live, tok.hash, tok.expires_at - secs(1))).await;
        assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::LeaseExpired));
        // (The lease expired first there; make one that outlives its token.)
        let short = {
            let mut t = token();
            t.expires_at = t0() + secs(30);
            t
        };
        commit1(s, Mutation::InsertToken(short.clone())).await;
        let l2 = lease(&short, "secret/data/outlives");
        commit1(s, Mutation::InsertLease(l2.clone())).await;
        let c = commit1(s, renew(&l2, short.hash, t0() + secs(31))).await;
        assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::TokenNotLive));

        // Token revoked (its leases too): the lease reports revoked first...
        commit1(
            s,
            Mutation::RevokeToken {
                token: tok.hash,
                now: t0() + secs(20),
            },
        )
        .await;
        let c = commit1(s, renew(&live, tok.hash, now + secs(20))).await;
        assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::LeaseRevoked));
        // ...and a token revoked directly in the table, leaves untouched, is
        // still caught by the token check.
        let t3 = token();
        commit1(s, Mutation::InsertToken(t3.clone())).await;
        let l3 = lease(&t3, "secret/data/t3");
        commit1(s, Mutation::InsertLease(l3.clone())).await;
        let affected = h
            .raw(&format!(
                "UPDATE tokens SET revoked_at = 1 WHERE accessor = '{}'",
                t3.accessor
            ))
            .await
            .unwrap();
        assert_eq!(affected, 1);
        let c = commit1(s, renew(&l3, t3.hash, now)).await;
        assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::TokenNotLive));

        // Nothing refused changed a row.
        let got = s.lease(&l3.hash).await.unwrap().unwrap();
        assert_eq!((got.expires_at, got.last_renewal), (l3.expires_at, None));
        let got = s.lease(&fixed.hash).await.unwrap().unwrap();
        assert_eq!((got.expires_at, got.last_renewal), (fixed.expires_at, None));
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    pub async fn renew_token(h: &Harness) {
        let s = &*h.store;
        let tok = token();
        let mut fixed = token();
        fixed.renewable = false;
        let mut revoked = token();
        revoked.revoked_at = Some(t0());
        for t in [&tok, &fixed, &revoked] {
            commit1(s, Mutation::InsertToken(t.clone())).await;
        }
        let now = t0() + secs(10);
        let renew = |token, now, expires_at| Mutation::RenewToken {
            token,
            now,
            expires_at,
        };
        let c = commit1(s, renew(tok.hash, now, now + secs(7200))).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        assert_eq!(
            s.token(&tok.hash).await.unwrap().unwrap().expires_at,
            now + secs(7200)
        );
        // Capped at max_expires_at.
        let c = commit1(s, renew(tok.hash, now, now + secs(10_000_000))).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        assert_eq!(
            s.token(&tok.hash).await.unwrap().unwrap().expires_at,
            tok.max_expires_at
        );

        let cases = [
            (
                renew(fixed.hash, now, now + secs(60)),
                NotApplied::NotRenewable,
            ),
            (
                renew(revoked.hash, now, now + secs(60)),
                NotApplied::TokenNotLive,
            ),
            (
                renew(digest(), now, now + secs(60)),
                NotApplied::TokenNotLive,
            ),
            (
                renew(fixed.hash, fixed.expires_at, now + secs(60)),
                NotApplied::TokenNotLive,
            ),
            (
                renew(tok.hash, tok.max_expires_at, now + secs(60)),
                NotApplied::TokenNotLive,
            ),
        ];
        for (m, why) in cases {
            assert_eq!(commit1(s, m).await.outcome, Outcome::NotApplied(why));
        }
        assert_eq!(s.token(&fixed.hash).await.unwrap(), Some(fixed));
    }

    pub async fn revoke_lease_is_idempotent_and_owner_scoped(h: &Harness) {
        let s = &*h.store;
        let a = token();
        let b = token();
        commit1(s, Mutation::InsertToken(a.clone())).await;
        commit1(s, Mutation::InsertToken(b.clone())).await;
        let l = lease(&a, "secret/data/x");
        commit1(s, Mutation::InsertLease(l.clone())).await;

        // Another token cannot revoke it.
        let c = commit1(
            s,
            Mutation::RevokeLease {
                lease: l.hash,
                owner: Some(b.hash),
                now: t0() + secs(1),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        assert_eq!(s.lease(&l.hash).await.unwrap().unwrap().revoked_at, None);

        let c = commit1(
            s,
            Mutation::RevokeLease {
                lease: l.hash,
                owner: Some(a.hash),
                now: t0() + secs(2),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        assert_eq!(event_at(s, c.seq).await.event.decision, Decision::Allowed);
        // Again, by the operator: nothing to do, still Applied, time kept.
        let c = commit1(
            s,
            Mutation::RevokeLease {
                lease: l.hash,
                owner: None,
                now: t0() + secs(3),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        assert_eq!(
            s.lease(&l.hash).await.unwrap().unwrap().revoked_at,
            Some(t0() + secs(2))
        );
        let c = commit1(
            s,
            Mutation::RevokeLease {
                lease: digest(),
                owner: None,
                now: t0(),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        // The token itself is untouched.
        assert_eq!(s.token(&a.hash).await.unwrap().unwrap().revoked_at, None);
    }

    pub async fn revoke_prefix_is_literal_and_owner_scoped(h: &Harness) {
        let s = &*h.store;
        let a = token();
        let b = token();
        commit1(s, Mutation::InsertToken(a.clone())).await;
        commit1(s, Mutation::InsertToken(b.clone())).await;
        let paths = [
            "secret/data/a%b/x",
            "secret/data/a%b",
            "secret/data/aXb/y",
            "secret/data/a_c/z",
            "secret/data/abc/w",
            "secret/data/a\\d",
            "secret/data/a\\\\d",
            "secret/data/ab",
        ];
        let mut leases = Vec::new();
        for p in paths {
            let l = lease(&a, p);
            commit1(s, Mutation::InsertLease(l.clone())).await;
            leases.push(l);
        }
        async fn revoked(
            s: &dyn Store,
            ls: Vec<leash_domain::records::LeaseRecord>,
        ) -> Vec<String> {
            let mut out = Vec::new();
            for l in ls {
                if s.lease(&l.hash)
                    .await
                    .unwrap()
                    .unwrap()
                    .revoked_at
                    .is_some()
                {
                    out.push(l.lease_path.clone());
                }
            }
            out
        }
        let prefix = |p: &str, owner| Mutation::RevokeLeasePrefix {
            prefix: p.to_owned(),
            owner,
            now: t0() + secs(5),
        };

        let c = commit1(s, prefix("secret/data/a%", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 2 });
        assert_eq!(
            revoked(s, leases.clone()).await,
            vec!["secret/data/a%b/x", "secret/data/a%b"]
        );
        let c = commit1(s, prefix("secret/data/a_", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        let c = commit1(s, prefix("secret/data/a\\", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 2 });
        // Already revoked leases are not counted again.
        let c = commit1(s, prefix("secret/data/a%", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        assert_eq!(
            revoked(s, leases.clone()).await,
            vec![
                "secret/data/a%b/x",
                "secret/data/a%b",
                "secret/data/a_c/z",
                "secret/data/a\\d",
                "secret/data/a\\\\d"
            ]
        );
        // A lease id is `<lease_path>/<suffix>`: the slash Vault clients
        // put after a path matches that path's leases, and only those.
        let c = commit1(s, prefix("secret/data/ab/", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        let mut now_revoked = revoked(s, leases.clone()).await;
        assert!(now_revoked.contains(&"secret/data/ab".to_owned()));
        now_revoked.retain(|p| p.starts_with("secret/data/abc"));
        assert!(now_revoked.is_empty(), "secret/data/abc/w is not under ab/");
        // A prefix longer than any path matches nothing.
        let c = commit1(s, prefix("secret/data/abc/w/and/more", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });

        // Owner scoping: B's prefix revoke leaves A's leases alone.
        let bl = lease(&b, "kv/shared/one");
        let al = lease(&a, "kv/shared/two");
        commit1(s, Mutation::InsertLease(bl.clone())).await;
        commit1(s, Mutation::InsertLease(al.clone())).await;
        let c = commit1(s, prefix("kv/shared/", Some(b.hash))).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        assert!(
            s.lease(&bl.hash)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert!(
            s.lease(&al.hash)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_none()
        );
        let c = commit1(s, prefix("kv/", None)).await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 1 });
        assert!(
            s.lease(&al.hash)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert_eq!(
            s.lease(&leases[4].hash).await.unwrap().unwrap().revoked_at,
            None,
            "secret/data/abc/w was never matched"
        );
    }

    /// A batch mixing multi-row runs (tokens, leases, events) with other
    /// mutations behaves exactly as its units applied one by one: a lease
    /// after its token's revocation in the same batch is refused, one
    /// before it is revoked with it, and the events chain in unit order.
    pub async fn one_batch_keeps_the_order_of_its_units(h: &Harness) {
        let s = &*h.store;
        let a = token();
        let b = token();
        let unknown = token();
        commit1(s, Mutation::InsertToken(a.clone())).await;
        let before = lease(&a, "secret/data/before");
        let after = lease(&a, "secret/data/after");
        let of_b = lease(&b, "secret/data/b");
        let of_unknown = lease(&unknown, "secret/data/u");
        let units: Vec<CommitUnit> = vec![
            unit(Mutation::InsertToken(b.clone())),
            unit(Mutation::InsertLease(before.clone())),
            CommitUnit::event(event("kv.list")),
            unit(Mutation::InsertLease(of_unknown.clone())),
            unit(Mutation::RevokeToken {
                token: a.hash,
                now: t0(),
            }),
            unit(Mutation::InsertLease(after.clone())),
            unit(Mutation::InsertLease(of_b.clone())),
        ];
        let out = s.commit(&units).await.unwrap();
        let outcomes: Vec<Outcome> = out.iter().map(|c| c.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Applied { affected: 1 },
                Outcome::Applied { affected: 1 },
                Outcome::Recorded,
                Outcome::NotApplied(NotApplied::TokenNotLive),
                Outcome::Applied { affected: 1 },
                Outcome::NotApplied(NotApplied::TokenNotLive),
                Outcome::Applied { affected: 1 },
            ]
        );
        let seqs: Vec<i64> = out.iter().map(|c| c.seq).collect();
        let first = seqs[0];
        assert_eq!(seqs, (first..first + 7).collect::<Vec<_>>());
        let ops: Vec<String> = all_events(s)
            .await
            .into_iter()
            .filter(|e| e.seq >= first)
            .map(|e| format!("{} {}", e.event.operation, e.event.decision.as_str()))
            .collect();
        assert_eq!(ops.len(), 7);
        assert_eq!(ops[2], "kv.list allowed");
        assert!(ops[3].ends_with("denied") && ops[5].ends_with("denied"));
        assert_eq!(
            s.lease(&before.hash).await.unwrap().unwrap().revoked_at,
            Some(t0())
        );
        assert_eq!(s.lease(&after.hash).await.unwrap(), None);
        assert_eq!(s.lease(&of_unknown.hash).await.unwrap(), None);
        assert_eq!(s.lease(&of_b.hash).await.unwrap().unwrap().revoked_at, None);
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    /// A consequence is applied after the request's own mutation, in the
    /// same transaction, and never changes the event: a lease inserted and
    /// then revoked with its token commits its (allowed) event, and ends
    /// revoked.
    pub async fn consequences_commit_with_their_event(h: &Harness) {
        let s = &*h.store;
        let tok = token();
        commit1(s, Mutation::InsertToken(tok.clone())).await;
        let l = lease(&tok, "secret/data/contained");
        let when = t0() + secs(1);
        let mut u = unit(Mutation::InsertLease(l.clone()));
        u.consequences.push(Mutation::RevokeToken {
            token: tok.hash,
            now: when,
        });
        let out = s.commit(&[u.clone()]).await.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::Applied { affected: 1 });
        assert_eq!(out[0].consequences_affected, 1, "the new lease revoked");
        let e = event_at(s, out[0].seq).await.event;
        assert_eq!(e, u.event, "recorded exactly as the caller wrote it");
        let stored = s.lease(&l.hash).await.unwrap().unwrap();
        assert_eq!(stored.revoked_at, Some(when));
        assert_eq!(
            s.token(&tok.hash).await.unwrap().unwrap().revoked_at,
            Some(when)
        );
        // Without consequences a unit reports none.
        let c = commit1(s, Mutation::InsertToken(token())).await;
        assert_eq!(c.consequences_affected, 0);
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    /// Consequences apply whatever the request's own mutation did: a
    /// renewal that does not apply is recorded as the refusal it is, and
    /// the identity is revoked all the same.
    pub async fn a_refused_request_still_gets_its_consequences(h: &Harness) {
        use leash_domain::TokenSelector;
        let s = &*h.store;
        let tok = token();
        let bystander = token();
        commit1(s, Mutation::InsertToken(tok.clone())).await;
        commit1(s, Mutation::InsertToken(bystander.clone())).await;
        let held = lease(&tok, "secret/data/held");
        let other = lease(&bystander, "secret/data/other");
        commit1(s, Mutation::InsertLease(held.clone())).await;
        commit1(s, Mutation::InsertLease(other.clone())).await;
        // The bystander's lease, presented with `tok`: not found.
        let mut u = unit(Mutation::RenewLease {
            lease: other.hash,
            token: tok.hash,
            now: t0() + secs(10),
            expires_at: t0() + secs(900),
        });
        u.consequences.push(Mutation::RevokeTokens {
            selector: TokenSelector::Accessor(tok.accessor.clone()),
            now: t0() + secs(10),
        });
        let out = s.commit(&[u]).await.unwrap();
        assert_eq!(
            out[0].outcome,
            Outcome::NotApplied(NotApplied::LeaseNotFound)
        );
        assert_eq!(out[0].consequences_affected, 2, "one token, one lease");
        let e = event_at(s, out[0].seq).await.event;
        assert_eq!(e.decision, Decision::Denied);
        assert_eq!(
            (e.status, e.reason.as_str()),
            (400, "refused: lease not found")
        );
        let revoked = Some(t0() + secs(10));
        assert_eq!(
            s.token(&tok.hash).await.unwrap().unwrap().revoked_at,
            revoked
        );
        assert_eq!(
            s.lease(&held.hash).await.unwrap().unwrap().revoked_at,
            revoked
        );
        // Nothing of the bystander's changed, its lease not renewed.
        assert_eq!(s.lease(&other.hash).await.unwrap(), Some(other));
        assert_eq!(
            s.token(&bystander.hash).await.unwrap().unwrap().revoked_at,
            None
        );
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    /// A consequence that revokes a token announces it on the revocation
    /// feed (PostgreSQL), as a first mutation does; SQLite has no feed.
    pub async fn a_revocation_among_consequences_is_announced(h: &Harness) {
        use leash_domain::TokenSelector;
        use leash_store::Revocation;
        let s = &*h.store;
        let a = token();
        let b = token();
        commit1(s, Mutation::InsertToken(a.clone())).await;
        commit1(s, Mutation::InsertToken(b.clone())).await;
        let mut feed = s.subscribe().await.unwrap();
        assert_eq!(feed.is_some(), h.is_pg());
        let mut u = unit(Mutation::RenewToken {
            token: a.hash,
            now: t0(),
            expires_at: t0() + secs(7200),
        });
        u.consequences.push(Mutation::RevokeToken {
            token: a.hash,
            now: t0(),
        });
        u.consequences.push(Mutation::RevokeTokens {
            selector: TokenSelector::Accessor(b.accessor.clone()),
            now: t0(),
        });
        let out = s.commit(&[u]).await.unwrap();
        assert_eq!(out[0].outcome, Outcome::Applied { affected: 1 });
        assert_eq!(out[0].consequences_affected, 1, "b's token");
        for t in [&a, &b] {
            assert_eq!(
                s.token(&t.hash).await.unwrap().unwrap().revoked_at,
                Some(t0())
            );
        }
        if let Some(feed) = feed.as_mut() {
            for expected in [a.hash, b.hash] {
                let got = tokio::time::timeout(Duration::from_secs(10), feed.next())
                    .await
                    .expect("announced")
                    .unwrap();
                assert_eq!(got, Revocation::Token(expected));
            }
        }
    }

    /// A unit with consequences amid units that the multi-row statements
    /// (and PostgreSQL's one statement) take: everything in unit order, the
    /// chain intact; and the plain batches around it still take the one
    /// statement.
    pub async fn consequences_in_a_batch_of_reads_keep_the_chain(h: &Harness) {
        let s = &*h.store;
        let paths = |d: leash_store::CommitPaths| (d.one_statement, d.general);
        let a = token();
        commit1(s, Mutation::InsertToken(a.clone())).await; // learns the head
        let before = lease(&a, "secret/data/before");
        let contained = lease(&a, "secret/data/contained");
        let after = lease(&a, "secret/data/after");
        let b = token();
        let of_b = lease(&b, "secret/data/b");
        let start = s.commit_paths();
        let plain = s
            .commit(&[
                CommitUnit::event(event("kv.list")),
                unit(Mutation::InsertToken(b.clone())),
            ])
            .await
            .unwrap();
        let one = s.commit_paths();
        let mut containing = unit(Mutation::InsertLease(contained.clone()));
        containing.consequences.push(Mutation::RevokeToken {
            token: a.hash,
            now: t0(),
        });
        let out = s
            .commit(&[
                CommitUnit::event(event("kv.list")),
                unit(Mutation::InsertLease(before.clone())),
                containing,
                CommitUnit::event(event("kv.read")),
                unit(Mutation::InsertLease(after.clone())),
                unit(Mutation::InsertLease(of_b.clone())),
            ])
            .await
            .unwrap();
        let mixed = s.commit_paths();
        let outcomes: Vec<(Outcome, u64)> = out
            .iter()
            .map(|c| (c.outcome, c.consequences_affected))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (Outcome::Recorded, 0),
                (Outcome::Applied { affected: 1 }, 0),
                (Outcome::Applied { affected: 1 }, 2),
                (Outcome::Recorded, 0),
                (Outcome::NotApplied(NotApplied::TokenNotLive), 0),
                (Outcome::Applied { affected: 1 }, 0),
            ]
        );
        let first = plain[1].seq + 1;
        let seqs: Vec<i64> = out.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (first..first + 6).collect::<Vec<_>>());
        for l in [&before, &contained] {
            assert_eq!(
                s.lease(&l.hash).await.unwrap().unwrap().revoked_at,
                Some(t0())
            );
        }
        assert_eq!(s.lease(&after.hash).await.unwrap(), None);
        assert_eq!(s.lease(&of_b.hash).await.unwrap().unwrap().revoked_at, None);
        let ops: Vec<String> = all_events(s)
            .await
            .into_iter()
            .filter(|e| e.seq >= first)
            .map(|e| format!("{} {}", e.event.operation, e.event.decision.as_str()))
            .collect();
        assert_eq!(
            ops,
            vec![
                "kv.list allowed",
                "kv.read allowed",
                "kv.read allowed",
                "kv.read allowed",
                "kv.read denied",
                "kv.read allowed",
            ]
        );
        // Plain reads after it, on the head it left.
        s.commit(&[
            CommitUnit::event(event("kv.read")),
            unit(Mutation::InsertLease(lease(&b, "secret/data/b2"))),
        ])
        .await
        .unwrap();
        let last = s.commit_paths();
        assert_eq!(verify_chain(s, &h.hasher).await, Ok(first + 7));
        if h.is_pg() {
            assert_eq!(paths(one), (paths(start).0 + 1, paths(start).1));
            assert_eq!(paths(mixed), (paths(one).0, paths(one).1 + 1));
            assert_eq!(paths(last), (paths(mixed).0 + 1, paths(mixed).1));
        } else {
            assert_eq!(paths(last), (0, paths(start).1 + 3));
        }
    }

    pub async fn revoke_tokens_by_accessor_and_by_workload(h: &Harness) {
        use leash_domain::TokenSelector;
        let s = &*h.store;
        let a1 = token();
        let a2 = token();
        let mut other = token();
        other.workload = "billing".into();
        let mut leases = Vec::new();
        for t in [&a1, &a2, &other] {
            commit1(s, Mutation::InsertToken(t.clone())).await;
            for i in 0..2 {
                let l = lease(t, &format!("secret/data/{}/{i}", t.accessor));
                commit1(s, Mutation::InsertLease(l.clone())).await;
                leases.push((t.hash, l.hash));
            }
        }
        let revoked = |hash| async move { s.token(&hash).await.unwrap().unwrap().revoked_at };
        let lease_revoked = |hash| async move { s.lease(&hash).await.unwrap().unwrap().revoked_at };
        // One identity: its token and its two leases.
        let c = commit1(
            s,
            Mutation::RevokeTokens {
                selector: TokenSelector::Accessor(a1.accessor.clone()),
                now: t0(),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 3 });
        assert_eq!(revoked(a1.hash).await, Some(t0()));
        assert_eq!(revoked(a2.hash).await, None);
        for (t, l) in &leases {
            let expect = (*t == a1.hash).then_some(t0());
            assert_eq!(lease_revoked(*l).await, expect);
        }
        // A whole workload: what is left of it, nothing of another.
        let later = t0() + secs(5);
        let c = commit1(
            s,
            Mutation::RevokeTokens {
                selector: TokenSelector::Workload("payments-api".into()),
                now: later,
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 3 });
        assert_eq!(revoked(a1.hash).await, Some(t0()), "first time kept");
        assert_eq!(revoked(a2.hash).await, Some(later));
        assert_eq!(revoked(other.hash).await, None);
        for (t, l) in &leases {
            let expect = if *t == a1.hash {
                Some(t0())
            } else if *t == a2.hash {
                Some(later)
            } else {
                None
            };
            assert_eq!(lease_revoked(*l).await, expect);
        }
        // Nothing matches: applied, nothing revoked; new leases refused.
        let c = commit1(
            s,
            Mutation::RevokeTokens {
                selector: TokenSelector::Accessor("nobody".into()),
                now: later,
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        let c = commit1(s, Mutation::InsertLease(lease(&a2, "secret/data/new"))).await;
        assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::TokenNotLive));
    }

    pub async fn revoke_token_revokes_its_leases_only(h: &Harness) {
        let s = &*h.store;
        let a = token();
        let b = token();
        commit1(s, Mutation::InsertToken(a.clone())).await;
        commit1(s, Mutation::InsertToken(b.clone())).await;
        let a_leases: Vec<_> = (0..3)
            .map(|i| lease(&a, &format!("secret/data/a{i}")))
            .collect();
        let b_leases: Vec<_> = (0..2)
            .map(|i| lease(&b, &format!("secret/data/b{i}")))
            .collect();
        for l in a_leases.iter().chain(&b_leases) {
            commit1(s, Mutation::InsertLease(l.clone())).await;
        }
        commit1(
            s,
            Mutation::RevokeLease {
                lease: a_leases[0].hash,
                owner: None,
                now: t0(),
            },
        )
        .await;
        let when = t0() + secs(9);
        let c = commit1(
            s,
            Mutation::RevokeToken {
                token: a.hash,
                now: when,
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 2 });
        assert_eq!(
            s.token(&a.hash).await.unwrap().unwrap().revoked_at,
            Some(when)
        );
        assert_eq!(
            s.lease(&a_leases[0].hash)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(t0())
        );
        for l in &a_leases[1..] {
            assert_eq!(
                s.lease(&l.hash).await.unwrap().unwrap().revoked_at,
                Some(when)
            );
        }
        assert_eq!(s.token(&b.hash).await.unwrap().unwrap().revoked_at, None);
        for l in &b_leases {
            assert_eq!(s.lease(&l.hash).await.unwrap().unwrap().revoked_at, None);
        }
        // Idempotent; the first revocation time is kept.
        let c = commit1(
            s,
            Mutation::RevokeToken {
                token: a.hash,
                now: when + secs(1),
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        assert_eq!(
            s.token(&a.hash).await.unwrap().unwrap().revoked_at,
            Some(when)
        );
        let c = commit1(
            s,
            Mutation::RevokeToken {
                token: digest(),
                now: when,
            },
        )
        .await;
        assert_eq!(c.outcome, Outcome::Applied { affected: 0 });
        // A revoked token gets no new lease.
        let c = commit1(s, Mutation::InsertLease(lease(&a, "secret/data/new"))).await;
        assert_eq!(c.outcome, Outcome::NotApplied(NotApplied::TokenNotLive));
    }

    pub async fn renew_racing_revoke_never_wins_after_it(h: &Harness) {
        let s = h.store.clone();
        let tok = token();
        let l = lease(&tok, "secret/data/race");
        commit1(&*s, Mutation::InsertToken(tok.clone())).await;
        commit1(&*s, Mutation::InsertLease(l.clone())).await;

        let mut renews = tokio::task::JoinSet::new();
        let spawn_renew = |set: &mut tokio::task::JoinSet<_>, i: i64| {
            let s = s.clone();
            let now = t0() + chrono::Duration::milliseconds(i);
            let m = Mutation::RenewLease {
                lease: l.hash,
                token: tok.hash,
                now,
                expires_at: now + secs(600),
            };
            set.spawn(async move { s.commit(&[unit(m)]).await });
        };
        for i in 0..100 {
            spawn_renew(&mut renews, i);
        }
        let revoke = {
            let s = s.clone();
            let m = Mutation::RevokeLease {
                lease: l.hash,
                owner: None,
                now: t0() + secs(1),
            };
            tokio::spawn(async move { s.commit(&[unit(m)]).await })
        };
        for i in 100..200 {
            spawn_renew(&mut renews, i);
        }
        let revoke = revoke.await.unwrap().unwrap()[0];
        assert_eq!(revoke.outcome, Outcome::Applied { affected: 1 });

        let (mut before, mut after) = (0, 0);
        while let Some(r) = renews.join_next().await {
            let c = r.unwrap().unwrap()[0];
            assert_ne!(c.seq, revoke.seq);
            match c.outcome {
                Outcome::Applied { affected: 1 } => {
                    assert!(
                        c.seq < revoke.seq,
                        "renew at seq {} applied after revoke at {}",
                        c.seq,
                        revoke.seq
                    );
                    before += 1;
                }
                Outcome::NotApplied(NotApplied::LeaseRevoked) => {
                    assert!(c.seq > revoke.seq);
                    after += 1;
                }
                other => panic!("unexpected renew outcome {other:?}"),
            }
        }
        assert_eq!(before + after, 200);
        eprintln!("race: {before} renewals before the revoke, {after} refused after it");

        let got = s.lease(&l.hash).await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(t0() + secs(1)));
        // The audit log tells the same story.
        let events = all_events(&*s).await;
        assert_eq!(events.len(), 203);
        for e in events.iter().filter(|e| e.seq > revoke.seq) {
            assert_eq!(e.event.decision, Decision::Denied);
        }
        assert_eq!(verify_chain(&*s, &h.hasher).await, Ok(203));
    }

    pub async fn commit_is_atomic(h: &Harness) {
        let s = &*h.store;
        commit1(s, Mutation::InsertToken(token())).await;
        let head = s.audit_head().await.unwrap();

        let t = token();
        let mut dup = token();
        dup.hash = t.hash;
        let err = s
            .commit(&[
                unit(Mutation::InsertToken(t.clone())),
                CommitUnit::event(event("kv.list")),
                unit(Mutation::InsertLease(lease(&t, "secret/data/x"))),
                unit(Mutation::InsertToken(dup)),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let shown = err.to_string();
        assert_eq!(shown, "the store refused a conflicting write");
        assert_eq!(s.token(&t.hash).await.unwrap(), None);
        assert_eq!(s.audit_head().await.unwrap(), head);
        assert_eq!(all_events(s).await.len(), 1);
        assert_eq!(s.stats(t0()).await.unwrap().live_leases, 0);

        // A duplicate lease id fails the batch too, after a revoke in it.
        let l = lease(&t, "secret/data/y");
        commit1(s, Mutation::InsertToken(t.clone())).await;
        commit1(s, Mutation::InsertLease(l.clone())).await;
        let err = s
            .commit(&[
                unit(Mutation::RevokeToken {
                    token: t.hash,
                    now: t0(),
                }),
                unit(Mutation::InsertLease(l.clone())),
            ])
            .await;
        // The revoke makes the insert refuse (token not live), so this one
        // commits; the duplicate shows when the token is live.
        assert_eq!(
            err.unwrap()[1].outcome,
            Outcome::NotApplied(NotApplied::TokenNotLive)
        );
        let t2 = token();
        commit1(s, Mutation::InsertToken(t2.clone())).await;
        let mut l2 = lease(&t2, "secret/data/z");
        commit1(s, Mutation::InsertLease(l2.clone())).await;
        let head = s.audit_head().await.unwrap();
        l2.lease_path = "secret/data/other".to_owned();
        let err = s
            .commit(&[
                unit(Mutation::RevokeLeasePrefix {
                    prefix: String::new(),
                    owner: None,
                    now: t0(),
                }),
                unit(Mutation::InsertLease(l2.clone())),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(s.audit_head().await.unwrap(), head);
        assert_eq!(s.lease(&l2.hash).await.unwrap().unwrap().revoked_at, None);
        assert_eq!(
            s.lease(&l2.hash).await.unwrap().unwrap().lease_path,
            "secret/data/z"
        );
        assert!(verify_chain(s, &h.hasher).await.is_ok());
    }

    pub async fn chain_verifies_after_concurrent_commits(h: &Harness) {
        let s = h.store.clone();
        let mut set = tokio::task::JoinSet::new();
        for task in 0..10 {
            let s = s.clone();
            set.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..20 {
                    let t = token();
                    let l = lease(&t, &format!("secret/data/{task}/{i}"));
                    let mut units = vec![unit(Mutation::InsertToken(t.clone()))];
                    if i % 2 == 0 {
                        units.push(unit(Mutation::InsertLease(l.clone())));
                    }
                    if i % 3 == 0 {
                        units.push(CommitUnit::event(event("kv.list")));
                        units.push(unit(Mutation::RevokeToken {
                            token: t.hash,
                            now: t0(),
                        }));
                    }
                    let out = s.commit(&units).await.unwrap();
                    assert_eq!(out.len(), units.len());
                    for w in out.windows(2) {
                        assert_eq!(w[1].seq, w[0].seq + 1, "a batch's seqs are contiguous");
                    }
                    seqs.extend(out.iter().map(|c| c.seq));
                }
                seqs
            });
        }
        let mut seqs = Vec::new();
        while let Some(r) = set.join_next().await {
            seqs.extend(r.unwrap());
        }
        seqs.sort_unstable();
        let n = seqs.len() as i64;
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
        assert_eq!(verify_chain(&*s, &h.hasher).await, Ok(n));
        assert_eq!(s.stats(t0()).await.unwrap().audit_events, n);
    }

    pub async fn several_stores_write_one_chain(h: &Harness) {
        let stores: Vec<Arc<dyn Store>> =
            vec![h.store.clone(), h.another().await, h.another().await];
        let mut set = tokio::task::JoinSet::new();
        for task in 0..9usize {
            let s = stores[task % stores.len()].clone();
            set.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..15 {
                    let mut units = vec![CommitUnit::event(event("kv.read"))];
                    if i % 2 == 1 {
                        units.push(unit(Mutation::InsertToken(token())));
                    }
                    seqs.extend(s.commit(&units).await.unwrap().iter().map(|c| c.seq));
                }
                seqs
            });
        }
        let mut seqs = Vec::new();
        while let Some(r) = set.join_next().await {
            seqs.extend(r.unwrap());
        }
        seqs.sort_unstable();
        let n = seqs.len() as i64;
        assert_eq!(n, 9 * (15 + 7));
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "one gap-free chain");
        for s in &stores {
            assert_eq!(verify_chain(&**s, &h.hasher).await, Ok(n));
        }
    }

    /// PostgreSQL writes a batch of records, token and lease inserts in one
    /// statement, chained in advance from the head its last commit left;
    /// the database refuses it when that no longer holds (another replica
    /// moved the head, a lease's token was revoked), and the batch is then
    /// written the general way, with the outcomes and chain that way gives.
    /// SQLite always writes the general way. Either way: one gap-free,
    /// verifiable chain and the right outcomes.
    pub async fn commits_chained_in_advance_check_the_database(h: &Harness) {
        let s = &*h.store;
        let other = h.another().await;
        let paths = |d: leash_store::CommitPaths| (d.one_statement, d.general, d.stale);
        // Nothing committed yet by this store: the head is unknown.
        let tok = token();
        commit1(s, Mutation::InsertToken(tok.clone())).await;
        let first = s.commit_paths();

        // A batch of the three kinds the one statement takes.
        let l1 = lease(&tok, "secret/data/a");
        let t2 = token();
        let out = s
            .commit(&[
                CommitUnit::event(event("kv.list")),
                unit(Mutation::InsertLease(l1.clone())),
                unit(Mutation::InsertToken(t2.clone())),
            ])
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(|c| (c.seq, c.outcome)).collect::<Vec<_>>(),
            vec![
                (2, Outcome::Recorded),
                (3, Outcome::Applied { affected: 1 }),
                (4, Outcome::Applied { affected: 1 }),
            ]
        );
        assert_eq!(s.lease(&l1.hash).await.unwrap(), Some(l1));
        assert_eq!(s.token(&t2.hash).await.unwrap(), Some(t2));
        let second = s.commit_paths();

        // Another replica moves the head: the prediction is stale.
        other
            .commit(&[CommitUnit::event(event("kv.read"))])
            .await
            .unwrap();
        let c = commit1(s, Mutation::InsertLease(lease(&tok, "secret/data/b"))).await;
        assert_eq!((c.seq, c.outcome), (6, Outcome::Applied { affected: 1 }));
        let third = s.commit_paths();

        // The lease's token is revoked by the other replica: a lease in the
        // batch is not inserted, so neither is anything else of it in one
        // statement; written the general way, the lease is refused and the
        // rest applies.
        other
            .commit(&[unit(Mutation::RevokeToken {
                token: tok.hash,
                now: t0(),
            })])
            .await
            .unwrap();
        let c = commit1(s, Mutation::InsertToken(token())).await; // learns the head
        assert_eq!(c.seq, 8);
        let refused = lease(&tok, "secret/data/c");
        let t3 = token();
        let out = s
            .commit(&[
                unit(Mutation::InsertToken(t3.clone())),
                unit(Mutation::InsertLease(refused.clone())),
            ])
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(|c| (c.seq, c.outcome)).collect::<Vec<_>>(),
            vec![
                (9, Outcome::Applied { affected: 1 }),
                (10, Outcome::NotApplied(NotApplied::TokenNotLive)),
            ]
        );
        assert_eq!(s.lease(&refused.hash).await.unwrap(), None);
        assert_eq!(s.token(&t3.hash).await.unwrap(), Some(t3));
        let e = event_at(s, 10).await.event;
        assert_eq!((e.decision, e.status), (Decision::Denied, 400));
        let last = s.commit_paths();

        assert_eq!(verify_chain(s, &h.hasher).await, Ok(10));
        if h.is_pg() {
            assert_eq!(paths(first), (0, 1, 0));
            assert_eq!(paths(second), (1, 1, 0));
            assert_eq!(paths(third), (1, 2, 1));
            // The revocation moved the head past this store's: the token
            // insert after it is stale; then the batch whose lease is
            // refused is too.
            assert_eq!(paths(last), (1, 4, 3));
        } else {
            assert_eq!(paths(last), (0, 5, 0));
        }
    }

    async fn five_events(h: &Harness) {
        for _ in 0..5 {
            h.store
                .commit(&[CommitUnit::event(event("kv.read"))])
                .await
                .unwrap();
        }
        assert_eq!(verify_chain(&*h.store, &h.hasher).await, Ok(5));
    }

    pub async fn tampered_row_is_detected(h: &Harness) {
        five_events(h).await;
        let n = h
            .tamper("UPDATE audit_events SET decision = 'denied' WHERE seq = 3")
            .await;
        assert_eq!(n, 1);
        assert_eq!(
            verify_chain(&*h.store, &h.hasher).await,
            Err(ChainBreak::Mismatch { seq: 3 })
        );
    }

    pub async fn deleted_middle_row_is_detected(h: &Harness) {
        five_events(h).await;
        assert_eq!(h.tamper("DELETE FROM audit_events WHERE seq = 3").await, 1);
        assert_eq!(
            verify_chain(&*h.store, &h.hasher).await,
            Err(ChainBreak::Gap {
                seq: 4,
                expected: 3
            })
        );
    }

    pub async fn deleted_last_row_is_detected(h: &Harness) {
        five_events(h).await;
        assert_eq!(h.tamper("DELETE FROM audit_events WHERE seq = 5").await, 1);
        assert_eq!(
            verify_chain(&*h.store, &h.hasher).await,
            Err(ChainBreak::Truncated { last: 4, head: 5 })
        );
    }

    pub async fn audit_log_is_append_only(h: &Harness) {
        five_events(h).await;
        for sql in [
            "UPDATE audit_events SET reason = 'x' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 5",
            "DELETE FROM audit_events",
            "UPDATE audit_head SET seq = 4",
            "DELETE FROM audit_head",
        ] {
            let err = h.raw(sql).await.expect_err(sql);
            assert!(err.to_string().contains("audit_"), "{sql}: {err}");
        }
        if h.is_pg() {
            assert!(h.raw("TRUNCATE audit_events").await.is_err());
        }
        assert_eq!(verify_chain(&*h.store, &h.hasher).await, Ok(5));
        // The head may move forward (the store does it on every commit).
        h.store
            .commit(&[CommitUnit::event(event("kv.read"))])
            .await
            .unwrap();
        assert_eq!(verify_chain(&*h.store, &h.hasher).await, Ok(6));
    }

    pub async fn audit_times_and_paging(h: &Harness) {
        let s = &*h.store;
        let mut e = event("kv.read");
        e.time = chrono::TimeZone::timestamp_opt(&chrono::Utc, 1_800_000_000, 123_456_789)
            .single()
            .unwrap();
        e.identity = None;
        e.workload = None;
        e.lease_ref = None;
        e.decision = Decision::Error;
        e.status = 503;
        e.attestation = serde_json::json!({});
        s.commit(&[CommitUnit::event(e.clone())]).await.unwrap();
        let got = event_at(s, 1).await;
        assert_eq!(got.event.time, t0(), "stored at microsecond precision");
        let mut expect = e.clone();
        expect.time = t0();
        assert_eq!(got.event, expect);
        assert_eq!(
            got.mac,
            e.chain_mac(&h.hasher, &leash_domain::Digest::ZERO, 1)
        );
        assert_eq!(s.audit_head().await.unwrap(), Some((1, got.mac)));

        for _ in 0..9 {
            s.commit(&[CommitUnit::event(event("kv.read"))])
                .await
                .unwrap();
        }
        assert!(s.audit_events(0, 0).await.unwrap().is_empty());
        let page = s.audit_events(3, 4).await.unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(s.audit_events(8, 100).await.unwrap().len(), 2);
        assert!(s.audit_events(10, 100).await.unwrap().is_empty());
        assert_eq!(s.audit_events(-5, 2).await.unwrap()[0].seq, 1);
        assert_eq!(verify_chain(s, &h.hasher).await, Ok(10));
    }

    pub async fn reap_deletes_dead_rows_only(h: &Harness) {
        let s = &*h.store;
        let cut = t0() + secs(1000);
        let live = token(); // expires t0+3600
        let mut expired = token();
        expired.expires_at = t0() + secs(500);
        let mut revoked = token();
        revoked.revoked_at = Some(t0() + secs(10));
        let mut revoked_late = token();
        revoked_late.revoked_at = Some(cut + secs(1));
        let mut expires_at_cut = token();
        expires_at_cut.expires_at = cut;
        for t in [&live, &expired, &revoked, &revoked_late, &expires_at_cut] {
            commit1(s, Mutation::InsertToken(t.clone())).await;
        }
        // Leases are inserted while their tokens are live, so insert the
        // revoked ones' leases before revoking via the table.
        let l_live = lease(&live, "a"); // expires t0+600
        let mut l_long = lease(&live, "b");
        l_long.expires_at = t0() + secs(2000);
        let mut l_revoked = lease(&live, "c");
        l_revoked.expires_at = t0() + secs(2000);
        let mut l_of_expired = lease(&expired, "d");
        l_of_expired.expires_at = t0() + secs(400);
        for l in [&l_live, &l_long, &l_revoked, &l_of_expired] {
            assert_eq!(
                commit1(s, Mutation::InsertLease(l.clone())).await.outcome,
                Outcome::Applied { affected: 1 }
            );
        }
        commit1(
            s,
            Mutation::RevokeLease {
                lease: l_revoked.hash,
                owner: None,
                now: t0() + secs(5),
            },
        )
        .await;
        let events_before = all_events(s).await.len();

        // Deleted: l_live (expired 600 < 1000), l_revoked, l_of_expired;
        // tokens expired and revoked. Kept: l_long, live, revoked_late,
        // expires_at_cut (not *before* the cut).
        assert_eq!(s.reap(cut).await.unwrap(), 5);
        assert!(s.lease(&l_live.hash).await.unwrap().is_none());
        assert!(s.lease(&l_revoked.hash).await.unwrap().is_none());
        assert!(s.lease(&l_of_expired.hash).await.unwrap().is_none());
        assert!(s.lease(&l_long.hash).await.unwrap().is_some());
        assert!(s.token(&expired.hash).await.unwrap().is_none());
        assert!(s.token(&revoked.hash).await.unwrap().is_none());
        for t in [&live, &revoked_late, &expires_at_cut] {
            assert!(s.token(&t.hash).await.unwrap().is_some());
        }
        assert_eq!(s.reap(cut).await.unwrap(), 0);
        // Reaping never touches the audit log.
        assert_eq!(all_events(s).await.len(), events_before);
        assert!(verify_chain(s, &h.hasher).await.is_ok());

        // A lease of a token reaped later goes with it.
        assert_eq!(s.reap(t0() + secs(100_000)).await.unwrap(), 4);
        assert_eq!(s.stats(t0()).await.unwrap().live_tokens, 0);
    }

    pub async fn stats_count_live_rows(h: &Harness) {
        let s = &*h.store;
        let a = token();
        let b = token();
        let mut c = token();
        c.revoked_at = Some(t0());
        for t in [&a, &b, &c] {
            commit1(s, Mutation::InsertToken(t.clone())).await;
        }
        let la = lease(&a, "x");
        let lb = lease(&b, "y");
        commit1(s, Mutation::InsertLease(la.clone())).await;
        commit1(s, Mutation::InsertLease(lb.clone())).await;
        commit1(
            s,
            Mutation::RevokeLease {
                lease: lb.hash,
                owner: None,
                now: t0(),
            },
        )
        .await;
        assert_eq!(
            s.stats(t0()).await.unwrap(),
            StoreStats {
                live_tokens: 2,
                live_leases: 1,
                audit_events: 6
            }
        );
        // After the leases expire (t0+600) but before the tokens (t0+3600).
        assert_eq!(
            s.stats(t0() + secs(600)).await.unwrap(),
            StoreStats {
                live_tokens: 2,
                live_leases: 0,
                audit_events: 6
            }
        );
        assert_eq!(s.stats(t0() + secs(3600)).await.unwrap().live_tokens, 0);
    }

    pub async fn kv_versions_round_trip(h: &Harness) {
        let s = &*h.store;
        assert_eq!(
            s.kv_put("secret", "app/db", b"sealed-1", t0())
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.kv_put("secret", "app/db", b"sealed-2", t0() + secs(1))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            s.kv_put("other", "app/db", b"other-1", t0()).await.unwrap(),
            1
        );

        let latest = s.kv_get("secret", "app/db", None).await.unwrap().unwrap();
        assert_eq!(latest.version, 2);
        assert_eq!(latest.sealed.as_deref(), Some(&b"sealed-2"[..]));
        assert_eq!(latest.created_at, t0() + secs(1));
        assert_eq!((latest.deleted_at, latest.destroyed), (None, false));
        assert!(!format!("{latest:?}").contains("sealed-2"));
        let v1 = s
            .kv_get("secret", "app/db", Some(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (v1.version, v1.sealed.as_deref()),
            (1, Some(&b"sealed-1"[..]))
        );
        assert_eq!(s.kv_get("secret", "app/db", Some(3)).await.unwrap(), None);
        assert_eq!(s.kv_get("secret", "app/db", Some(0)).await.unwrap(), None);
        assert_eq!(
            s.kv_get("secret", "app/db", Some(u64::MAX)).await.unwrap(),
            None
        );
        assert_eq!(s.kv_get("secret", "app/nope", None).await.unwrap(), None);
        assert_eq!(s.kv_get("nope", "app/db", None).await.unwrap(), None);

        let metas = s.kv_versions("secret", "app/db").await.unwrap();
        assert_eq!(
            metas.iter().map(|m| m.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(metas[0].created_at, t0());
        assert!(
            s.kv_versions("secret", "app/nope")
                .await
                .unwrap()
                .is_empty()
        );

        // Empty and binary values survive.
        let bin: Vec<u8> = (0..=255).collect();
        assert_eq!(s.kv_put("secret", "bin", &bin, t0()).await.unwrap(), 1);
        assert_eq!(s.kv_put("secret", "bin", b"", t0()).await.unwrap(), 2);
        let got = s.kv_get("secret", "bin", Some(1)).await.unwrap().unwrap();
        assert_eq!(got.sealed, Some(bin));
        let got = s.kv_get("secret", "bin", None).await.unwrap().unwrap();
        assert_eq!(got.sealed, Some(Vec::new()));

        // Concurrent writers get distinct versions.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20u8 {
            let s = h.store.clone();
            set.spawn(async move { s.kv_put("secret", "hot", &[i], t0()).await.unwrap() });
        }
        let mut vs = Vec::new();
        while let Some(v) = set.join_next().await {
            vs.push(v.unwrap());
        }
        vs.sort_unstable();
        assert_eq!(vs, (1..=20).collect::<Vec<u64>>());
    }

    pub async fn kv_list_children(h: &Harness) {
        let s = &*h.store;
        for p in [
            "a", "b/c", "b/d/e", "b/d/f", "b/x%y", "b%/q", "c_/z", "cX/w", "b/d",
        ] {
            s.kv_put("secret", p, b"v", t0()).await.unwrap();
        }
        s.kv_put("elsewhere", "zzz/top", b"v", t0()).await.unwrap();
        let list = |f: &'static str| async move { s.kv_list("secret", f).await.unwrap() };
        assert_eq!(list("").await, vec!["a", "b%/", "b/", "cX/", "c_/"]);
        assert_eq!(list("b/").await, vec!["c", "d", "d/", "x%y"]);
        assert_eq!(list("b").await, vec!["c", "d", "d/", "x%y"]);
        assert_eq!(list("b/d/").await, vec!["e", "f"]);
        assert_eq!(list("b%/").await, vec!["q"]);
        assert!(list("b_/").await.is_empty(), "_ is literal");
        assert!(list("%/").await.is_empty(), "% is literal");
        assert!(list("c%/").await.is_empty());
        assert_eq!(list("c_/").await, vec!["z"]);
        assert!(list("nope/").await.is_empty());
        assert!(list("a/").await.is_empty(), "a leaf is not a folder");
        assert!(s.kv_list("nope", "").await.unwrap().is_empty());
        assert_eq!(s.kv_list("elsewhere", "").await.unwrap(), vec!["zzz/"]);
    }

    pub async fn connect_dispatches_on_the_url(h: &Harness) {
        let url = h.url();
        let s = leash_store::connect(&url, &test_opts(), hasher())
            .await
            .unwrap();
        assert_eq!(s.kind(), h.store.kind());
        s.ping().await.unwrap();
        commit1(&*s, Mutation::InsertToken(token())).await;
        assert_eq!(h.store.audit_head().await.unwrap().unwrap().0, 1);
        // The other spelling of the scheme.
        let alt = if let Some(rest) = url.strip_prefix("postgres://") {
            format!("postgresql://{rest}")
        } else {
            url.replacen("sqlite://", "sqlite:", 1)
        };
        let s = leash_store::connect(&alt, &test_opts(), hasher())
            .await
            .unwrap();
        assert_eq!(s.kind(), h.store.kind());
        for bad in [
            "mysql://x/y",
            "sqlite::memory:",
            "sqlite://",
            "",
            "http://x",
        ] {
            let err = leash_store::connect(bad, &test_opts(), hasher())
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(matches!(err, StoreError::Other(_)), "{bad}: {err:?}");
        }
    }
}

// ------------------------------------------------------ one database only

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn pg_unreachable_is_unavailable_within_the_acquire_timeout() {
    let opts = PoolOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_millis(800),
        statement_timeout: Duration::from_secs(1),
    };
    // A closed port (connection refused) and a non-routable address (the
    // connect hangs): both end within the acquire timeout.
    for url in [
        format!("postgres://postgres@127.0.0.1:{}/leash", closed_port()),
        "postgres://postgres@10.255.255.1:5432/leash?connect_timeout=30".to_owned(),
    ] {
        let start = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            PgStore::connect(&url, &opts, hasher()),
        )
        .await
        .expect("connect must not hang");
        let err = r.map(|_| ()).unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert_eq!(err.to_string(), "the store is unavailable");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
    // The URL (which may hold a password) never shows.
    let err = PgStore::connect("postgres://u:hunter2@[bad", &opts, hasher())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn pg_statement_timeout_is_applied() {
    let h = Harness::pg().await;
    let opts = PoolOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_millis(300),
    };
    let s = PgStore::connect(&h.url(), &opts, hasher()).await.unwrap();
    // Hold the head lock from outside; a commit must give up, not hang.
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&h.url())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT * FROM audit_head FOR UPDATE;")
        .execute(&mut c)
        .await
        .unwrap();
    let start = Instant::now();
    let err = s
        .commit(&[CommitUnit::event(event("kv.read"))])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
    s.commit(&[CommitUnit::event(event("kv.read"))])
        .await
        .unwrap();
    assert_eq!(verify_chain(&s, &hasher()).await, Ok(1));
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let h = Harness::sqlite().await;
    assert_eq!(h.sqlite_journal_mode().await.as_deref(), Some("wal"));
    let err = leash_store::SqliteStore::open(
        std::path::Path::new("/nonexistent-leash-dir/sub/leash.db"),
        &test_opts(),
        hasher(),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn sqlite_busy_writer_is_unavailable_not_a_hang() {
    let h = Harness::sqlite().await;
    let opts = PoolOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_millis(300),
    };
    let s = leash_store::connect(&h.url(), &opts, hasher())
        .await
        .unwrap();
    // Another process holds the write lock.
    let path = h.url().trim_start_matches("sqlite://").to_owned();
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut c)
        .await
        .unwrap();
    let start = Instant::now();
    let err = s
        .commit(&[CommitUnit::event(event("kv.read"))])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
    s.commit(&[CommitUnit::event(event("kv.read"))])
        .await
        .unwrap();
    assert_eq!(verify_chain(&*s, &hasher()).await, Ok(1));
}
