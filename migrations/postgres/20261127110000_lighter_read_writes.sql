-- Every leased read writes one lease row and one audit row; every index
-- and row trigger on those tables is paid on every read.
--
-- audit_events: Leash reads its log by seq (export, verification), through
-- the primary key. The three btree indexes cost each read three index
-- inserts. What stays indexed:
-- - refusals, by identity and time (a partial index: honest traffic is
--   allowed traffic and pays nothing; the detectors that count an
--   identity's refusals across replicas read it);
-- - time, with a BRIN index (a few pages, near free to maintain: time grows
--   with seq), for time-window investigations; within a window, filter on
--   workload or identity. An operator who needs more can add an index.
DROP INDEX audit_events_workload_time_idx;
DROP INDEX audit_events_identity_time_idx;
DROP INDEX audit_events_time_idx;
CREATE INDEX audit_events_refusals_idx ON audit_events (identity, time)
    WHERE decision <> 'allowed';
CREATE INDEX audit_events_time_brin_idx ON audit_events USING brin (time);

-- leases.token_hash: a lease is inserted only while its token row exists
-- and is live, with that row share-locked (the insert's own condition,
-- stronger than the foreign key's check, which ran a second lookup and
-- lock per lease). The reaper deletes a dead token's leases before the
-- token. A lease inserted just before its token is reaped outlives it
-- until its own expiry: unusable (every lease operation needs the live
-- token), then reaped.
ALTER TABLE leases DROP CONSTRAINT leases_token_hash_fkey;

-- leases.expires_at: the reaper's condition (expired, or revoked, or of a
-- dead token) is an OR that no index serves: it scans leases (in batches)
-- with or without this index, which only cost every read an index insert.
DROP INDEX leases_expires_at_idx;
