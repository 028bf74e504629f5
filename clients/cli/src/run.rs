//! Runs a parsed [`Cli`]: reads the token, calls the broker through
//! `leash_client`, prints the answer and picks the exit code.
//!
//! The token is read only for commands that need one (not `login`), and is
//! printed only by `login`. Every failure ends as one `leash: <message>`
//! line on stderr.

use std::fmt;
use std::io::{Read, Write};

use leash_client::LeashClient;
use serde_json::{Value, json};

use crate::error::with_causes;
use crate::output::{self, sanitize};
use crate::secret;
use crate::{
    AuditCommand, Cli, CliError, Command, Exit, KvCommand, LeaseCommand, LoginCommand,
    OutputFormat, TokenCommand,
};

/// Where a command reads and writes, and the `LEASH_TOKEN` value: the real
/// process streams in `main`, buffers in tests.
pub struct Console<'a> {
    /// Results.
    pub stdout: Box<dyn Write + 'a>,
    /// Errors, hints, warnings.
    pub stderr: Box<dyn Write + 'a>,
    /// Read for `--token-file -` and `--jwt-file -`.
    pub stdin: Box<dyn Read + 'a>,
    /// The value of `LEASH_TOKEN`, if set.
    pub env_token: Option<String>,
}

impl Console<'static> {
    /// The process's stdio and environment.
    pub fn std() -> Self {
        Self {
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
            stdin: Box::new(std::io::stdin()),
            env_token: std::env::var("LEASH_TOKEN").ok(),
        }
    }
}

impl fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("env_token", &self.env_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// [`run`] on a fresh single-threaded runtime.
pub fn run_blocking(cli: Cli, console: &mut Console<'_>) -> Exit {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli, console)),
        Err(e) => {
            let _ = writeln!(console.stderr, "leash: cannot start the runtime: {e}");
            Exit::Usage
        }
    }
}

/// Runs one command; on failure prints `leash: <message>` to stderr.
pub async fn run(cli: Cli, console: &mut Console<'_>) -> Exit {
    let result = execute(cli, console).await;
    let _ = console.stdout.flush();
    match result {
        Ok(exit) => exit,
        Err(e) => {
            let _ = writeln!(console.stderr, "leash: {}", sanitize(&e.to_string()));
            e.exit()
        }
    }
}

async fn execute(cli: Cli, c: &mut Console<'_>) -> Result<Exit, CliError> {
    let client = LeashClient::new(&cli.addr)?;
    let fmt = cli.output;
    if let Command::Login(LoginCommand::Jwt { role, jwt_file }) = &cli.command {
        let jwt = secret::read_secret(jwt_file, "JWT", &mut c.stdin)?;
        let auth = client.jwt_login(role, &jwt).await?;
        match fmt {
            OutputFormat::Text => {
                writeln!(c.stdout, "{}", sanitize(&auth.client_token))?;
                write!(c.stderr, "{}", output::login_hint(role, &auth))?;
            }
            OutputFormat::Json => write!(
                c.stdout,
                "{}",
                output::json_text(&output::login_json(&auth))
            )?,
        }
        return Ok(Exit::Ok);
    }
    let token = secret::resolve_token(
        cli.token_file.as_deref(),
        c.env_token.as_deref(),
        &mut c.stdin,
    )?;
    let client = client.with_token(token);
    match cli.command {
        Command::Login(_) => Ok(Exit::Ok),
        Command::Status => {
            let s = client.status().await?;
            print(c, fmt, || output::status_text(&s), || to_json(&s))?;
            Ok(Exit::Ok)
        }
        Command::Kv(cmd) => kv_cmd(cmd, &client, fmt, c).await,
        Command::Lease(cmd) => lease_cmd(cmd, &client, fmt, c).await,
        Command::Token(cmd) => token_cmd(cmd, &client, fmt, c).await,
        Command::Audit(cmd) => audit_cmd(cmd, &client, fmt, c).await,
        Command::Detections(cmd) => containment::detections_cmd(cmd, &client, fmt, c).await,
        Command::Identity(cmd) => containment::identity_cmd(cmd, &client, fmt, c).await,
        Command::Revoke { accessor, workload } => {
            let n = match (accessor, workload) {
                (Some(a), None) => client.admin_revoke_accessor(&a).await?,
                (None, Some(w)) => client.admin_revoke_workload(&w).await?,
                _ => {
                    return Err(CliError::Usage(
                        "give either --accessor or --workload".into(),
                    ));
                }
            };
            print(
                c,
                fmt,
                || format!("revoked {n} token(s) and lease(s)\n"),
                || json!({ "revoked": n }),
            )
            .map(|()| Exit::Ok)
        }
    }
}

async fn kv_cmd(
    cmd: KvCommand,
    client: &LeashClient,
    fmt: OutputFormat,
    c: &mut Console<'_>,
) -> Result<Exit, CliError> {
    match cmd {
        KvCommand::Get { path, version } => {
            let (mount, rest) = split_mount(&path)?;
            if rest.trim_matches('/').is_empty() {
                return Err(CliError::Usage(
                    "kv get needs MOUNT/PATH, e.g. secret/app/db".into(),
                ));
            }
            let s = client.kv_read(mount, rest, version).await?;
            print(c, fmt, || output::kv_text(&s), || output::kv_json(&s))?;
        }
        KvCommand::List { path } => {
            let (mount, rest) = split_mount(&path)?;
            let keys = client.kv_list(mount, rest).await?;
            print(c, fmt, || output::keys_text(&keys), || json!(keys))?;
        }
    }
    Ok(Exit::Ok)
}

