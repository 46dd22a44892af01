//! `POST /v1/messages`: sends one message through Twilio's CreateMessage, records it at
//! once, and keeps the answer under the caller's `Idempotency-Key`.
//!
//! CreateMessage is not idempotent, so a caller who got no clear answer (a `504`, a lost
//! connection) cannot safely retry a plain request. With an `Idempotency-Key` it can: the key
//! is claimed durably before Twilio is called, and the answer is kept for 24 hours, so a
//! retry gets the first answer again (same status code and body, plus
//! `Idempotent-Replayed: true`) and never a second SMS. Under one key:
//!
//! - a request that fails before anything is sent (malformed body, broken constraint,
//!   sending not configured, malformed key) claims nothing;
//! - the same parameters while the first request is in flight get `409`;
//! - other parameters get `422` naming `Idempotency-Key`;
//! - when nothing reached Twilio for a reason unrelated to the message (no connection, `429`
//!   on every attempt, credentials refused), the key is freed, so the retry sends;
//! - when the process stopped while the first request was in flight, nobody knows whether
//!   Twilio created the message: every retry gets `504` saying so, and the key never sends.
//!
//! The send runs in its own task: a caller who hangs up mid-send does not cut it short, so
//! the message is still recorded and its answer still kept under the key.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::domain::{MessageSid, Source, Timestamp};
use crate::metrics::Tally;
use crate::startup::AppState;
use crate::store::{Claim, Finish, KeptReply, KeyRequest, Recorded, StoreError};
use crate::telemetry::Repeats;
use crate::twilio::client::{self, CreateError, TwilioClient, TwilioError};
use crate::twilio::create_message::{BodyError, CreateMessage, InvalidParameter};
use crate::twilio::refusal::refused_event;

/// The request header carrying the caller's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The header marking an answer given again for a repeated key.
const REPLAYED: &str = "Idempotent-Replayed";
/// The longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 255;
/// Time allowed beyond Twilio's calls for recording the message and keeping the answer,
/// before an in-flight claim counts as abandoned.
const RECORD_MARGIN: Duration = Duration::from_secs(60);

/// The largest body `POST /v1/messages` takes: a message's JSON is a few KiB at most
/// (`body` up to 1600 characters, ten media URLs, content variables).
pub const MAX_BODY: usize = 64 * 1024;

/// Creates the message and answers `201` with Twilio's message resource, or one of
/// [`SendFailure`]'s answers.
pub async fn send_message(
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SendFailure> {
    // The limit (`MAX_BODY`, the scope's `PayloadConfig`) is checked while reading.
    let body = body.map_err(|error| {
        let payload = error.as_error::<actix_web::error::PayloadError>();
        if payload.is_some_and(super::limits::is_deadline) {
            SendFailure::TimedOut
        } else if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            SendFailure::TooLarge
        } else {
            SendFailure::Unreadable
        }
    })?;
    let message = CreateMessage::from_json(&body).map_err(SendFailure::Body)?;
    message.validate().map_err(SendFailure::Invalid)?;
    let twilio = state
        .twilio
        .clone()
        .ok_or(SendFailure::SendingNotConfigured)?;
    let Some(key) = idempotency_key(&request)? else {
        let outcome = send_detached(state, twilio, message, None).await;
        return Ok(respond(&outcome));
    };
    let claim = KeyRequest {
        key,
        request_hash: fingerprint(&message),
        now: Timestamp::now(),
        in_flight_at_most: twilio.retry_policy().longest_call() + RECORD_MARGIN,
    };
    let ticket = match state.store.claim_idempotency_key(claim).await {
        Ok(Claim::Claimed(ticket)) => ticket,
        Ok(Claim::Answered(reply)) => return Ok(replay(reply)),
        Ok(Claim::InFlight) => return Err(SendFailure::KeyInFlight),
        Ok(Claim::Abandoned { claimed_at }) => return Err(SendFailure::KeyAbandoned(claimed_at)),
        Ok(Claim::Conflict) => return Err(SendFailure::KeyConflict),
        Err(error) => return Err(SendFailure::Store(error)),
    };
    let outcome = send_detached(state, twilio, message, Some(ticket)).await;
    Ok(respond(&outcome))
}

