//! The PostgreSQL store: production, shared by every broker replica.
//!
//! Owns: the connection pool (with `statement_timeout` on every
//! connection), the embedded PostgreSQL migrations, the PostgreSQL
//! [`Dialect`] of the code shared with SQLite (`crate::commit`,
//! `crate::mutation`, `crate::read`, `crate::kv`), and the one-statement
//! commit (`fast_commit`), tried before the general transaction. Every
//! general commit applies its mutations, then locks the single
//! `audit_head` row (`SELECT … FOR UPDATE`) and holds it only for its audit
//! rows and its commit, so commits from all replicas (and concurrent
//! batches of one replica) write one gap-free chain in commit order while
//! their mutations overlap. Mutations are conditional
//! `UPDATE`s/`INSERT … SELECT … WHERE EXISTS`, re-checked by PostgreSQL
//! after any row-lock wait; conflicting ones serialise on their rows. A
//! login and a quarantine (or revocation by subject) of the same subject
//! serialise on the subject's advisory lock (`leash_login_open`).
//! Must never happen: a renewal applied after the revocation of its lease
//! or token committed; a lease inserted for a token that is not live; an
//! audit seq used twice or skipped; a connection URL (which may hold a
//! password) in an error or in `Debug`.

use std::fmt;
use std::str::FromStr;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::audit::StoredEvent;
use leash_domain::crypto::{Digest, KeyedHasher};
use leash_domain::detection::Subject;
use leash_domain::records::{CommitUnit, Committed, LeaseRecord, Mutation, Outcome, TokenRecord};
use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::codec::{EventColumns, LeaseColumns, TokenColumns};
use crate::commit::{self, ChainedEvent, UnitOutcome};
use crate::dialect::Dialect;
use crate::kv::{self, KvVersion, KvVersionMeta};
use crate::unnest::{
    EVENT_COLUMNS, LEASE_COLUMNS, TOKEN_COLUMNS, bind_events, bind_leases, bind_tokens,
    insert_unnest,
};
use crate::{
    AuditLog, CommitPaths, KvStore, Leases, PoolOptions, Revocation, RevocationFeed, Store,
    StoreError, StoreStats, detect, feed, read,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../../migrations/postgres");

/// Locks the chain head for the rest of the transaction.
const LOCK_HEAD: &str = "SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE";

/// Each lease inserted only if its token is live at its `issued_at`. The
/// token row is share-locked, so a concurrent revocation of the token
/// either commits first (and the lease is not inserted) or waits for this
/// transaction (and then revokes the new lease too).
const LEASE_TOKEN_LIVE: &str = " WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.hash = u.token_hash \
     AND t.revoked_at IS NULL AND t.expires_at > u.issued_at FOR SHARE)";

/// Tokens (one array parameter per column from `$first`), each inserted
/// only if its subject has no quarantine in force at the earliest
/// `created_at` of its tokens in the batch: `leash_login_open` (see the
/// migration that creates it) takes the subject's advisory lock shared —
/// waiting for a quarantine being committed, with `wait`; refusing, without
/// — then checks with a fresh snapshot. It runs once per distinct subject
/// of the batch, not once per token: a PL/pgSQL call with its own snapshot
/// costs PostgreSQL about 10 µs, a third of a whole login's share.
fn insert_open_tokens(first: usize, wait: bool) -> String {
    let param = |column: &str| {
        let i = TOKEN_COLUMNS
            .iter()
            .position(|(c, _)| *c == column)
            .unwrap_or_default();
        format!("${}::{}[]", first + i, TOKEN_COLUMNS[i].1)
    };
    format!(
        "{} WHERE (u.workload, u.issuer, u.subject) IN (SELECT o.w, o.i, o.s FROM \
         (SELECT w, i, s, min(at) AS at FROM UNNEST({}, {}, {}, {}) AS v(w, i, s, at) \
         GROUP BY w, i, s) o WHERE leash_login_open(o.w, o.i, o.s, o.at, {wait}))",
        insert_unnest("tokens", TOKEN_COLUMNS, first),
        param("workload"),
        param("issuer"),
        param("subject"),
        param("created_at"),
    )
}

/// Tokens, many at once (`$1`…`$14`), each only while its subject is not
/// under quarantine. Returns the hashes of the tokens inserted.
static INSERT_TOKENS: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING hash", insert_open_tokens(1, true)));

/// Leases, many at once (`$1`…`$12`), each only while its token is live.
/// Returns the hashes of the leases inserted.
static INSERT_LEASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}{LEASE_TOKEN_LIVE} RETURNING hash",
        insert_unnest("leases", LEASE_COLUMNS, 1)
    )
});

