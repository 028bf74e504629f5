//! The `leash-broker` command line: the server and its offline work
//! (migrate, check, verify the audit chain, generate keys). Remote work
//! belongs to the `leash` operator CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use leash_domain::{Clock, KeyedHasher, SystemClock};

use crate::app::{App, connect_store, load_policies, read_key, read_secret_line, shutdown_signal};
use crate::config::Settings;
use crate::dev;

/// Leash: a secrets access broker for non-human identities.
#[derive(Debug, Parser)]
#[command(name = "leash-broker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a zero-configuration development broker (SQLite, dev issuer,
    /// sample policies and secrets), or mint a dev token with `dev token`.
    Dev(DevArgs),
    /// Run the broker from a configuration file (PostgreSQL or SQLite).
    Serve(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Validate the configuration and the policy set; print each problem
    /// with its file, line and reason; exit non-zero if there is any.
    Check(ConfigArg),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write 32 random bytes (base64) to a new file with mode 0600: a hash
    /// key, a built-in store key or an operator token.
    Keygen {
        /// The file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, env = "LEASH_CONFIG")]
    config: PathBuf,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct DevArgs {
    #[command(subcommand)]
    action: Option<DevAction>,
    /// Where the dev broker keeps everything.
    #[arg(long, default_value = ".leash-dev")]
    data_dir: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8200")]
    listen: SocketAddr,
}

#[derive(Debug, Subcommand)]
enum DevAction {
    /// Print a JWT for a sample workload, signed by the dev issuer.
    Token {
        /// The workload (a policy name, e.g. payments-api).
        workload: String,
        /// The dev broker's data directory.
        #[arg(long, default_value = ".leash-dev")]
        data_dir: PathBuf,
        /// Lifetime of the JWT, e.g. 15m.
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the audit log's hash chain directly in the database.
    Verify(ConfigArg),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    leash_domain::parse_duration(s).map_err(|e| e.to_string())
}

fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    Ok(Settings::load(path, std::env::vars())?)
}

/// The configured store and hash key, for offline commands.
async fn open_store(path: &Path) -> anyhow::Result<(Arc<dyn leash_store::Store>, KeyedHasher)> {
    let settings = load_settings(path)?;
    let hasher = KeyedHasher::new(&read_key(
        &settings.keys.hash_key_file,
        "keys.hash_key_file",
    )?)?;
    let store = connect_store(&settings, &hasher).await?;
    Ok((store, hasher))
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Dev(DevArgs {
            action:
                Some(DevAction::Token {
                    workload,
                    data_dir,
                    ttl,
                }),
            ..
        }) => {
            println!(
                "{}",
                dev::mint_token(&data_dir, &workload, ttl, clock.as_ref())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            let settings = dev::dev_settings(&args.data_dir, args.listen)?;
            let app = App::build(&settings, clock.clone()).await?;
            dev::seed(&app, clock.as_ref()).await?;
            let op = read_secret_line(&settings.operator.token_file, "operator token")?;
            let dir = args.data_dir.canonicalize()?;
            println!("{}", dev::walkthrough(&dir, app.local_addr()?, &op));
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(c) => {
            let settings = load_settings(&c.config)?;
            let app = App::build(&settings, clock).await?;
            tracing::info!(addr = %app.local_addr()?, "leash-broker listening");
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(c) => {
            let (store, _) = open_store(&c.config).await?;
            store.migrate().await.context("applying migrations")?;
            println!("migrations applied ({})", store.kind());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(c) => Ok(check(&c.config)),
        Command::Audit {
            command: AuditCommand::Verify(c),
        } => {
            let (store, hasher) = open_store(&c.config).await?;
            let report = crate::service::verify_audit_chain(store.as_ref(), &hasher).await?;
            if report.ok {
                println!(
                    "audit chain ok: {} events, head seq {}",
                    report.events,
                    report.head_seq.unwrap_or(0)
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit chain BROKEN after {} good events: {}",
                    report.events,
                    report.error.unwrap_or_default()
                );
                Ok(ExitCode::from(1))
            }
        }
        Command::Keygen { out } => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let key = leash_domain::crypto::random_b64(32)?;
            std::io::Write::write_all(&mut f, key.as_bytes())?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `check`: every problem on its own line as `file:line: reason`.
fn check(config: &Path) -> ExitCode {
    let mut problems: Vec<String> = Vec::new();
    let settings = match Settings::load(config, std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            println!("{e}");
            return ExitCode::from(1);
        }
    };
    let file = config.display();
    if let Err(e) = read_key(&settings.keys.hash_key_file, "keys.hash_key_file")
        .and_then(|k| KeyedHasher::new(&k).map_err(Into::into))
    {
        problems.push(format!("{file}:0: {e:#}"));
    }
    if let Some(k) = &settings.keys.builtin_key_file {
        match read_key(k, "keys.builtin_key_file") {
            Ok(key) if key.len() == 32 => {}
            Ok(key) => problems.push(format!(
                "{file}:0: keys.builtin_key_file must hold 32 bytes, it holds {}",
                key.len()
            )),
            Err(e) => problems.push(format!("{file}:0: {e:#}")),
        }
    }
    if let Err(e) = read_secret_line(&settings.operator.token_file, "operator.token_file") {
        problems.push(format!("{file}:0: {e:#}"));
    }
    for p in crate::files::secret_file_problems(&settings) {
        problems.push(format!("{file}:0: {p}"));
    }
    let names = match leash_attest::Issuers::load(&settings.issuers) {
        Ok(i) => i.names(),
        Err(e) => {
            problems.push(format!("{file}:0: issuers: {e}"));
            settings.issuers.iter().map(|i| i.name.clone()).collect()
        }
    };
    let workloads = match load_policies(&settings.policies.dir, &names) {
        Ok(set) => set.len(),
        Err(p) => {
            problems.extend(p);
            0
        }
    };
    if problems.is_empty() {
        println!(
            "ok: {workloads} workloads, {} issuers, {} mounts",
            settings.issuers.len(),
            settings.mounts.len()
        );
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            println!("{p}");
        }
        ExitCode::from(1)
    }
}
