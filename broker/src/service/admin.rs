//! The operator API under `/v1/leash/` (routed by `http::admin`): status,
//! revocation, audit queries and chain verification here; detections and
//! quarantines in `containment`. Every call needs the
//! operator token and is audited like any other request. Bodies and
//! replies are the `leash_api` wire types the client reads too; this file
//! maps the broker's records and counters into them.
//!
//! Must never happen: a reply built as ad-hoc JSON (it would drift from the
//! client's types).

use std::sync::atomic::Ordering;

use leash_api as api;
use leash_backend::GuardStats;
use leash_domain::audit::escape_untrusted;
use leash_domain::audit::{ChainBreak, ChainVerifier};
use leash_domain::{KeyedHasher, StoredEvent, TokenSelector};
use leash_store::{Store, StoreError};

use super::{Answer, Broker, IfNotApplied, Pending, Req, ServiceError};
use crate::audit::Record;
use crate::lease;
use crate::wire::{Envelope, Reply};

/// The result of verifying the audit chain (also the `data` of
/// `GET leash/audit/verify`).
pub use leash_api::ChainReport;

/// Reads the whole audit log in order and verifies its hash chain.
pub async fn verify_audit_chain(
    store: &dyn Store,
    hasher: &KeyedHasher,
) -> Result<ChainReport, StoreError> {
    const PAGE: u32 = 1000;
    let head = store.audit_head().await?;
    let head_seq = Some(head.map_or(0, |h| h.0));
    let mut verifier = ChainVerifier::new(hasher);
    let mut after = 0i64;
    let mut events = 0u64;
    let fail = |events: u64, b: ChainBreak| ChainReport {
        ok: false,
        events,
        head_seq,
        error: Some(b.to_string()),
    };
    loop {
        let page = store.audit_events(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in &page {
            if let Err(b) = verifier.push(row) {
                return Ok(fail(events, b));
            }
            events += 1;
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    match verifier.finish(head) {
        Ok(_) => Ok(ChainReport {
            ok: true,
            events,
            head_seq,
            error: None,
        }),
        Err(b) => Ok(fail(events, b)),
    }
}

/// A count the store keeps as `i64` (never negative), as the wire's `u64`.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A guarded mount's counters, as the status reports them.
fn mount_health(g: GuardStats) -> api::MountHealth {
    api::MountHealth {
        state: g.state.to_owned(),
        cache_hits: g.cache_hits,
        cache_misses: g.cache_misses,
        upstream_calls: g.upstream_calls,
        upstream_failures: g.upstream_failures,
        last_latency_ms: g.last_latency_ms,
        cached_entries: u64::try_from(g.cached_entries).unwrap_or(u64::MAX),
    }
}

/// How the store wrote this replica's commits, as the status reports it.
fn commit_paths(p: leash_store::CommitPaths) -> api::CommitPaths {
    api::CommitPaths {
        one_statement: p.one_statement,
        general: p.general,
        stale: p.stale,
    }
}

/// A stored event as `GET leash/audit` lists it: the domain event's fields,
/// with the same JSON values, plus its `seq`.
fn audit_event(row: StoredEvent) -> api::AuditEvent {
    let e = row.event;
    api::AuditEvent {
        seq: row.seq,
        request_id: e.request_id,
        // chrono's own serde form: RFC 3339, `Z`, as many fraction digits
        // as needed.
        time: e.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        identity: e.identity,
        workload: e.workload,
        peer: e.peer,
        operation: e.operation,
        method: e.method,
        path: e.path,
        decision: e.decision.as_str().to_owned(),
        status: e.status,
        reason: e.reason,
        lease_ref: e.lease_ref,
        attestation: e.attestation,
    }
}

impl Broker {
    /// Each mount's kind and, for external stores, the guard's health,
    /// cache and latency counters, ordered by path.
    fn mount_status(&self) -> Vec<api::MountStatus> {
        let mut mounts: Vec<_> = self
            .backends
            .iter()
            .map(|(m, b)| api::MountStatus {
                path: m.clone(),
                kind: b.kind().to_owned(),
                kv_version: b.kv_version(),
                health: self.guards.get(m).map(|g| mount_health(g.stats())),
            })
            .collect();
        mounts.sort_by(|a, b| a.path.cmp(&b.path));
        mounts
    }

    fn session_status(&self) -> api::SessionStatus {
        let c = self.sessions.cache();
        let st = c.stats();
        api::SessionStatus {
            listening: c.listening(),
            cached: u64::try_from(c.len()).unwrap_or(u64::MAX),
            hits: st.hits.load(Ordering::Relaxed),
            misses: st.misses.load(Ordering::Relaxed),
            evictions: st.evictions.load(Ordering::Relaxed),
        }
    }

    fn commit_status(&self) -> api::CommitStatus {
        let st = self.committer.stats();
        api::CommitStatus {
            batches: st.batches.load(Ordering::Relaxed),
            flushes: st.flushes.load(Ordering::Relaxed),
            units: st.units.load(Ordering::Relaxed),
            failures: st.failures.load(Ordering::Relaxed),
            paths: commit_paths(self.store.commit_paths()),
        }
    }

    /// Checks the operator token (every operator route does, first).
    pub(crate) fn operator(&self, req: &Req<'_>, rec: &mut Record) -> Result<(), ServiceError> {
        Ok(self.sessions.operator(req.inc.token.as_ref(), rec)?)
    }

    /// `GET leash/status`.
    pub(crate) async fn admin_status(&self, req: &Req<'_>) -> Result<Pending, ServiceError> {
        req.require_method(&["GET"])?;
        let unavailable = |e: StoreError| ServiceError::unavailable("state store", e);
        let stats = self.store.stats(req.now).await.map_err(unavailable)?;
        let head = self.store.audit_head().await.map_err(unavailable)?;
        let (policy_generation, policy_reload_failures) = self.policies.counters();
        let data = api::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: self.store.kind().to_owned(),
            store_ok: true,
            workloads: u64::try_from(self.policies.current().len()).unwrap_or(u64::MAX),
            policy_generation,
            policy_reload_failures,
            live_tokens: count(stats.live_tokens),
            live_leases: count(stats.live_leases),
            audit_events: count(stats.audit_events),
            audit_head_seq: Some(head.map_or(0, |h| h.0)),
            mounts: self.mount_status(),
            sessions: self.session_status(),
            commits: self.commit_status(),
            connections: self.connections.status(),
            limited: self.limits.counts(),
        };
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, data),
        )))
    }

    /// `POST leash/leases/revoke`: one lease, a prefix, an identity (by
    /// accessor) or a whole workload; answers how many rows it revoked
    /// ([`api::Revoked`], once the revocation has committed).
    pub(crate) fn admin_revoke(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["POST", "PUT"])?;
        let body: api::RevokeRequest = req.json()?;
        let target = body.target().ok_or_else(|| {
            ServiceError::bad_request("give exactly one of lease_id, prefix, accessor or workload")
        })?;
        let mutation = match target {
            api::RevokeTarget::Lease(id) => {
                let hash = self.hasher.lease(&id);
                rec.lease(&hash);
                lease::revoke_lease(hash, None, req.now)
            }
            api::RevokeTarget::Prefix(prefix) => {
                rec.path(&escape_untrusted(&prefix, 512));
                lease::revoke_prefix(prefix, None, req.now)
            }
            api::RevokeTarget::Accessor(a) => {
                rec.path(&format!("accessor:{}", escape_untrusted(&a, 128)));
                lease::revoke_tokens(TokenSelector::Accessor(a), req.now)
            }
            api::RevokeTarget::Workload(w) => {
                if w.len() > 128 || !w.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ServiceError::bad_request("invalid workload name"));
                }
                rec.path(&format!("workload:{w}"));
                lease::revoke_tokens(TokenSelector::Workload(w), req.now)
            }
        };
        Ok(Pending::mutate(
            mutation,
            Answer::Count,
            IfNotApplied::RevocationNotRecorded,
        ))
    }

    /// `GET leash/audit?after=SEQ&limit=N`: a page of the audit log.
    pub(crate) async fn audit_list(&self, req: &Req<'_>) -> Result<Pending, ServiceError> {
        req.require_method(&["GET"])?;
        let after = match req.query("after") {
            None => 0,
            Some(v) => v
                .parse::<i64>()
                .map_err(|_| ServiceError::bad_request("invalid after"))?,
        };
        let limit = match req.query("limit") {
            None => 100,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| ServiceError::bad_request("limit must be 1..1000"))?,
        };
        let rows = self
            .store
            .audit_events(after, limit)
            .await
            .map_err(|e| ServiceError::unavailable("state store", e))?;
        let page = api::AuditPage {
            events: rows.into_iter().map(audit_event).collect(),
        };
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, page),
        )))
    }

    /// `GET leash/audit/verify`: the hash chain, verified end to end.
    pub(crate) async fn audit_verify(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["GET"])?;
        let report = verify_audit_chain(self.store.as_ref(), &self.hasher)
            .await
            .map_err(|e| ServiceError::unavailable("state store", e))?;
        if !report.ok {
            rec.note("audit chain broken");
        }
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, report),
        )))
    }
}

mod containment;

#[cfg(test)]
mod tests;
