//! The command line: sub-commands and their dispatch, one file per family — `serve.rs`
//! (the service and its health check), `send.rs` (one message through Twilio),
//! `offline.rs` (export, import, check, compact, migrate: the tools that work on a store),
//! `simulate.rs` (playing Twilio against a running service) and `streams.rs` (the Twilio
//! Event Streams sink and subscription).

mod offline;
mod send;
mod serve;
pub mod simulate;
mod streams;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{DatabaseUrl, LogFormat, ServeArgs, ENV_HELP};
use crate::telemetry;
use offline::{CheckArgs, ExportArgs, ImportArgs, MigrateArgs};
use send::SendArgs;
use serve::HealthcheckArgs;
use simulate::SimulateArgs;
use streams::StreamsCommand;

/// Verify, store and query Twilio message status callbacks.
#[derive(Debug, Parser)]
// The version names the commit too (build.rs): `statushook 0.1.0 (commit 0123456789ab)`.
#[command(name = "statushook", version = env!("BUILD_VERSION"), after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: receive callbacks, answer the API.
    #[command(after_help = ENV_HELP)]
    Serve(ServeArgs),
    /// Send one message through Twilio with statushook's callback registered; prints the
    /// created message as JSON.
    Send(Box<SendArgs>),
    /// Write every message with its events as JSON lines or CSV: from a running service
    /// with --url (consistent as of the start), else from a stopped store's folder.
    Export(ExportArgs),
    /// Load a JSON-lines export into an empty store, sled or PostgreSQL (service stopped);
    /// the API then answers exactly as the exporting service did.
    Import(ImportArgs),
    /// Rewrite a stopped store into a fresh folder holding only its live data, so that no
    /// file keeps a deleted value (after an erasure); prints the sizes before and after.
    Compact(CheckArgs),
    /// Play Twilio: post realistic, signed callback sequences for N messages to an endpoint
    /// and print each message's plan as a JSON line (TWILIO_AUTH_TOKEN signs them).
    Simulate(SimulateArgs),
    /// Exit 0 if the local service answers /healthz (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Read a whole store (service stopped) and verify that its indexes and counters are
    /// exactly what its message records imply.
    Check(CheckArgs),
    /// Apply pending schema migrations to the PostgreSQL database (`serve` also does
    /// this at start-up).
    Migrate(MigrateArgs),
    /// Twilio Event Streams: set up (or show) the webhook sink for
    /// {PUBLIC_URL}/twilio/events and its subscription to the message status events.
    #[command(subcommand, after_help = ENV_HELP)]
    Streams(StreamsCommand),
}

/// Exit code of a missing or malformed setting.
pub(crate) const CONFIG_ERROR: u8 = 2;

impl Cli {
    pub fn run(self) -> ExitCode {
        match LogFormat::from_env() {
            Ok(format) => telemetry::init(format),
            Err(error) => {
                eprintln!("statushook: {error}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
        match self.command {
            Command::Serve(args) => serve::serve(&args),
            Command::Send(args) => send::send(*args),
            Command::Export(args) => offline::export(&args),
            Command::Import(args) => offline::import(&args),
            Command::Compact(args) => offline::compact(&args),
            Command::Simulate(args) => simulate::command(args),
            Command::Healthcheck(args) => serve::healthcheck(&args),
            Command::Check(args) => offline::check(&args),
            Command::Migrate(args) => offline::migrate(&args),
            Command::Streams(command) => streams::command(command),
        }
    }
}

/// Parses `--database-url`, reporting a malformed one as a configuration error.
pub(super) fn database_url(raw: Option<&str>) -> Result<Option<DatabaseUrl>, ExitCode> {
    match raw
        .filter(|raw| !raw.trim().is_empty())
        .map(DatabaseUrl::parse)
    {
        None => Ok(None),
        Some(Ok(url)) => Ok(Some(url)),
        Some(Err(problem)) => {
            eprintln!("statushook: STATUSHOOK_DATABASE_URL: {problem}");
            Err(ExitCode::from(CONFIG_ERROR))
        }
    }
}

/// An error and its causes on one line, each said once. Many errors print their source
/// in their own message as well (`the store is unavailable: IO error: …`), so a cause
/// whose text the line already holds is left out rather than repeated.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// A Tokio runtime for the one-shot sub-commands; a failure to build one is reported.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("statushook: cannot start a runtime: {error}");
            ExitCode::FAILURE
        })
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("the store is unavailable: {0}")]
    struct Unavailable(#[source] std::io::Error);

    #[test]
    fn a_cause_that_its_error_already_shows_is_said_once() {
        let io = std::io::Error::from_raw_os_error(28);
        let error = anyhow::Error::new(Unavailable(io)).context("cannot open the store in /data");
        let line = one_line(&error);
        assert_eq!(line.matches("(os error 28)").count(), 1, "{line}");
        assert!(line.starts_with("cannot open the store in /data: the store is unavailable: "));
        let plain = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(one_line(&plain), "outer: root cause");
    }
}