async fn lease_cmd(
    cmd: LeaseCommand,
    client: &LeashClient,
    fmt: OutputFormat,
    c: &mut Console<'_>,
) -> Result<Exit, CliError> {
    match cmd {
        LeaseCommand::Lookup { lease_id } => {
            let l = client.lease_lookup(&lease_id).await?;
            print(c, fmt, || output::lease_info_text(&l), || to_json(&l))?;
        }
        LeaseCommand::Renew {
            lease_id,
            increment,
        } => {
            let r = client.lease_renew(&lease_id, increment).await?;
            print(c, fmt, || output::renewal_text(&r), || to_json(&r))?;
            write!(c.stderr, "{}", output::warnings_text(&r.warnings))?;
        }
        LeaseCommand::Revoke {
            lease_id,
            prefix,
            operator,
        } => {
            let target = match (lease_id, prefix) {
                (Some(id), None) => Target::Lease(id),
                (None, Some(p)) => Target::Prefix(p),
                _ => {
                    return Err(CliError::Usage(
                        "give either a LEASE_ID or --prefix PREFIX".into(),
                    ));
                }
            };
            if operator {
                let n = match &target {
                    Target::Lease(id) => client.admin_revoke_lease(id).await?,
                    Target::Prefix(p) => client.admin_revoke_prefix(p).await?,
                };
                print(
                    c,
                    fmt,
                    || format!("revoked {n} lease(s)\n"),
                    || json!({ "revoked": n }),
                )?;
            } else {
                match &target {
                    Target::Lease(id) => client.lease_revoke(id).await?,
                    Target::Prefix(p) => client.lease_revoke_prefix(p).await?,
                }
                print(c, fmt, || "revoked\n".into(), || json!({ "ok": true }))?;
            }
        }
    }
    Ok(Exit::Ok)
}

enum Target {
    Lease(String),
    Prefix(String),
}

async fn token_cmd(
    cmd: TokenCommand,
    client: &LeashClient,
    fmt: OutputFormat,
    c: &mut Console<'_>,
) -> Result<Exit, CliError> {
    match cmd {
        TokenCommand::Lookup => {
            let t = client.token_lookup_self().await?;
            print(
                c,
                fmt,
                || output::token_info_text(&t),
                || output::token_info_json(&t),
            )?;
        }
        TokenCommand::Renew { increment } => {
            let a = client.token_renew_self(increment).await?;
            print(
                c,
                fmt,
                || output::token_renew_text(&a),
                || output::token_renew_json(&a),
            )?;
        }
        TokenCommand::Revoke => {
            client.token_revoke_self().await?;
            print(
                c,
                fmt,
                || "token revoked\n".into(),
                || json!({ "ok": true }),
            )?;
        }
    }
    Ok(Exit::Ok)
}

async fn audit_cmd(
    cmd: AuditCommand,
    client: &LeashClient,
    fmt: OutputFormat,
    c: &mut Console<'_>,
) -> Result<Exit, CliError> {
    match cmd {
        AuditCommand::List { after, limit } => {
            let events = client.audit_events(after, limit).await?;
            print(
                c,
                fmt,
                || events.iter().map(output::audit_line).collect(),
                || to_json(&events),
            )?;
            Ok(Exit::Ok)
        }
        AuditCommand::Verify => {
            // Any failure to get an answer is exit 2, even a refusal: 1 is
            // reserved for "the chain is broken".
            let v = client
                .audit_verify()
                .await
                .map_err(|e| CliError::Other(with_causes(&e)))?;
            if v.ok {
                print(c, fmt, || output::verify_ok_text(&v), || to_json(&v))?;
                Ok(Exit::Ok)
            } else {
                if fmt == OutputFormat::Json {
                    write!(c.stdout, "{}", output::json_text(&to_json(&v)))?;
                }
                writeln!(c.stderr, "leash: {}", output::verify_broken_message(&v))?;
                Ok(Exit::Refused)
            }
        }
    }
}

/// Splits `MOUNT/PATH` at the first `/` (a leading `/` is ignored).
fn split_mount(full: &str) -> Result<(&str, &str), CliError> {
    let full = full.strip_prefix('/').unwrap_or(full);
    let (mount, rest) = full.split_once('/').unwrap_or((full, ""));
    if mount.is_empty() {
        return Err(CliError::Usage(
            "the path must start with the mount, e.g. secret/app/db".into(),
        ));
    }
    Ok((mount, rest))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Prints the text or the JSON rendering on stdout.
fn print(
    c: &mut Console<'_>,
    fmt: OutputFormat,
    text: impl FnOnce() -> String,
    json: impl FnOnce() -> Value,
) -> Result<(), CliError> {
    match fmt {
        OutputFormat::Text => c.stdout.write_all(text().as_bytes())?,
        OutputFormat::Json => c.stdout.write_all(output::json_text(&json()).as_bytes())?,
    }
    Ok(())
}

mod containment;

#[cfg(test)]
mod tests;
