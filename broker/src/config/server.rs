//! `[server]`: the HTTP listener and the bounds every peer meets before it
//! reaches a handler — body size, time (headers, the whole request, idle
//! keep-alive, the handler) and connections (overall and per peer).
//!
//! Must never happen: a bound that can be turned off by writing `0` (a
//! zero bound is refused at load, not read as "unlimited").

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::duration_str;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest a client may take to send its request headers (slowloris),
    /// from its request's first byte (a new connection: from its accept).
    #[serde(with = "duration_str")]
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a whole request, headers and body,
    /// from its first byte. A body still arriving then is answered 408 and
    /// the connection closed.
    #[serde(with = "duration_str")]
    pub request_timeout: Duration,
    /// Longest a keep-alive connection may sit idle between requests.
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// Longest a handler may work on a request (the store, an upstream
    /// secret store) before it is answered 503 and audited; the audit
    /// commit after it is bounded by `audit.commit_timeout`.
    #[serde(with = "duration_str")]
    pub handler_timeout: Duration,
    /// Most connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Most connections open at once from one peer address.
    pub max_connections_per_peer: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8200)),
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            handler_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_peer: 256,
        }
    }
}

impl ServerSettings {
    /// The problems of these settings, if any.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("server.max_body_bytes must be at least 1".into());
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("handler_timeout", self.handler_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("server.{name} must be longer than 0s"));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_peer == 0 {
            return Err(
                "server.max_connections and server.max_connections_per_peer must be at least 1"
                    .into(),
            );
        }
        if self.max_connections_per_peer > self.max_connections {
            return Err(
                "server.max_connections_per_peer must not exceed server.max_connections".into(),
            );
        }
        Ok(())
    }
}
