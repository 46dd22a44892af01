//! The tools that work on a store outside a running service: `export`, `import`,
//! `check`, `compact` and `migrate`. Each opens the store through `store::Store` (a sled
//! folder, which only one process may open at a time, or a PostgreSQL database, which may
//! be in use) and never reaches inside it.

use std::path::Path;
use std::process::ExitCode;

use super::{database_url, runtime, CONFIG_ERROR};
use crate::archive::export;
use crate::config::DatabaseUrl;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub(super) struct MigrateArgs {
    /// postgres://… URL of the database.
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
}

#[derive(Debug, clap::Args)]
pub(super) struct CheckArgs {
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// postgres://… : check this database instead (it may be in use).
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
}

#[derive(Debug, clap::Args)]
pub(super) struct ImportArgs {
    /// The JSON-lines export to load (`-` for standard input).
    file: std::path::PathBuf,
    /// The sled database folder to load into; it must hold no message.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// postgres://… : load into this database instead; it must hold no message.
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
    /// Then restore the service's state written by `statushook export --state`: where the
    /// change feed had got to and forwarding's progress, so that feed consumers and
    /// forwarding go on where they stopped.
    #[arg(long)]
    state: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(super) struct ExportArgs {
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    data_dir: std::path::PathBuf,
    /// postgres://… : export from this database instead (it may be in use).
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<crate::secret::Secret>,
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
    format: crate::archive::export::Format,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Also write the service's own state (where the change feed has got to, forwarding's
    /// progress) to this file, for `statushook import --state` (not with --url).
    #[arg(long)]
    state: Option<std::path::PathBuf>,
}

pub(super) fn migrate(args: &MigrateArgs) -> ExitCode {
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
    match runtime.block_on(crate::store::migrate(&url)) {
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

/// Opens the store an offline tool works on: the database of `--database-url`, else the
/// existing sled folder of `--data-dir` (which a running service must not hold).
async fn open_existing(
    database_url: Option<&DatabaseUrl>,
    data_dir: &Path,
) -> Result<Store, String> {
    match database_url {
        Some(url) => Store::open_postgres(url, Box::new(|_| {}))
            .await
            .map_err(|error| format!("cannot open the store at {url:?} ({error})")),
        None => Store::open_sled(data_dir, Box::new(|_| {})).map_err(|error| {
            format!(
                "cannot open the store in {} ({error}); if statushook serve is running on it, stop it or use a copy",
                data_dir.display()
            )
        }),
    }
}

/// The store an offline tool names: a parsed `--database-url`, or a `--data-dir` that must
/// exist (an offline tool never creates an empty store by mistake).
fn existing_location(
    raw_url: Option<&crate::secret::Secret>,
    data_dir: &Path,
) -> Result<Option<DatabaseUrl>, ExitCode> {
    let url = database_url(raw_url.map(crate::secret::Secret::expose))?;
    if url.is_none() && !data_dir.exists() {
        eprintln!(
            "statushook: --data-dir: {} does not exist",
            data_dir.display()
        );
        return Err(ExitCode::from(CONFIG_ERROR));
    }
    Ok(url)
}

pub(super) fn check(args: &CheckArgs) -> ExitCode {
    let url = match existing_location(args.database_url.as_ref(), &args.data_dir) {
        Ok(url) => url,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let checked = runtime.block_on(async {
        let store = open_existing(url.as_ref(), &args.data_dir).await?;
        let report = store.check().await.map_err(|error| error.to_string());
        let _ = store.close().await;
        report
    });
    let (name, index_entries) = match &url {
        Some(url) => (format!("{url:?}"), "listing positions"),
        None => (args.data_dir.display().to_string(), "index entries"),
    };
    match checked {
        Ok(report) => {
            println!(
                "statushook: {name} consistent: {} messages, {} events, {} {index_entries}",
                report.messages, report.events, report.index_entries
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("statushook: {name} is inconsistent: {problem}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn export(args: &ExportArgs) -> ExitCode {
    if args.url.is_some() {
        if args.state.is_some() {
            eprintln!(
                "statushook: --state: the state is read from the store itself (--data-dir or \
                 --database-url), not with --url"
            );
            return ExitCode::from(CONFIG_ERROR);
        }
        return export_from_service(args);
    }
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
    let url = match existing_location(args.database_url.as_ref(), &args.data_dir) {
        Ok(url) => url,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let written = runtime.block_on(async {
        let store = open_existing(url.as_ref(), &args.data_dir).await?;
        let written = match &args.output {
            Some(path) => match std::fs::File::create(path) {
                Ok(file) => {
                    let mut out = std::io::BufWriter::new(file);
                    export::export(&store, since, args.format, &mut out).await
                }
                Err(error) => Err(export::ExportError::from(error)),
            },
            None => {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                export::export(&store, since, args.format, &mut out).await
            }
        };
        // Read after the messages: the feed position it names is past every one exported.
        let state = match (&written, &args.state) {
            (Ok(_), Some(path)) => crate::archive::state::read(&store)
                .await
                .and_then(|state| crate::archive::state::write(path, &state))
                .map_err(|error| format!("the state: {error}")),
            _ => Ok(()),
        };
        let _ = store.close().await;
        let written = written.map_err(|error| error.to_string())?;
        state.map(|()| written)
    });
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
        crate::archive::export::Format::Jsonl => "jsonl",
        crate::archive::export::Format::Csv => "csv",
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
                crate::archive::export::Format::Jsonl => "messages",
                crate::archive::export::Format::Csv => "lines",
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

pub(super) fn import(args: &ImportArgs) -> ExitCode {
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
    // Read before anything is written: a state file that does not read stops the import.
    let state = match args.state.as_deref().map(crate::archive::state::load) {
        None => None,
        Some(Ok(state)) => Some(state),
        Some(Err(error)) => {
            eprintln!("statushook: --state: {error}");
            return ExitCode::from(CONFIG_ERROR);
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
            Some(url) => Store::open_postgres(url, Box::new(|_| {}))
                .await
                .map_err(|error| format!("cannot open the store at {url:?} ({error})"))?,
            None => Store::open_sled(&args.data_dir, Box::new(|_| {}))
                .map_err(|error| format!("cannot open the store in {} ({error}); if statushook serve is running on it, stop it", args.data_dir.display()))?,
        };
        let mut loaded = crate::archive::import::load(&store, input)
            .await
            .map_err(|error| error.to_string());
        if let (Ok(_), Some(state)) = (&loaded, &state) {
            if let Err(error) = crate::archive::state::restore(&store, state).await {
                loaded = Err(format!("the messages are in, the state is not: {error}"));
            }
        }
        let closed = store.close().await;
        let loaded = loaded?;
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

pub(super) fn compact(args: &CheckArgs) -> ExitCode {
    if !args.data_dir.exists() {
        eprintln!(
            "statushook: --data-dir: {} does not exist",
            args.data_dir.display()
        );
        return ExitCode::from(CONFIG_ERROR);
    }
    match crate::store::compact(&args.data_dir) {
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
