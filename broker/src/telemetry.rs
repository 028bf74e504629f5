//! Logging: human-readable by default, JSON with `LEASH_LOG_FORMAT=json`,
//! filtered by `LEASH_LOG` (default `info`). Spans and events carry
//! identifiers only — never a token, a lease id, a JWT or a secret value.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_env("LEASH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LEASH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
