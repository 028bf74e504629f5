//! The broker's side of the audit log: the event a request builds up as it
//! is handled ([`Record`]) and the group committer that writes it, with the
//! request's mutations, durably before the reply ([`Committer`]). The event
//! model and its hash chain are the domain crate's; the SQL is the store's.
//!
//! Must never happen: a reply released before its event committed; a
//! secret value, a token or a lease id in an event.

pub mod committer;
mod record;

pub use committer::{CommitError, CommitStats, Committer};
pub(crate) use record::{MAX_LOGGED, Record};
