//! The store's error type and the one place database errors are classified.
//!
//! Owns: [`StoreError`] and the mapping from `sqlx` errors to it.
//! Must never happen: a `Display` string that carries SQL text, a bound
//! value, a connection URL or a database message. Those stay in the source
//! chain, which the broker logs and never sends to a client.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store operation failed. `Display` is safe to show a client; the
/// detail is in [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or cannot answer in time: connect
    /// failed, the pool timed out, I/O failed, a statement timed out, the
    /// disk is full, the server is shutting down or read-only. The broker
    /// answers 503 and hands nothing out.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// A write collided with existing data (a duplicate key) or with a
    /// concurrent transaction (serialization failure, deadlock).
    #[error("the store refused a conflicting write")]
    Conflict(#[source] BoxError),
    /// A stored row failed to decode (a bad time, digest, JSON or enum).
    #[error("a stored {what} row is corrupt")]
    Corrupt {
        /// The table the row came from.
        what: &'static str,
        /// What failed, when known.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else: configuration, a failed migration, a bug.
    #[error("store error")]
    Other(#[source] BoxError),
}

impl StoreError {
    /// A corrupt row in `what`, described by `detail` (no stored values).
    pub(crate) fn corrupt(what: &'static str, detail: &'static str) -> Self {
        StoreError::Corrupt {
            what,
            source: Some(Box::new(Detail(detail))),
        }
    }

    /// A configuration or usage error described by `detail`.
    pub(crate) fn other(detail: &'static str) -> Self {
        StoreError::Other(Box::new(Detail(detail)))
    }

    /// Whether the broker should answer "service unavailable".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A fixed description, used as a source where there is no lower error.
#[derive(Debug)]
pub(crate) struct Detail(pub(crate) &'static str);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Detail {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        classify(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => match classify(inner) {
                StoreError::Unavailable(s) => StoreError::Unavailable(s),
                other => StoreError::Other(Box::new(other)),
            },
            other => StoreError::Other(Box::new(other)),
        }
    }
}

enum Class {
    Unavailable,
    Conflict,
    Corrupt,
    Other,
}

fn classify(e: sqlx::Error) -> StoreError {
    let class = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Class::Unavailable,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => Class::Corrupt,
        sqlx::Error::Database(db) => classify_db(db.as_ref()),
        _ => Class::Other,
    };
    match class {
        Class::Unavailable => StoreError::Unavailable(Box::new(e)),
        Class::Conflict => StoreError::Conflict(Box::new(e)),
        Class::Corrupt => StoreError::Corrupt {
            what: "database",
            source: Some(Box::new(e)),
        },
        Class::Other => StoreError::Other(Box::new(e)),
    }
}

fn classify_db(db: &dyn sqlx::error::DatabaseError) -> Class {
    match db.kind() {
        sqlx::error::ErrorKind::UniqueViolation | sqlx::error::ErrorKind::ForeignKeyViolation => {
            return Class::Conflict;
        }
        sqlx::error::ErrorKind::NotNullViolation | sqlx::error::ErrorKind::CheckViolation => {
            return Class::Other;
        }
        _ => {}
    }
    let Some(code) = db.code() else {
        return Class::Other;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        classify_sqlite(&code)
    } else {
        classify_pg(&code)
    }
}

/// PostgreSQL SQLSTATE codes.
fn classify_pg(code: &str) -> Class {
    match code {
        // serialization_failure, deadlock_detected
        "40001" | "40P01" => Class::Conflict,
        // query_canceled (statement_timeout), lock_not_available,
        // admin/crash shutdown, cannot_connect_now, idle-in-transaction
        // timeout, read_only_sql_transaction (a standby after failover)
        "57014" | "55P03" | "57P01" | "57P02" | "57P03" | "25P03" | "25006" => Class::Unavailable,
        // connection_exception, insufficient_resources (disk full, out of
        // memory, too many connections), system_error (I/O)
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
            Class::Unavailable
        }
        _ => Class::Other,
    }
}

/// SQLite extended result codes (the primary code is the low byte).
fn classify_sqlite(code: &str) -> Class {
    let Ok(ext) = code.parse::<i32>() else {
        return Class::Other;
    };
    match ext & 0xff {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_IOERR,
        // SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL, SQLITE_READONLY
        5 | 6 | 7 | 10 | 13 | 14 | 15 | 8 => Class::Unavailable,
        // SQLITE_CORRUPT, SQLITE_NOTADB
        11 | 26 => Class::Corrupt,
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_carries_the_source() {
        let e = StoreError::Other(Box::new(Detail("SELECT secret FROM x")));
        assert_eq!(e.to_string(), "store error");
        let e = StoreError::corrupt("tokens", "bad time");
        assert_eq!(e.to_string(), "a stored tokens row is corrupt");
        let e: StoreError = sqlx::Error::PoolTimedOut.into();
        assert!(e.is_unavailable());
        assert_eq!(e.to_string(), "the store is unavailable");
    }

    #[test]
    fn sqlstate_classes() {
        assert!(matches!(classify_pg("57014"), Class::Unavailable));
        assert!(matches!(classify_pg("08006"), Class::Unavailable));
        assert!(matches!(classify_pg("53100"), Class::Unavailable));
        assert!(matches!(classify_pg("40P01"), Class::Conflict));
        assert!(matches!(classify_pg("42601"), Class::Other));
        assert!(matches!(classify_sqlite("5"), Class::Unavailable));
        assert!(matches!(classify_sqlite("517"), Class::Unavailable));
        assert!(matches!(classify_sqlite("11"), Class::Corrupt));
        assert!(matches!(classify_sqlite("1"), Class::Other));
    }
}
