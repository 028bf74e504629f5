-- Leases on handed-out secrets. `hash` is the keyed digest of the lease id;
-- a lease is only usable with the token that owns it.
CREATE TABLE leases (
    hash           BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    token_hash     BLOB    NOT NULL REFERENCES tokens (hash) ON DELETE CASCADE,
    workload       TEXT    NOT NULL,
    path           TEXT    NOT NULL,
    lease_path     TEXT    NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_expires_at INTEGER NOT NULL,
    ttl_secs       INTEGER NOT NULL,
    renewable      INTEGER NOT NULL CHECK (renewable IN (0, 1)),
    last_renewal   INTEGER,
    revoked_at     INTEGER
) STRICT;

CREATE INDEX leases_token_hash_idx ON leases (token_hash);
CREATE INDEX leases_expires_at_idx ON leases (expires_at);
CREATE INDEX leases_lease_path_idx ON leases (lease_path);
CREATE INDEX leases_workload_idx ON leases (workload);
CREATE INDEX leases_revoked_at_idx ON leases (revoked_at) WHERE revoked_at IS NOT NULL;
