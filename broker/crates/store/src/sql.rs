//! The SQL both databases share. Every value is a bind parameter (`$n`,
//! which sqlx also numbers for SQLite); nothing here is built from values.
//!
//! Owns: the statements whose text is the same in PostgreSQL and SQLite.
//! Must never happen: a prefix matched with `LIKE` (a `%` or `_` in a
//! prefix would become a wildcard), or a statement assembled at run time.

pub(crate) const SELECT_TOKEN: &str = "SELECT hash, accessor, workload, auth_path, issuer, \
     subject, source, meta, created_at, expires_at, max_expires_at, ttl_secs, renewable, \
     revoked_at FROM tokens WHERE hash = $1";

pub(crate) const SELECT_LEASE: &str = "SELECT hash, token_hash, workload, path, lease_path, \
     issued_at, expires_at, max_expires_at, ttl_secs, renewable, last_renewal, revoked_at \
     FROM leases WHERE hash = $1";

/// A token, unless its subject (`$3`, `$5`, `$6`) has a quarantine in
/// force at its `created_at` (`$9`). SQLite only: PostgreSQL also locks
/// the subject (see its store).
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO tokens (hash, accessor, workload, auth_path, \
     issuer, subject, source, meta, created_at, expires_at, max_expires_at, ttl_secs, renewable, \
     revoked_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 \
     WHERE NOT EXISTS (SELECT 1 FROM quarantines q WHERE q.workload = $3 AND q.issuer = $5 \
     AND q.subject = $6 AND q.released_at IS NULL AND (q.until IS NULL OR q.until > $9))";

pub(crate) const INSERT_EVENT: &str = "INSERT INTO audit_events (seq, request_id, time, \
     identity, workload, peer, operation, method, path, decision, status, reason, lease_ref, \
     attestation, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

pub(crate) const UPDATE_HEAD: &str = "UPDATE audit_head SET seq = $1, mac = $2 WHERE id = 1";

pub(crate) const SELECT_HEAD: &str = "SELECT seq, mac FROM audit_head WHERE id = 1";

/// `$1` the lease, `$2` the time.
pub(crate) const REVOKE_LEASE: &str =
    "UPDATE leases SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL";

/// `$1` the lease, `$2` the time, `$3` the owner.
pub(crate) const REVOKE_LEASE_OWNED: &str = "UPDATE leases SET revoked_at = $2 \
     WHERE hash = $1 AND revoked_at IS NULL AND token_hash = $3";

/// `$1` the literal prefix, `$2` the time.
// A lease id is `<lease_path>/<suffix>`: a prefix is matched against
// `<lease_path>/`, so `secret/data/app/db/` (Vault clients add the slash)
// matches the leases of `secret/data/app/db`, as it matches their ids.
pub(crate) const REVOKE_PREFIX: &str = "UPDATE leases SET revoked_at = $2 \
     WHERE substr(lease_path || '/', 1, length($1)) = $1 AND revoked_at IS NULL";

/// `$1` the literal prefix, `$2` the time, `$3` the owner.
pub(crate) const REVOKE_PREFIX_OWNED: &str = "UPDATE leases SET revoked_at = $2 \
     WHERE substr(lease_path || '/', 1, length($1)) = $1 AND revoked_at IS NULL \
     AND token_hash = $3";

/// `$1` the token, `$2` the time.
pub(crate) const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL";

/// `$1` the token, `$2` the time.
pub(crate) const REVOKE_TOKEN_LEASES: &str =
    "UPDATE leases SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL";

/// `$1` the token.
pub(crate) const TOKEN_RENEW_PROBE: &str =
    "SELECT revoked_at, expires_at, renewable FROM tokens WHERE hash = $1";

/// `$1` the cut-off, `$2` the batch size.
pub(crate) const REAP_LEASES: &str = "DELETE FROM leases WHERE hash IN (SELECT l.hash FROM \
     leases l WHERE l.expires_at < $1 OR l.revoked_at < $1 OR l.token_hash IN (SELECT t.hash \
     FROM tokens t WHERE t.expires_at < $1 OR t.revoked_at < $1) LIMIT $2)";

/// `$1` the cut-off, `$2` the batch size.
pub(crate) const REAP_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens \
     WHERE expires_at < $1 OR revoked_at < $1 LIMIT $2)";

/// `$1` the time.
pub(crate) const STATS: &str = "SELECT \
     (SELECT count(*) FROM tokens WHERE revoked_at IS NULL AND expires_at > $1), \
     (SELECT count(*) FROM leases WHERE revoked_at IS NULL AND expires_at > $1), \
     (SELECT seq FROM audit_head WHERE id = 1)";

/// `$1` the last seq seen, `$2` the limit.
pub(crate) const SELECT_EVENTS: &str = "SELECT seq, request_id, time, identity, workload, peer, \
     operation, method, path, decision, status, reason, lease_ref, attestation, mac \
     FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2";

/// `$1` mount, `$2` path, `$3` time. Returns the new version.
pub(crate) const KV_BUMP: &str = "INSERT INTO kv_paths (mount, path, current_version, updated_at) \
     VALUES ($1, $2, 1, $3) ON CONFLICT (mount, path) DO UPDATE \
     SET current_version = kv_paths.current_version + 1, updated_at = excluded.updated_at \
     RETURNING current_version";

