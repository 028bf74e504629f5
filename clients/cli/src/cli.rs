//! The command line, as clap derive types. Doc comments are the help text.
//!
//! No argument may carry a token, a JWT or a secret value: those come from
//! `LEASH_TOKEN`, `--token-file` or `--jwt-file` (a path, `-` for stdin).
//! A test walks every argument to keep it that way.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// leash: talk to a Leash secrets broker, as a workload or as an operator.
///
/// The token comes from the LEASH_TOKEN environment variable or from
/// --token-file PATH (`-` reads stdin); there is no flag that takes a token.
///
/// Exit codes: 0 ok, 1 the broker refused or a check failed, 2 usage or
/// connection error.
#[derive(Debug, Parser)]
#[command(name = "leash", version, propagate_version = false)]
pub struct Cli {
    /// The broker's address.
    #[arg(
        long,
        env = "LEASH_ADDR",
        default_value = "http://127.0.0.1:8200",
        global = true,
        value_name = "URL"
    )]
    pub addr: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,

    /// Read the token from this file (`-` = stdin) instead of LEASH_TOKEN.
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text (`leash login` prints only the token).
    Text,
    /// JSON on stdout.
    Json,
}

/// The resources `leash` works on.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the broker's status (operator token).
    Status,
    /// Log in and get a token.
    #[command(subcommand)]
    Login(LoginCommand),
    /// Read and list KV v2 secrets.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Look up, renew and revoke leases.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Look up, renew and revoke the current token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read and verify the audit log (operator token).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List and show what the detectors found (operator token).
    #[command(subcommand)]
    Detections(DetectionsCommand),
    /// Show, quarantine and release one identity: a workload, issuer and
    /// subject, as a login attested them (operator token).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Revoke every token, and every lease, of one identity (a token
    /// accessor, as audit events name it) or of a whole workload, on every
    /// replica (operator token).
    Revoke {
        /// The accessor of the token to revoke.
        #[arg(
            long,
            required_unless_present = "workload",
            conflicts_with = "workload"
        )]
        accessor: Option<String>,
        /// Revoke every token of this workload.
        #[arg(long)]
        workload: Option<String>,
    },
}

/// Login methods.
#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Log in with a JWT. Text output is only the token, so
    /// `export LEASH_TOKEN=$(leash login jwt --role R --jwt-file F)` works.
    Jwt {
        /// The workload (role) to log in as.
        #[arg(long)]
        role: String,
        /// The file holding the JWT (`-` = stdin).
        #[arg(long, value_name = "PATH")]
        jwt_file: PathBuf,
    },
}

/// KV v2 commands. Paths are MOUNT/PATH: the first segment is the mount.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Read a secret: prints its lease and its key = value pairs.
    Get {
        /// MOUNT/PATH, e.g. `secret/app/db`.
        #[arg(value_name = "MOUNT/PATH")]
        path: String,
        /// Read this version instead of the latest.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// List the keys under a path (sub-paths end in `/`).
    List {
        /// MOUNT or MOUNT/PATH, e.g. `secret/app`.
        #[arg(value_name = "MOUNT/PATH")]
        path: String,
    },
}

/// Lease commands (the caller's own leases unless --operator).
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Show a lease's TTL and times.
    Lookup {
        /// The lease id (from `leash kv get`).
        lease_id: String,
    },
    /// Extend a lease.
    Renew {
        /// The lease id.
        lease_id: String,
        /// Seconds to ask for (default: the workload's TTL; capped at max TTL).
        #[arg(long, value_name = "SECS")]
        increment: Option<u64>,
    },
    /// Revoke one lease, or every lease under a prefix.
    Revoke {
        /// The lease id.
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        lease_id: Option<String>,
        /// Revoke every lease whose id starts with PREFIX.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Use the operator API (any workload's leases; needs an operator token).
        #[arg(long)]
        operator: bool,
    },
}

/// Commands on the current token.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Show the token's TTL, policies and metadata (never the token).
    Lookup,
    /// Extend the token.
    Renew {
        /// Seconds to ask for (default: the workload's TTL; capped at max TTL).
        #[arg(long, value_name = "SECS")]
        increment: Option<u64>,
    },
    /// Revoke the token and all its leases.
    Revoke,
}

/// Audit log commands (operator token).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events: `seq time decision status operation path workload reason`.
    List {
        /// Only events with a seq greater than this.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: i64,
        /// At most this many events (1-1000).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 100,
            value_parser = clap::value_parser!(u32).range(1..=1000)
        )]
        limit: u32,
    },
    /// Verify the audit hash chain: exit 0 when intact, 1 when broken.
    Verify,
}

/// Detection commands (operator token).
#[derive(Debug, Subcommand)]
pub enum DetectionsCommand {
    /// List detections: `seq at detector workload subject responses summary`.
    List {
        /// Only detections with a seq greater than this.
        #[arg(long, value_name = "SEQ")]
        after: Option<i64>,
        /// At most this many detections (1-1000).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 100,
            value_parser = clap::value_parser!(u32).range(1..=1000)
        )]
        limit: u32,
    },
    /// Show one detection with its evidence (exit 1 when there is none).
    Show {
        /// The detection's id (from `leash detections list`).
        id: String,
    },
}

/// Which identity: what a login attested.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// The workload.
    #[arg(long)]
    pub workload: String,
    /// The issuer that attested it (the JWT's `iss`).
    #[arg(long)]
    pub issuer: String,
    /// The attested subject (the JWT's `sub`).
    #[arg(long)]
    pub subject: String,
}

