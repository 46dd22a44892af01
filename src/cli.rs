//! The command line: sub-commands and their dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DatabaseUrl, LogFormat, SendConfig, ServeArgs, ENV_HELP};
use crate::sender::{CreateError, CreateMessage, RetryPolicy, TwilioClient};
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
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// postgres://… URL of the database.
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// postgres://… : check this database instead (it may be in use).
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
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
struct ImportArgs {
    /// The JSON-lines export to load (`-` for standard input).
    file: std::path::PathBuf,
    /// The sled database folder to load into; it must hold no message.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// postgres://… : load into this database instead; it must hold no message.
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// Export from the running service at this base URL (e.g. http://127.0.0.1:8080)
    /// through GET /v1/export, with STATUSHOOK_API_TOKEN, instead of from --data-dir.
    #[arg(long)]
    url: Option<String>,
    /// The API token for --url.
    #[arg(long, env = "STATUSHOOK_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Only messages last updated at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only messages last updated before this RFC 3339 time (with --url).
    #[arg(long)]
    until: Option<String>,
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
    message: MessageArgs,
}

/// The flags of `statushook send`: CreateMessage's parameters in kebab-case. The sender's
/// [`CreateMessage`] knows nothing of the command line; [`MessageArgs::into_request`] maps
/// the flags onto it.
#[derive(Debug, clap::Args)]
struct MessageArgs {
    /// Recipient: E.164 number or channel address (whatsapp:+1…).
    #[arg(long)]
    to: String,
    /// Sender: a Twilio number, short code, alphanumeric ID or channel address.
    #[arg(long)]
    from: Option<String>,
    /// MG… messaging service, instead of --from.
    #[arg(long)]
    messaging_service_sid: Option<String>,
    /// Text, at most 1,600 characters.
    #[arg(long)]
    body: Option<String>,
    /// Media URL; repeat for several (at most 10).
    #[arg(long)]
    media_url: Vec<String>,
    /// HX… content template.
    #[arg(long)]
    content_sid: Option<String>,
    /// JSON of template variables (needs --content-sid).
    #[arg(long)]
    content_variables: Option<String>,
    /// Status callback URL; defaults to {PUBLIC_URL}/twilio/status with retry overrides.
    #[arg(long)]
    status_callback: Option<String>,
    /// AP… TwiML application.
    #[arg(long)]
    application_sid: Option<String>,
    /// Obsolete; accepted and passed on.
    #[arg(long)]
    max_price: Option<f64>,
    /// true or false.
    #[arg(long)]
    provide_feedback: Option<bool>,
    /// Total attempts made to send the message, this one included.
    #[arg(long)]
    attempt: Option<i64>,
    /// Seconds the message may wait in Twilio's queue: 1 to 36000.
    #[arg(long)]
    validity_period: Option<i64>,
    /// Reserved by Twilio; true or false.
    #[arg(long)]
    force_delivery: Option<bool>,
    /// retain or discard.
    #[arg(long)]
    content_retention: Option<String>,
    /// retain or obfuscate.
    #[arg(long)]
    address_retention: Option<String>,
    /// true or false.
    #[arg(long)]
    smart_encoded: Option<bool>,
    /// Rich action (e.g. a WhatsApp location); repeat for several.
    #[arg(long)]
    persistent_action: Vec<String>,
    /// free.
    #[arg(long)]
    traffic_type: Option<String>,
    /// true or false (needs --messaging-service-sid).
    #[arg(long)]
    shorten_urls: Option<bool>,
    /// fixed (needs --send-at and --messaging-service-sid).
    #[arg(long)]
    schedule_type: Option<String>,
    /// RFC 3339 time to send at (needs --schedule-type fixed).
    #[arg(long)]
    send_at: Option<String>,
    /// true or false.
    #[arg(long)]
    send_as_mms: Option<bool>,
    /// enable or disable.
    #[arg(long)]
    risk_check: Option<String>,
    /// SMS sender to fall back to when RCS cannot reach the recipient.
    #[arg(long)]
    fallback_from: Option<String>,
    /// AC… subaccount to send from, with the configured account's credentials.
    #[arg(long)]
    account_sid: Option<String>,
}

impl MessageArgs {
    fn into_request(self) -> CreateMessage {
        CreateMessage {
            to: self.to,
            from: self.from,
            messaging_service_sid: self.messaging_service_sid,
            body: self.body,
            media_url: self.media_url,
            content_sid: self.content_sid,
            content_variables: self.content_variables,
            status_callback: self.status_callback,
            application_sid: self.application_sid,
            max_price: self.max_price,
            provide_feedback: self.provide_feedback,
            attempt: self.attempt,
            validity_period: self.validity_period,
            force_delivery: self.force_delivery,
            content_retention: self.content_retention,
            address_retention: self.address_retention,
            smart_encoded: self.smart_encoded,
            persistent_action: self.persistent_action,
            traffic_type: self.traffic_type,
            shorten_urls: self.shorten_urls,
            schedule_type: self.schedule_type,
            send_at: self.send_at,
            send_as_mms: self.send_as_mms,
            risk_check: self.risk_check,
            fallback_from: self.fallback_from,
            account_sid: self.account_sid,
        }
    }
}

