//! sqlx's query API over either database, for the code both stores share.
//!
//! Why this file exists: sqlx's queries are generic over `DB: Database`,
//! but each generic use needs bounds on types other than `DB` (`i64:
//! Encode<'q, DB>`, `TokenRow: FromRow<'r, DB::Row>`, `&mut DB::Connection:
//! Executor`). Rust does not imply such bounds from a trait bound on `DB`
//! (rust-lang/rust#20671), so a function bounded by `DB: Dialect` alone
//! could not call `sqlx::query(..).bind(..)`, and every shared function
//! would repeat a dozen where-clauses. Here each of those bounds becomes a
//! bound on `DB` itself — [`Binds`], [`Decodes`], [`Runs`], implemented for
//! every database that has what they need — which
//! [`Dialect`](crate::dialect::Dialect) lists once, as supertraits. A
//! function bounded by `DB: Dialect` then writes `DB::query(SQL).bind(..)
//! .execute(..)` exactly as it would `sqlx::query(..)`.
//!
//! Owns: [`Runs::query`] and [`Statement`]; where a statement runs
//! ([`On`]).
//! Must never happen: a statement built from values ([`Runs::query`] takes
//! only a `&'static str`); a branch on the database in here.

use std::future::Future;
use std::pin::Pin;

use sqlx::query::Query;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::StoreError;

/// A future running a statement, boxed: an opaque future per method
/// (`impl Future + Send`) here trips rust-lang/rust#100013 ("lifetime bound
/// not satisfied", "`Send` is not general enough") in every `Store` method
/// that awaits it, so [`Runs`] returns this (as sqlx's own executors do).
type BoxFuture<'e, T> = Pin<Box<dyn Future<Output = T> + Send + 'e>>;

/// A sqlx query on `DB` with its bound arguments.
type SqlxQuery<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// `DB` can bind a `T` as a parameter (sqlx's `T: Encode<'q, DB> + Type<DB>`).
pub(crate) trait Binds<'q, T>: Database {
    /// `q.bind(value)`.
    fn bind(q: SqlxQuery<'q, Self>, value: T) -> SqlxQuery<'q, Self>;
}

impl<'q, DB, T> Binds<'q, T> for DB
where
    DB: Database,
    T: 'q + Encode<'q, DB> + Type<DB>,
{
    fn bind(q: SqlxQuery<'q, Self>, value: T) -> SqlxQuery<'q, Self> {
        q.bind(value)
    }
}

/// `DB` can decode an `R` from a row (sqlx's `R: FromRow<'r, DB::Row>`;
/// a one-column value is read as the tuple `(T,)`).
pub(crate) trait Decodes<R>: Database {
    /// `R::from_row(row)`.
    fn decode(row: &Self::Row) -> Result<R, sqlx::Error>;
}

impl<DB, R> Decodes<R> for DB
where
    DB: Database,
    R: for<'r> FromRow<'r, DB::Row>,
{
    fn decode(row: &Self::Row) -> Result<R, sqlx::Error> {
        R::from_row(row)
    }
}

/// How many rows a statement changed. An inherent method of each
/// database's result type in sqlx, so named here once per database.
pub(crate) trait RowsAffected {
    /// The rows the statement inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Where a statement runs: on a connection (inside a transaction), or on
/// any connection of a pool (a read on its own).
pub(crate) enum On<'e, DB: Database> {
    /// A connection, typically `&mut *tx`.
    Conn(&'e mut DB::Connection),
    /// A pool.
    Pool(&'e Pool<DB>),
}

/// What [`Statement`]'s methods take as the place to run: `&mut *tx` (a
/// connection) or `&pool`.
pub(crate) trait IntoOn<'e, DB: Database> {
    /// This place.
    fn into_on(self) -> On<'e, DB>;
}

impl<'e, DB: Database> IntoOn<'e, DB> for &'e mut DB::Connection {
    fn into_on(self) -> On<'e, DB> {
        On::Conn(self)
    }
}

