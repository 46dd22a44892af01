//! `POST /twilio/events`: Twilio Event Streams, a webhook sink delivering CloudEvents.
//!
//! The checks run in the contract's order, as for `/twilio/status`: size (413, enforced by
//! the payload limit before this handler runs), content type (415), signature (403),
//! content (400); a request that fails one gets that answer and nothing after it runs.
//! The signature is Twilio's for JSON bodies: `X-Twilio-Signature` over the URL alone —
//! the configured public URL plus the request target exactly as received, which carries
//! `bodySHA256` — and the body's SHA-256 must equal that parameter (both compared in
//! constant time, every URL variant and configured token tried; see
//! `twilio::signature::verify_with_body_hash`).
//!
//! Twilio drops an event answered with a `4xx` other than `429`, and retries `429`, `5xx`
//! and time-outs for up to four hours. So the answers are chosen never to lose an event
//! that can be stored:
//! - `200` once every message status event of the body is durably stored (or already was:
//!   the same CloudEvent `id` again adds nothing). The events of a request are one write
//!   (`Store::record_all`): all durable before the `200`, or none of them and `503`.
//! - Events of a type statushook does not store (inbound messages, voice, …) are answered
//!   `200` too, and counted by type in `/metrics`.
//! - A batch with some members that cannot be read (not a CloudEvent, or a message status
//!   event without a readable `messageSid` or `messageStatus`): the others are stored, the
//!   unreadable ones counted and logged, `200` — answering `400` would make Twilio drop the
//!   good ones with them, and retrying cannot mend the bad ones.
//! - `400` only for a signed body that is not CloudEvents JSON: not JSON, not an event
//!   object or an array, a lone event that cannot be read, or a batch of nothing but
//!   unreadable members. The reason is logged.

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::config::{loggable_url, PublicUrl};
use crate::metrics::{EventOutcome, Metrics, Outcome, Tally};
use crate::startup::AppState;
use crate::store::{Recorded, StoreError};
use crate::telemetry::Repeats;
use crate::twilio::cloudevents::{self, BodyError, Invalid, Member};
use crate::twilio::signature::{self, Keys, SignatureError};

/// The largest body accepted: 1 MiB. Twilio does not document how many events a batch
/// holds. A `Messaging.MessageStatus` event is about 1 KB, and about 20 KB at most (a
/// 1,600-character body of non-ASCII text, JSON-escaped): 1 MiB holds 50 such worst-case
/// events and about a thousand ordinary ones. A `413` makes Twilio drop the batch, so the
/// limit errs on the large side; what it bounds is the memory a request can take before its
/// signature is checked.
pub const MAX_BODY: usize = 1024 * 1024;

