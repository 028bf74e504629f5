//! PostgreSQL's multi-row writes: each row type as one array parameter
//! per column (`UNNEST`), the statement text for that, and the binding of
//! the column arrays (`crate::codec`'s `*Columns`).
//!
//! Owns: the column lists and their array types, in the tables' order.
//! Must never happen: a column list out of step with its binding (each
//! `bind_*` binds exactly its list, in order), or a statement built from
//! values (only table and column names, all constants, are formatted in).

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use crate::codec::{EventColumns, LeaseColumns, TokenColumns};

/// The columns of a token row, with the array type each is sent as.
pub(crate) const TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("hash", "bytea"),
    ("accessor", "text"),
    ("workload", "text"),
    ("auth_path", "text"),
    ("issuer", "text"),
    ("subject", "text"),
    ("source", "text"),
    ("meta", "text"),
    ("created_at", "int8"),
    ("expires_at", "int8"),
    ("max_expires_at", "int8"),
    ("ttl_secs", "int8"),
    ("renewable", "bool"),
    ("revoked_at", "int8"),
];

/// The columns of a lease row.
pub(crate) const LEASE_COLUMNS: &[(&str, &str)] = &[
    ("hash", "bytea"),
    ("token_hash", "bytea"),
    ("workload", "text"),
    ("path", "text"),
    ("lease_path", "text"),
    ("issued_at", "int8"),
    ("expires_at", "int8"),
    ("max_expires_at", "int8"),
    ("ttl_secs", "int8"),
    ("renewable", "bool"),
    ("last_renewal", "int8"),
    ("revoked_at", "int8"),
];

/// The columns of an audit row.
pub(crate) const EVENT_COLUMNS: &[(&str, &str)] = &[
    ("seq", "int8"),
    ("request_id", "text"),
    ("time", "int8"),
    ("identity", "text"),
    ("workload", "text"),
    ("peer", "text"),
    ("operation", "text"),
    ("method", "text"),
    ("path", "text"),
    ("decision", "text"),
    ("status", "int4"),
    ("reason", "text"),
    ("lease_ref", "text"),
    ("attestation", "text"),
    ("mac", "bytea"),
];

/// `INSERT INTO table (c1, …) SELECT u.* FROM UNNEST($first::t1[], …) AS
/// u(c1, …)`: many rows at once, one array parameter per column, numbered
/// from `$first`.
pub(crate) fn insert_unnest(table: &str, columns: &[(&str, &str)], first: usize) -> String {
    let names = columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| format!("${}::{t}[]", first + i))
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO {table} ({names}) SELECT u.* FROM UNNEST({arrays}) AS u({names})")
}

pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

pub(crate) fn bind_tokens(q: PgQuery<'_>, c: TokenColumns) -> PgQuery<'_> {
    q.bind(c.hash)
        .bind(c.accessor)
        .bind(c.workload)
        .bind(c.auth_path)
        .bind(c.issuer)
        .bind(c.subject)
        .bind(c.source)
        .bind(c.meta)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.max_expires_at)
        .bind(c.ttl_secs)
        .bind(c.renewable)
        .bind(c.revoked_at)
}

pub(crate) fn bind_leases(q: PgQuery<'_>, c: LeaseColumns) -> PgQuery<'_> {
    q.bind(c.hash)
        .bind(c.token_hash)
        .bind(c.workload)
        .bind(c.path)
        .bind(c.lease_path)
        .bind(c.issued_at)
        .bind(c.expires_at)
        .bind(c.max_expires_at)
        .bind(c.ttl_secs)
        .bind(c.renewable)
        .bind(c.last_renewal)
        .bind(c.revoked_at)
}

pub(crate) fn bind_events<'q>(q: PgQuery<'q>, c: EventColumns<'q>) -> PgQuery<'q> {
    q.bind(c.seq)
        .bind(c.request_id)
        .bind(c.time)
        .bind(c.identity)
        .bind(c.workload)
        .bind(c.peer)
        .bind(c.operation)
        .bind(c.method)
        .bind(c.path)
        .bind(c.decision)
        .bind(c.status)
        .bind(c.reason)
        .bind(c.lease_ref)
        .bind(c.attestation)
        .bind(c.mac)
}
