-- The audit log: append-only, hash-chained. `audit_head` is the single row
-- every commit locks (SELECT ... FOR UPDATE) so that all replicas sharing
-- this database write one gap-free chain. seq 0 with a zero MAC means
-- "no event yet".
CREATE TABLE audit_events (
    seq         BIGINT  PRIMARY KEY CHECK (seq > 0),
    request_id  TEXT    NOT NULL,
    time        BIGINT  NOT NULL,
    identity    TEXT,
    workload    TEXT,
    peer        TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    decision    TEXT    NOT NULL CHECK (decision IN ('allowed', 'denied', 'error')),
    status      INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    lease_ref   TEXT,
    attestation TEXT    NOT NULL,
    mac         BYTEA   NOT NULL CHECK (octet_length(mac) = 32)
);

CREATE INDEX audit_events_workload_time_idx ON audit_events (workload, time);
CREATE INDEX audit_events_identity_time_idx ON audit_events (identity, time);
CREATE INDEX audit_events_time_idx ON audit_events (time);

CREATE TABLE audit_head (
    id  SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT   NOT NULL CHECK (seq >= 0),
    mac BYTEA    NOT NULL CHECK (octet_length(mac) = 32)
);

INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Append-only: rows may be inserted, never changed or removed. Tampering
-- needs a superuser who disables triggers (session_replication_role), and
-- the hash chain still shows it.
CREATE FUNCTION leash_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION leash_audit_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION leash_audit_append_only();

-- The head only moves forward and is never removed.
CREATE FUNCTION leash_audit_head_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq >= OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_head only moves forward';
END;
$$;

CREATE TRIGGER audit_head_forward
    BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION leash_audit_head_forward();

CREATE TRIGGER audit_head_no_truncate
    BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION leash_audit_head_forward();