/// Identity commands (operator token).
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Show the identity's quarantine in force, its quarantine history and
    /// its recent detections.
    Show {
        #[command(flatten)]
        who: IdentityArgs,
    },
    /// Refuse the identity's logins on every replica, until released or for
    /// a while. Open sessions stay open: revoke them with `leash revoke`.
    Quarantine {
        #[command(flatten)]
        who: IdentityArgs,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
        /// How long (e.g. `30m`, `1h`, at least `1m`); default: until released.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// End the identity's quarantines in force.
    Release {
        #[command(flatten)]
        who: IdentityArgs,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("leash").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every argument of every subcommand: none may take a token, a JWT or a
    /// secret value, and none may read `LEASH_TOKEN` through clap.
    #[test]
    fn no_argument_takes_a_secret() {
        fn walk(cmd: &clap::Command, seen: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str().to_ascii_lowercase();
                let long = arg.get_long().unwrap_or_default().to_ascii_lowercase();
                seen.push(id.clone());
                for word in ["token", "jwt", "secret", "password", "value"] {
                    let named = id.contains(word) || long.contains(word);
                    let is_file = id.ends_with("_file") && long.ends_with("-file");
                    assert!(
                        !named || is_file,
                        "`{}` in `{}` looks like it takes a secret",
                        long,
                        cmd.get_name()
                    );
                }
                assert_ne!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some("LEASH_TOKEN"),
                    "LEASH_TOKEN must not be bound to an argument"
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&Cli::command(), &mut seen);
        assert!(seen.iter().any(|a| a == "token_file"));
        assert!(seen.iter().any(|a| a == "jwt_file"));
        assert!(parse(&["--token", "x", "status"]).is_err());
        assert!(parse(&["login", "jwt", "--role", "r", "--jwt", "x"]).is_err());
    }

    #[test]
    fn globals_and_defaults() {
        let cli = parse(&["status"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Text);
        assert!(cli.token_file.is_none());
        // The default, unless LEASH_ADDR is set in the test environment.
        if std::env::var_os("LEASH_ADDR").is_none() {
            assert_eq!(cli.addr, "http://127.0.0.1:8200");
        }
        let cli = parse(&[
            "kv",
            "get",
            "secret/app",
            "--output",
            "json",
            "--addr",
            "http://h:1",
            "--token-file",
            "-",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.addr, "http://h:1");
        assert_eq!(cli.token_file.as_deref(), Some(std::path::Path::new("-")));
        assert!(parse(&["--output", "yaml", "status"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = parse(&["kv", "get", "secret/a/b", "--version", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Kv(KvCommand::Get { ref path, version: Some(3) }) if path == "secret/a/b"
        ));
        let cli = parse(&["login", "jwt", "--role", "app", "--jwt-file", "-"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Login(LoginCommand::Jwt { ref role, ref jwt_file })
                if role == "app" && jwt_file.as_os_str() == "-"
        ));
        assert!(parse(&["login", "jwt", "--role", "app"]).is_err());

        let cli = parse(&["lease", "renew", "l1", "--increment", "60"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Lease(LeaseCommand::Renew {
                increment: Some(60),
                ..
            })
        ));
        let cli = parse(&["lease", "revoke", "--prefix", "secret/", "--operator"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Lease(LeaseCommand::Revoke {
                lease_id: None,
                prefix: Some(_),
                operator: true
            })
        ));
        assert!(parse(&["lease", "revoke"]).is_err());
        assert!(parse(&["revoke"]).is_err());
        assert!(parse(&["revoke", "--accessor", "a", "--workload", "w"]).is_err());
        assert!(matches!(
            parse(&["revoke", "--workload", "w"]).unwrap().command,
            Command::Revoke {
                workload: Some(_),
                accessor: None
            }
        ));
        assert!(parse(&["lease", "revoke", "l1", "--prefix", "p"]).is_err());

        let cli = parse(&["token", "renew", "--increment", "10"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Token(TokenCommand::Renew {
                increment: Some(10)
            })
        ));

        let cli = parse(&["audit", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Audit(AuditCommand::List {
                after: 0,
                limit: 100
            })
        ));
        assert!(parse(&["audit", "list", "--limit", "1001"]).is_err());
        assert!(parse(&["audit", "list", "--limit", "0"]).is_err());
        assert!(parse(&["audit", "verify"]).is_ok());

        let cli = parse(&["detections", "list", "--after", "4"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Detections(DetectionsCommand::List {
                after: Some(4),
                limit: 100
            })
        ));
        assert!(parse(&["detections", "list", "--limit", "0"]).is_err());
        assert!(parse(&["detections", "show"]).is_err());
        let args = |sub: &'static str, extra: &[&'static str]| {
            let mut v = vec!["identity", sub, "--workload", "w", "--issuer", "i"];
            v.extend(["--subject", "s"]);
            v.extend(extra);
            v
        };
        let cli = parse(&args("quarantine", &["--reason", "r", "--for", "1h"])).unwrap();
        assert!(matches!(
            cli.command,
            Command::Identity(IdentityCommand::Quarantine {
                ref who,
                reason: Some(_),
                duration: Some(ref d),
            }) if who.subject == "s" && d == "1h"
        ));
        assert!(parse(&args("show", &[])).is_ok());
        assert!(parse(&args("release", &[])).is_ok());
        assert!(parse(&["identity", "show", "--workload", "w", "--issuer", "i"]).is_err());
        assert!(parse(&args("show", &["--for", "1h"])).is_err());
    }
}
