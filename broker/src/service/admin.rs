//! The operator API under `/v1/leash/` (routed by `http::admin`): status,
//! revocation, audit queries and chain verification. Every call needs the
//! operator token and is audited like any other request.

use std::sync::atomic::Ordering;

use leash_domain::audit::escape_untrusted;
use leash_domain::audit::{ChainBreak, ChainVerifier};
use leash_domain::{KeyedHasher, TokenSelector};
use leash_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use super::{Answer, Broker, IfNotApplied, Pending, Req, ServiceError};
use crate::audit::Record;
use crate::lease;
use crate::wire::{Envelope, Reply};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    lease_id: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    accessor: Option<String>,
    #[serde(default)]
    workload: Option<String>,
}

/// The result of verifying the audit chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// True when every row verified and the chain ends at the head.
    pub ok: bool,
    /// Rows verified before the end or the first break.
    pub events: i64,
    /// The recorded head.
    pub head_seq: i64,
    /// The first break, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the whole audit log in order and verifies its hash chain.
pub async fn verify_audit_chain(
    store: &dyn Store,
    hasher: &KeyedHasher,
) -> Result<ChainReport, StoreError> {
    const PAGE: u32 = 1000;
    let head = store.audit_head().await?;
    let mut verifier = ChainVerifier::new(hasher);
    let mut after = 0i64;
    let mut events = 0i64;
    let fail = |events: i64, b: ChainBreak| ChainReport {
        ok: false,
        events,
        head_seq: head.map_or(0, |h| h.0),
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
            head_seq: head.map_or(0, |h| h.0),
            error: None,
        }),
        Err(b) => Ok(fail(events, b)),
    }
}

impl Broker {
    /// Each mount's kind and, for external stores, the guard's health,
    /// cache and latency counters.
    fn mount_status(&self) -> Vec<serde_json::Value> {
        let mut mounts: Vec<_> = self
            .backends
            .iter()
            .map(|(m, b)| {
                let mut v =
                    serde_json::json!({"path": m, "kind": b.kind(), "kv_version": b.kv_version()});
                if let (Some(g), Some(o)) = (self.guards.get(m), v.as_object_mut()) {
                    o.insert(
                        "health".into(),
                        serde_json::to_value(g.stats()).unwrap_or_default(),
                    );
                }
                v
            })
            .collect();
        mounts.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        mounts
    }

    fn session_status(&self) -> serde_json::Value {
        let c = self.sessions.cache();
        let st = c.stats();
        serde_json::json!({
            "listening": c.listening(),
            "cached": c.len(),
            "hits": st.hits.load(Ordering::Relaxed),
            "misses": st.misses.load(Ordering::Relaxed),
            "evictions": st.evictions.load(Ordering::Relaxed),
        })
    }

    fn commit_status(&self) -> serde_json::Value {
        let st = self.committer.stats();
        serde_json::json!({
            "batches": st.batches.load(Ordering::Relaxed),
            "flushes": st.flushes.load(Ordering::Relaxed),
            "units": st.units.load(Ordering::Relaxed),
            "failures": st.failures.load(Ordering::Relaxed),
            "paths": self.store.commit_paths(),
        })
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
        let (generation, failed) = self.policies.counters();
        let data = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "store": self.store.kind(),
            "store_ok": true,
            "workloads": self.policies.current().len(),
            "policy_generation": generation,
            "policy_reload_failures": failed,
            "live_tokens": stats.live_tokens,
            "live_leases": stats.live_leases,
            "audit_events": stats.audit_events,
            "audit_head_seq": head.map_or(0, |h| h.0),
            "mounts": self.mount_status(),
            "sessions": self.session_status(),
            "commits": self.commit_status(),
        });
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, data),
        )))
    }

    /// `POST leash/leases/revoke`: one lease, a prefix, an identity (by
    /// accessor) or a whole workload; answers how many rows it revoked.
    pub(crate) fn admin_revoke(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        req.require_method(&["POST", "PUT"])?;
        let body: RevokeBody = req.json()?;
        let given = [&body.lease_id, &body.prefix, &body.accessor, &body.workload]
            .iter()
            .filter(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
            .count();
        if given != 1 {
            return Err(ServiceError::bad_request(
                "give exactly one of lease_id, prefix, accessor or workload",
            ));
        }
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let mutation = if let Some(id) = nonempty(body.lease_id) {
            let hash = self.hasher.lease(&id);
            rec.lease(&hash);
            lease::revoke_lease(hash, None, req.now)
        } else if let Some(prefix) = nonempty(body.prefix) {
            rec.path(&escape_untrusted(&prefix, 512));
            lease::revoke_prefix(prefix, None, req.now)
        } else if let Some(a) = nonempty(body.accessor) {
            rec.path(&format!("accessor:{}", escape_untrusted(&a, 128)));
            lease::revoke_tokens(TokenSelector::Accessor(a), req.now)
        } else {
            let w = nonempty(body.workload).unwrap_or_default();
            if w.len() > 128 || !w.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ServiceError::bad_request("invalid workload name"));
            }
            rec.path(&format!("workload:{w}"));
            lease::revoke_tokens(TokenSelector::Workload(w), req.now)
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
        let events: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r.event).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("seq".into(), r.seq.into());
                }
                v
            })
            .collect();
        Ok(Pending::reply(Reply::json(
            200,
            &Envelope::data(&req.inc.request_id, serde_json::json!({ "events": events })),
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
