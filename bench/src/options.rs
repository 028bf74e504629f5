//! What one invocation runs: which phases, how long each load run lasts,
//! the scale points, and where the binaries and PostgreSQL are. The three
//! presets (`full`, `quick`, `smoke`) and the settings the report records.
//!
//! Plain data: nothing here starts a server, touches a database or measures
//! anything, and a setting that shapes a run must never be left out of
//! [`Options::settings_json`] (the report would not say how it was taken).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::leash::MountChoice;
use crate::load::LoadConfig;

/// Which phases run and how long each load run lasts.
#[derive(Debug, Clone)]
pub struct Options {
    /// `full`, `quick` or `smoke` (for the report).
    pub mode: String,
    /// Interleaved rounds of the comparison.
    pub rounds: usize,
    /// Unmeasured warm-up before each run.
    pub warmup: Duration,
    /// Measured window of each run.
    pub duration: Duration,
    /// Connection counts of the comparison.
    pub connections: Vec<usize>,
    /// Connections of the scale curves.
    pub scale_connections: usize,
    /// Live-lease points of the lease-scale curve.
    pub lease_points: Vec<u64>,
    /// Declared-workload points of the workload-scale curve.
    pub workload_points: Vec<usize>,
    /// Leases of the identity the revocation measurement revokes.
    pub revoke_leases: u64,
    /// Measured window of each storage-ceiling measurement.
    pub ceiling_duration: Duration,
    /// Connections of the batched storage-ceiling measurement.
    pub ceiling_connections: usize,
    /// Connections of the one-row-per-transaction measurement.
    pub ceiling_single_connections: usize,
    /// Rows per transaction of the batched ceiling.
    pub ceiling_batch: usize,
    /// Run the Leash/OpenBao comparison.
    pub compare: bool,
    /// Run the storage ceiling.
    pub ceiling: bool,
    /// Writer counts of the floor server (measured after the ceiling, at
    /// the most connections, each committing durably and pipelined; the
    /// best counts).
    pub floor_writers: Vec<usize>,
    /// Run the lease-scale curve.
    pub lease_scale: bool,
    /// Run the workload-scale curve.
    pub workload_scale: bool,
    /// Run the revocation measurement.
    pub revocation: bool,
    /// Where Leash's `secret/` mount reads from.
    pub mount: MountChoice,
    /// The directory holding `leash-broker`.
    pub bin_dir: PathBuf,
    /// The `bao` binary.
    pub bao_bin: PathBuf,
    /// The PostgreSQL admin URL (databases are created next to it).
    pub pg_url: String,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Options {
    /// The default, full run (about 10–15 minutes on 2 cores).
    pub fn full(bin_dir: PathBuf, bao_bin: PathBuf, pg_url: String) -> Options {
        Options {
            mode: "full".into(),
            rounds: 3,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            connections: vec![1, 16, 64],
            scale_connections: 64,
            lease_points: vec![10_000, 100_000, 1_000_000],
            workload_points: vec![10, 10_000],
            revoke_leases: 100_000,
            ceiling_duration: Duration::from_secs(5),
            ceiling_connections: 4,
            ceiling_single_connections: 64,
            ceiling_batch: 256,
            compare: true,
            ceiling: true,
            floor_writers: vec![1, 2, 4],
            lease_scale: true,
            workload_scale: true,
            revocation: true,
            mount: MountChoice::Vault,
            bin_dir,
            bao_bin,
            pg_url,
            progress: true,
        }
    }

    /// Every phase, short runs, the real scale points (about 2–3 minutes).
    pub fn quick(self) -> Options {
        Options {
            mode: "quick".into(),
            rounds: 1,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(4),
            ceiling_duration: Duration::from_secs(3),
            lease_points: vec![10_000, 100_000, 1_000_000],
            ..self
        }
    }

    /// Every phase, tiny runs and scale points: checks the code path, not
    /// the numbers (CI's smoke test).
    pub fn smoke(self) -> Options {
        Options {
            mode: "smoke".into(),
            rounds: 1,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(800),
            connections: vec![1, 4],
            scale_connections: 4,
            lease_points: vec![100, 1_000],
            workload_points: vec![10, 50],
            revoke_leases: 1_000,
            ceiling_duration: Duration::from_millis(500),
            ceiling_connections: 2,
            ceiling_single_connections: 4,
            floor_writers: vec![1, 2],
            ..self
        }
    }

    pub(crate) fn load(&self, connections: usize) -> LoadConfig {
        LoadConfig {
            connections,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    pub(crate) fn broker_bin(&self) -> PathBuf {
        self.bin_dir.join("leash-broker")
    }

    pub(crate) fn settings_json(&self) -> serde_json::Value {
        json!({
            "rounds": self.rounds,
            "warmup_secs": self.warmup.as_secs_f64(),
            "duration_secs": self.duration.as_secs_f64(),
            "connections": self.connections,
            "scale_connections": self.scale_connections,
            "lease_points": self.lease_points,
            "workload_points": self.workload_points,
            "revoke_leases": self.revoke_leases,
            "ceiling": {"secs": self.ceiling_duration.as_secs_f64(), "batched_connections": self.ceiling_connections, "single_connections": self.ceiling_single_connections, "batch": self.ceiling_batch},
            "floor_writers": self.floor_writers,
        })
    }
}
