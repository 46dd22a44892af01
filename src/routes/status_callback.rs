//! `POST /twilio/status`: Twilio's message status callbacks.
//!
//! Checks run in the contract's order — size (413, counted on the bytes as they arrive),
//! content type (415), signature (403), content (400) — and a request that fails one gets
//! that answer and nothing after it runs. A compressed body never gets here: it is refused
//! with 415 before it is read (`limits.rs`), and the body is taken raw, so nothing in this
//! handler could inflate one either. A body that has not arrived within the body deadline
//! is 408. The signed URL is the
//! configured public URL plus the request target exactly as received; `Host` and
//! `X-Forwarded-*` are never consulted, since the caller controls them.
//!
//! The body is percent-decoded into bytes, and the signature is checked over those bytes, as
//! Twilio signed them; only then is each name and value required to be UTF-8. A value that
//! is not is refused with 400, never stored with U+FFFD in place of what Twilio sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::limits::{read_body, BodyError, BODY_DEADLINE};
use crate::config::{loggable_url, PublicUrl};
use crate::domain::{EventError, Source, StatusEvent};
use crate::metrics::Outcome;
use crate::startup::AppState;
use crate::store::{Recorded, StoreError};
use crate::telemetry::Repeats;
use crate::twilio::form::{self, NotUtf8};
use crate::twilio::signature::{self, SignatureError};

/// The largest callback body accepted; Twilio's are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the body is larger than 64 KiB")]
    TooLarge,
    #[error("the body could not be read")]
    Unreadable,
    #[error("the body did not arrive within {} s of the head", BODY_DEADLINE.as_secs())]
    TimedOut,
    #[error("the content type must be application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("the request is not signed by Twilio")]
    Forbidden(#[source] SignatureError),
    #[error("{0}")]
    Malformed(#[source] EventError),
    #[error("{0} is not UTF-8 once percent-decoded")]
    NotUtf8(NotUtf8),
    #[error("the store cannot take the write, retry later")]
    Unavailable(#[source] StoreError),
}

impl ResponseError for CallbackError {
    fn status_code(&self) -> StatusCode {
        match self {
            CallbackError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            CallbackError::Unreadable => StatusCode::BAD_REQUEST,
            CallbackError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            CallbackError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CallbackError::Forbidden(_) => StatusCode::FORBIDDEN,
            CallbackError::Malformed(_) | CallbackError::NotUtf8(_) => StatusCode::BAD_REQUEST,
            CallbackError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let CallbackError::Unavailable(error) = self {
            // A failing store refuses every callback; one line, then a summary of the rest.
            if Repeats::global().first("callback not stored; answered 503") {
                tracing::warn!(%error, "callback not stored; answered 503");
            }
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        let body = match self.parameter() {
            Some(parameter) => serde_json::json!({
                "error": self.to_string(),
                "parameter": parameter,
            }),
            None => serde_json::json!({ "error": self.to_string() }),
        };
        response.json(body)
    }
}

impl CallbackError {
    /// The parameter a `400` is about, for the `parameter` field of the answer.
    fn parameter(&self) -> Option<&str> {
        match self {
            CallbackError::Malformed(EventError::MissingSid | EventError::BadSid(_)) => {
                Some("MessageSid")
            }
            CallbackError::Malformed(EventError::MissingStatus) => Some("MessageStatus"),
            CallbackError::NotUtf8(NotUtf8::Value(name) | NotUtf8::Name(name)) => Some(name),
            _ => None,
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            CallbackError::TooLarge => Outcome::TooLarge,
            CallbackError::Unreadable => Outcome::Malformed,
            CallbackError::TimedOut => Outcome::TimedOut,
            CallbackError::UnsupportedMediaType => Outcome::UnsupportedMediaType,
            CallbackError::Forbidden(_) => Outcome::Forged,
            CallbackError::Malformed(_) | CallbackError::NotUtf8(_) => Outcome::Malformed,
            CallbackError::Unavailable(_) => Outcome::StoreError,
        }
    }
}

pub async fn status_callback(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, CallbackError> {
    let started = Instant::now();
    let result = match read_body(&request, payload, MAX_BODY).await {
        Ok(body) => receive(&request, &body, &state).await,
        Err(BodyError::TooLarge(_)) => Err(CallbackError::TooLarge),
        Err(BodyError::TimedOut) => Err(CallbackError::TimedOut),
        Err(BodyError::Unreadable(_)) => Err(CallbackError::Unreadable),
    };
    let outcome = match &result {
        Ok(Recorded::Stored) => Outcome::Stored,
        Ok(Recorded::Duplicate) => Outcome::Duplicate,
        Err(error) => error.outcome(),
    };
    state.metrics.callback(outcome, started.elapsed());
    result.map(|_| HttpResponse::Ok().finish())
}

async fn receive(
    request: &HttpRequest,
    body: &[u8],
    state: &AppState,
) -> Result<Recorded, CallbackError> {
    if !is_form(request) {
        return Err(CallbackError::UnsupportedMediaType);
    }
    let raw_params = form::decode(body);
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |target| target.as_str());
    let url = state.public_url.join(target);
    signature::verify(
        &state.signing_keys,
        &url,
        &raw_params,
        header_str(request, "X-Twilio-Signature"),
        header_str(request, "X-Twilio-Webhooks-Signature-Settings"),
    )
    .map_err(|error| {
        log_forbidden(&error, &url, &state.public_url);
        CallbackError::Forbidden(error)
    })?;
    let params = form::into_text(raw_params).map_err(CallbackError::NotUtf8)?;
    let event =
        StatusEvent::from_params(params, Source::Callback).map_err(CallbackError::Malformed)?;
    let token = header_str(request, "I-Twilio-Idempotency-Token")
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    state
        .store
        .record(event, token)
        .await
        .map_err(CallbackError::Unavailable)
}

/// Logs a refused signature, at most once a second, with what an operator needs to find a
/// wrong `STATUSHOOK_PUBLIC_URL`: the public URL in force and the URLs tried, without their
/// query (it may hold a user's data) and without any password.
fn log_forbidden(error: &SignatureError, url: &str, public_url: &PublicUrl) {
    // Milliseconds since the first refusal, plus one; zero means never logged.
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= 1000;
    if !due
        || LAST_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let tried: Vec<String> = signature::url_variants(url)
        .iter()
        .map(|variant| loggable_url(variant))
        .collect();
    tracing::warn!(
        reason = %error,
        public_url = %public_url.for_log(),
        tried = ?tried,
        "callback refused with 403; if every callback is, STATUSHOOK_PUBLIC_URL is probably not the URL Twilio calls (logged at most once a second)"
    );
}

fn is_form(request: &HttpRequest) -> bool {
    header_str(request, header::CONTENT_TYPE.as_str())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn header_str<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}
