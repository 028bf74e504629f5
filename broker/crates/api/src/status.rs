//! `data` of `GET /v1/leash/status`: the broker's version, store and
//! policy state, and the counters of its mounts, session cache and group
//! committer.
//!
//! Must never happen: a field the broker sends that has no field here (the
//! client would silently drop it), or a counter added without
//! `#[serde(default)]` (older brokers would no longer parse).

use serde::{Deserialize, Serialize};

/// `data` of `GET /v1/leash/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The broker's version.
    pub version: String,
    /// The store kind (e.g. `postgres`, `sqlite`).
    pub store: String,
    /// Whether the store answered.
    pub store_ok: bool,
    /// Configured workloads.
    pub workloads: u64,
    /// How many policy sets have been loaded (1 at start-up, one more per
    /// successful reload).
    #[serde(default)]
    pub policy_generation: u64,
    /// Reloads refused because the new policy set had problems.
    #[serde(default)]
    pub policy_reload_failures: u64,
    /// Live (unexpired, unrevoked) tokens.
    pub live_tokens: u64,
    /// Live leases.
    pub live_leases: u64,
    /// Audit events recorded.
    pub audit_events: u64,
    /// The seq of the last audit event. The broker sends 0 when there is
    /// none; absent or `null` (older brokers) reads as `None`.
    #[serde(default)]
    pub audit_head_seq: Option<i64>,
    /// Each mount, ordered by path.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub mounts: Vec<MountStatus>,
    /// This replica's session cache.
    #[serde(default)]
    pub sessions: SessionStatus,
    /// This replica's group committer.
    #[serde(default)]
    pub commits: CommitStatus,
    /// This replica's connections and the bounds they met.
    #[serde(default)]
    pub connections: ConnectionStatus,
    /// Requests this replica answered 429, by the limit they met.
    #[serde(default)]
    pub limited: LimitedStatus,
}

/// Requests refused by each rate limit of `[limits]` on the replica that
/// answered ([`Status::limited`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitedStatus {
    /// By `limits.logins_per_source`.
    pub logins_per_source: u64,
    /// By `limits.logins_per_identity`.
    pub logins_per_identity: u64,
    /// By `limits.requests_per_source`.
    pub requests_per_source: u64,
    /// By `limits.requests_per_identity`.
    pub requests_per_identity: u64,
}

/// The connections of the replica that answered ([`Status::connections`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionStatus {
    /// Connections open now.
    pub open: u64,
    /// Connections refused because `server.max_connections` were open.
    pub refused_overall: u64,
    /// Connections refused because their peer address had
    /// `server.max_connections_per_peer` open.
    pub refused_per_peer: u64,
    /// Connections closed by a time bound (headers, whole request, idle).
    pub timed_out: u64,
    /// Requests answered 503 because their handler ran past
    /// `server.handler_timeout`.
    pub handler_timeouts: u64,
}

/// One mount in [`Status::mounts`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountStatus {
    /// The mount path, e.g. `secret`.
    pub path: String,
    /// The backend kind, e.g. `builtin`, `vault`, `aws`.
    pub kind: String,
    /// The KV version the mount speaks (1 or 2).
    pub kv_version: u8,
    /// The guard's state and counters; only for external stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<MountHealth>,
}

/// What the operator sees of a guarded mount (an external store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountHealth {
    /// `up`, `down` (breaker open) or `probing` (half-open).
    pub state: String,
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads that went upstream.
    pub cache_misses: u64,
    /// Calls made to the store, retries included.
    pub upstream_calls: u64,
    /// Calls that failed.
    pub upstream_failures: u64,
    /// Latency of the last successful call, in milliseconds.
    pub last_latency_ms: u64,
    /// Entries in the cache.
    pub cached_entries: u64,
}

/// The session cache of the replica that answered ([`Status::sessions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionStatus {
    /// Whether this replica hears revocation announcements (while it does
    /// not, it caches nothing).
    pub listening: bool,
    /// Token records cached.
    pub cached: u64,
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests that read the database.
    pub misses: u64,
    /// Tokens evicted by a revocation.
    pub evictions: u64,
}

/// The group committer of the replica that answered ([`Status::commits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommitStatus {
    /// Transactions committed and flushed.
    pub batches: u64,
    /// Store flushes that released batches.
    pub flushes: u64,
    /// Units committed and flushed.
    pub units: u64,
    /// Units whose commit failed.
    pub failures: u64,
    /// How the commits were written.
    pub paths: CommitPaths,
}

/// How this replica's commits were written ([`CommitStatus::paths`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommitPaths {
    /// Commits written in one statement, chained in advance.
    pub one_statement: u64,
    /// Commits written as a general transaction.
    pub general: u64,
    /// One-statement attempts the database refused (the head or a token had
    /// changed), each then written the general way.
    pub stale: u64,
}