/// The content types of CloudEvents in JSON: structured mode, batched mode, and plain JSON
/// (which Twilio sends).
const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
];

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("the body is larger than 1 MiB")]
    TooLarge,
    #[error("the body could not be read")]
    Unreadable,
    #[error("the content type must be application/json, application/cloudevents+json or application/cloudevents-batch+json")]
    UnsupportedMediaType,
    #[error("the request is not signed by Twilio")]
    Forbidden(#[source] SignatureError),
    #[error("{0}")]
    NotCloudEvents(#[source] BodyError),
    #[error("{0}")]
    UnreadableEvent(#[source] Invalid),
    #[error("no member of the batch is a readable CloudEvent; the first: {0}")]
    NothingReadable(#[source] Invalid),
    #[error("the store cannot take the write, retry later")]
    Unavailable(#[source] StoreError),
}

impl ResponseError for EventsError {
    fn status_code(&self) -> StatusCode {
        match self {
            EventsError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EventsError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            EventsError::Forbidden(_) => StatusCode::FORBIDDEN,
            EventsError::Unreadable
            | EventsError::NotCloudEvents(_)
            | EventsError::UnreadableEvent(_)
            | EventsError::NothingReadable(_) => StatusCode::BAD_REQUEST,
            EventsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let EventsError::Unavailable(error) = self {
            tracing::warn!(%error, "event stream request not stored; answered 503");
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl EventsError {
    fn outcome(&self) -> Outcome {
        match self {
            EventsError::TooLarge => Outcome::TooLarge,
            EventsError::UnsupportedMediaType => Outcome::UnsupportedMediaType,
            EventsError::Forbidden(_) => Outcome::Forged,
            EventsError::Unreadable
            | EventsError::NotCloudEvents(_)
            | EventsError::UnreadableEvent(_)
            | EventsError::NothingReadable(_) => Outcome::Malformed,
            EventsError::Unavailable(_) => Outcome::StoreError,
        }
    }
}

pub async fn event_streams(
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, EventsError> {
    let started = Instant::now();
    let result = match body {
        Ok(body) => receive(&request, &body, &state).await,
        // The payload limit (`MAX_BODY`) is checked while reading, before anything else.
        Err(error) if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(EventsError::TooLarge)
        }
        Err(_) => Err(EventsError::Unreadable),
    };
    let outcome = match &result {
        Ok(()) => Outcome::Stored,
        Err(error) => error.outcome(),
    };
    state.metrics.streams.request(outcome, started.elapsed());
    if let Err(
        error @ (EventsError::NotCloudEvents(_)
        | EventsError::UnreadableEvent(_)
        | EventsError::NothingReadable(_)
        | EventsError::Unreadable),
    ) = &result
    {
        if Repeats::global().first(&format!("event stream 400: {}", reason_kind(error))) {
            tracing::warn!(reason = %error, "event stream request refused with 400");
        }
    }
    result.map(|()| HttpResponse::Ok().finish())
}

async fn receive(request: &HttpRequest, body: &[u8], state: &AppState) -> Result<(), EventsError> {
    if !is_cloudevents_json(request) {
        return Err(EventsError::UnsupportedMediaType);
    }
    // Parsed before the signature is checked only to learn which accounts the events name,
    // which chooses the account tokens to try; a body that does not parse is answered once
    // its signature has verified.
    let parsed = cloudevents::parse(body);
    let accounts = parsed
        .as_ref()
        .map(cloudevents::accounts)
        .unwrap_or_default();
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |target| target.as_str());
    let url = state.public_url.join(target);
    let settings = header_str(request, "X-Twilio-Webhooks-Signature-Settings");
    signature::verify_with_body_hash(
        &state.signing_keys,
        &url,
        body,
        header_str(request, "X-Twilio-Signature"),
        settings,
        &accounts,
    )
    .map_err(|error| {
        log_forbidden(
            &error,
            &url,
            &state.public_url,
            &state.signing_keys,
            &accounts,
            settings,
        );
        EventsError::Forbidden(error)
    })?;
    let decoded = cloudevents::decode(parsed.map_err(EventsError::NotCloudEvents)?)
        .map_err(EventsError::NotCloudEvents)?;
    let mut statuses = Vec::with_capacity(decoded.members.len());
    let mut first_invalid = None;
    let mut readable = 0;
    let metrics = &state.metrics.streams;
    for member in decoded.members {
        match member {
            Member::Status { event, token } => {
                readable += 1;
                statuses.push((event, Some(token)));
            }
            Member::Ignored(kind) => {
                readable += 1;
                metrics.ignored(kind.as_str());
            }
            Member::Invalid(invalid) => {
                metrics.events(EventOutcome::Invalid, 1);
                if Repeats::global()
                    .first(&format!("event stream member: {}", invalid_kind(&invalid)))
                {
                    tracing::warn!(reason = %invalid, "an event of an event stream request cannot be read; the rest of the request is stored");
                }
                first_invalid.get_or_insert(invalid);
            }
        }
    }
    if let Some(invalid) = first_invalid.filter(|_| readable == 0) {
        return Err(if decoded.batch {
            EventsError::NothingReadable(invalid)
        } else {
            EventsError::UnreadableEvent(invalid)
        });
    }
    let tallies: Vec<Tally> = statuses.iter().map(|(event, _)| Tally::of(event)).collect();
    let outcomes = state
        .store
        .record_all(statuses)
        .await
        .map_err(EventsError::Unavailable)?;
    count(&state.metrics, tallies, &outcomes);
    Ok(())
}

fn count(metrics: &Metrics, tallies: Vec<Tally>, outcomes: &[Recorded]) {
    let stored = outcomes.iter().filter(|o| **o == Recorded::Stored).count() as u64;
    metrics.streams.events(EventOutcome::Stored, stored);
    metrics
        .streams
        .events(EventOutcome::Duplicate, outcomes.len() as u64 - stored);
    for (tally, outcome) in tallies.into_iter().zip(outcomes) {
        if *outcome == Recorded::Stored {
            metrics.transitions.stored(tally);
        }
    }
}

/// A short, bounded name of a 400's reason, under which its repeats are summarised.
fn reason_kind(error: &EventsError) -> &'static str {
    match error {
        EventsError::NotCloudEvents(BodyError::NotJson(_)) => "not JSON",
        EventsError::NotCloudEvents(BodyError::NotEventOrBatch) => "not an event or a batch",
        EventsError::UnreadableEvent(invalid) | EventsError::NothingReadable(invalid) => {
            invalid_kind(invalid)
        }
        _ => "unreadable body",
    }
}

fn invalid_kind(invalid: &Invalid) -> &'static str {
    match invalid {
        Invalid::NotAnObject => "not an object",
        Invalid::MissingAttribute(name) | Invalid::MissingField(name) => name,
        Invalid::BadSid(_) => "bad data.messageSid",
    }
}

/// Logs a refused signature with what an operator needs to find a wrong
/// `STATUSHOOK_PUBLIC_URL` or token: the public URL in force, the URLs tried (path only:
/// the query may hold a user's data) and the keys tried, by name. Repeats are summarised.
fn log_forbidden(
    error: &SignatureError,
    url: &str,
    public_url: &PublicUrl,
    keys: &Keys,
    accounts: &[&str],
    settings: Option<&str>,
) {
    if !Repeats::global().first(&format!("event stream 403: {error}")) {
        return;
    }
    let tried: Vec<String> = signature::url_variants(url)
        .iter()
        .map(|variant| path_only(&loggable_url(variant)))
        .collect();
    let mut keys_tried: Vec<String> = accounts
        .iter()
        .filter(|sid| keys.account_tokens.iter().any(|(known, _)| known == *sid))
        .map(|sid| format!("account {sid}"))
        .collect();
    keys_tried.extend(
        ["primary", "secondary"]
            .iter()
            .take(keys.auth_tokens.len())
            .map(|name| (*name).to_owned()),
    );
    if let Some(key) = settings.and_then(shared_key_id) {
        keys_tried = vec![format!("shared key {key}")];
    }
    tracing::warn!(
        reason = %error,
        public_url = %public_url.for_log(),
        tried = ?tried,
        keys = ?keys_tried,
        "event stream request refused with 403; if every one is, STATUSHOOK_PUBLIC_URL is probably not the URL of the sink, or the token not the account's"
    );
}

/// The URL without its query.
fn path_only(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
}

/// The `key=` of a signature settings header.
fn shared_key_id(settings: &str) -> Option<&str> {
    settings
        .split(',')
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("key"))
        .map(|(_, value)| value.trim())
}

fn is_cloudevents_json(request: &HttpRequest) -> bool {
    header_str(request, header::CONTENT_TYPE.as_str())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            CONTENT_TYPES
                .iter()
                .any(|known| essence.trim().eq_ignore_ascii_case(known))
        })
}

fn header_str<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}
