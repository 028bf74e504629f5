//! Revocation announcements between replicas: PostgreSQL `NOTIFY` on one
//! channel, sent inside the transaction that revokes, so a replica hears of
//! a revocation exactly when it has committed.
//!
//! Owns: the channel name and the payload format (an announcement too long
//! for a `NOTIFY` payload is sent as [`Revocation::Unknown`], which means
//! more, never less).
//! Must never happen: a lost connection that looks like silence. When the
//! connection drops, [`RevocationFeed::next`] fails, and the subscriber must
//! assume it missed announcements.

use leash_domain::crypto::Digest;
use leash_domain::detection::Subject;
use sqlx::postgres::PgListener;

use crate::StoreError;

/// The channel revocations are announced on.
pub(crate) const CHANNEL: &str = "leash_revocations";

/// The longest payload sent (PostgreSQL refuses 8000 bytes or more).
const MAX_PAYLOAD: usize = 7900;

/// What was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token with this digest (and its leases).
    Token(Digest),
    /// Every token of this workload.
    Workload(String),
    /// Every token of this workload, issuer and subject.
    Subject(Subject),
    /// Every token of this issuer and subject, whatever the workload.
    Attestation {
        /// The issuer.
        issuer: String,
        /// The attested subject.
        subject: String,
    },
    /// An announcement this version does not understand: the subscriber
    /// must assume any token may have been revoked.
    Unknown,
}

impl Revocation {
    /// The payload announcing it: `unknown` when it would not fit in a
    /// `NOTIFY` payload (under 8000 bytes).
    pub(crate) fn payload(&self) -> String {
        let p = match self {
            Revocation::Token(d) => format!("token:{}", d.to_hex()),
            Revocation::Workload(w) => format!("workload:{w}"),
            // Three names, as a JSON array: no separator to escape.
            Revocation::Subject(s) => format!(
                "subject:{}",
                serde_json::json!([s.workload, s.issuer, s.subject])
            ),
            Revocation::Attestation { issuer, subject } => {
                format!("attestation:{}", serde_json::json!([issuer, subject]))
            }
            Revocation::Unknown => "unknown".to_owned(),
        };
        if p.len() > MAX_PAYLOAD {
            return "unknown".to_owned();
        }
        p
    }

    fn parse(payload: &str) -> Self {
        if let Some(w) = payload.strip_prefix("workload:") {
            return Revocation::Workload(w.to_owned());
        }
        if let Some(j) = payload.strip_prefix("subject:") {
            return match serde_json::from_str::<[String; 3]>(j) {
                Ok([workload, issuer, subject]) => Revocation::Subject(Subject {
                    workload,
                    issuer,
                    subject,
                }),
                Err(_) => Revocation::Unknown,
            };
        }
        if let Some(j) = payload.strip_prefix("attestation:") {
            return match serde_json::from_str::<[String; 2]>(j) {
                Ok([issuer, subject]) => Revocation::Attestation { issuer, subject },
                Err(_) => Revocation::Unknown,
            };
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
        let s = Revocation::Subject(Subject {
            workload: "w:1".into(),
            issuer: "https://i/\"x\"".into(),
            subject: "a,b".into(),
        });
        assert_eq!(Revocation::parse(&s.payload()), s);
        let a = Revocation::Attestation {
            issuer: "i".into(),
            subject: "s\n".into(),
        };
        assert_eq!(Revocation::parse(&a.payload()), a);
        assert_eq!(Revocation::parse("subject:[\"a\"]"), Revocation::Unknown);
        let long = Revocation::Workload("w".repeat(MAX_PAYLOAD));
        assert_eq!(long.payload(), "unknown");
    }
}
