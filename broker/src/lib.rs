//! Leash: a secrets access broker for non-human identities.
//!
//! The server library behind the `leash-broker` binary. A request flows
//! [`http`] (extract, route, render) → [`service`] (one handler per use
//! case) → {[`attest`] (token → session), policy (the `leash_policy`
//! crate), [`lease`] (issue, renew, revoke, reap, fan out), [`audit`] (the
//! request's event and the group committer), [`detect`] (detectors that
//! see every decision)} → {store, backend}. Only
//! [`http`] knows axum; only the store crate knows SQL; only the backend
//! crate touches secret stores. Nothing is handed out that was not audited
//! first, and nothing audited holds a secret value.

pub mod app;
pub mod attest;
pub mod audit;
pub mod cli;
pub mod config;
pub mod detect;
pub mod dev;
pub mod files;
pub mod http;
pub mod lease;
pub mod limits;
pub mod policies;
pub mod service;
mod sharded;
pub mod telemetry;
pub mod wire;

pub use app::App;
pub use config::Settings;
