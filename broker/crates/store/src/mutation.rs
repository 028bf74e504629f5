//! What each [`Mutation`] does to the database, inside a commit's
//! transaction, for both databases.
//!
//! Owns: the conditional writes (a token inserted only for an identity not
//! under quarantine, a lease only for a live token, a renewal only of a
//! live lease owned by the presenting token), the
//! classification of a refused renewal, the revocations and the
//! announcement each one that revokes a token makes in its own
//! transaction. The built-in store's writes are in `crate::kv`,
//! containment's in `crate::detect`.
//! Must never happen: a check read before a write it guards (each condition
//! is in the statement that writes, so it holds under concurrency); a
//! token revoked without its announcement; a revocation that is not
//! idempotent (a second one changes nothing and keeps the first time).
//!
//! [`Mutation`]: leash_domain::records::Mutation

use leash_domain::crypto::Digest;
use leash_domain::records::{Mutation, NotApplied, Outcome, TokenSelector};

use crate::codec::{self, micros};
use crate::dialect::Dialect;
use crate::{Revocation, StoreError, detect, kv, sql};

/// Applies one mutation on `conn` (a write transaction) and says what it
/// did.
pub(crate) async fn apply<DB: Dialect>(
    conn: &mut DB::Connection,
    m: &Mutation,
) -> Result<Outcome, StoreError> {
    match m {
        Mutation::InsertToken(t) => {
            let inserted = DB::insert_tokens(conn, &[t]).await?;
            Ok(token_outcome(inserted.first().copied().unwrap_or(false)))
        }
        Mutation::InsertLease(l) => {
            let inserted = DB::insert_leases(conn, &[l]).await?;
            Ok(lease_outcome(inserted.first().copied().unwrap_or(false)))
        }
        Mutation::RenewLease {
            lease,
            token,
            now,
            expires_at,
        } => renew_lease::<DB>(conn, lease, token, micros(*now), micros(*expires_at)).await,
        Mutation::RenewToken {
            token,
            now,
            expires_at,
        } => renew_token::<DB>(conn, token, micros(*now), micros(*expires_at)).await,
        Mutation::RevokeLease { lease, owner, now } => {
            let q = match owner {
                None => DB::query(sql::REVOKE_LEASE)
                    .bind(&lease.0[..])
                    .bind(micros(*now)),
                Some(o) => DB::query(sql::REVOKE_LEASE_OWNED)
                    .bind(&lease.0[..])
                    .bind(micros(*now))
                    .bind(&o.0[..]),
            };
            let n = q.execute(conn).await?;
            Ok(Outcome::Applied { affected: n })
        }
        Mutation::RevokeLeasePrefix { prefix, owner, now } => {
            let q = match owner {
                None => DB::query(sql::REVOKE_PREFIX)
                    .bind(prefix.as_str())
                    .bind(micros(*now)),
                Some(o) => DB::query(sql::REVOKE_PREFIX_OWNED)
                    .bind(prefix.as_str())
                    .bind(micros(*now))
                    .bind(&o.0[..]),
            };
            let n = q.execute(conn).await?;
            Ok(Outcome::Applied { affected: n })
        }
        Mutation::RevokeToken { token, now } => revoke_token::<DB>(conn, token, micros(*now)).await,
        Mutation::RevokeTokens { selector, now } => {
            revoke_tokens::<DB>(conn, selector, micros(*now)).await
        }
        Mutation::KvWrite {
            mount,
            path,
            sealed,
            rule,
            cas,
            now,
        } => kv::write::<DB>(conn, mount, path, sealed, *rule, *cas, micros(*now)).await,
        Mutation::KvDelete { mount, path, now } => {
            let n = kv::delete_latest::<DB>(conn, mount, path, micros(*now)).await?;
            Ok(Outcome::Applied { affected: n })
        }
        Mutation::RecordSignal(s) => detect::record_signal::<DB>(conn, s).await,
        Mutation::Quarantine(q) => detect::quarantine::<DB>(conn, q).await,
        Mutation::ReleaseQuarantine { subject, at } => {
            detect::release::<DB>(conn, subject, *at).await
        }
        Mutation::RecordDetection(d) => detect::record_detection::<DB>(conn, d).await,
        Mutation::EnqueueAlert(a) => detect::enqueue_alert::<DB>(conn, a).await,
    }
}

/// A token insert's outcome: applied, or refused because its identity is
/// under quarantine.
pub(crate) fn token_outcome(inserted: bool) -> Outcome {
    if inserted {
        Outcome::Applied { affected: 1 }
    } else {
        Outcome::NotApplied(NotApplied::Quarantined)
    }
}

/// A lease insert's outcome: applied, or refused because its token was not
/// live.
pub(crate) fn lease_outcome(inserted: bool) -> Outcome {
    if inserted {
        Outcome::Applied { affected: 1 }
    } else {
        Outcome::NotApplied(NotApplied::TokenNotLive)
    }
}

