-- The audit log: append-only, hash-chained. `audit_head` is the single row
-- holding the last seq and MAC; seq 0 with a zero MAC means "no event yet".
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY CHECK (seq > 0),
    request_id  TEXT    NOT NULL,
    time        INTEGER NOT NULL,
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
    mac         BLOB    NOT NULL CHECK (length(mac) = 32)
) STRICT;

CREATE INDEX audit_events_workload_time_idx ON audit_events (workload, time);
CREATE INDEX audit_events_identity_time_idx ON audit_events (identity, time);
CREATE INDEX audit_events_time_idx ON audit_events (time);

CREATE TABLE audit_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 0),
    mac BLOB    NOT NULL CHECK (length(mac) = 32)
) STRICT;

INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, zeroblob(32));

-- Append-only: rows may be inserted, never changed or removed. Someone with
-- the file can drop these triggers; the hash chain still shows the change.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

-- The head only moves forward and is never removed.
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
WHEN NEW.id <> OLD.id OR NEW.seq < OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'audit_head only moves forward');
END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_head only moves forward');
END;
