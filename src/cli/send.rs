//! `statushook send`: one message through Twilio's CreateMessage, with statushook's own
//! callback registered; prints the created message as JSON.

use std::process::ExitCode;

use super::{runtime, CONFIG_ERROR};
use crate::config::SendConfig;
use crate::twilio::client::{CreateError, RetryPolicy, TwilioClient};
use crate::twilio::create_message::CreateMessage;

#[derive(Debug, clap::Args)]
pub(super) struct SendArgs {
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

pub(super) fn send(args: SendArgs) -> ExitCode {
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