/// Audit rows, many at once (`$1`…`$15`), and the head moved to the last
/// of them (`$16` seq, `$17` MAC), in one statement: one round trip while
/// the head is locked.
static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH appended AS ({}) UPDATE audit_head SET seq = $16, mac = $17 WHERE id = 1",
        insert_unnest("audit_events", EVENT_COLUMNS, 1)
    )
});

/// A whole batch of leases (`$1`…`$12`), tokens (`$13`…`$26`) and audit rows
/// (`$27`…`$41`) in one autocommit statement, written only if the batch
/// still matches the database: every lease inserted (`$42` of them: each
/// token live), every token inserted (`$43`: none quarantined, none
/// waiting for a quarantine being committed), and the head where the
/// events were chained from (`$44` seq, `$45` MAC), checked under the
/// head's lock. Otherwise `leash_expect` aborts the statement, undoing all
/// of it. The head moves to `$46`, `$47`. The token rows are share-locked
/// (counting `l`) before the head is locked (`h`), the order of every other
/// commit.
static COMMIT_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH l AS ({leases}{LEASE_TOKEN_LIVE} RETURNING 1), \
         t AS ({tokens} RETURNING 1), \
         h AS (SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE), \
         ok AS (SELECT leash_expect((SELECT count(*) FROM l) = $42 \
         AND (SELECT count(*) FROM t) = $43 \
         AND (SELECT seq = $44 AND mac = $45 FROM h)) AS ok), \
         e AS ({events} WHERE (SELECT ok FROM ok)) \
         UPDATE audit_head SET seq = $46, mac = $47 WHERE id = 1 AND (SELECT ok FROM ok)",
        leases = insert_unnest("leases", LEASE_COLUMNS, 1),
        tokens = insert_open_tokens(13, false),
        events = insert_unnest("audit_events", EVENT_COLUMNS, 27),
    )
});

/// The SQLSTATE `leash_expect` raises.
const BATCH_STALE: &str = "LS001";

/// `$1` lease, `$2` token, `$3` new expiry, `$4` now. The `WHERE` is
/// re-evaluated on the newest row version after waiting for a row lock, so
/// a revocation that commits first always wins.
const RENEW_LEASE: &str = "UPDATE leases SET expires_at = LEAST($3, max_expires_at), \
     last_renewal = $4 WHERE hash = $1 AND token_hash = $2 AND revoked_at IS NULL \
     AND expires_at > $4 AND renewable AND EXISTS (SELECT 1 FROM tokens t WHERE t.hash = $2 \
     AND t.revoked_at IS NULL AND t.expires_at > $4)";

/// `$1` token, `$2` new expiry, `$3` now.
const RENEW_TOKEN: &str = "UPDATE tokens SET expires_at = LEAST($2, max_expires_at) \
     WHERE hash = $1 AND revoked_at IS NULL AND expires_at > $3 AND renewable";

/// Leash state in PostgreSQL.
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Connections for [`fast_commit`]'s one statement (generic plans).
    fast: PgPool,
    hasher: KeyedHasher,
    /// The audit head this replica's last batch leaves (once it commits),
    /// from which the next batch is chained in advance; the database checks
    /// it under the head's lock. `None` after any failure: the next commit
    /// takes the general path and learns the head again.
    head: Mutex<Option<(i64, Digest)>>,
    one_statement: AtomicU64,
    general: AtomicU64,
    stale: AtomicU64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// Connections for one-statement commits (one per writer, up to this).
const FAST_CONNECTIONS: u32 = 4;

impl PgStore {
    /// Connects to `url` (`postgres://…`), opening one connection to check
    /// that the database answers. Fails with [`StoreError::Unavailable`]
    /// within `opts.acquire_timeout` if it does not. Does not migrate.
    pub async fn connect(
        url: &str,
        opts: &PoolOptions,
        hasher: KeyedHasher,
    ) -> Result<Self, StoreError> {
        // The parse error may quote the URL, which may hold a password.
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::other("invalid PostgreSQL URL"))?;
        let ms = opts.statement_timeout.as_millis().max(1);
        let connect = connect.application_name("leash").options([
            ("statement_timeout", ms),
            ("lock_timeout", ms),
            ("idle_in_transaction_session_timeout", ms),
        ]);
        // Every commit waits for its WAL to reach the disk before it
        // returns, whatever the server's default (see [`flush`]).
        let connect = connect.options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let fast = PgPoolOptions::new()
            .max_connections(FAST_CONNECTIONS)
            .acquire_timeout(opts.acquire_timeout)
            .connect_lazy_with(connect.options([("plan_cache_mode", "force_generic_plan")]));
        Ok(Self {
            pool,
            fast,
            hasher,
            head: Mutex::new(None),
            one_statement: AtomicU64::new(0),
            general: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        })
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.fast.close().await;
        self.pool.close().await;
    }
}

