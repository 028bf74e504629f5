//! The plain-text report ([`Report::render`]): the machine, then one table
//! or paragraph per measured phase, then the problems.
//!
//! Must never happen: a run with errors or non-2xx answers shown as if it
//! were clean (every such run is flagged with `!` in the table and listed
//! under "problems"), or a ratio computed from a run that served nothing.
//! It only formats what the model holds: no measurement, no I/O.

use std::fmt::Write as _;

use super::{LeaseRound, Report, Summary};

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.2}{unit}"))
}

/// Every round's p99, in order.
fn each_p99(s: &Summary) -> String {
    let each: Vec<String> = s
        .rounds
        .iter()
        .map(|r| format!("{:.2}", r.p99_ms))
        .collect();
    each.join(" ")
}

fn flag(s: &Summary) -> &'static str {
    if s.clean { "" } else { " !" }
}

impl Report {
    /// The plain-text report.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(
            o,
            "== leash-bench ({} mode, {}, {:.0} s)",
            self.mode, self.started_at, self.wall_secs
        );
        let _ = writeln!(
            o,
            "machine: {} CPUs, {}, {} MiB RAM, Linux {}",
            m.nproc, m.cpu_model, m.memory_mib, m.kernel
        );
        let _ = writeln!(
            o,
            "postgres: {} ({})",
            m.postgres_version, m.postgres_settings
        );
        let _ = writeln!(
            o,
            "load average: {} at the start, {} at the end (other work skews every number)",
            m.loadavg_start, m.loadavg_end
        );
        let _ = writeln!(o, "openbao: {}", m.openbao_version);
        let _ = writeln!(o, "leash: {} ({})", m.leash_commit, m.leash_binary);
        let _ = writeln!(o, "leash read mount: {}", self.leash_mount);
        let _ = writeln!(o, "settings: {}", self.settings);
        let _ = writeln!(
            o,
            "load generator: closed loop, one keep-alive HTTP/1.1 connection per caller, \
             medians over interleaved rounds; ! = a run with errors or non-2xx answers"
        );

        if let Some(c) = &self.calibration {
            let _ = writeln!(
                o,
                "generator ceiling: {:.0} req/s, p99 {:.2} ms against a trivial in-process HTTP server \
                 (generator and server share the process){}",
                c.throughput,
                c.p99_ms,
                if c.clean() { "" } else { " !" }
            );
        }
        if !self.compare.is_empty() {
            let _ = writeln!(o, "\n-- Leash vs OpenBao (medians)");
            let _ = writeln!(
                o,
                "{:<6} {:>5} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>7} {:>7} | {:>15}",
                "work",
                "conns",
                "leash/s",
                "p50 ms",
                "p99 ms",
                "bao/s",
                "p50 ms",
                "p99 ms",
                "thr x",
                "p99 x",
                "cpu L/B/pg/gen"
            );
            for c in &self.compare {
                let _ = writeln!(
                    o,
                    "{:<6} {:>5} | {:>10.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>8.2} | {:>7} {:>7} | {:.1}/{:.1}/{:.1}/{:.1}{}{}",
                    c.workload,
                    c.connections,
                    c.leash.throughput,
                    c.leash.p50_ms,
                    c.leash.p99_ms,
                    c.openbao.throughput,
                    c.openbao.p50_ms,
                    c.openbao.p99_ms,
                    opt(c.throughput_ratio, ""),
                    opt(c.p99_ratio, ""),
                    c.leash.cpu.server,
                    c.openbao.cpu.server,
                    c.leash.cpu.postgres,
                    c.leash.cpu.generator,
                    flag(&c.leash),
                    flag(&c.openbao),
                );
            }
            let _ = writeln!(
                o,
                "thr x = Leash/OpenBao throughput; p99 x = Leash p99 / OpenBao p99; \
                 cpu = cores used by leash-broker / bao / postgres (Leash runs) / the generator (Leash runs)"
            );
        }

        if let Some(s) = &self.storage {
            let c = &s.ceiling;
            let _ = writeln!(
                o,
                "\n-- Storage ceiling (audit-shaped rows into a scratch table)"
            );
            let _ = writeln!(
                o,
                "batched ({} rows/txn, {} conns): {:.0} rows/s; one row per txn ({} conns): {:.0} rows/s",
                c.batch_rows,
                c.batched_connections,
                c.batched_rows_per_sec,
                c.single_connections,
                c.single_rows_per_sec
            );
            let _ = writeln!(
                o,
                "a read's rows (a lease row and an audit row, {} reads/txn, {} conns): {:.0} reads/s",
                c.batch_rows / 2,
                c.batched_connections,
                c.read_rows_reads_per_sec
            );
            let _ = writeln!(
                o,
                "Leash reads at {} conns: {} /s = {} of the ceiling ({} rows per read: lease + audit); \
                 {} of a read's rows batched",
                s.at_connections
                    .map_or_else(|| "n/a".into(), |c| c.to_string()),
                opt(s.leash_reads_per_sec, ""),
                opt(s.percent_of_ceiling, "%"),
                s.rows_per_read,
                opt(s.percent_of_read_rows, "%"),
            );
            for f in &s.floor {
                let _ = writeln!(
                    o,
                    "floor server ({} writers{}, {} conns): {:.0} reads/s p50 {:.2} ms p99 {:.2} ms{}",
                    f.writers,
                    if f.pipelined {
                        ", pipelined"
                    } else {
                        ", durable commits"
                    },
                    s.floor_connections,
                    f.run.throughput,
                    f.run.p50_ms,
                    f.run.p99_ms,
                    if f.run.clean() { "" } else { " !" }
                );
            }
            let _ = writeln!(
                o,
                "the floor's best = {} of the ceiling; Leash = {} of the floor \
                 (floor: HTTP, a queue and the same two rows per read committed before the reply; nothing else)",
                opt(s.floor_percent_of_ceiling, "%"),
                opt(s.percent_of_floor, "%"),
            );
        }

        if !self.lease_scale.is_empty() {
            let _ = writeln!(o, "\n-- Lease scale (Leash reads, medians over rounds)");
            let _ = writeln!(
                o,
                "{:>10} {:>12} {:>12} {:>10} {:>8} {:>8} {:>22} {:>9} {:>9}",
                "target",
                "live before",
                "live after",
                "reads/s",
                "p50 ms",
                "p99 ms",
                "p99 ms each round",
                "WAL B/rd",
                "RSS MiB"
            );
            for p in &self.lease_scale {
                let max = |f: fn(&LeaseRound) -> i64| p.rounds.iter().map(f).max().unwrap_or(0);
                let _ = writeln!(
                    o,
                    "{:>10} {:>12} {:>12} {:>10.0} {:>8.2} {:>8.2} {:>22} {:>9.0} {:>9.1}{}",
                    p.target,
                    max(|r| r.live_before),
                    max(|r| r.live_after),
                    p.reads.throughput,
                    p.reads.p50_ms,
                    p.reads.p99_ms,
                    each_p99(&p.reads),
                    p.wal_bytes_per_read,
                    p.rss_mib,
                    flag(&p.reads)
                );
            }
            if let (Some(a), Some(b)) = (self.lease_scale.first(), self.lease_scale.last())
                && a.reads.p99_ms > 0.0
            {
                let _ = writeln!(
                    o,
                    "p99 at {} ÷ p99 at {}: {:.2} (medians); full-page images per read: {:.3} at {}, {:.3} at {}",
                    b.target,
                    a.target,
                    b.reads.p99_ms / a.reads.p99_ms,
                    a.wal_fpi_per_read,
                    a.target,
                    b.wal_fpi_per_read,
                    b.target,
                );
            }
        }

        if !self.workload_scale.is_empty() {
            let _ = writeln!(o, "\n-- Workload scale (Leash reads, medians over rounds)");
            let _ = writeln!(
                o,
                "{:>10} {:>10} {:>10} {:>8} {:>8} {:>22} {:>9}",
                "workloads",
                "start s",
                "reads/s",
                "p50 ms",
                "p99 ms",
                "p99 ms each round",
                "RSS MiB"
            );
            for p in &self.workload_scale {
                let _ = writeln!(
                    o,
                    "{:>10} {:>10.2} {:>10.0} {:>8.2} {:>8.2} {:>22} {:>9.1}{}",
                    p.workloads,
                    p.startup_secs,
                    p.reads.throughput,
                    p.reads.p50_ms,
                    p.reads.p99_ms,
                    each_p99(&p.reads),
                    p.rss_mib,
                    flag(&p.reads)
                );
            }
            if let (Some(a), Some(b)) = (self.workload_scale.first(), self.workload_scale.last())
                && a.reads.p99_ms > 0.0
            {
                let _ = writeln!(
                    o,
                    "p99 at {} ÷ p99 at {}: {:.2} (medians)",
                    b.workloads,
                    a.workloads,
                    b.reads.p99_ms / a.reads.p99_ms
                );
            }
        }

        if !self.revocation.is_empty() {
            let _ = writeln!(
                o,
                "\n-- Revocation (one identity's leases; a second replica shares the database)"
            );
        }
        for r in &self.revocation {
            let _ = writeln!(
                o,
                "{}: {} leases, status {}, {:.1} ms; still live after: {}",
                r.method, r.leases, r.status, r.revoke_ms, r.still_live_after
            );
            let _ = writeln!(
                o,
                "  second replica ({}) refused {} after the reply (poll round trip {:.2} ms)",
                r.replica_probe,
                opt(r.replica_refused_after_ms, " ms"),
                r.replica_poll_rtt_ms
            );
        }

        if self.problems.is_empty() {
            let _ = writeln!(o, "\nproblems: none (every measured request got a 2xx)");
        } else {
            let _ = writeln!(o, "\nPROBLEMS:");
            for p in &self.problems {
                let _ = writeln!(o, "  - {p}");
            }
        }
        o
    }
}