/// [`Dialect::RENEW_LEASE`]; when it changes nothing, reads the lease back
/// to say why.
async fn renew_lease<DB: Dialect>(
    conn: &mut DB::Connection,
    lease: &Digest,
    token: &Digest,
    now: i64,
    expires_at: i64,
) -> Result<Outcome, StoreError> {
    let n = DB::query(DB::RENEW_LEASE)
        .bind(&lease.0[..])
        .bind(&token.0[..])
        .bind(expires_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if n > 0 {
        return Ok(Outcome::Applied { affected: n });
    }
    let probe: Option<codec::RenewProbe> = DB::query(codec::RENEW_PROBE)
        .bind(&lease.0[..])
        .fetch_optional(conn)
        .await?;
    Ok(Outcome::NotApplied(codec::renew_refusal(probe, token, now)))
}

/// [`Dialect::RENEW_TOKEN`]; when it changes nothing, reads the token back
/// to say why.
async fn renew_token<DB: Dialect>(
    conn: &mut DB::Connection,
    token: &Digest,
    now: i64,
    expires_at: i64,
) -> Result<Outcome, StoreError> {
    let n = DB::query(DB::RENEW_TOKEN)
        .bind(&token.0[..])
        .bind(expires_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if n > 0 {
        return Ok(Outcome::Applied { affected: n });
    }
    let probe: Option<(Option<i64>, i64, bool)> = DB::query(sql::TOKEN_RENEW_PROBE)
        .bind(&token.0[..])
        .fetch_optional(conn)
        .await?;
    Ok(Outcome::NotApplied(codec::token_renew_refusal(probe, now)))
}

/// Revokes a token and its leases, announcing it; affected: the leases.
async fn revoke_token<DB: Dialect>(
    conn: &mut DB::Connection,
    token: &Digest,
    now: i64,
) -> Result<Outcome, StoreError> {
    DB::announce(&mut *conn, &Revocation::Token(*token)).await?;
    DB::query(sql::REVOKE_TOKEN)
        .bind(&token.0[..])
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let n = DB::query(sql::REVOKE_TOKEN_LEASES)
        .bind(&token.0[..])
        .bind(now)
        .execute(conn)
        .await?;
    Ok(Outcome::Applied { affected: n })
}

/// Revokes every live token `selector` picks and all their leases,
/// announcing it; affected: leases and tokens.
async fn revoke_tokens<DB: Dialect>(
    conn: &mut DB::Connection,
    selector: &TokenSelector,
    now: i64,
) -> Result<Outcome, StoreError> {
    // Leases first: their statement finds the tokens by the selector,
    // revoked or not yet.
    let (key, leases_sql, tokens_sql) = match selector {
        TokenSelector::Accessor(a) => {
            let live: Option<(Vec<u8>,)> = DB::query(sql::LIVE_TOKENS_BY_ACCESSOR)
                .bind(a.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            if let Some((h,)) = live {
                let d = codec::digest("tokens.hash", &h)?;
                DB::announce(&mut *conn, &Revocation::Token(d)).await?;
            }
            (
                a.as_str(),
                sql::REVOKE_LEASES_BY_ACCESSOR,
                sql::REVOKE_TOKENS_BY_ACCESSOR,
            )
        }
        TokenSelector::Workload(w) => {
            DB::announce(&mut *conn, &Revocation::Workload(w.clone())).await?;
            (
                w.as_str(),
                sql::REVOKE_LEASES_BY_WORKLOAD,
                sql::REVOKE_TOKENS_BY_WORKLOAD,
            )
        }
        TokenSelector::Subject(s) => {
            // Logins of the subject in flight commit first (and are
            // revoked here) or wait and then see any quarantine this
            // transaction records.
            DB::lock_subject(&mut *conn, s).await?;
            DB::announce(&mut *conn, &Revocation::Subject(s.clone())).await?;
            let mut n = 0;
            for stmt in [sql::REVOKE_LEASES_BY_SUBJECT, sql::REVOKE_TOKENS_BY_SUBJECT] {
                n += DB::query(stmt)
                    .bind(s.workload.as_str())
                    .bind(s.issuer.as_str())
                    .bind(s.subject.as_str())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
            return Ok(Outcome::Applied { affected: n });
        }
        TokenSelector::Attestation { issuer, subject } => {
            let r = Revocation::Attestation {
                issuer: issuer.clone(),
                subject: subject.clone(),
            };
            DB::announce(&mut *conn, &r).await?;
            let mut n = 0;
            for stmt in [
                sql::REVOKE_LEASES_BY_ATTESTATION,
                sql::REVOKE_TOKENS_BY_ATTESTATION,
            ] {
                n += DB::query(stmt)
                    .bind(issuer.as_str())
                    .bind(subject.as_str())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
            return Ok(Outcome::Applied { affected: n });
        }
    };
    let mut n = 0;
    for stmt in [leases_sql, tokens_sql] {
        n += DB::query(stmt)
            .bind(key)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Outcome::Applied { affected: n })
}
