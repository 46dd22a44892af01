//! `statushook streams setup` and `statushook streams status`: the Twilio Event Streams
//! webhook sink that delivers to `{PUBLIC_URL}/twilio/events` and its subscription to the
//! message status types, made or shown through Twilio's Event Streams API
//! (`TWILIO_EVENTS_API_BASE`, `https://events.twilio.com` by default) with the account's
//! credentials, as `send` uses them. `setup` is idempotent; both print JSON.

use std::process::ExitCode;

use super::{runtime, CONFIG_ERROR};
use crate::config::StreamsConfig;
use crate::twilio::event_streams::{self, EventStreamsClient};

#[derive(Debug, clap::Subcommand)]
pub(super) enum StreamsCommand {
    /// Create (or find) the webhook sink for {PUBLIC_URL}/twilio/events and its
    /// subscription to the message status events; a second run changes nothing. Prints
    /// what it found and did as JSON.
    Setup(SetupArgs),
    /// Show the sink for {PUBLIC_URL}/twilio/events and its subscriptions as JSON; exits 1
    /// when there is none or a message status type is not subscribed.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct SetupArgs {
    /// The base URL Twilio reaches statushook at; the sink delivers to
    /// {PUBLIC_URL}/twilio/events.
    #[arg(long, env = "STATUSHOOK_PUBLIC_URL")]
    public_url: Option<String>,
    /// Whether a new sink sends events in batches (arrays); an existing sink keeps its
    /// setting.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    batch: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct StatusArgs {
    /// The base URL Twilio reaches statushook at.
    #[arg(long, env = "STATUSHOOK_PUBLIC_URL")]
    public_url: Option<String>,
}

pub(super) fn command(command: StreamsCommand) -> ExitCode {
    let public_url = match &command {
        StreamsCommand::Setup(args) => args.public_url.as_deref(),
        StreamsCommand::Status(args) => args.public_url.as_deref(),
    };
    let config = match StreamsConfig::from_env(public_url) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("statushook: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let client = match EventStreamsClient::new(
        config.twilio.clone(),
        &config.events_api_base,
        config.twilio_timeout,
    ) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("statushook: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let destination = config.destination.as_str();
    let printed = match command {
        StreamsCommand::Setup(args) => runtime
            .block_on(event_streams::set_up(&client, destination, args.batch))
            .map(|setup| {
                eprintln!(
                    "statushook: sink {} {} for {}; subscription {} {}{}",
                    setup.sink.sid,
                    if setup.sink_created {
                        "created"
                    } else {
                        "found"
                    },
                    crate::config::loggable_url(destination),
                    setup.subscription.sid,
                    if setup.subscription_created {
                        "created"
                    } else {
                        "found"
                    },
                    if setup.types_added.is_empty() || setup.subscription_created {
                        String::new()
                    } else {
                        format!(", types added: {}", setup.types_added.join(", "))
                    }
                );
                (serde_json::to_string_pretty(&setup), true)
            }),
        StreamsCommand::Status(_) => runtime
            .block_on(event_streams::status(&client, destination))
            .map(|status| (serde_json::to_string_pretty(&status), status.is_complete())),
    };
    match printed {
        Ok((Ok(json), complete)) => {
            println!("{json}");
            if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok((Err(error), _)) => {
            eprintln!("statushook: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("statushook: {error}");
            ExitCode::FAILURE
        }
    }
}
