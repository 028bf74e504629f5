//! Vault's `sys/` status endpoints and the KV preflight.
//!
//! `sys/health`, `sys/seal-status`, `sys/leader` and `sys/init` are
//! unauthenticated and unaudited (Vault's short list): they carry no
//! identity and reveal nothing but liveness. Leash is "sealed" for them while
//! its state store is unreachable, because it then serves nothing.
//!
//! `sys/internal/ui/mounts/<path>` is the preflight every `vault kv` command
//! and Vault Agent template sends. It answers only to a token whose workload
//! has some scope under the mount, and is audited like any request.

use leash_domain::audit::escape_untrusted;
use serde_json::json;

use super::{Broker, Incoming, Pending, Req, ServiceError};
use crate::audit::Record;
use crate::wire::Envelope;
use crate::wire::Reply;

/// The status endpoints, unauthenticated and unaudited.
pub(crate) const STATUS_ENDPOINTS: [&str; 4] =
    ["sys/health", "sys/seal-status", "sys/leader", "sys/init"];

/// The query value of `key` in a raw query string.
fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

/// A status code from a health override parameter (Vault accepts any
/// integer; HTTP needs 100..=599).
fn code(query: Option<&str>, key: &str, default: u16) -> u16 {
    query_value(query, key)
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|c| (100..=599).contains(c))
        .unwrap_or(default)
}

impl Broker {
    /// The unaudited status endpoint `which` (`sys/health`,
    /// `sys/seal-status`, `sys/leader` or `sys/init`, see
    /// [`STATUS_ENDPOINTS`]).
    pub(crate) async fn status_endpoint(&self, which: &str, inc: &Incoming) -> Reply {
        if !matches!(inc.method.as_str(), "GET" | "HEAD") {
            return Reply::error(405, &[]);
        }
        let sealed = self.store.ping().await.is_err();
        let version = env!("CARGO_PKG_VERSION");
        match which {
            "sys/seal-status" => Reply::json(
                200,
                &json!({
                    "type": "leash", "initialized": true, "sealed": sealed, "t": 1, "n": 1,
                    "progress": 0, "nonce": "", "version": version, "migration": false,
                    "recovery_seal": false, "storage_type": self.store.kind(),
                    "cluster_name": "leash", "cluster_id": "",
                }),
            ),
            "sys/leader" => Reply::json(200, &json!({ "ha_enabled": false })),
            "sys/init" => Reply::json(200, &json!({ "initialized": true })),
            _ => {
                let q = inc.query.as_deref();
                let status = if sealed {
                    code(q, "sealedcode", 503)
                } else {
                    code(q, "activecode", 200)
                };
                let body = json!({
                    "initialized": true, "sealed": sealed, "standby": false,
                    "performance_standby": false,
                    "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
                    "server_time_utc": self.clock.now().timestamp(), "version": version,
                    "cluster_name": "leash", "cluster_id": "",
                });
                if inc.method == "HEAD" {
                    Reply::Empty { status }
                } else {
                    Reply::json(status, &body)
                }
            }
        }
    }

    /// `GET sys/internal/ui/mounts[/<path>]`.
    pub(crate) async fn mounts_preflight(
        &self,
        req: &Req<'_>,
        rec: &mut Record,
    ) -> Result<Pending, ServiceError> {
        rec.op("sys.mounts");
        req.require_method(&["GET"])?;
        let session = self.session(req, rec).await?;
        let workload = session.workload();
        let rest = req.segments().get(4..).unwrap_or(&[]);
        let Some(mount) = rest.first() else {
            // The mount listing: only mounts the caller can use.
            let mut secret = serde_json::Map::new();
            for (name, b) in &self.backends {
                if workload.has_access_under(name) {
                    secret.insert(format!("{name}/"), self.mount_info(name, b.kv_version()));
                }
            }
            return Ok(Pending::reply(Reply::json(
                200,
                &Envelope::data(&req.inc.request_id, json!({ "auth": {}, "secret": secret })),
            )));
        };
        match self.backends.get(mount.as_str()) {
            Some(b) if workload.has_access_under(mount) => Ok(Pending::reply(Reply::json(
                200,
                &Envelope::data(&req.inc.request_id, self.mount_info(mount, b.kv_version())),
            ))),
            _ => {
                let mut asked = rest.join("/");
                asked.push('/');
                Err(ServiceError::PreflightDenied(escape_untrusted(&asked, 256)))
            }
        }
    }

    fn mount_info(&self, mount: &str, kv_version: u8) -> serde_json::Value {
        json!({
            "accessor": format!("kv_{mount}"),
            "config": { "default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0 },
            "deprecation_status": "supported",
            "description": "Leash-brokered key/value secrets",
            "external_entropy_access": false,
            "local": false,
            // A string: the Go CLI panics on a number here.
            "options": { "version": kv_version.to_string() },
            "path": format!("{mount}/"),
            "plugin_version": "",
            "running_plugin_version": concat!("leash-", env!("CARGO_PKG_VERSION")),
            "running_sha256": "",
            "seal_wrap": false,
            "type": "kv",
            "uuid": "",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_overrides() {
        assert_eq!(code(Some("activecode=299"), "activecode", 200), 299);
        assert_eq!(
            code(Some("standbyok=true&activecode=204"), "activecode", 200),
            204
        );
        assert_eq!(code(Some("activecode=abc"), "activecode", 200), 200);
        assert_eq!(code(Some("activecode=99999"), "activecode", 200), 200);
        assert_eq!(code(None, "sealedcode", 503), 503);
        assert_eq!(code(Some(""), "activecode", 200), 200);
    }
}
