//! [`Detections`] for both stores: each method calls the shared code in
//! `crate::detect` with the store's pools (PostgreSQL: its one pool;
//! SQLite: reads on the readers, writes on the one writer).
//!
//! Owns: nothing but that wiring.
//! Must never happen: a write on a SQLite reader connection.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leash_domain::detection::{Quarantine, Signal, SignalStats, Subject};

use super::{AlertAttempt, ClaimedAlert, DetectionRecord};
use crate::{Detections, PgStore, SqliteStore, StoreError, detect};

/// Implements [`Detections`] for a store, given its read and write pools.
macro_rules! detections_for {
    ($store:ty, $readers:ident, $writer:ident) => {
        #[async_trait]
        impl Detections for $store {
            async fn signal_stats(
                &self,
                subject: &Subject,
                since: DateTime<Utc>,
            ) -> Result<SignalStats, StoreError> {
                detect::signal_stats(&self.$readers, subject, since).await
            }

            async fn signals(
                &self,
                subject: &Subject,
                since: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<Signal>, StoreError> {
                detect::signals(&self.$readers, subject, since, limit).await
            }

            async fn active_quarantine(
                &self,
                subject: &Subject,
                now: DateTime<Utc>,
            ) -> Result<Option<Quarantine>, StoreError> {
                detect::active_quarantine(&self.$readers, subject, now).await
            }

            async fn quarantines(&self, subject: &Subject) -> Result<Vec<Quarantine>, StoreError> {
                detect::quarantines(&self.$readers, subject).await
            }

            async fn detections(
                &self,
                after_seq: Option<i64>,
                limit: u32,
            ) -> Result<Vec<DetectionRecord>, StoreError> {
                detect::detections(&self.$readers, after_seq, limit).await
            }

            async fn detection(&self, id: &str) -> Result<Option<DetectionRecord>, StoreError> {
                detect::detection(&self.$readers, id).await
            }

            async fn detections_of(
                &self,
                subject: &Subject,
                limit: u32,
            ) -> Result<Vec<DetectionRecord>, StoreError> {
                detect::detections_of(&self.$readers, subject, limit).await
            }

            async fn claim_alerts(
                &self,
                now: DateTime<Utc>,
                claim_for: Duration,
                limit: u32,
            ) -> Result<Vec<ClaimedAlert>, StoreError> {
                detect::claim_alerts(&self.$writer, now, claim_for, limit).await
            }

            async fn record_alert_attempt(
                &self,
                delivery_id: &str,
                attempt: &AlertAttempt,
            ) -> Result<bool, StoreError> {
                detect::record_alert_attempt(&self.$writer, delivery_id, attempt).await
            }

            async fn reap_signals(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                detect::reap_signals(&self.$writer, before).await
            }
        }
    };
}

detections_for!(PgStore, pool, pool);
detections_for!(SqliteStore, readers, writer);
