//! Revocation: one identity's token and leases revoked three ways (by the
//! token itself, by the operator by accessor, by the operator by prefix),
//! each timed, while a second replica sharing the database is polled until
//! it refuses.
//!
//! Must never happen: a revocation timed when the replica already refused
//! before it (the probe must answer 200 first), or leases still live after
//! the revoking call left unreported.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::bao::SECRET_PATH;
use crate::leash::{self, Leash, REVOKE_ROLE};
use crate::options::Options;
use crate::pg;
use crate::phase::Env;
use crate::report::Revocation;

/// Live leases of the token with `accessor`.
async fn live_of(c: &mut sqlx::PgConnection, accessor: &str) -> anyhow::Result<i64> {
    let now = chrono::Utc::now().timestamp_micros();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM leases l JOIN tokens t ON t.hash = l.token_hash \
         WHERE t.accessor = $1 AND l.revoked_at IS NULL AND l.expires_at > $2",
    )
    .bind(accessor)
    .bind(now)
    .fetch_one(c)
    .await?;
    Ok(n)
}

/// How the second replica is asked whether the revocation reached it.
enum Probe {
    /// `auth/token/lookup-self` with the revoked token (refused: 403).
    Token { token: String },
    /// `sys/leases/lookup` of one revoked lease with its (live) token
    /// (refused: any 4xx).
    Lease { token: String, lease_id: String },
}

impl Probe {
    fn describe(&self) -> &'static str {
        match self {
            Probe::Token { .. } => "GET auth/token/lookup-self with the token, until 403",
            Probe::Lease { .. } => "PUT sys/leases/lookup of one of the leases, until 4xx",
        }
    }

    async fn status(&self, http: &reqwest::Client, base: &str) -> u16 {
        let req = match self {
            Probe::Token { token } => http
                .get(format!("{base}/v1/auth/token/lookup-self"))
                .header("X-Vault-Token", token),
            Probe::Lease { token, lease_id } => http
                .put(format!("{base}/v1/sys/leases/lookup"))
                .header("X-Vault-Token", token)
                .json(&json!({ "lease_id": lease_id })),
        };
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

/// An identity with `leases` live leases: one read through the API (its
/// lease id is returned) and the rest seeded, numbered from `from`.
async fn identity_with_leases(
    env: &Env,
    primary: &Leash,
    conn: &mut sqlx::PgConnection,
    leases: u64,
    from: i64,
) -> anyhow::Result<(leash::Login, String)> {
    let who = primary
        .login(REVOKE_ROLE, &env.home.jwt(REVOKE_ROLE)?)
        .await?;
    let r = primary
        .http()
        .get(format!("{}/v1/secret/data/{SECRET_PATH}", primary.url()))
        .header("X-Vault-Token", &who.token)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "the revocation identity cannot read: {}",
        r.status()
    );
    let body: serde_json::Value = r.json().await?;
    let lease_id = body["lease_id"]
        .as_str()
        .context("a read without lease_id")?
        .to_owned();
    if leases > 1 {
        pg::seed_leases(
            conn,
            &pg::SeedLeases {
                accessor: &who.accessor,
                workload: REVOKE_ROLE,
                path: &format!("secret/{SECRET_PATH}"),
                lease_path: &format!("secret/data/{SECRET_PATH}"),
                from,
                count: i64::try_from(leases - 1)?,
                ttl: Duration::from_secs(7200),
            },
        )
        .await?;
        pg::settle_leases(conn).await?;
    }
    Ok((who, lease_id))
}

