//! [`Record`]: what is known about one request as it is handled, which
//! becomes its audit event. Routes fill it in as they learn (the operation,
//! the canonical path, the identity, what a login proved, the lease); the
//! request's outcome is set once, when the unit is committed.
//!
//! Must never happen: caller-supplied text stored unescaped; a token, a
//! lease id or a secret value stored at all (leases are referenced by their
//! keyed digest).

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leash_domain::audit::escape_untrusted;
use leash_domain::{AuditEvent, Decision, Digest, TokenRecord};

/// Longest number of characters of caller-supplied text kept in an event.
pub(crate) const MAX_LOGGED: usize = 512;

/// The audit event of one request, as it is being built.
#[derive(Debug)]
pub(crate) struct Record {
    event: AuditEvent,
    /// The caller's token, once resolved (or being issued).
    token: Option<Arc<TokenRecord>>,
    peer: IpAddr,
}

impl Record {
    /// A request's record at `now`. `raw_path` is the path after `/v1/`,
    /// still percent-encoded, or `None` for a path outside `/v1/`.
    pub(crate) fn new(
        request_id: &str,
        method: &str,
        raw_path: Option<&str>,
        peer: IpAddr,
        now: DateTime<Utc>,
    ) -> Self {
        let path = raw_path.map_or_else(
            || "<outside /v1/>".to_owned(),
            |p| escape_untrusted(p, MAX_LOGGED),
        );
        Self {
            event: AuditEvent {
                request_id: request_id.to_owned(),
                time: now,
                identity: None,
                workload: None,
                peer: peer.to_string(),
                operation: "unknown".into(),
                method: escape_untrusted(method, 16),
                path,
                decision: Decision::Allowed,
                status: 200,
                reason: String::new(),
                lease_ref: None,
                attestation: serde_json::Value::Object(Default::default()),
            },
            token: None,
            peer,
        }
    }

    /// The request's time (microseconds), the `now` of every decision.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.event.time
    }

    /// The request id.
    pub(crate) fn request_id(&self) -> &str {
        &self.event.request_id
    }

    /// The event as built so far.
    pub(crate) fn event(&self) -> &AuditEvent {
        &self.event
    }

    /// What was asked, e.g. `kv.read`.
    pub(crate) fn op(&mut self, op: &'static str) {
        self.event.operation = op.into();
    }

    /// Marks the event as the outcome of a request whose decision was
    /// committed ahead of it (`<op>.result`).
    pub(crate) fn as_result(&mut self) {
        self.event.operation = format!("{}.result", self.event.operation);
    }

    /// The canonical path (already canonical, so not escaped again).
    pub(crate) fn path(&mut self, canonical: &str) {
        self.event.path = canonical.to_owned();
    }

    /// The caller's identity: a resolved token.
    pub(crate) fn session(&mut self, token: &Arc<TokenRecord>) {
        self.event.identity = Some(token.accessor.clone());
        self.event.workload = Some(token.workload.clone());
        self.token = Some(token.clone());
    }

    /// The caller's token, once resolved.
    pub(crate) fn token(&self) -> Option<&Arc<TokenRecord>> {
        self.token.as_ref()
    }

    /// The workload a login named (caller text, escaped).
    pub(crate) fn workload(&mut self, name: &str) {
        self.event.workload = Some(escape_untrusted(name, 128));
    }

    /// An identity that is not a token's (the operator).
    pub(crate) fn identity(&mut self, identity: &str) {
        self.event.identity = Some(identity.to_owned());
    }

    /// What a login proved (never a JWT or a secret).
    pub(crate) fn attestation(&mut self, summary: serde_json::Value) {
        self.event.attestation = summary;
    }

    /// A reason to record for an allowed request (default `ok`).
    pub(crate) fn note(&mut self, reason: &str) {
        self.event.reason = reason.to_owned();
    }

    /// The lease this request issued or touched, by its digest.
    pub(crate) fn lease(&mut self, lease: &Digest) {
        self.event.lease_ref = Some(lease.to_hex());
    }

    /// The peer address.
    pub(crate) fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Settles the event as an allowed request answered with `status`.
    pub(crate) fn allow(&mut self, status: u16) {
        self.event.status = status;
        self.event.decision = Decision::Allowed;
        if self.event.reason.is_empty() {
            self.event.reason = "ok".into();
        }
    }

    /// Settles the event as a request refused (or failed) with `status`,
    /// for `reason` (already escaped).
    pub(crate) fn refuse(&mut self, decision: Decision, status: u16, reason: String) {
        self.event.status = status;
        self.event.decision = decision;
        self.event.reason = reason;
    }

    /// Notes in the reason that this request set off detection `id` of
    /// `detector` (after the outcome is settled).
    pub(crate) fn detected(&mut self, detector: &str, id: &str) {
        self.event.reason = format!("{}; detected: {detector} {id}", self.event.reason);
    }

    /// The event, to commit.
    pub(crate) fn into_event(self) -> AuditEvent {
        self.event
    }
}
