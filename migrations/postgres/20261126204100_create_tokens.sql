-- Broker tokens. The token itself is never stored: `hash` is its keyed
-- digest. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE tokens (
    hash           BYTEA   PRIMARY KEY CHECK (octet_length(hash) = 32),
    accessor       TEXT    NOT NULL UNIQUE,
    workload       TEXT    NOT NULL,
    auth_path      TEXT    NOT NULL,
    issuer         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    meta           TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    max_expires_at BIGINT  NOT NULL,
    ttl_secs       BIGINT  NOT NULL,
    renewable      BOOLEAN NOT NULL,
    revoked_at     BIGINT
);

CREATE INDEX tokens_workload_idx ON tokens (workload);
CREATE INDEX tokens_expires_at_idx ON tokens (expires_at);
CREATE INDEX tokens_revoked_at_idx ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
