//! Leash: a secrets access broker for non-human identities.
//!
//! The server library behind the `leash-broker` binary. A request flows
//! `http` → `service` → {policy, attest, lease + audit via the group
//! `committer`} → {store, backend}. Only [`http`] knows axum; only the
//! store crate knows SQL; only the backend crate touches secret stores.
//! Nothing is handed out that was not audited first, and nothing audited
//! holds a secret value.

pub mod app;
pub mod cli;
pub mod committer;
pub mod config;
pub mod dev;
pub mod http;
pub mod service;
pub mod sessions;
pub mod telemetry;
pub mod wire;

pub use app::App;
pub use config::Settings;
