-- Leases on handed-out secrets. `hash` is the keyed digest of the lease id;
-- a lease is only usable with the token that owns it.
CREATE TABLE leases (
    hash           BYTEA   PRIMARY KEY CHECK (octet_length(hash) = 32),
    token_hash     BYTEA   NOT NULL REFERENCES tokens (hash) ON DELETE CASCADE,
    workload       TEXT    NOT NULL,
    path           TEXT    NOT NULL,
    lease_path     TEXT    NOT NULL,
    issued_at      BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    max_expires_at BIGINT  NOT NULL,
    ttl_secs       BIGINT  NOT NULL,
    renewable      BOOLEAN NOT NULL,
    last_renewal   BIGINT,
    revoked_at     BIGINT
);

CREATE INDEX leases_token_hash_idx ON leases (token_hash);
CREATE INDEX leases_expires_at_idx ON leases (expires_at);
CREATE INDEX leases_lease_path_idx ON leases (lease_path);
CREATE INDEX leases_workload_idx ON leases (workload);
CREATE INDEX leases_revoked_at_idx ON leases (revoked_at) WHERE revoked_at IS NOT NULL;
