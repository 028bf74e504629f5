//! The `leash` binary: parse the command line, run it, exit. Nothing else
//! lives here; everything testable is in the `leash_cli` library.

use std::process::ExitCode;

use clap::Parser;
use leash_cli::{Cli, Console, Exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout with 0; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    let mut console = Console::std();
    leash_cli::run_blocking(cli, &mut console).into()
}
