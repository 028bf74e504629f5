//! [`ConnectionStats`]: what the HTTP edge counts about connections on this
//! replica — open, refused by a cap, closed by a time bound — which
//! `leash/status` reports. The edge writes, the status reads; neither
//! waits for the other (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering};

use leash_api as api;

/// Connection counters of one replica.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at accept because `server.max_connections` were
    /// open.
    pub refused_overall: AtomicU64,
    /// Connections closed at accept because their peer address had
    /// `server.max_connections_per_peer` open.
    pub refused_per_peer: AtomicU64,
    /// Connections closed for a time bound: headers, the whole request, or
    /// idle keep-alive.
    pub timed_out: AtomicU64,
    /// Requests whose handler ran past `server.handler_timeout`.
    pub handler_timeouts: AtomicU64,
}

impl ConnectionStats {
    /// The counters as `leash/status` reports them.
    pub fn status(&self) -> api::ConnectionStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        api::ConnectionStatus {
            open: get(&self.open),
            refused_overall: get(&self.refused_overall),
            refused_per_peer: get(&self.refused_per_peer),
            timed_out: get(&self.timed_out),
            handler_timeouts: get(&self.handler_timeouts),
        }
    }
}
