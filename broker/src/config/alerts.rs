//! `[alerts]`: where detections are delivered — signed JSON webhooks, one
//! `[[alerts.webhooks]]` per target — and how deliveries are retried. A
//! target's address comes only from here, never from a request.
//!
//! Must never happen: a signing key in the file itself (the file names the
//! file that holds it); a plain-HTTP target that is not on this host; two
//! targets with one name (the name is part of every delivery id).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration_str;

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// The targets.
    pub webhooks: Vec<WebhookSettings>,
    /// The first retry comes this long after a failed attempt; each next
    /// one twice as long after, up to `max_backoff`.
    #[serde(with = "duration_str")]
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "duration_str")]
    pub max_backoff: Duration,
    /// A delivery still failing this long after its detection is given up
    /// (and stays in the outbox, marked so).
    #[serde(with = "duration_str")]
    pub give_up_after: Duration,
    /// How often the outbox is checked for deliveries due.
    #[serde(with = "duration_str")]
    pub poll_interval: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// `[[alerts.webhooks]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The target's name, in delivery ids and logs: `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Where the JSON is POSTed: `https://…`, or `http://` to a loopback
    /// address.
    pub url: String,
    /// The file holding the HMAC-SHA256 key the body is signed with.
    pub secret_file: PathBuf,
    /// How long one attempt may take.
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl AlertSettings {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for w in &self.webhooks {
            let name_ok = !w.name.is_empty()
                && w.name.len() <= 64
                && w.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                return Err(format!(
                    "alerts.webhooks: name `{}` must be 1-64 of a-z, 0-9, - and _",
                    w.name.escape_default()
                ));
            }
            if !names.insert(w.name.as_str()) {
                return Err(format!("alerts.webhooks: name `{}` is used twice", w.name));
            }
            check_url(&w.url).map_err(|e| format!("alerts.webhooks.{}.url: {e}", w.name))?;
        }
        if self.first_backoff.is_zero() || self.first_backoff > self.max_backoff {
            return Err("alerts: first_backoff must be above zero and at most max_backoff".into());
        }
        if self.poll_interval.is_zero() {
            return Err("alerts.poll_interval must be above zero".into());
        }
        Ok(())
    }
}

/// An `https` URL, or an `http` one to a loopback address.
fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a URL (expected https://host/path)".to_owned())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("needs a host, and no user info".into());
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(authority) => Ok(()),
        "http" => Err("plain http is allowed only to a loopback address; use https".into()),
        _ => Err(format!("unsupported scheme `{}`", scheme.escape_default())),
    }
}

/// Whether `authority` (`host[:port]`) names this host.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, url: &str) -> WebhookSettings {
        WebhookSettings {
            name: name.into(),
            url: url.into(),
            secret_file: "k".into(),
            timeout: default_timeout(),
        }
    }

    fn with(hooks: Vec<WebhookSettings>) -> AlertSettings {
        AlertSettings {
            webhooks: hooks,
            ..AlertSettings::default()
        }
    }

    #[test]
    fn targets_are_https_or_loopback_http() {
        assert!(
            with(vec![hook("soc", "https://hooks.example.com/leash")])
                .check()
                .is_ok()
        );
        assert!(
            with(vec![hook("local", "http://127.0.0.1:9000/x")])
                .check()
                .is_ok()
        );
        assert!(
            with(vec![hook("local", "http://[::1]:9000/x")])
                .check()
                .is_ok()
        );
        assert!(
            with(vec![hook("local", "http://localhost/x")])
                .check()
                .is_ok()
        );
        let plain = with(vec![hook("soc", "http://hooks.example.com/leash")]).check();
        assert!(plain.unwrap_err().contains("loopback"));
        assert!(with(vec![hook("soc", "ftp://x/")]).check().is_err());
        assert!(with(vec![hook("soc", "https://user@x/")]).check().is_err());
        assert!(
            with(vec![hook("soc", "hooks.example.com")])
                .check()
                .is_err()
        );
    }

    #[test]
    fn names_are_unique_and_plain() {
        let twice = with(vec![hook("a", "https://x/"), hook("a", "https://y/")]).check();
        assert!(twice.unwrap_err().contains("twice"));
        assert!(with(vec![hook("A b", "https://x/")]).check().is_err());
        assert!(with(vec![hook("", "https://x/")]).check().is_err());
    }
}
