//! Alert delivery: the worker that drains the outbox. A detection's alerts
//! are committed with it (`respond`), one outbox row per target; this
//! worker claims the rows that are due, POSTs each body — the exact bytes
//! committed — signed with the target's HMAC-SHA256 key, and records every
//! attempt in the database. A failed attempt is retried with exponential
//! backoff until `alerts.give_up_after`; a crash loses nothing (the claim
//! runs out and another replica, or this one restarted, takes it up), and
//! a delivery that is sent again carries the same delivery id, so the
//! receiver can drop the duplicate.
//!
//! What a receiver gets (see `docs/alerts.md`):
//! `Content-Type: application/json`, `X-Leash-Delivery: <delivery id>`,
//! `X-Leash-Attempt: <n>`, and
//! `X-Leash-Signature: sha256=<hex HMAC-SHA256(key, body)>`.
//!
//! Must never happen: a target address taken from anywhere but the
//! configuration; the key or a body in a log line; an attempt unrecorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use leash_domain::Clock;
use leash_store::Store;
use leash_store::{AlertAttempt, AttemptOutcome, ClaimedAlert};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::AlertSettings;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-leash-signature";
/// The header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "x-leash-delivery";
/// The header carrying the attempt number (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-leash-attempt";

/// How long a claimed delivery is this replica's before another may take
/// it (longer than any attempt's timeout).
const CLAIM_FOR: Duration = Duration::from_secs(60);
/// Deliveries claimed at once.
const BATCH: u32 = 16;

/// One target: where, with which key, how long an attempt may take.
pub struct Target {
    /// Its address.
    pub url: String,
    /// Its signing key.
    pub key: Zeroizing<Vec<u8>>,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `sha256=<hex>`: the signature of `body` under `key` (HMAC takes keys
/// of any length; the error is the `hmac` crate's general one).
pub fn sign(key: &[u8], body: &[u8]) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// The delivery worker.
pub struct Deliverer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    targets: HashMap<String, Target>,
    settings: AlertSettings,
    client: reqwest::Client,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("targets", &self.targets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A worker delivering to `targets` (by name) from `store`'s outbox.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        targets: HashMap<String, Target>,
        settings: AlertSettings,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // A target is configured, not discovered: never follow a
            // redirect somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            clock,
            targets,
            settings,
            client,
        })
    }

    /// Delivers until the process stops.
    pub async fn run(self) {
        loop {
            match self.deliver_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "alerts: the outbox could not be read"),
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Claims the deliveries due now and attempts each once; returns how
    /// many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, leash_store::StoreError> {
        let now = self.clock.now();
        let due = self.store.claim_alerts(now, CLAIM_FOR, BATCH).await?;
        let n = due.len();
        for c in due {
            let attempt = self.attempt(&c).await;
            if let Err(e) = self
                .store
                .record_alert_attempt(&c.delivery.delivery_id, &attempt)
                .await
            {
                // The claim runs out and the delivery is attempted again,
                // with the same delivery id.
                tracing::warn!(error = %e, delivery = %c.delivery.delivery_id, "alerts: an attempt could not be recorded");
            }
        }
        Ok(n)
    }

    /// One attempt at `c`, and what comes next.
    async fn attempt(&self, c: &ClaimedAlert) -> AlertAttempt {
        let d = &c.delivery;
        let number = c.attempts + 1;
        let result = match self.targets.get(&d.target) {
            None => Err((None, "no such target is configured".to_owned())),
            Some(t) => self.post(t, d.delivery_id.as_str(), &d.body, number).await,
        };
        let at = self.clock.now();
        match result {
            Ok(status) => {
                tracing::info!(delivery = %d.delivery_id, target = %d.target, status, "alerts: delivered");
                AlertAttempt {
                    at,
                    status: Some(status),
                    error: None,
                    outcome: AttemptOutcome::Delivered,
                }
            }
            Err((status, error)) => {
                let outcome = match self.next_attempt(d.created_at, at, number) {
                    Some(next_attempt_at) => AttemptOutcome::Retry { next_attempt_at },
                    None => AttemptOutcome::GiveUp,
                };
                tracing::warn!(delivery = %d.delivery_id, target = %d.target, attempt = number, %error, "alerts: attempt failed");
                AlertAttempt {
                    at,
                    status,
                    error: Some(error),
                    outcome,
                }
            }
        }
    }

    /// POSTs `body` to `t`; the status of a 2xx answer, else why not.
    async fn post(
        &self,
        t: &Target,
        delivery_id: &str,
        body: &[u8],
        attempt: u32,
    ) -> Result<u16, (Option<u16>, String)> {
        let signature =
            sign(&t.key, body).map_err(|_| (None, "the signing key is unusable".to_owned()))?;
        let sent = self
            .client
            .post(&t.url)
            .timeout(t.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, delivery_id)
            .header(ATTEMPT_HEADER, attempt.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => Err((
                Some(r.status().as_u16()),
                format!("answered {}", r.status().as_u16()),
            )),
            // reqwest's message names the URL, which is configuration, not
            // a secret; the cause chain says what failed.
            Err(e) => Err((None, error_chain(&e))),
        }
    }

    /// When attempt `number + 1` is due after attempt `number` failed at
    /// `at`, or `None` once the delivery is past `give_up_after`.
    fn next_attempt(
        &self,
        created: DateTime<Utc>,
        at: DateTime<Utc>,
        number: u32,
    ) -> Option<DateTime<Utc>> {
        let s = &self.settings;
        let backoff = s
            .first_backoff
            .saturating_mul(2u32.saturating_pow(number.saturating_sub(1)))
            .min(s.max_backoff);
        let next = at + chrono::Duration::from_std(backoff).ok()?;
        let deadline = created + chrono::Duration::from_std(s.give_up_after).ok()?;
        (next <= deadline).then_some(next)
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_exact_bytes() {
        // RFC 4231, test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            sign(b"Jefe", b"what do ya want for nothing? ").unwrap(),
            sig
        );
    }
}