/// Sends `revoke` to the primary while polling the replica with `probe`.
async fn timed_revocation(
    method: &str,
    primary: &Leash,
    replica: &Leash,
    conn: &mut sqlx::PgConnection,
    accessor: &str,
    probe: Probe,
    revoke: reqwest::RequestBuilder,
) -> anyhow::Result<Revocation> {
    let leases = live_of(conn, accessor).await?;
    let before = probe.status(replica.http(), &replica.url()).await;
    anyhow::ensure!(
        before == 200,
        "{method}: the replica refuses before the revocation ({before})"
    );
    let replica_probe = probe.describe().to_owned();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let http = replica.http().clone();
    let base = replica.url();
    let poller = tokio::spawn(async move {
        let _ = go_rx.await;
        let mut rtts = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let t = Instant::now();
            let s = probe.status(&http, &base).await;
            rtts.push(t.elapsed().as_secs_f64() * 1000.0);
            if (400..500).contains(&s) {
                return (Some(Instant::now()), rtts);
            }
        }
        (None, rtts)
    });
    let _ = go_tx.send(());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    let r = revoke.send().await?;
    let t1 = Instant::now();
    let status = r.status().as_u16();
    let still_live_after = live_of(conn, accessor).await?;
    let (refused_at, mut rtts) = poller.await?;
    rtts.sort_by(f64::total_cmp);
    let replica_poll_rtt_ms = rtts.get(rtts.len() / 2).copied().unwrap_or(0.0);
    let replica_refused_after_ms = refused_at.map(|at| {
        if at >= t1 {
            at.duration_since(t1).as_secs_f64() * 1000.0
        } else {
            -(t1.duration_since(at).as_secs_f64() * 1000.0)
        }
    });
    let _ = primary;
    Ok(Revocation {
        method: method.to_owned(),
        leases,
        still_live_after,
        status,
        revoke_ms: (t1 - t0).as_secs_f64() * 1000.0,
        replica_probe,
        replica_refused_after_ms,
        replica_poll_rtt_ms,
    })
}

/// The three revocation methods, timed, with a second replica on the same
/// database polled until it refuses.
pub(crate) async fn run(opts: &Options, env: &Env) -> anyhow::Result<Vec<Revocation>> {
    let (db, primary, config) = env.leash(opts, "revoke", 10).await?;
    let replica = env.home.start(&config, "revoke-replica").await?;
    let mut conn = db.connect().await?;
    let n = opts.revoke_leases.max(1);
    let mut out = Vec::new();

    // 1. The identity's token and every lease it holds.
    say!(opts, "revocation: {n} leases of one identity, by its token");
    let (who, _) = identity_with_leases(env, &primary, &mut conn, n, 0).await?;
    let revoke = primary
        .http()
        .post(format!("{}/v1/auth/token/revoke-self", primary.url()))
        .header("X-Vault-Token", &who.token);
    out.push(
        timed_revocation(
            "POST auth/token/revoke-self (the token and all its leases)",
            &primary,
            &replica,
            &mut conn,
            &who.accessor,
            Probe::Token {
                token: who.token.clone(),
            },
            revoke,
        )
        .await?,
    );

    // 2. The operator revokes one identity: its token and all its leases.
    say!(
        opts,
        "revocation: {n} leases of one identity, by the operator (accessor)"
    );
    let (who, _) = identity_with_leases(env, &primary, &mut conn, n, i64::try_from(n)?).await?;
    let revoke = primary
        .http()
        .post(format!("{}/v1/leash/leases/revoke", primary.url()))
        .header("X-Vault-Token", &env.home.operator_token)
        .json(&json!({ "accessor": who.accessor }));
    out.push(
        timed_revocation(
            "POST leash/leases/revoke {accessor} (operator: the token and all its leases)",
            &primary,
            &replica,
            &mut conn,
            &who.accessor,
            Probe::Token {
                token: who.token.clone(),
            },
            revoke,
        )
        .await?,
    );

    // 3. The operator revokes every lease under a prefix only this
    // identity holds live leases on (the others' are already revoked), as a
    // Vault client writes it: the secret's path and a slash.
    say!(
        opts,
        "revocation: {n} leases of one identity, by the operator (prefix)"
    );
    let (who, lease_id) =
        identity_with_leases(env, &primary, &mut conn, n, 2 * i64::try_from(n)?).await?;
    let revoke = primary
        .http()
        .post(format!("{}/v1/leash/leases/revoke", primary.url()))
        .header("X-Vault-Token", &env.home.operator_token)
        .json(&json!({ "prefix": format!("secret/data/{SECRET_PATH}/") }));
    out.push(
        timed_revocation(
            "POST leash/leases/revoke {prefix} (operator: the leases only)",
            &primary,
            &replica,
            &mut conn,
            &who.accessor,
            Probe::Lease {
                token: who.token.clone(),
                lease_id,
            },
            revoke,
        )
        .await?,
    );
    for r in &out {
        say!(
            opts,
            "{}: {} leases in {:.1} ms (status {}); replica refused {:?} ms after",
            r.method,
            r.leases,
            r.revoke_ms,
            r.status,
            r.replica_refused_after_ms
        );
    }
    drop(replica);
    Ok(out)
}