impl<'e, DB: Database> IntoOn<'e, DB> for &'e Pool<DB> {
    fn into_on(self) -> On<'e, DB> {
        On::Pool(self)
    }
}

/// `DB` can run a statement on a connection or a pool (sqlx's `&mut
/// DB::Connection: Executor` and `DB::Arguments: IntoArguments`).
pub(crate) trait Runs: Database {
    /// The statement `sql`, with no parameters bound yet: `sqlx::query`.
    fn query<'q>(sql: &'static str) -> Statement<'q, Self> {
        Statement(sqlx::query(sql))
    }

    /// Runs `q`; the rows it changed.
    fn execute<'e, 'q: 'e>(
        q: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> BoxFuture<'e, Result<u64, sqlx::Error>>;

    /// Runs `q`; its first row, if any.
    fn fetch_optional<'e, 'q: 'e>(
        q: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>>;

    /// Runs `q`; all its rows.
    fn fetch_all<'e, 'q: 'e>(
        q: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> BoxFuture<'e, Result<Vec<Self::Row>, sqlx::Error>>;
}

impl<DB> Runs for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    DB::QueryResult: RowsAffected,
{
    fn execute<'e, 'q: 'e>(
        q: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> BoxFuture<'e, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let done = match on {
                On::Conn(c) => q.execute(c).await?,
                On::Pool(p) => q.execute(p).await?,
            };
            Ok(done.rows_affected())
        })
    }

    fn fetch_optional<'e, 'q: 'e>(
        q: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>> {
        Box::pin(async move {
            match on {
                On::Conn(c) => q.fetch_optional(c).await,
                On::Pool(p) => q.fetch_optional(p).await,
            }
        })
    }

    fn fetch_all<'e, 'q: 'e>(
        q: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> BoxFuture<'e, Result<Vec<Self::Row>, sqlx::Error>> {
        Box::pin(async move {
            match on {
                On::Conn(c) => q.fetch_all(c).await,
                On::Pool(p) => q.fetch_all(p).await,
            }
        })
    }
}

/// One statement and its parameters, on either database: `sqlx::query`
/// with the bounds carried by `DB`.
#[must_use = "a statement does nothing until it is run"]
pub(crate) struct Statement<'q, DB: Database>(SqlxQuery<'q, DB>);

impl<'q, DB: Runs> Statement<'q, DB> {
    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub(crate) fn bind<T>(self, value: T) -> Self
    where
        DB: Binds<'q, T>,
    {
        Statement(DB::bind(self.0, value))
    }

    /// Runs it; the rows it changed.
    pub(crate) async fn execute<'e>(self, on: impl IntoOn<'e, DB>) -> Result<u64, StoreError>
    where
        'q: 'e,
    {
        Ok(DB::execute(self.0, on.into_on()).await?)
    }

    /// Runs it; its first row as an `R`, if there is one.
    pub(crate) async fn fetch_optional<'e, R>(
        self,
        on: impl IntoOn<'e, DB>,
    ) -> Result<Option<R>, StoreError>
    where
        'q: 'e,
        DB: Decodes<R>,
    {
        let row = DB::fetch_optional(self.0, on.into_on()).await?;
        Ok(row.map(|r| DB::decode(&r)).transpose()?)
    }

    /// Runs it; its first row as an `R` (a missing row is an error).
    pub(crate) async fn fetch_one<'e, R>(self, on: impl IntoOn<'e, DB>) -> Result<R, StoreError>
    where
        'q: 'e,
        DB: Decodes<R>,
    {
        self.fetch_optional(on)
            .await?
            .ok_or_else(|| StoreError::from(sqlx::Error::RowNotFound))
    }

    /// Runs it; every row as an `R`.
    pub(crate) async fn fetch_all<'e, R>(
        self,
        on: impl IntoOn<'e, DB>,
    ) -> Result<Vec<R>, StoreError>
    where
        'q: 'e,
        DB: Decodes<R>,
    {
        let rows = DB::fetch_all(self.0, on.into_on()).await?;
        Ok(rows.iter().map(DB::decode).collect::<Result<_, _>>()?)
    }
}
