//! The use cases: log in, read, list, renew, revoke, and the operator's
//! status, revocation and audit queries.
//!
//! [`Broker::handle`] is the one entry point. It routes a request, and every
//! route ends in exactly one [`CommitUnit`] — the audit event plus, where
//! state changes, the mutation — committed through the group committer
//! before the reply leaves. A reply carrying a secret is built only after
//! its lease and audit row have committed; if they cannot commit the caller
//! gets 503 and nothing else. The only unaudited paths are `sys/health` and
//! `sys/seal-status`, which carry no identity (as in Vault).

mod admin;
mod kv;
mod leases;
mod login;
mod sys;
mod tokens;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, SubsecRound, Utc};
use leash_attest::Issuers;
use leash_backend::SecretBackend;
use leash_domain::audit::escape_untrusted;
use leash_domain::{
    AuditEvent, Clock, CommitUnit, Decision, Digest, KeyedHasher, Mutation, Outcome, Refusal,
    SecretToken, TokenRecord,
};
use leash_policy::{PathError, PolicySet, Workload, canonicalize};
use leash_store::Store;
use serde::de::DeserializeOwned;

use crate::committer::Committer;
use crate::wire::{Envelope, Reply};

pub use admin::{ChainReport, verify_audit_chain};

/// Largest number of characters of caller-supplied text kept in an event.
const MAX_LOGGED: usize = 512;

/// A request as the HTTP layer hands it over.
#[derive(Debug)]
pub struct Incoming {
    /// A fresh request id (UUID).
    pub request_id: String,
    /// Upper-case method (`GET`, `LIST`, …).
    pub method: String,
    /// The path after `/v1/`, still percent-encoded; `None` when the path
    /// does not start with `/v1/`.
    pub raw_path: Option<String>,
    /// The raw query, if any.
    pub query: Option<String>,
    /// The presented token, if any.
    pub token: Option<SecretToken>,
    /// Set when the token headers were ambiguous or malformed.
    pub token_problem: Option<&'static str>,
    /// The peer address.
    pub peer: IpAddr,
    /// The body, or why it could not be read.
    pub body: Result<Vec<u8>, BodyProblem>,
    /// `X-Vault-Wrap-TTL` was present.
    pub wants_wrapping: bool,
    /// `X-Vault-Namespace`, if present.
    pub namespace: Option<String>,
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Larger than the configured limit.
    TooLarge,
    /// The connection failed while reading.
    Unreadable,
}

/// A refusal on the way to a reply: what the caller sees and what the
/// audit log records.
#[derive(Debug)]
pub(crate) struct Refused {
    status: u16,
    /// Client-facing messages; empty for Vault's bare 404.
    errors: Vec<String>,
    /// Recorded in the audit log.
    reason: String,
    decision: Decision,
}

impl Refused {
    /// 403 `permission denied`.
    pub(crate) fn denied(reason: impl Into<String>) -> Self {
        Self {
            status: 403,
            errors: vec!["permission denied".into()],
            reason: reason.into(),
            decision: Decision::Denied,
        }
    }

    /// 400 with a message the caller sees and the log records.
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        Self {
            status: 400,
            errors: vec![msg.clone()],
            reason: msg,
            decision: Decision::Denied,
        }
    }

    /// A status with one message.
    pub(crate) fn status(status: u16, msg: impl Into<String>) -> Self {
        let msg = msg.into();
        Self {
            status,
            errors: vec![msg.clone()],
            reason: msg,
            decision: Decision::Denied,
        }
    }

    /// Vault's bare 404 `{"errors":[]}`.
    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        Self {
            status: 404,
            errors: vec![],
            reason: reason.into(),
            decision: Decision::Denied,
        }
    }

    /// 503: a dependency is down; nothing was handed out.
    pub(crate) fn unavailable(what: &str, cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, source = ?cause.source(), "{what} unavailable");
        Self {
            status: 503,
            errors: vec![format!("{what} unavailable")],
            reason: format!("{what} unavailable"),
            decision: Decision::Error,
        }
    }

    /// 502: the secret store answered something unusable.
    pub(crate) fn bad_gateway(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "secret store error");
        Self {
            status: 502,
            errors: vec!["secret store error".into()],
            reason: format!("secret store error: {cause}"),
            decision: Decision::Error,
        }
    }

    fn reply(&self) -> Reply {
        let errors: Vec<&str> = self.errors.iter().map(String::as_str).collect();
        Reply::error(self.status, &errors)
    }
}

