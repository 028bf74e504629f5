-- Every index on leases costs each leased read an index insert. These
-- three served no query: revocation by prefix compares substr(lease_path)
-- (no index applies), revocation by workload goes through tokens, and the
-- reaper's OR of conditions scans anyway. Kept: the primary key (lookups,
-- renewals), token_hash (revoking a token's leases) and expires_at.
DROP INDEX leases_workload_idx;
DROP INDEX leases_revoked_at_idx;
DROP INDEX leases_lease_path_idx;