/// The whole commit in one autocommit statement ([`COMMIT_BATCH`]), when
/// every unit only records, inserts a token or inserts a lease (and has no
/// consequences), and this replica knows the head its last commit left:
/// the events are chained in advance as if every insert applies, and the
/// database checks that under the head's lock. `None` (nothing written) when it does not apply or the
/// check failed (another replica committed meanwhile, or a token was
/// revoked); the general transaction then writes the batch.
async fn fast_commit(
    store: &PgStore,
    units: &[CommitUnit],
) -> Result<Option<Vec<Committed>>, StoreError> {
    let mut tokens = Vec::new();
    let mut leases = Vec::new();
    let mut outcomes = Vec::with_capacity(units.len());
    for u in units {
        // Exactly the units `commit::batchable` accepts.
        if !u.consequences.is_empty() {
            return Ok(None);
        }
        let own = match &u.mutation {
            None => Outcome::Recorded,
            Some(Mutation::InsertToken(t)) => {
                tokens.push(t);
                Outcome::Applied { affected: 1 }
            }
            Some(Mutation::InsertLease(l)) => {
                leases.push(l);
                Outcome::Applied { affected: 1 }
            }
            Some(_) => return Ok(None),
        };
        outcomes.push(UnitOutcome::only(own));
    }
    // Chained under the lock, and the prediction moved to this batch's end
    // before it is sent, so a batch taken meanwhile (a second writer)
    // chains from here. That one may still reach the head first and fail
    // the check: one writer is the default.
    let (events, out, (seq, mac), head) = {
        let mut predicted = store.head.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(head) = *predicted else {
            return Ok(None);
        };
        let (events, out, end) = commit::chain(&store.hasher, units, outcomes, head)?;
        *predicted = Some(end);
        (events, out, end, head)
    };
    let (n_leases, n_tokens) = (leases.len() as i64, tokens.len() as i64);
    let q = bind_leases(sqlx::query(&COMMIT_BATCH), LeaseColumns::of(&leases));
    let q = bind_tokens(q, TokenColumns::of(&tokens)?);
    let q = bind_events(q, EventColumns::of(&events)?);
    let q = q
        .bind(n_leases)
        .bind(n_tokens)
        .bind(head.0)
        .bind(&head.1.0[..])
        .bind(seq)
        .bind(&mac.0[..]);
    match q.execute(&store.fast).await {
        Ok(r) if r.rows_affected() == 1 => {
            store.one_statement.fetch_add(1, Ordering::Relaxed);
            Ok(Some(out))
        }
        Ok(_) => Err(StoreError::corrupt("audit_head", "missing")),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(BATCH_STALE) => {
            store.stale.fetch_add(1, Ordering::Relaxed);
            store.forget_head();
            Ok(None)
        }
        Err(e) => {
            store.forget_head();
            Err(e.into())
        }
    }
}