/// A route's result: the unit to commit and the reply to release once it
/// has committed.
pub(crate) struct Pending {
    mutation: Option<Mutation>,
    reply: Reply,
    /// What the caller gets if the mutation's condition fails at commit.
    refusal: Option<Refusal>,
    /// How the reply depends on the commit's outcome.
    then: Then,
}

/// What to answer once the unit has committed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Then {
    /// The prepared reply.
    Reply,
    /// `{"revoked": N}`: the rows the mutation changed.
    Count,
    /// KV v2 write metadata with the version the store assigned.
    Written,
}

impl Pending {
    pub(crate) fn reply(reply: Reply) -> Self {
        Self {
            mutation: None,
            reply,
            refusal: None,
            then: Then::Reply,
        }
    }

    pub(crate) fn mutate(mutation: Mutation, reply: Reply, refusal: Refusal) -> Self {
        Self {
            mutation: Some(mutation),
            reply,
            refusal: Some(refusal),
            then: Then::Reply,
        }
    }

    /// Replies with the number of rows the mutation changed.
    pub(crate) fn with_count(mut self) -> Self {
        self.then = Then::Count;
        self
    }

    /// Replies with KV v2 write metadata for the version written.
    pub(crate) fn written(mut self) -> Self {
        self.then = Then::Written;
        self
    }
}

/// What is known about a request as it is handled; becomes its audit event.
#[derive(Debug)]
pub(crate) struct AuditCtx {
    event: AuditEvent,
}

impl AuditCtx {
    fn new(inc: &Incoming, now: DateTime<Utc>) -> Self {
        let path = inc.raw_path.as_deref().map_or_else(
            || "<outside /v1/>".to_owned(),
            |p| escape_untrusted(p, MAX_LOGGED),
        );
        Self {
            event: AuditEvent {
                request_id: inc.request_id.clone(),
                time: now,
                identity: None,
                workload: None,
                peer: inc.peer.to_string(),
                operation: "unknown".into(),
                method: escape_untrusted(&inc.method, 16),
                path,
                decision: Decision::Allowed,
                status: 200,
                reason: String::new(),
                lease_ref: None,
                attestation: serde_json::Value::Object(Default::default()),
            },
        }
    }

    pub(crate) fn op(&mut self, op: &'static str) {
        self.event.operation = op.into();
    }

    pub(crate) fn path(&mut self, canonical: &str) {
        self.event.path = canonical.to_owned();
    }

    pub(crate) fn session(&mut self, token: &TokenRecord) {
        self.event.identity = Some(token.accessor.clone());
        self.event.workload = Some(token.workload.clone());
    }

    pub(crate) fn workload(&mut self, name: &str) {
        self.event.workload = Some(escape_untrusted(name, 128));
    }

    pub(crate) fn identity(&mut self, identity: &str) {
        self.event.identity = Some(identity.to_owned());
    }

    pub(crate) fn attestation(&mut self, summary: serde_json::Value) {
        self.event.attestation = summary;
    }

    pub(crate) fn note(&mut self, reason: &str) {
        self.event.reason = reason.to_owned();
    }

    pub(crate) fn lease(&mut self, lease: &Digest) {
        self.event.lease_ref = Some(lease.to_hex());
    }
}

/// A resolved, live token and the workload policy it runs under.
pub(crate) struct Session {
    pub(crate) token: Arc<TokenRecord>,
    pub(crate) policies: Arc<PolicySet>,
}

