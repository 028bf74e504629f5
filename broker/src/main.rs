//! `leash-broker`: parse arguments, start logging, run.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    leash_broker::telemetry::init();
    let cli = leash_broker::cli::Cli::parse();
    match leash_broker::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leash-broker: {e:#}");
            ExitCode::from(2)
        }
    }
}
