//! `statushook serve` (the service) and `statushook healthcheck` (for container health
//! checks).

use std::process::ExitCode;

use super::{one_line, runtime, CONFIG_ERROR};
use crate::config::{Config, ServeArgs};
use crate::startup::Application;

#[derive(Debug, clap::Args)]
pub(super) struct HealthcheckArgs {
    /// The address the service listens on.
    #[arg(long, env = "STATUSHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

pub(super) fn serve(args: &ServeArgs) -> ExitCode {
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
        // One line, the error and its causes, each once, on stderr; not also through the
        // log, which writes to stderr too.
        Err(error) => {
            eprintln!("statushook: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

pub(super) fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
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
