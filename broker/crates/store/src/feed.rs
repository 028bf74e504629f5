//! Revocation announcements between replicas: PostgreSQL `NOTIFY` on one
//! channel, sent inside the transaction that revokes, so a replica hears of
//! a revocation exactly when it has committed.
//!
//! Owns: the channel name and the payload format.
//! Must never happen: a lost connection that looks like silence. When the
//! connection drops, [`RevocationFeed::next`] fails, and the subscriber must
//! assume it missed announcements.

use leash_domain::crypto::Digest;
use sqlx::postgres::PgListener;

use crate::StoreError;

/// The channel revocations are announced on.
pub(crate) const CHANNEL: &str = "leash_revocations";

/// What was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token with this digest (and its leases).
    Token(Digest),
    /// Every token of this workload.
    Workload(String),
    /// An announcement this version does not understand: the subscriber
    /// must assume any token may have been revoked.
    Unknown,
}

impl Revocation {
    /// The payload announcing it.
    pub(crate) fn payload(&self) -> String {
        match self {
            Revocation::Token(d) => format!("token:{}", d.to_hex()),
            Revocation::Workload(w) => format!("workload:{w}"),
            Revocation::Unknown => "unknown".to_owned(),
        }
    }

    fn parse(payload: &str) -> Self {
        if let Some(w) = payload.strip_prefix("workload:") {
            return Revocation::Workload(w.to_owned());
        }
        payload
            .strip_prefix("token:")
            .and_then(Digest::from_hex)
            .map_or(Revocation::Unknown, Revocation::Token)
    }
}

/// An active subscription to revocations.
pub struct RevocationFeed {
    listener: PgListener,
}

impl std::fmt::Debug for RevocationFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFeed").finish_non_exhaustive()
    }
}

impl RevocationFeed {
    pub(crate) async fn listen(pool: &sqlx::PgPool) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(Self { listener })
    }

    /// The next revocation. An error means the subscription is gone and
    /// announcements may have been missed: drop the feed, assume anything
    /// was revoked, and subscribe again.
    pub async fn next(&mut self) -> Result<Revocation, StoreError> {
        // `try_recv`, not `recv`: `recv` would reconnect behind our back
        // and hide the gap; here a lost connection is an error.
        match self.listener.try_recv().await? {
            Some(n) => Ok(Revocation::parse(n.payload())),
            None => Err(StoreError::Unavailable(
                "revocation feed: connection lost".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_is_unknown() {
        let d = Digest([7u8; 32]);
        let r = Revocation::Token(d);
        assert_eq!(Revocation::parse(&r.payload()), r);
        assert_eq!(Revocation::parse("token:zz"), Revocation::Unknown);
        let w = Revocation::Workload("payments-api".into());
        assert_eq!(Revocation::parse(&w.payload()), w);
        assert_eq!(Revocation::parse(""), Revocation::Unknown);
    }
}