/// Every answer of `POST /v1/messages` but `201`, mapped to a status code once. Bodies are
/// `{"error": …}`, with `parameter` when one input is at fault, and Twilio's own fields
/// (`code`, `message`, `more_info`, `status`) when Twilio answered.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    #[error("the body is larger than 64 KiB")]
    TooLarge,
    #[error("the body could not be read")]
    Unreadable,
    #[error("the body did not arrive within {} s of the head", super::limits::BODY_DEADLINE.as_secs())]
    TimedOut,
    #[error("{0}")]
    Body(BodyError),
    #[error("{0}")]
    Invalid(InvalidParameter),
    #[error("sending is not configured: set TWILIO_ACCOUNT_SID and credentials")]
    SendingNotConfigured,
    #[error("{IDEMPOTENCY_KEY}: {0}")]
    BadKey(&'static str),
    #[error("{IDEMPOTENCY_KEY}: this key was used within 24 hours with a different request; use a new key for a new message")]
    KeyConflict,
    #[error("{IDEMPOTENCY_KEY}: a request with this key is still being sent; ask again in a few seconds for its answer")]
    KeyInFlight,
    #[error("{IDEMPOTENCY_KEY}: the request first sent with this key at {} was interrupted before twilio's answer was known; the message may have been created; this key will not send it (look it up with GET /v1/messages?to=…, or use a new key)", .0.to_rfc3339())]
    KeyAbandoned(Timestamp),
    #[error("the store is unavailable; nothing was sent, try again")]
    Store(#[source] StoreError),
    /// Twilio refused the message; `sid` is the local SID it was recorded under, if it was.
    #[error("twilio refused the message; nothing was sent")]
    Refused {
        error: TwilioError,
        sid: Option<MessageSid>,
    },
    #[error("twilio refused statushook's credentials; nothing was sent (check TWILIO_ACCOUNT_SID and the API key or auth token)")]
    Credentials(TwilioError),
    #[error("twilio is limiting the request rate; nothing was sent, try again later")]
    RateLimited {
        error: TwilioError,
        retry_after: Option<Duration>,
    },
    #[error("cannot connect to twilio; nothing was sent")]
    Unreachable,
    #[error("twilio failed; the message may have been created, so check before sending it again")]
    TwilioFailed(TwilioError),
    #[error("twilio did not answer in time; the message may have been created, so check before sending it again")]
    Timeout,
    #[error("the exchange with twilio broke off after the request was sent; the message may have been created, so check before sending it again")]
    Interrupted,
}

impl SendFailure {
    fn body(&self) -> Value {
        let mut body = json!({ "error": self.to_string() });
        let parameter = match self {
            SendFailure::Body(error) => error.parameter.clone(),
            SendFailure::Invalid(invalid) => Some(invalid.parameter.to_owned()),
            SendFailure::BadKey(_)
            | SendFailure::KeyConflict
            | SendFailure::KeyInFlight
            | SendFailure::KeyAbandoned(_) => Some(IDEMPOTENCY_KEY.to_owned()),
            _ => None,
        };
        if let Some(parameter) = parameter {
            body["parameter"] = json!(parameter);
        }
        if let SendFailure::Refused { sid: Some(sid), .. } = self {
            body["sid"] = json!(sid.as_str());
        }
        if let Some(twilio) = self.twilio_error() {
            body["code"] = json!(twilio.code);
            body["message"] = json!(twilio.message);
            body["more_info"] = json!(twilio.more_info);
            body["status"] = json!(twilio.status);
        }
        body
    }

    fn twilio_error(&self) -> Option<&TwilioError> {
        match self {
            SendFailure::Refused { error, .. }
            | SendFailure::Credentials(error)
            | SendFailure::RateLimited { error, .. }
            | SendFailure::TwilioFailed(error) => Some(error),
            _ => None,
        }
    }

    /// True when the failure is certain that nothing reached Twilio, for a reason that has
    /// nothing to do with the message: a retry under the same key should send.
    fn frees_the_key(&self) -> bool {
        matches!(
            self,
            SendFailure::Credentials(_)
                | SendFailure::RateLimited { .. }
                | SendFailure::Unreachable
        )
    }
}

impl ResponseError for SendFailure {
    fn status_code(&self) -> StatusCode {
        match self {
            SendFailure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SendFailure::TimedOut => StatusCode::REQUEST_TIMEOUT,
            SendFailure::Body(_) | SendFailure::BadKey(_) | SendFailure::Unreadable => {
                StatusCode::BAD_REQUEST
            }
            SendFailure::Invalid(_) | SendFailure::KeyConflict | SendFailure::Refused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            SendFailure::KeyInFlight => StatusCode::CONFLICT,
            SendFailure::SendingNotConfigured | SendFailure::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SendFailure::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            SendFailure::Credentials(_)
            | SendFailure::Unreachable
            | SendFailure::TwilioFailed(_)
            | SendFailure::Interrupted => StatusCode::BAD_GATEWAY,
            SendFailure::Timeout | SendFailure::KeyAbandoned(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            SendFailure::Store(error) => {
                if Repeats::global().first("send refused: store unavailable") {
                    tracing::error!(%error, "store unavailable");
                }
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            SendFailure::RateLimited {
                retry_after: Some(after),
                ..
            } => {
                response.insert_header((header::RETRY_AFTER, after.as_secs().to_string()));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

impl From<CreateError> for SendFailure {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::Invalid(invalid) => SendFailure::Invalid(invalid),
            CreateError::Refused(error) => SendFailure::Refused { error, sid: None },
            CreateError::Credentials(error) => SendFailure::Credentials(error),
            CreateError::RateLimited { error, retry_after } => {
                SendFailure::RateLimited { error, retry_after }
            }
            CreateError::Unreachable(_) => SendFailure::Unreachable,
            CreateError::Failed(error) => SendFailure::TwilioFailed(error),
            CreateError::Timeout => SendFailure::Timeout,
            CreateError::Interrupted(_) => SendFailure::Interrupted,
        }
    }
}

/// The caller's `Idempotency-Key`, if it sent one: 1 to 255 visible ASCII characters.
fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, SendFailure> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SendFailure::BadKey("give the header once"));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|key| key.bytes().all(|byte| byte.is_ascii_graphic()))
        .ok_or(SendFailure::BadKey("must be visible ASCII characters"))?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(SendFailure::BadKey("must be 1 to 255 characters"));
    }
    Ok(Some(key.to_owned()))
}

/// A digest of the request's parameters: two bodies with the same parameters (whatever
/// their spacing or field order) are the same request.
fn fingerprint(message: &CreateMessage) -> [u8; 32] {
    let canonical = serde_json::to_vec(message).unwrap_or_default();
    Sha256::digest(canonical).into()
}

/// Sends in a task of its own, and, under a key, ends the claim with the answer (or frees
/// it when nothing was sent). Waits for the outcome.
async fn send_detached(
    state: web::Data<AppState>,
    twilio: TwilioClient,
    message: CreateMessage,
    ticket: Option<crate::store::ClaimTicket>,
) -> Result<Value, SendFailure> {
    let task = actix_web::rt::spawn(async move {
        let outcome = send_and_record(&state, &twilio, &message).await;
        if let Some(ticket) = ticket {
            let finish = match &outcome {
                Err(failure) if failure.frees_the_key() => Finish::Release,
                _ => Finish::Answer(kept(&outcome)),
            };
            // The claim stays in flight if this fails: a retry under the key then learns
            // that the outcome is unknown, and never sends a second time.
            if let Err(error) = state.store.finish_idempotency_key(ticket, finish).await {
                tracing::error!(%error, "the answer of a keyed send could not be kept");
            }
        }
        outcome
    });
    task.await.unwrap_or_else(|error| {
        tracing::error!(%error, "the send task stopped");
        Err(SendFailure::Interrupted)
    })
}

/// Calls Twilio and records what happened: a created message under Twilio's SID, a
/// refused one under a local SID (see `twilio::refusal::refused_event`).
async fn send_and_record(
    state: &AppState,
    twilio: &TwilioClient,
    message: &CreateMessage,
) -> Result<Value, SendFailure> {
    let error = match twilio.create_message(message, &state.status_callback).await {
        Ok(created) => {
            match client::event_from_resource(&created, Source::Sender) {
                // The message exists at Twilio whatever happens here: a failure to record it
                // is logged, not answered, or the caller would retry and send it twice. Its
                // first callback records it anyway.
                Some(event) => {
                    let tally = Tally::of(&event);
                    match state.store.record(event, None).await {
                        Ok(Recorded::Stored) => state.metrics.transitions.stored(tally),
                        Ok(Recorded::Duplicate) => {}
                        Err(error) => {
                            tracing::error!(%error, "a sent message could not be recorded");
                        }
                    }
                }
                None => tracing::warn!("twilio's answer carries no message sid or status"),
            }
            return Ok(created);
        }
        Err(error) => error,
    };
    match error {
        CreateError::Refused(error) => {
            let sid = record_refusal(state, twilio, message, &error).await;
            Err(SendFailure::Refused { error, sid })
        }
        error => {
            if error.may_have_created() {
                tracing::warn!(%error, "a message may have been created without an answer");
            } else {
                tracing::warn!(%error, "a message was not sent");
            }
            Err(error.into())
        }
    }
}

/// Records a refused attempt under a local SID; the SID, if the record is stored.
async fn record_refusal(
    state: &AppState,
    twilio: &TwilioClient,
    message: &CreateMessage,
    error: &TwilioError,
) -> Option<MessageSid> {
    let account = message.account_sid.as_deref();
    let event = refused_event(account.unwrap_or(twilio.account_sid()), message, error)?;
    let sid = event.sid().clone();
    let tally = Tally::of(&event);
    match state.store.record(event, None).await {
        Ok(recorded) => {
            if recorded == Recorded::Stored {
                state.metrics.transitions.stored(tally);
            }
            Some(sid)
        }
        Err(error) => {
            tracing::error!(%error, "a refused message could not be recorded");
            None
        }
    }
}

/// The answer of an outcome, as it is kept under a key and answered again.
fn kept(outcome: &Result<Value, SendFailure>) -> KeptReply {
    let (status, body) = match outcome {
        Ok(created) => (StatusCode::CREATED, created.clone()),
        Err(failure) => (failure.status_code(), failure.body()),
    };
    KeptReply {
        status: status.as_u16(),
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

fn respond(outcome: &Result<Value, SendFailure>) -> HttpResponse {
    match outcome {
        Ok(created) => HttpResponse::Created().json(created),
        Err(failure) => failure.error_response(),
    }
}

/// The kept answer of a repeated key, byte for byte.
fn replay(reply: KeptReply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header((REPLAYED, "true"))
        .body(reply.body)
}