impl PgStore {
    /// After a failed one-statement commit: the head is unknown until the
    /// next general commit reads it.
    fn forget_head(&self) {
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Dialect for Postgres {
    const BEGIN_WRITE: Option<&'static str> = None;
    const COMMIT_HEAD: &'static str = LOCK_HEAD;
    const RENEW_LEASE: &'static str = RENEW_LEASE;
    const RENEW_TOKEN: &'static str = RENEW_TOKEN;
    const CLAIM_ALERTS: &'static str = detect::sql::CLAIM_ALERTS_SKIP_LOCKED;

    async fn insert_tokens(
        conn: &mut PgConnection,
        tokens: &[&TokenRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let c = TokenColumns::of(tokens)?;
        let inserted: Vec<Vec<u8>> = bind_tokens(sqlx::query(&INSERT_TOKENS), c)
            .try_map(|row: sqlx::postgres::PgRow| sqlx::Row::try_get(&row, 0))
            .fetch_all(conn)
            .await?;
        let inserted: HashSet<&[u8]> = inserted.iter().map(Vec::as_slice).collect();
        Ok(tokens
            .iter()
            .map(|t| inserted.contains(&t.hash.0[..]))
            .collect())
    }

    async fn lock_subject(conn: &mut PgConnection, s: &Subject) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(leash_subject_lock_key($1, $2, $3))")
            .bind(&s.workload)
            .bind(&s.issuer)
            .bind(&s.subject)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_leases(
        conn: &mut PgConnection,
        leases: &[&LeaseRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let c = LeaseColumns::of(leases);
        let inserted: Vec<Vec<u8>> = bind_leases(sqlx::query(&INSERT_LEASES), c)
            .try_map(|row: sqlx::postgres::PgRow| sqlx::Row::try_get(&row, 0))
            .fetch_all(conn)
            .await?;
        let inserted: HashSet<&[u8]> = inserted.iter().map(Vec::as_slice).collect();
        Ok(leases
            .iter()
            .map(|l| inserted.contains(&l.hash.0[..]))
            .collect())
    }

    async fn insert_events(
        conn: &mut PgConnection,
        events: &[ChainedEvent<'_>],
        (seq, mac): (i64, &Digest),
    ) -> Result<(), StoreError> {
        let c = EventColumns::of(events)?;
        bind_events(sqlx::query(&INSERT_EVENTS), c)
            .bind(seq)
            .bind(&mac.0[..])
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn announce(conn: &mut PgConnection, r: &Revocation) -> Result<(), StoreError> {
        // Delivered when (and only if) this transaction commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(feed::CHANNEL)
            .bind(r.payload())
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        read::ping(&self.pool).await
    }

    async fn commit_unflushed(&self, units: &[CommitUnit]) -> Result<Vec<Committed>, StoreError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(out) = fast_commit(self, units).await? {
            return Ok(out);
        }
        let (out, head) = commit::general(&self.pool, &self.hasher, units).await?;
        // What the next batch is chained from in advance.
        self.general.fetch_add(1, Ordering::Relaxed);
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = Some(head);
        Ok(out)
    }

    /// Nothing to do: every commit already waited for its WAL to reach the
    /// disk before it returned (`synchronous_commit = on` on every
    /// connection), so an acknowledged request survives a crash of the
    /// server.
    ///
    /// A deferred flush (commit with `synchronous_commit = off`, answer
    /// after a later flush) is not safe here. A transaction that only takes
    /// an xid and writes nothing (`SELECT pg_current_xact_id()`) commits
    /// without waiting for the disk, so it flushes nothing; and after a
    /// server restart, a flush on the new server cannot vouch for commits
    /// lost with the old one. `tests/tests/crash.rs` crashes the server to
    /// check this; measured, one synchronous statement per batch also
    /// served more reads than a commit followed by a real flush.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn commit_paths(&self) -> CommitPaths {
        CommitPaths {
            one_statement: self.one_statement.load(Ordering::Relaxed),
            general: self.general.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }

    async fn subscribe(&self) -> Result<Option<RevocationFeed>, StoreError> {
        Ok(Some(RevocationFeed::listen(&self.pool).await?))
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
        read::stats(&self.pool, now).await
    }
}

#[async_trait]
impl AuditLog for PgStore {
    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::audit_events(&self.pool, after_seq, limit).await
    }

    async fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError> {
        read::audit_head(&self.pool).await
    }
}

#[async_trait]
impl Leases for PgStore {
    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        read::token(&self.pool, hash).await
    }

    async fn lease(&self, hash: &Digest) -> Result<Option<LeaseRecord>, StoreError> {
        read::lease(&self.pool, hash).await
    }

    async fn reap(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        read::reap(&self.pool, before).await
    }
}

#[async_trait]
impl KvStore for PgStore {
    async fn kv_put(
        &self,
        mount: &str,
        path: &str,
        sealed: &[u8],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        kv::put(&self.pool, mount, path, sealed, now).await
    }

    async fn kv_get(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<KvVersion>, StoreError> {
        kv::get(&self.pool, mount, path, version).await
    }

    async fn kv_versions(&self, mount: &str, path: &str) -> Result<Vec<KvVersionMeta>, StoreError> {
        kv::versions(&self.pool, mount, path).await
    }

    async fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>, StoreError> {
        kv::list(&self.pool, mount, folder).await
    }
}
