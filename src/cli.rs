//! The command line: sub-commands and their dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, SendConfig, ServeArgs, ENV_HELP};
use crate::sender::{CreateMessage, RetryPolicy, SendError, TwilioClient};
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
    /// Send one message through Twilio with statushook's callback registered; prints the
    /// created message as JSON.
    Send(Box<SendArgs>),
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    /// The base URL Twilio reaches statushook at; the message's StatusCallback is
    /// {PUBLIC_URL}/twilio/status unless --status-callback is given.
    #[arg(long, env = "STATUSHOOK_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    message: CreateMessage,
}

/// Exit code of a missing or malformed setting.
const CONFIG_ERROR: u8 = 2;

impl Cli {
    pub fn run(self) -> ExitCode {
        telemetry::init(std::env::var("STATUSHOOK_LOG_FORMAT").is_ok_and(|f| f == "json"));
        match self.command {
            Command::Serve(args) => serve(&args),
            Command::Send(args) => send(*args),
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

fn send(args: SendArgs) -> ExitCode {
    let config = match SendConfig::from_env(args.public_url.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("statushook: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    if let Err(invalid) = args.message.validate() {
        eprintln!("statushook: {invalid}; nothing was sent");
        return ExitCode::from(CONFIG_ERROR);
    }
    let retry = RetryPolicy {
        timeout: config.twilio_timeout,
        ..RetryPolicy::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("statushook: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sent = runtime.block_on(async {
        let client = TwilioClient::new(config.twilio, retry)?;
        client
            .create_message(&args.message, &config.status_callback)
            .await
    });
    match sent {
        Ok(created) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&created).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(SendError::Twilio(error)) => {
            let code = error
                .code
                .map_or_else(|| "-".to_owned(), |code| code.to_string());
            eprintln!(
                "statushook: twilio error {code} (HTTP {}): {}",
                error.status, error.message
            );
            if let Some(more_info) = error.more_info {
                eprintln!("  {more_info}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("statushook: {error}");
            ExitCode::FAILURE
        }
    }
}