impl Session {
    pub(crate) fn workload(&self) -> Result<&Workload, Refused> {
        self.policies
            .workload(&self.token.workload)
            .ok_or_else(|| Refused::denied("workload is no longer declared"))
    }
}

/// The policy set in force, swapped whole on reload.
#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<Arc<PolicySet>>,
    generation: AtomicU64,
    failed_reloads: AtomicU64,
}

impl PolicyHandle {
    /// Starts with `set` as generation 1.
    pub fn new(set: PolicySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(1),
            failed_reloads: AtomicU64::new(0),
        }
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current
            .read()
            .map_or_else(|e| e.into_inner().clone(), |g| g.clone())
    }

    /// Installs a new set.
    pub fn replace(&self, set: PolicySet) {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        *g = Arc::new(set);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a refused reload.
    pub fn reload_failed(&self) {
        self.failed_reloads.fetch_add(1, Ordering::SeqCst);
    }

    /// (generation, failed reloads).
    pub fn counters(&self) -> (u64, u64) {
        (
            self.generation.load(Ordering::SeqCst),
            self.failed_reloads.load(Ordering::SeqCst),
        )
    }
}

/// Everything a request needs. Shared behind an `Arc`.
pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) committer: Committer,
    pub(crate) policies: Arc<PolicyHandle>,
    pub(crate) issuers: Issuers,
    pub(crate) hasher: KeyedHasher,
    pub(crate) backends: HashMap<String, Arc<dyn SecretBackend>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) operator: Digest,
    /// The guards of external stores, for health and metrics.
    pub(crate) guards: HashMap<String, Arc<leash_backend::Guarded>>,
    /// Token records read recently.
    pub(crate) sessions: Arc<crate::sessions::SessionCache>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store.kind())
            .field("mounts", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a route needs to know about the request.
pub(crate) struct Req<'a> {
    pub(crate) inc: &'a Incoming,
    pub(crate) segments: &'a [String],
    pub(crate) trailing_slash: bool,
    pub(crate) now: DateTime<Utc>,
}

impl Req<'_> {
    pub(crate) fn method(&self) -> &str {
        &self.inc.method
    }

    /// The value of a query parameter (first occurrence).
    pub(crate) fn query(&self, key: &str) -> Option<String> {
        let q = self.inc.query.as_deref()?;
        q.split('&').filter(|p| !p.is_empty()).find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    /// Parses the JSON body leniently: an empty body is `{}`, any
    /// Content-Type is accepted (node-vault sends form-encoded empty bodies).
    pub(crate) fn json<T: DeserializeOwned + Default>(&self) -> Result<T, Refused> {
        let body = match &self.inc.body {
            Ok(b) => b,
            Err(BodyProblem::TooLarge) => {
                return Err(Refused::status(413, "request body too large"));
            }
            Err(BodyProblem::Unreadable) => {
                return Err(Refused::bad_request("request body could not be read"));
            }
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(body).map_err(|e| {
            // serde_json's messages name positions and expected types, never
            // the input itself beyond a short unexpected token.
            Refused::bad_request(format!(
                "failed to decode JSON input: {}",
                escape_untrusted(&e.to_string(), 200)
            ))
        })
    }

    /// The path segments after `skip` as one string, for lease ids and
    /// prefixes carried in the path.
    pub(crate) fn rest(&self, skip: usize) -> Option<String> {
        let rest = self.segments.get(skip..)?;
        if rest.is_empty() {
            return None;
        }
        let mut s = rest.join("/");
        if self.trailing_slash {
            s.push('/');
        }
        Some(s)
    }
}

/// Parses Vault durations: integer seconds, or Go-style strings (`"30m"`).
pub(crate) fn parse_increment(v: &serde_json::Value) -> Result<Option<i64>, Refused> {
    let bad = || Refused::bad_request("invalid increment");
    let secs = match v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        serde_json::Value::String(s) if s.is_empty() => return Ok(None),
        serde_json::Value::String(s) => {
            let d = crate::config::duration_str::parse(s).ok_or_else(bad)?;
            i64::try_from(d.as_secs()).map_err(|_| bad())?
        }
        _ => return Err(bad()),
    };
    if secs < 0 {
        return Err(bad());
    }
    Ok(if secs == 0 { None } else { Some(secs) })
}