/// `$1` mount, `$2` path, `$3` time. Version 1 of a new path; no row when
/// the path exists.
pub(crate) const KV_CREATE: &str = "INSERT INTO kv_paths (mount, path, current_version, updated_at) \
     VALUES ($1, $2, 1, $3) ON CONFLICT (mount, path) DO NOTHING RETURNING current_version";

/// `$1` mount, `$2` path, `$3` time. The next version of an existing path;
/// no row when it does not exist.
pub(crate) const KV_UPDATE: &str = "UPDATE kv_paths SET current_version = current_version + 1, \
     updated_at = $3 WHERE mount = $1 AND path = $2 RETURNING current_version";

/// `$1` mount, `$2` path, `$3` time, `$4` the version the writer saw. No row
/// when the current version is another.
pub(crate) const KV_UPDATE_CAS: &str = "UPDATE kv_paths SET current_version = current_version + 1, \
     updated_at = $3 WHERE mount = $1 AND path = $2 AND current_version = $4 \
     RETURNING current_version";

/// `$1` mount, `$2` path, `$3` time. Soft-deletes the current version.
pub(crate) const KV_DELETE_LATEST: &str = "UPDATE kv_versions SET deleted_at = $3 \
     WHERE mount = $1 AND path = $2 AND deleted_at IS NULL AND NOT destroyed \
     AND version = (SELECT current_version FROM kv_paths WHERE mount = $1 AND path = $2)";

/// `$1` mount, `$2` path, `$3` version, `$4` time, `$5` sealed value.
pub(crate) const KV_INSERT: &str = "INSERT INTO kv_versions (mount, path, version, created_at, \
     sealed) VALUES ($1, $2, $3, $4, $5)";

/// `$1` mount, `$2` path.
pub(crate) const KV_LATEST: &str = "SELECT version, created_at, deleted_at, destroyed, sealed \
     FROM kv_versions WHERE mount = $1 AND path = $2 ORDER BY version DESC LIMIT 1";

/// `$1` mount, `$2` path, `$3` version.
pub(crate) const KV_VERSION: &str = "SELECT version, created_at, deleted_at, destroyed, sealed \
     FROM kv_versions WHERE mount = $1 AND path = $2 AND version = $3";

/// `$1` mount, `$2` path.
pub(crate) const KV_VERSIONS: &str = "SELECT version, created_at, deleted_at, destroyed \
     FROM kv_versions WHERE mount = $1 AND path = $2 ORDER BY version";

/// `$1` mount, `$2` the literal folder prefix.
pub(crate) const KV_LIST: &str =
    "SELECT path FROM kv_paths WHERE mount = $1 AND substr(path, 1, length($2)) = $2";

pub(crate) const LIVE_TOKENS_BY_ACCESSOR: &str =
    "SELECT hash FROM tokens WHERE accessor = $1 AND revoked_at IS NULL";

pub(crate) const REVOKE_TOKENS_BY_ACCESSOR: &str =
    "UPDATE tokens SET revoked_at = $2 WHERE accessor = $1 AND revoked_at IS NULL";

pub(crate) const REVOKE_LEASES_BY_ACCESSOR: &str = "UPDATE leases SET revoked_at = $2 \
     WHERE revoked_at IS NULL AND token_hash IN (SELECT hash FROM tokens WHERE accessor = $1)";

pub(crate) const REVOKE_TOKENS_BY_WORKLOAD: &str =
    "UPDATE tokens SET revoked_at = $2 WHERE workload = $1 AND revoked_at IS NULL";

pub(crate) const REVOKE_LEASES_BY_WORKLOAD: &str = "UPDATE leases SET revoked_at = $2 \
     WHERE revoked_at IS NULL AND token_hash IN (SELECT hash FROM tokens WHERE workload = $1)";

/// `$1` workload, `$2` issuer, `$3` subject, `$4` the time.
pub(crate) const REVOKE_TOKENS_BY_SUBJECT: &str = "UPDATE tokens SET revoked_at = $4 \
     WHERE workload = $1 AND issuer = $2 AND subject = $3 AND revoked_at IS NULL";

/// `$1` workload, `$2` issuer, `$3` subject, `$4` the time.
pub(crate) const REVOKE_LEASES_BY_SUBJECT: &str = "UPDATE leases SET revoked_at = $4 \
     WHERE revoked_at IS NULL AND token_hash IN (SELECT hash FROM tokens \
     WHERE workload = $1 AND issuer = $2 AND subject = $3)";

/// `$1` issuer, `$2` subject, `$3` the time.
pub(crate) const REVOKE_TOKENS_BY_ATTESTATION: &str = "UPDATE tokens SET revoked_at = $3 \
     WHERE issuer = $1 AND subject = $2 AND revoked_at IS NULL";

/// `$1` issuer, `$2` subject, `$3` the time.
pub(crate) const REVOKE_LEASES_BY_ATTESTATION: &str = "UPDATE leases SET revoked_at = $3 \
     WHERE revoked_at IS NULL AND token_hash IN (SELECT hash FROM tokens \
     WHERE issuer = $1 AND subject = $2)";
