//! The store code both databases share, written once and expanded inside
//! each backend module by [`store_backend!`]: applying a [`Mutation`],
//! writing an audit row, the commit transaction, and every [`Store`] method
//! whose SQL is the same in PostgreSQL and SQLite.
//!
//! Why a macro and not generic code: sqlx executors are per-database types
//! (`&mut PgConnection`, `&mut SqliteConnection`, `PgPool`, `SqlitePool`).
//! A function generic over `sqlx::Database` would need a higher-ranked
//! `Executor` bound on the connection plus an `Encode + Type` bound for
//! every bound value type and a `FromRow` bound for every row type. The
//! macro instead expands the same body against each concrete type, so each
//! backend stays a plain implementation of the one [`Store`] trait, and what
//! differs between them (pools, how a write transaction begins, the dialect
//! statements) is a named parameter of the invocation.
//!
//! Owns: the order of work inside a commit (each unit's mutation, in
//! order; then the head; then every unit's chained audit row; then the new
//! head).
//! Must never happen: a branch on the database kind in here; a dialect
//! statement written here rather than passed in by the backend.
//!
//! [`Mutation`]: leash_domain::records::Mutation
//! [`Store`]: crate::Store

/// Expands, inside a backend module, the free functions `apply` and
/// `insert_event` and the `Store` impl for `store`, which must have a
/// `hasher: KeyedHasher` field (the audit chain key).
///
/// - `kind`: what [`Store::kind`](crate::Store::kind) returns.
/// - `connection`: the sqlx connection type of a transaction.
/// - `migrator`: the backend's embedded migrations.
/// - `writer` / `readers`: the pool fields of `store` that write (and
///   migrate) and that read; they may be the same field.
/// - `begin`: the pool method, with its argument if any, that starts every
///   write transaction on `writer`, the commit's included.
/// - `commit_head`: the query that reads (and, where the dialect needs it,
///   locks) the audit head, after a commit's mutations.
/// - `renew_lease`, `renew_token`: the conditional mutations, in the
///   backend's dialect.
/// - `insert_tokens`, `insert_leases`, `insert_events`: functions of the
///   backend module that write many rows at once (one statement where the
///   dialect allows it): `insert_tokens(conn, &[&TokenRecord])`,
///   `insert_leases(conn, &[&LeaseRecord]) -> Vec<bool>` (whether each
///   lease was inserted: only while its token is live), and
///   `insert_events(conn, &[ChainedEvent], (seq, &mac))`, which also moves
///   the audit head to `(seq, mac)`.
/// - `flush`: `flush(&store)`, what [`Store::flush`] does: returns only
///   once every commit that returned before the call is durable (with a
///   backend whose commits are durable when they return, at once).
/// - `fast_commit`: `fast_commit(&store, units) -> Option<Vec<Committed>>`,
///   tried first by every commit: the whole commit in one round trip where
///   the backend can (`None`: it could not, and nothing was written; the
///   general transaction follows).
/// - `head_committed`: `head_committed(&store, (seq, mac))`, told the head
///   each general commit left (what `fast_commit` may predict from).
/// - `commit_paths`: `commit_paths(&store)`, what
///   [`Store::commit_paths`] returns.
/// - `announce`: `announce(conn, &Revocation)`, called in the transaction
///   of every mutation that revokes a token.
/// - `subscribe`: `subscribe(&store)`, what [`Store::subscribe`] returns.
macro_rules! store_backend {
    (
        store: $store:ty,
        kind: $kind:literal,
        connection: $conn:ty,
        migrator: $migrator:path,
        writer: $writer:ident,
        readers: $readers:ident,
        begin: $begin:ident($($begin_arg:expr)?),
        commit_head: $commit_head:expr,
        renew_lease: $renew_lease:expr,
        renew_token: $renew_token:expr,
        insert_tokens: $insert_tokens:path,
        insert_leases: $insert_leases:path,
        insert_events: $insert_events:path,
        announce: $announce:path,
        flush: $flush:path,
        fast_commit: $fast_commit:path,
        head_committed: $head_committed:path,
        commit_paths: $commit_paths:path,
        subscribe: $subscribe:path $(,)?
    ) => {
        // An anonymous const is a block: its imports stay out of the
        // backend module, while the impl in it applies crate-wide, and the
        // backend's own items (the parameters) still resolve from inside.
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use leash_domain::audit::StoredEvent;
            use leash_domain::crypto::Digest;
            use leash_domain::records::{
                CommitUnit, Committed, LeaseRecord, Mutation, NotApplied, Outcome, TokenRecord,
                TokenSelector, WriteRule,
            };

            use $crate::codec::{self, micros};
            use $crate::kv::{KvVersion, KvVersionMeta, children, folder_prefix};
            use $crate::sql;
            use $crate::{Store, StoreError, StoreStats};

            async fn apply(conn: &mut $conn, m: &Mutation) -> Result<Outcome, StoreError> {
                let outcome = match m {
                    Mutation::InsertToken(t) => {
                        let n = $insert_tokens(&mut *conn, &[t]).await?;
                        Outcome::Applied { affected: n }
                    }
                    Mutation::InsertLease(l) => {
                        let inserted = $insert_leases(&mut *conn, &[l]).await?;
                        lease_outcome(inserted.first().copied().unwrap_or(false))
                    }
                    Mutation::RenewLease {
                        lease,
                        token,
                        now,
                        expires_at,
                    } => {
                        let now = micros(*now);
                        let n = sqlx::query($renew_lease)
                            .bind(&lease.0[..])
                            .bind(&token.0[..])
                            .bind(micros(*expires_at))
                            .bind(now)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        if n > 0 {
                            Outcome::Applied { affected: n }
                        } else {
                            let probe: Option<codec::RenewProbe> =
                                sqlx::query_as(codec::RENEW_PROBE)
                                    .bind(&lease.0[..])
                                    .fetch_optional(&mut *conn)
                                    .await?;
                            Outcome::NotApplied(codec::renew_refusal(probe, token, now))
                        }
                    }
                    Mutation::RenewToken {
                        token,
                        now,
                        expires_at,
                    } => {
                        let now = micros(*now);
                        let n = sqlx::query($renew_token)
                            .bind(&token.0[..])
                            .bind(micros(*expires_at))
                            .bind(now)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        if n > 0 {
                            Outcome::Applied { affected: n }
                        } else {
                            let probe: Option<(Option<i64>, i64, bool)> =
                                sqlx::query_as(sql::TOKEN_RENEW_PROBE)
                                    .bind(&token.0[..])
                                    .fetch_optional(&mut *conn)
                                    .await?;
                            Outcome::NotApplied(codec::token_renew_refusal(probe, now))
                        }
                    }
                    Mutation::RevokeLease { lease, owner, now } => {
                        let q = match owner {
                            None => sqlx::query(sql::REVOKE_LEASE)
                                .bind(&lease.0[..])
                                .bind(micros(*now)),
                            Some(o) => sqlx::query(sql::REVOKE_LEASE_OWNED)
                                .bind(&lease.0[..])
                                .bind(micros(*now))
                                .bind(&o.0[..]),
                        };
                        let n = q.execute(&mut *conn).await?.rows_affected();
                        Outcome::Applied { affected: n }
                    }
                    Mutation::RevokeLeasePrefix { prefix, owner, now } => {
                        let q = match owner {
                            None => sqlx::query(sql::REVOKE_PREFIX)
                                .bind(prefix.as_str())
                                .bind(micros(*now)),
                            Some(o) => sqlx::query(sql::REVOKE_PREFIX_OWNED)
                                .bind(prefix.as_str())
                                .bind(micros(*now))
                                .bind(&o.0[..]),
                        };
                        let n = q.execute(&mut *conn).await?.rows_affected();
                        Outcome::Applied { affected: n }
                    }
                    Mutation::RevokeToken { token, now } => {
                        $announce(&mut *conn, &$crate::Revocation::Token(*token)).await?;
                        sqlx::query(sql::REVOKE_TOKEN)
                            .bind(&token.0[..])
                            .bind(micros(*now))
                            .execute(&mut *conn)
                            .await?;
                        let n = sqlx::query(sql::REVOKE_TOKEN_LEASES)
                            .bind(&token.0[..])
                            .bind(micros(*now))
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        Outcome::Applied { affected: n }
                    }
                    Mutation::RevokeTokens { selector, now } => {
                        let now = micros(*now);
                        // Leases first: their statement finds the tokens by
                        // the selector, revoked or not yet.
                        let (key, leases_sql, tokens_sql) = match selector {
                            TokenSelector::Accessor(a) => {
                                let live: Option<Vec<u8>> =
                                    sqlx::query_scalar(sql::LIVE_TOKENS_BY_ACCESSOR)
                                        .bind(a.as_str())
                                        .fetch_optional(&mut *conn)
                                        .await?;
                                if let Some(h) = live {
                                    let d = codec::digest("tokens.hash", &h)?;
                                    $announce(&mut *conn, &$crate::Revocation::Token(d)).await?;
                                }
                                (
                                    a.as_str(),
                                    sql::REVOKE_LEASES_BY_ACCESSOR,
                                    sql::REVOKE_TOKENS_BY_ACCESSOR,
                                )
                            }
                            TokenSelector::Workload(w) => {
                                $announce(&mut *conn, &$crate::Revocation::Workload(w.clone()))
                                    .await?;
                                (
                                    w.as_str(),
                                    sql::REVOKE_LEASES_BY_WORKLOAD,
                                    sql::REVOKE_TOKENS_BY_WORKLOAD,
                                )
                            }
                        };
                        let mut n = 0;
                        for stmt in [leases_sql, tokens_sql] {
                            n += sqlx::query(stmt)
                                .bind(key)
                                .bind(now)
                                .execute(&mut *conn)
                                .await?
                                .rows_affected();
                        }
                        Outcome::Applied { affected: n }
                    }
                    Mutation::KvWrite {
                        mount,
                        path,
                        sealed,
                        rule,
                        cas,
                        now,
                    } => {
                        let now = micros(*now);
                        // One statement decides and bumps the version, so
                        // the rule and the check-and-set hold under
                        // concurrency in both databases.
                        let (statement, cas_bind, refused) = match (rule, cas) {
                            (_, Some(0)) => (sql::KV_CREATE, None, NotApplied::CasMismatch),
                            (WriteRule::CreateOnly, Some(_)) => {
                                return Ok(Outcome::NotApplied(NotApplied::AlreadyExists));
                            }
                            (_, Some(c)) => (
                                sql::KV_UPDATE_CAS,
                                Some(i64::try_from(*c).unwrap_or(i64::MAX)),
                                NotApplied::CasMismatch,
                            ),
                            (WriteRule::CreateOnly, None) => {
                                (sql::KV_CREATE, None, NotApplied::AlreadyExists)
                            }
                            (WriteRule::UpdateOnly, None) => {
                                (sql::KV_UPDATE, None, NotApplied::Missing)
                            }
                            (WriteRule::Any, None) => (sql::KV_BUMP, None, NotApplied::Missing),
                        };
                        let mut q = sqlx::query_scalar::<_, i64>(statement)
                            .bind(mount.as_str())
                            .bind(path.as_str())
                            .bind(now);
                        if let Some(c) = cas_bind {
                            q = q.bind(c);
                        }
                        match q.fetch_optional(&mut *conn).await? {
                            None => Outcome::NotApplied(refused),
                            Some(v) => {
                                sqlx::query(sql::KV_INSERT)
                                    .bind(mount.as_str())
                                    .bind(path.as_str())
                                    .bind(v)
                                    .bind(now)
                                    .bind(&sealed[..])
                                    .execute(&mut *conn)
                                    .await?;
                                Outcome::Written {
                                    version: codec::version(v)?,
                                }
                            }
                        }
                    }
                    Mutation::KvDelete { mount, path, now } => {
                        let n = sqlx::query(sql::KV_DELETE_LATEST)
                            .bind(mount.as_str())
                            .bind(path.as_str())
                            .bind(micros(*now))
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        Outcome::Applied { affected: n }
                    }
                };
                Ok(outcome)
            }

            fn lease_outcome(inserted: bool) -> Outcome {
                if inserted {
                    Outcome::Applied { affected: 1 }
                } else {
                    Outcome::NotApplied(NotApplied::TokenNotLive)
                }
            }

            /// Whether a unit belongs to a run written with multi-row
            /// statements: it records only, or inserts a token or a lease.
            /// Within such a run no unit can change another's outcome (a
            /// lease needs a token a client already holds, so never one
            /// inserted in the same run), so its rows may be written
            /// together.
            fn batchable(unit: &CommitUnit) -> bool {
                matches!(
                    unit.mutation,
                    None | Some(Mutation::InsertToken(_)) | Some(Mutation::InsertLease(_))
                )
            }

            /// Applies a run of [`batchable`] units: their tokens in one
            /// statement, then their leases in one; returns their outcomes
            /// in order.
            async fn apply_run(
                conn: &mut $conn,
                run: &[CommitUnit],
            ) -> Result<Vec<Outcome>, StoreError> {
                let tokens: Vec<&TokenRecord> = run
                    .iter()
                    .filter_map(|u| match &u.mutation {
                        Some(Mutation::InsertToken(t)) => Some(t),
                        _ => None,
                    })
                    .collect();
                if !tokens.is_empty() {
                    $insert_tokens(&mut *conn, &tokens).await?;
                }
                let leases: Vec<&LeaseRecord> = run
                    .iter()
                    .filter_map(|u| match &u.mutation {
                        Some(Mutation::InsertLease(l)) => Some(l),
                        _ => None,
                    })
                    .collect();
                let mut inserted = if leases.is_empty() {
                    Vec::new()
                } else {
                    $insert_leases(&mut *conn, &leases).await?
                }
                .into_iter();
                let mut out = Vec::with_capacity(run.len());
                for unit in run {
                    out.push(match &unit.mutation {
                        None => Outcome::Recorded,
                        Some(Mutation::InsertToken(_)) => Outcome::Applied { affected: 1 },
                        _ => lease_outcome(inserted.next().unwrap_or(false)),
                    });
                }
                Ok(out)
            }

            #[async_trait]
            impl Store for $store {
                fn kind(&self) -> &'static str {
                    $kind
                }

                async fn migrate(&self) -> Result<(), StoreError> {
                    $migrator.run(&self.$writer).await?;
                    Ok(())
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.$readers).await?;
                    Ok(())
                }

                async fn commit_unflushed(
                    &self,
                    units: &[CommitUnit],
                ) -> Result<Vec<Committed>, StoreError> {
                    if units.is_empty() {
                        return Ok(Vec::new());
                    }
                    if let Some(out) = $fast_commit(self, units).await? {
                        return Ok(out);
                    }
                    let mut tx = self.$writer.$begin($($begin_arg)?).await?;
                    // The mutations first, in unit order; the audit head
                    // last. Every transaction takes its row locks before the
                    // head lock and holds the head only for its audit rows
                    // and its commit, so concurrent batches overlap their
                    // mutations, and a lock cycle through the head cannot
                    // form. Conflicting mutations still serialise on their
                    // rows, and whichever commits first also takes the
                    // lower seqs, so the chain's order is the commit order.
                    let mut outcomes = Vec::with_capacity(units.len());
                    let mut rest = units;
                    while !rest.is_empty() {
                        // A run of batchable units, or else one unit.
                        let n = rest.iter().take_while(|u| batchable(u)).count().max(1);
                        let (now, later) = rest.split_at(n);
                        if batchable(&now[0]) {
                            outcomes.extend(apply_run(&mut tx, now).await?);
                        } else {
                            let m = now[0].mutation.as_ref().ok_or_else(|| {
                                StoreError::corrupt("commit", "unbatchable unit without mutation")
                            })?;
                            outcomes.push(apply(&mut tx, m).await?);
                        }
                        rest = later;
                    }
                    let (seq, mac): (i64, Vec<u8>) = sqlx::query_as($commit_head)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::corrupt("audit_head", "missing"))?;
                    let head = codec::head(seq, &mac)?;
                    let (events, out, (seq, prev)) =
                        codec::chain(&self.hasher, units, outcomes, head)?;
                    // Events never influence a mutation, so they are all
                    // written last, together.
                    $insert_events(&mut tx, &events, (seq, &prev)).await?;
                    tx.commit().await?;
                    $head_committed(self, (seq, prev));
                    Ok(out)
                }

                async fn flush(&self) -> Result<(), StoreError> {
                    $flush(self).await
                }

                fn commit_paths(&self) -> $crate::CommitPaths {
                    $commit_paths(self)
                }

                async fn subscribe(&self) -> Result<Option<$crate::RevocationFeed>, StoreError> {
                    $subscribe(self).await
                }

                async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>, StoreError> {
                    let row: Option<codec::TokenRow> = sqlx::query_as(sql::SELECT_TOKEN)
                        .bind(&hash.0[..])
                        .fetch_optional(&self.$readers)
                        .await?;
                    row.map(TokenRecord::try_from).transpose()
                }

                async fn lease(&self, hash: &Digest) -> Result<Option<LeaseRecord>, StoreError> {
                    let row: Option<codec::LeaseRow> = sqlx::query_as(sql::SELECT_LEASE)
                        .bind(&hash.0[..])
                        .fetch_optional(&self.$readers)
                        .await?;
                    row.map(LeaseRecord::try_from).transpose()
                }

                async fn reap(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                    let before = micros(before);
                    let mut total = 0u64;
                    // Leases first (including those of dead tokens), then
                    // tokens; in batches, so no lock is held for long. The
                    // rows reaped are dead (expired or revoked long ago):
                    // no commit's conditional mutation matches, so locks
                    // them, so reaping never waits for a commit's rows.
                    for stmt in [sql::REAP_LEASES, sql::REAP_TOKENS] {
                        loop {
                            let mut tx = self.$writer.$begin($($begin_arg)?).await?;
                            let n = sqlx::query(stmt)
                                .bind(before)
                                .bind(codec::REAP_BATCH)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                            tx.commit().await?;
                            total += n;
                            if n < codec::REAP_BATCH.unsigned_abs() {
                                break;
                            }
                        }
                    }
                    Ok(total)
                }

                async fn audit_events(
                    &self,
                    after_seq: i64,
                    limit: u32,
                ) -> Result<Vec<StoredEvent>, StoreError> {
                    let rows: Vec<codec::EventRow> = sqlx::query_as(sql::SELECT_EVENTS)
                        .bind(after_seq)
                        .bind(i64::from(limit))
                        .fetch_all(&self.$readers)
                        .await?;
                    rows.into_iter().map(StoredEvent::try_from).collect()
                }

                async fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError> {
                    let (seq, mac): (i64, Vec<u8>) = sqlx::query_as(sql::SELECT_HEAD)
                        .fetch_optional(&self.$readers)
                        .await?
                        .ok_or_else(|| StoreError::corrupt("audit_head", "missing"))?;
                    let head = codec::head(seq, &mac)?;
                    Ok((head.0 > 0).then_some(head))
                }

                async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
                    let (live_tokens, live_leases, seq): (i64, i64, Option<i64>) =
                        sqlx::query_as(sql::STATS)
                            .bind(micros(now))
                            .fetch_one(&self.$readers)
                            .await?;
                    Ok(StoreStats {
                        live_tokens,
                        live_leases,
                        audit_events: seq.unwrap_or(0),
                    })
                }

                async fn kv_put(
                    &self,
                    mount: &str,
                    path: &str,
                    sealed: &[u8],
                    now: DateTime<Utc>,
                ) -> Result<u64, StoreError> {
                    let mut tx = self.$writer.$begin($($begin_arg)?).await?;
                    let v: i64 = sqlx::query_scalar(sql::KV_BUMP)
                        .bind(mount)
                        .bind(path)
                        .bind(micros(now))
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(sql::KV_INSERT)
                        .bind(mount)
                        .bind(path)
                        .bind(v)
                        .bind(micros(now))
                        .bind(sealed)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    codec::version(v)
                }

                async fn kv_get(
                    &self,
                    mount: &str,
                    path: &str,
                    version: Option<u64>,
                ) -> Result<Option<KvVersion>, StoreError> {
                    let row: Option<codec::KvRow> = match version {
                        None => {
                            sqlx::query_as(sql::KV_LATEST)
                                .bind(mount)
                                .bind(path)
                                .fetch_optional(&self.$readers)
                                .await?
                        }
                        Some(v) => {
                            let Ok(v) = i64::try_from(v) else {
                                return Ok(None);
                            };
                            sqlx::query_as(sql::KV_VERSION)
                                .bind(mount)
                                .bind(path)
                                .bind(v)
                                .fetch_optional(&self.$readers)
                                .await?
                        }
                    };
                    row.map(KvVersion::try_from).transpose()
                }

                async fn kv_versions(
                    &self,
                    mount: &str,
                    path: &str,
                ) -> Result<Vec<KvVersionMeta>, StoreError> {
                    let rows: Vec<codec::KvMetaRow> = sqlx::query_as(sql::KV_VERSIONS)
                        .bind(mount)
                        .bind(path)
                        .fetch_all(&self.$readers)
                        .await?;
                    rows.into_iter().map(KvVersionMeta::try_from).collect()
                }

                async fn kv_list(
                    &self,
                    mount: &str,
                    folder: &str,
                ) -> Result<Vec<String>, StoreError> {
                    let prefix = folder_prefix(folder);
                    let paths: Vec<String> = sqlx::query_scalar(sql::KV_LIST)
                        .bind(mount)
                        .bind(prefix.as_str())
                        .fetch_all(&self.$readers)
                        .await?;
                    Ok(children(&prefix, paths))
                }
            }
        };
    };
}

pub(crate) use store_backend;
