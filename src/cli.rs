//! The command line: sub-commands and their dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs, ENV_HELP};
use crate::startup::Application;
use crate::telemetry;

/// Verify, store and query Twilio message status callbacks.
#[derive(Debug, Parser)]
#[command(name = "statushook", version, after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: receive callbacks, answer the API.
    Serve(ServeArgs),
}

/// Exit code of a missing or malformed setting.
const CONFIG_ERROR: u8 = 2;

impl Cli {
    pub fn run(self) -> ExitCode {
        telemetry::init(std::env::var("STATUSHOOK_LOG_FORMAT").is_ok_and(|f| f == "json"));
        match self.command {
            Command::Serve(args) => serve(&args),
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::for_serve(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("statushook: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        tracing::info!(port = app.port(), "listening");
        app.run_until_stopped().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("statushook: {error:#}");
            ExitCode::FAILURE
        }
    }
}