/// Formats a TTL for Vault's cap warning.
pub(crate) fn cap_warning(asked: i64, capped: i64) -> String {
    format!(
        "TTL of \"{asked}s\" exceeded the effective max_ttl of \"{capped}s\"; TTL value is capped accordingly"
    )
}

impl Broker {
    /// Handles one request, start to finish.
    pub async fn handle(&self, inc: Incoming) -> Reply {
        // Microseconds: what every store keeps exactly, so TTLs computed from
        // stored times come out in whole seconds.
        let now = self.clock.now().trunc_subsecs(6);
        // Unaudited, unauthenticated status endpoints (Vault's short list).
        if let Some(raw) = inc.raw_path.as_deref()
            && let Some(reply) = self.status_endpoint(raw, &inc).await
        {
            return reply;
        }
        let mut ctx = AuditCtx::new(&inc, now);
        let result = self.route(&inc, &mut ctx, now).await;
        self.finish(ctx, result).await
    }

    async fn finish(&self, mut ctx: AuditCtx, result: Result<Pending, Refused>) -> Reply {
        match result {
            Ok(p) => {
                ctx.event.status = p.reply.status();
                ctx.event.decision = Decision::Allowed;
                if ctx.event.reason.is_empty() {
                    ctx.event.reason = "ok".into();
                }
                let request_id = ctx.event.request_id.clone();
                let time = ctx.event.time;
                let fallback = p.refusal.clone();
                let revokes = match &p.mutation {
                    Some(m @ (Mutation::RevokeToken { .. } | Mutation::RevokeTokens { .. })) => {
                        Some(m.clone())
                    }
                    _ => None,
                };
                let unit = CommitUnit {
                    mutations: p.mutation.into_iter().collect(),
                    event: ctx.event,
                    on_refusal: p.refusal,
                };
                let committed = self.committer.commit(unit).await;
                // Before the reply: this replica's next request must not
                // find the revoked token in its cache. (Others evict on the
                // announcement the commit carried.) Also on a failed
                // commit, which may have committed after all.
                if let Some(m) = &revokes {
                    self.sessions.evict_for(m);
                }
                match committed {
                    Ok(c) => match (c.outcome, p.then) {
                        (Outcome::NotApplied(why), _) => {
                            let r = why.refusal(fallback.as_ref());
                            Reply::error(r.status, &[r.reason.as_str()])
                        }
                        (Outcome::Applied { affected }, Then::Count) => Reply::json(
                            200,
                            &Envelope::data(
                                &request_id,
                                serde_json::json!({ "revoked": affected }),
                            ),
                        ),
                        (Outcome::Written { version }, Then::Written) => Reply::json(
                            200,
                            &Envelope::data(
                                &request_id,
                                crate::wire::KvMetadata {
                                    created_time: crate::wire::rfc3339(time),
                                    custom_metadata: None,
                                    deletion_time: String::new(),
                                    destroyed: false,
                                    version,
                                },
                            ),
                        ),
                        _ => p.reply,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "request failed: audit commit");
                        Reply::error(503, &["audit log unavailable; request not processed"])
                    }
                }
            }
            Err(refused) => {
                ctx.event.status = refused.status;
                ctx.event.decision = refused.decision;
                ctx.event.reason = escape_untrusted(&refused.reason, MAX_LOGGED);
                match self.committer.commit(CommitUnit::event(ctx.event)).await {
                    Ok(_) => refused.reply(),
                    Err(e) => {
                        tracing::error!(error = %e, "refusal could not be audited");
                        Reply::error(503, &["audit log unavailable; request not processed"])
                    }
                }
            }
        }
    }

    async fn route(
        &self,
        inc: &Incoming,
        ctx: &mut AuditCtx,
        now: DateTime<Utc>,
    ) -> Result<Pending, Refused> {
        let Some(raw) = inc.raw_path.as_deref() else {
            return Err(Refused::not_found("path outside /v1/"));
        };
        if let Some(problem) = inc.token_problem {
            return Err(Refused::bad_request(problem));
        }
        if inc.wants_wrapping {
            return Err(Refused::bad_request(
                "response wrapping (X-Vault-Wrap-TTL) is not supported by Leash",
            ));
        }
        if let Some(ns) = inc.namespace.as_deref()
            && !matches!(ns.trim_matches('/'), "" | "root")
        {
            return Err(
                Refused::not_found("namespace not found").with_message("namespace not found")
            );
        }
        let path = match canonicalize(raw) {
            Ok(p) => p,
            Err(PathError::EmptySegment { .. }) => {
                // As Vault does: redirect to the cleaned path, which is then
                // checked like any other (node-vault's `auth//login` bug).
                ctx.op("redirect");
                let mut cleaned = String::from("/v1/");
                cleaned.push_str(
                    &raw.split('/')
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
                if raw.ends_with('/') {
                    cleaned.push('/');
                }
                if let Some(q) = inc.query.as_deref() {
                    cleaned.push('?');
                    cleaned.push_str(q);
                }
                ctx.note("redirect to the path without empty segments");
                return Ok(Pending::reply(Reply::Redirect { location: cleaned }));
            }
            Err(e) => return Err(Refused::bad_request(e.to_string())),
        };
        let segments: Vec<String> = path.segments().to_vec();
        let req = Req {
            inc,
            segments: &segments,
            trailing_slash: path.trailing_slash(),
            now,
        };
        ctx.path(&escape_untrusted(path.as_str(), MAX_LOGGED));
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        match seg.as_slice() {
            ["auth", "jwt" | "kubernetes", "login"] => self.jwt_login(&req, ctx).await,
            ["auth", "approle", "login"] => self.approle_login(&req, ctx).await,
            ["sys", "internal", "ui", "mounts", ..] => self.mounts_preflight(&req, ctx).await,
            ["auth", "token", "lookup-self"] => self.token_lookup_self(&req, ctx).await,
            ["auth", "token", "renew-self"] => self.token_renew_self(&req, ctx).await,
            ["auth", "token", "revoke-self"] => self.token_revoke_self(&req, ctx).await,
            ["sys", "leases", "lookup", ..] => self.lease_lookup(&req, ctx).await,
            ["sys", "leases", "renew", ..] => self.lease_renew(&req, ctx).await,
            ["sys", "leases", "revoke", ..] => self.lease_revoke(&req, ctx, 3).await,
            ["sys", "leases", "revoke-prefix", ..] => self.lease_revoke_prefix(&req, ctx, 3).await,
            // node-vault's revokePrefix still uses the pre-0.7 Vault path.
            ["sys", "revoke-prefix", ..] => self.lease_revoke_prefix(&req, ctx, 2).await,
            ["leash", ..] => self.admin(&req, ctx).await,
            [mount, "data", ..] if self.kv_version(mount) == Some(2) => {
                self.kv_data(&req, ctx, kv::Shape::V2).await
            }
            [mount, "metadata", ..] if self.kv_version(mount) == Some(2) => {
                self.kv_metadata(&req, ctx).await
            }
            [mount, ..] if self.kv_version(mount) == Some(1) => {
                self.kv_data(&req, ctx, kv::Shape::V1).await
            }
            ["auth", ..] => {
                // An auth path Leash does not serve: Vault answers 403 to a
                // caller without a root token, and so does Leash (it says
                // nothing about which auth methods exist).
                ctx.op("auth.unknown");
                Err(Refused::denied("no such auth method"))
            }
            _ => {
                ctx.op("unknown");
                Err(Refused::status(
                    404,
                    format!(
                        "no handler for route \"{}\"",
                        escape_untrusted(path.as_str(), 128)
                    ),
                ))
            }
        }
    }

    /// Resolves the token to a live session whose workload is still
    /// declared and whose conditions hold now. Every refusal is 403.
    pub(crate) async fn authenticate(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<Session, Refused> {
        let token = req
            .inc
            .token
            .as_ref()
            .ok_or_else(|| Refused::denied("missing token"))?;
        let digest = self.hasher.token(token);
        let cached = self.sessions.get(&digest, req.now);
        self.sessions.count(cached.is_some());
        let record = match cached {
            Some(r) => r,
            None => {
                let epoch = self.sessions.epoch();
                let r = Arc::new(
                    self.store
                        .token(&digest)
                        .await
                        .map_err(|e| Refused::unavailable("state store", &e))?
                        .ok_or_else(|| Refused::denied("unknown token"))?,
                );
                self.sessions.put(r.clone(), epoch, req.now);
                r
            }
        };
        ctx.session(&record);
        if record.revoked_at.is_some() {
            return Err(Refused::denied("token revoked"));
        }
        if record.expires_at <= req.now {
            return Err(Refused::denied("token expired"));
        }
        let policies = self.policies.current();
        let session = Session {
            token: record,
            policies,
        };
        // Conditions include an AppRole's bound CIDRs: its token is usable
        // only from there.
        session
            .workload()?
            .check_conditions(req.inc.peer, req.now)
            .map_err(|d| Refused::denied(d.to_string()))?;
        Ok(session)
    }

    /// Checks the operator token, in constant time.
    pub(crate) fn authenticate_operator(
        &self,
        req: &Req<'_>,
        ctx: &mut AuditCtx,
    ) -> Result<(), Refused> {
        let token = req
            .inc
            .token
            .as_ref()
            .ok_or_else(|| Refused::denied("missing token"))?;
        let presented = self.hasher.digest(
            leash_domain::crypto::label::OPERATOR,
            token.expose().as_bytes(),
        );
        if !presented.ct_eq(&self.operator) {
            return Err(Refused::denied("not an operator token"));
        }
        ctx.identity("operator");
        Ok(())
    }

    /// The KV version of `mount`, if it is one.
    fn kv_version(&self, mount: &str) -> Option<u8> {
        self.backends.get(mount).map(|b| b.kv_version())
    }

    /// Requires one of `methods`.
    pub(crate) fn require_method(req: &Req<'_>, methods: &[&str]) -> Result<(), Refused> {
        if methods.contains(&req.method()) {
            Ok(())
        } else {
            Err(Refused::status(405, "unsupported operation"))
        }
    }

    /// A plain envelope reply.
    pub(crate) fn envelope<D: serde::Serialize>(req: &Req<'_>, data: D) -> Reply {
        Reply::json(200, &Envelope::data(&req.inc.request_id, data))
    }
}

impl Refused {
    /// Keeps the caller's message but records a more precise reason.
    pub(crate) fn reason_is(mut self, reason: &str) -> Self {
        self.reason = reason.to_owned();
        self
    }

    fn with_message(mut self, msg: &str) -> Self {
        self.errors = vec![msg.to_owned()];
        self
    }
}

/// Clamps a duration in seconds into `[now, cap]` and returns (expiry, ttl).
pub(crate) fn expiry(
    now: DateTime<Utc>,
    ttl_secs: i64,
    cap: DateTime<Utc>,
) -> (DateTime<Utc>, i64) {
    let wanted = now + chrono::Duration::seconds(ttl_secs);
    let at = wanted.min(cap);
    (at, (at - now).num_seconds().max(0))
}

/// Seconds of a std duration, saturating.
pub(crate) fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}
