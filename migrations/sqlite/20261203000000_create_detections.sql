-- Containment (detections, quarantines, alerts). Times are microseconds
-- since the Unix epoch (UTC), as everywhere. One writer holds the file, so
-- a login's quarantine check in its insert cannot race a quarantine.

-- Refusals the detectors count, one row per refusal that matters to a
-- detector, committed with its audit event. Reaped by age.
CREATE TABLE detection_signals (
    id         INTEGER PRIMARY KEY,
    workload   TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    request_id TEXT    NOT NULL,
    operation  TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    kind       TEXT    NOT NULL
) STRICT;

CREATE INDEX detection_signals_subject_at_idx
    ON detection_signals (workload, issuer, subject, at);
CREATE INDEX detection_signals_at_idx ON detection_signals (at);

-- Quarantines: a subject's logins are refused while one is active
-- (released_at IS NULL AND (until IS NULL OR until > now)). History is kept.
CREATE TABLE quarantines (
    id             INTEGER PRIMARY KEY,
    workload       TEXT    NOT NULL,
    issuer         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    since          INTEGER NOT NULL,
    until          INTEGER,
    reason         TEXT    NOT NULL,
    quarantined_by TEXT    NOT NULL,
    detection_id   TEXT,
    released_at    INTEGER
) STRICT;

CREATE INDEX quarantines_subject_idx ON quarantines (workload, issuer, subject);

-- What the detectors found. `seq` is the cursor operators page with.
CREATE TABLE detections (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT    NOT NULL UNIQUE,
    at        INTEGER NOT NULL,
    detector  TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    workload  TEXT    NOT NULL,
    issuer    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    summary   TEXT    NOT NULL,
    evidence  TEXT    NOT NULL,
    responses TEXT    NOT NULL,
    dry_run   INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    paths     TEXT    NOT NULL
) STRICT;

CREATE INDEX detections_subject_idx ON detections (workload, issuer, subject, seq);

-- Alerts waiting to be delivered (the transactional outbox).
CREATE TABLE alert_outbox (
    delivery_id     TEXT    PRIMARY KEY,
    detection_id    TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    claimed_until   INTEGER,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,
    last_status     INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX alert_outbox_due_idx ON alert_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- Every delivery attempt, for the operator.
CREATE TABLE alert_attempts (
    delivery_id TEXT    NOT NULL REFERENCES alert_outbox (delivery_id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL CHECK (attempt > 0),
    at          INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    delivered   INTEGER NOT NULL CHECK (delivered IN (0, 1)),
    PRIMARY KEY (delivery_id, attempt)
) STRICT;

-- Revocation by subject or by attestation finds the tokens through this.
CREATE INDEX tokens_attestation_idx ON tokens (issuer, subject);