/// Exit code of a missing or malformed setting.
const CONFIG_ERROR: u8 = 2;

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
            Command::Serve(args) => serve(&args),
            Command::Send(args) => send(*args),
            Command::Export(args) if args.url.is_some() => export_from_service(&args),
            Command::Export(args) => export(&args),
            Command::Import(args) => import(&args),
            Command::Compact(args) => compact(&args),
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
    let result = actix_web::rt::System::new()
        .block_on(async move { Application::build(config).await?.run_until_stopped().await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One line, the error and its causes, on stderr; not also through the log, which
        // writes to stderr too.
        Err(error) => {
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
    let message = args.message.into_request();
    if let Err(invalid) = message.validate() {
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
    let client = match TwilioClient::new(config.twilio, retry) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("statushook: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sent = runtime.block_on(client.create_message(&message, &config.status_callback));
    match sent {
        Ok(created) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&created).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(CreateError::Invalid(invalid)) => {
            eprintln!("statushook: {invalid}; nothing was sent");
            ExitCode::from(CONFIG_ERROR)
        }
        Err(
            CreateError::Refused(error)
            | CreateError::Credentials(error)
            | CreateError::RateLimited { error, .. }
            | CreateError::Failed(error),
        ) => {
            let code = error
                .code
                .map_or_else(|| "-".to_owned(), |code| code.to_string());
            let outcome = if error.status >= 500 {
                "the message may have been created"
            } else {
                "the message was not sent"
            };
            eprintln!(
                "statushook: twilio error {code} (HTTP {}): {}; {outcome}",
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
            .map(crate::secret::Secret::expose),
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
        let store = crate::store::Store::open_postgres(url, Box::new(|_| {})).await?;
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
            .map(crate::secret::Secret::expose),
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

/// `export --url`: streams `GET /v1/export` of a running service to the output.
fn export_from_service(args: &ExportArgs) -> ExitCode {
    let Some(token) = args.api_token.as_deref().filter(|t| !t.is_empty()) else {
        eprintln!("statushook: STATUSHOOK_API_TOKEN: is required but not set (for --url)");
        return ExitCode::from(CONFIG_ERROR);
    };
    let base = args
        .url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    let format = match args.format {
        crate::export::Format::Jsonl => "jsonl",
        crate::export::Format::Csv => "csv",
    };
    let mut query = vec![("format", format)];
    query.extend(args.since.as_deref().map(|since| ("since", since)));
    query.extend(args.until.as_deref().map(|until| ("until", until)));
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(error) => {
                eprintln!("statushook: --output: {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let started = std::time::Instant::now();
    let streamed = runtime.block_on(async {
        let mut response = reqwest::Client::new()
            .get(format!("{base}/v1/export"))
            .query(&query)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|error| format!("{base}: {error}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(format!("the service answered {status}: {body}"));
        }
        let mut lines = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| format!("the export broke off: {error}"))?
        {
            lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
            out.write_all(&chunk)
                .map_err(|error| format!("cannot write: {error}"))?;
        }
        out.flush()
            .map_err(|error| format!("cannot write: {error}"))?;
        Ok(lines)
    });
    match streamed {
        Ok(lines) => {
            let what = match args.format {
                crate::export::Format::Jsonl => "messages",
                crate::export::Format::Csv => "lines",
            };
            eprintln!(
                "statushook: exported {lines} {what} in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("statushook: export failed: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn import(args: &ImportArgs) -> ExitCode {
    let input: Box<dyn std::io::BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(&args.file) {
            Ok(file) => Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
            Err(error) => {
                eprintln!("statushook: {}: {error}", args.file.display());
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    };
    let url = match database_url(
        args.database_url
            .as_ref()
            .map(crate::secret::Secret::expose),
    ) {
        Ok(url) => url,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let loaded = runtime.block_on(async {
        let store = match &url {
            Some(url) => crate::store::Store::open_postgres(url, Box::new(|_| {}))
                .await
                .map_err(|error| format!("cannot open the store at {url:?} ({error})"))?,
            None => crate::store::Store::open_sled(&args.data_dir, Box::new(|_| {}))
                .map_err(|error| format!("cannot open the store in {} ({error}); if statushook serve is running on it, stop it", args.data_dir.display()))?,
        };
        let loaded = crate::import::load(&store, input).await;
        let closed = store.close().await;
        let loaded = loaded.map_err(|error| error.to_string())?;
        closed.map_err(|error| format!("the final flush failed: {error}"))?;
        Ok::<_, String>(loaded)
    });
    match loaded {
        Ok(loaded) => {
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "statushook: imported {} messages, {} events in {seconds:.1}s ({:.0} messages/s)",
                loaded.messages,
                loaded.events,
                loaded.messages as f64 / seconds.max(1e-6)
            );
            if loaded.moved > 0 {
                eprintln!(
                    "statushook: {} events shared a millisecond with more events than it has microseconds and moved to the next one",
                    loaded.moved
                );
            }
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("statushook: import failed: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn compact(args: &CheckArgs) -> ExitCode {
    if !args.data_dir.exists() {
        eprintln!(
            "statushook: --data-dir: {} does not exist",
            args.data_dir.display()
        );
        return ExitCode::from(CONFIG_ERROR);
    }
    match crate::store::sled::compact(&args.data_dir) {
        Ok(done) => {
            println!(
                "statushook: {} compacted: {} keys, {} bytes before, {} after",
                args.data_dir.display(),
                done.keys,
                done.bytes_before,
                done.bytes_after
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "statushook: cannot compact {} ({error}); if statushook serve is running on it, stop it",
                args.data_dir.display()
            );
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
        token: crate::secret::Secret::new(token),
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
    for failure in &report.failures {
        eprintln!("statushook: {failure}");
    }
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
