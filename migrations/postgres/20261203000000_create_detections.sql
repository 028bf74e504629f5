-- Containment (detections, quarantines, alerts). Times are microseconds
-- since the Unix epoch (UTC), as everywhere.

-- Refusals the detectors count across replicas, one row per refusal that
-- matters to a detector, committed with its audit event. Allowed traffic
-- writes none. Reaped by age.
CREATE TABLE detection_signals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workload   TEXT   NOT NULL,
    issuer     TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    request_id TEXT   NOT NULL,
    operation  TEXT   NOT NULL,
    path       TEXT   NOT NULL,
    kind       TEXT   NOT NULL
);

CREATE INDEX detection_signals_subject_at_idx
    ON detection_signals (workload, issuer, subject, at);
CREATE INDEX detection_signals_at_brin_idx ON detection_signals USING brin (at);

-- Quarantines: a subject's logins are refused while one is active
-- (released_at IS NULL AND (until IS NULL OR until > now)). History is kept.
CREATE TABLE quarantines (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workload       TEXT   NOT NULL,
    issuer         TEXT   NOT NULL,
    subject        TEXT   NOT NULL,
    since          BIGINT NOT NULL,
    until          BIGINT,
    reason         TEXT   NOT NULL,
    quarantined_by TEXT   NOT NULL,
    detection_id   TEXT,
    released_at    BIGINT
);

CREATE INDEX quarantines_subject_idx ON quarantines (workload, issuer, subject);

-- What the detectors found. `seq` is the cursor operators page with.
CREATE TABLE detections (
    seq       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id        TEXT    NOT NULL UNIQUE,
    at        BIGINT  NOT NULL,
    detector  TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    workload  TEXT    NOT NULL,
    issuer    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    summary   TEXT    NOT NULL,
    evidence  TEXT    NOT NULL,
    responses TEXT    NOT NULL,
    dry_run   BOOLEAN NOT NULL,
    paths     TEXT    NOT NULL
);

CREATE INDEX detections_subject_idx ON detections (workload, issuer, subject, seq);

-- Alerts waiting to be delivered (the transactional outbox): queued in the
-- commit that records the detection, claimed by one replica at a time.
CREATE TABLE alert_outbox (
    delivery_id     TEXT    PRIMARY KEY,
    detection_id    TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    body            BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at BIGINT  NOT NULL,
    claimed_until   BIGINT,
    delivered_at    BIGINT,
    gave_up_at      BIGINT,
    last_status     INTEGER,
    last_error      TEXT
);

CREATE INDEX alert_outbox_due_idx ON alert_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- Every delivery attempt, for the operator.
CREATE TABLE alert_attempts (
    delivery_id TEXT    NOT NULL REFERENCES alert_outbox (delivery_id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL CHECK (attempt > 0),
    at          BIGINT  NOT NULL,
    status      INTEGER,
    error       TEXT,
    delivered   BOOLEAN NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Revocation by subject or by attestation (issuer and subject, any
-- workload) finds the tokens through this.
CREATE INDEX tokens_attestation_idx ON tokens (issuer, subject);

-- A quarantine and a concurrent login of the same subject must not both
-- win (a token issued while the quarantine commits, surviving it). Both
-- take a transaction-scoped advisory lock on the subject: the quarantine
-- (and a revocation by subject) exclusively, before it writes; each login
-- shared, in this function, which then checks for an active quarantine
-- with a fresh snapshot (a VOLATILE function's queries see what committed
-- before they run, not only what the calling statement saw). Either the
-- login commits first and the revocation, waiting for it, sees its token;
-- or the quarantine commits first and the login sees it. With `wait`
-- false (the one-statement commit) a held lock refuses instead of waiting,
-- which fails the statement's check and sends the batch the general way.
CREATE FUNCTION leash_subject_lock_key(w TEXT, i TEXT, s TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended(length(w) || ':' || w || length(i) || ':' || i || s, 0)
$$;

CREATE FUNCTION leash_login_open(w TEXT, i TEXT, s TEXT, at BIGINT, wait BOOLEAN)
RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock_shared(leash_subject_lock_key(w, i, s));
    ELSIF NOT pg_try_advisory_xact_lock_shared(leash_subject_lock_key(w, i, s)) THEN
        RETURN FALSE;
    END IF;
    RETURN NOT EXISTS (SELECT 1 FROM quarantines q
        WHERE q.workload = w AND q.issuer = i AND q.subject = s
        AND q.released_at IS NULL AND (q.until IS NULL OR q.until > at));
END;
$$;
