//! The `leash` CLI as a library: argument definitions ([`Cli`]), the
//! command runner ([`run`]) and output formatting.
//!
//! Tokens and JWTs are read from the environment, a file or stdin, never
//! from a command-line flag, and are never printed except the token that
//! `leash login` exists to print.

mod cli;
mod error;
mod output;
mod run;
mod secret;

pub use cli::{
    AuditCommand, Cli, Command, DetectionsCommand, IdentityArgs, IdentityCommand, KvCommand,
    LeaseCommand, LoginCommand, OutputFormat, TokenCommand,
};
pub use error::{CliError, Exit};
pub use run::{Console, run, run_blocking};
