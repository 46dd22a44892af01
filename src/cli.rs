//! The command line: sub-commands and their dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DatabaseUrl, SendConfig, ServeArgs, ENV_HELP};
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
    #[command(after_help = ENV_HELP)]
    Serve(ServeArgs),
    /// Send one message through Twilio with statushook's callback registered; prints the
    /// created message as JSON.
    Send(Box<SendArgs>),
    /// Write every message with its events as JSON lines or CSV (with the service stopped,
    /// or from a copy of the data folder).
    Export(ExportArgs),
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
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// postgres://… URL of the database.
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::config::Secret>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// postgres://… : check this database instead (it may be in use).
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::config::Secret>,
}

#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// The address the service listens on.
    #[arg(long, env = "STATUSHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// The endpoint to post to, e.g. http://127.0.0.1:8080/twilio/status.
    #[arg(long)]
    url: String,
    /// The URL to sign, as Twilio would call it ({PUBLIC_URL}/twilio/status); defaults to --url.
    #[arg(long)]
    signed_url: Option<String>,
    /// How many messages.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Callbacks a second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seed of the plan; the same seed makes the same plan.
    #[arg(long)]
    seed: Option<u64>,
    /// Callbacks in flight at once, at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// Only messages last updated at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    format: crate::export::Format,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
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
            Command::Export(args) => export(&args),
            Command::Simulate(args) => simulate(args),
            Command::Healthcheck(args) => healthcheck(&args),
            Command::Check(args) => check(&args),
            Command::Migrate(args) => migrate(&args),
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
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
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

/// Parses `--database-url`, reporting a malformed one as a configuration error.
fn database_url(raw: Option<&str>) -> Result<Option<DatabaseUrl>, ExitCode> {
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

fn migrate(args: &MigrateArgs) -> ExitCode {
    let url = match database_url(
        args.database_url
            .as_ref()
            .map(crate::config::Secret::expose),
    ) {
        Ok(Some(url)) => url,
        Ok(None) => {
            eprintln!("statushook: STATUSHOOK_DATABASE_URL: is required but not set");
            return ExitCode::from(CONFIG_ERROR);
        }
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(crate::store::postgres::migrate(&url)) {
        Ok(applied) if applied.is_empty() => {
            println!("statushook: {url:?} is up to date");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            println!("statushook: {url:?}: applied migrations {applied:?}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("statushook: migrating {url:?} failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check_postgres(url: &DatabaseUrl) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let checked = runtime.block_on(async {
        let store = crate::store::Store::open_postgres(url, Box::new(|_| {}))
            .await
            .map_err(|error| error.to_string())?;
        let report = store.check().await;
        let _ = store.close().await;
        report
    });
    match checked {
        Ok(report) => {
            println!(
                "statushook: {url:?} consistent: {} messages, {} events, {} listing positions",
                report.messages, report.events, report.index_entries
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("statushook: {url:?} is inconsistent: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match database_url(
        args.database_url
            .as_ref()
            .map(crate::config::Secret::expose),
    ) {
        Ok(Some(url)) => return check_postgres(&url),
        Ok(None) => {}
        Err(code) => return code,
    }
    let store = match open_existing(&args.data_dir) {
        Ok(store) => store,
        Err(code) => return code,
    };
    match store.check() {
        Ok(report) => {
            println!(
                "statushook: {} consistent: {} messages, {} events, {} index entries",
                args.data_dir.display(),
                report.messages,
                report.events,
                report.index_entries
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!(
                "statushook: {} is inconsistent: {problem}",
                args.data_dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Opens the store of an existing data folder for the offline sub-commands.
fn open_existing(data_dir: &std::path::Path) -> Result<crate::store::sled::SledStore, ExitCode> {
    if !data_dir.exists() {
        eprintln!(
            "statushook: --data-dir: {} does not exist",
            data_dir.display()
        );
        return Err(ExitCode::from(CONFIG_ERROR));
    }
    crate::store::sled::SledStore::open(data_dir, Box::new(|_| {})).map_err(|error| {
        eprintln!(
            "statushook: cannot open the store in {} ({error}); if statushook serve is running on it, stop it or use a copy",
            data_dir.display()
        );
        ExitCode::FAILURE
    })
}

fn export(args: &ExportArgs) -> ExitCode {
    let since = match args
        .since
        .as_deref()
        .map(crate::domain::Timestamp::parse_rfc3339)
        .transpose()
    {
        Ok(since) => since,
        Err(problem) => {
            eprintln!("statushook: --since: {problem}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    if !args.data_dir.exists() {
        eprintln!(
            "statushook: --data-dir: {} does not exist",
            args.data_dir.display()
        );
        return ExitCode::from(CONFIG_ERROR);
    }
    let store = match crate::store::sled::SledStore::open(&args.data_dir, Box::new(|_| {})) {
        Ok(store) => store,
        Err(error) => {
            eprintln!(
                "statushook: cannot open the store in {} ({error}); if statushook serve is running on it, stop it or export from a copy",
                args.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let written = match &args.output {
        Some(path) => std::fs::File::create(path)
            .map_err(crate::export::ExportError::from)
            .and_then(|file| {
                crate::export::export(
                    &store,
                    since,
                    args.format,
                    &mut std::io::BufWriter::new(file),
                )
            }),
        None => crate::export::export(
            &store,
            since,
            args.format,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
    };
    match written {
        Ok(count) => {
            eprintln!("statushook: exported {count} messages");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("statushook: export failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(args: SimulateArgs) -> ExitCode {
    use crate::simulate::{plan, run, Options};
    let Some(token) = std::env::var("TWILIO_AUTH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        eprintln!(
            "statushook: TWILIO_AUTH_TOKEN: is required but not set (it signs the callbacks)"
        );
        return ExitCode::from(CONFIG_ERROR);
    };
    if !args.rate.is_finite() || args.rate <= 0.0 {
        eprintln!("statushook: --rate: must be a positive number of callbacks a second");
        return ExitCode::from(CONFIG_ERROR);
    }
    let options = Options {
        signed_url: args.signed_url.unwrap_or_else(|| args.url.clone()),
        url: args.url,
        token: crate::config::Secret::new(token),
        messages: args.messages,
        rate: args.rate,
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        concurrency: args.concurrency,
    };
    let planned = plan(&options);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = runtime.block_on(run(&options, &planned));
    for message in &planned {
        println!("{}", serde_json::to_string(message).unwrap_or_default());
    }
    eprintln!(
        "statushook: {} callbacks for {} messages in {:.1}s (seed {}): {} answered 200, {} refused, {} unanswered",
        report.callbacks, planned.len(), report.seconds, options.seed, report.answered_200, report.refused, report.failed
    );
    if report.answered_200 == report.callbacks {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    // A service bound to every interface is asked on loopback.
    let address = args
        .listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let url = format!("http://{address}/healthz");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let answered: Result<bool, reqwest::Error> = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()?;
        Ok(client.get(&url).send().await?.status().is_success())
    });
    match answered {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("statushook: {url} is not healthy");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("statushook: {url}: {error}");
            ExitCode::FAILURE
        }
    }
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
