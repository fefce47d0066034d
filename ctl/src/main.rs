//! `fluxbase`: Fluxbase Admin's control binary. A thin shell: every action is a call of
//! a `fluxbase_admin` extension function.

mod admin;
mod api;
mod audit;
mod client;
mod config;
mod db;
mod explorer;
mod extension;
mod notices;
mod pages;
mod realtime;
mod realtime_events;
mod server;
mod sql_runner;
mod tables_api;
mod state;
mod telemetry;
mod web;

use std::process::ExitCode;

use clap::Parser;

use config::{Cli, Command, ExtensionCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fluxbase=info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, no backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => server::serve(args.validate()?).await,
        Command::Admin(command) => admin::run(command).await,
        Command::Audit(command) => audit::run(command).await,
        Command::Extension(ExtensionCommand::Install(args)) => extension::install(&args.validate()?).await,
    }
}
