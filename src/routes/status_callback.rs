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

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::limits::{read_body, BodyError, BODY_DEADLINE};
use crate::config::loggable_url;
use crate::domain::{EventError, Source, StatusEvent};
use crate::metrics::{Outcome, Refusal, Tally};
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
        Err(error) => {
            refuse_content(&state, error);
            error.outcome()
        }
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
    let url = state.public_url.join(request_target(request));
    let check = SignatureCheck {
        url: &url,
        params: &raw_params,
        signature: header_str(request, "X-Twilio-Signature"),
        settings: header_str(request, "X-Twilio-Webhooks-Signature-Settings"),
    };
    signature::verify(
        &state.signing_keys,
        check.url,
        check.params,
        check.signature,
        check.settings,
    )
    .map_err(|error| {
        refuse_signature(request, state, &error, &check);
        CallbackError::Forbidden(error)
    })?;
    let params = form::into_text(raw_params).map_err(CallbackError::NotUtf8)?;
    let event =
        StatusEvent::from_params(params, Source::Callback).map_err(CallbackError::Malformed)?;
    let token = header_str(request, "I-Twilio-Idempotency-Token")
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    let tally = Tally::of(&event);
    let recorded = state
        .store
        .record(event, token)
        .await
        .map_err(CallbackError::Unavailable)?;
    if recorded == Recorded::Stored {
        state.metrics.transitions.stored(tally);
    }
    Ok(recorded)
}

/// Logs a refused signature, counts it by reason, and answers the reason. The line carries
/// what an operator needs to find the cause from the log alone: the public URL in force,
/// the URL variants tried (without their query, which may hold a user's data, and without
/// any password), the keys tried by name (never a value), and a hint that tells a wrong
/// URL from a wrong token where the request shows which. The first refusal of each reason
/// is logged at once; repeats within 10 s are summarised ([`Repeats`]), never dropped.
fn refuse_signature(
    request: &HttpRequest,
    state: &AppState,
    error: &SignatureError,
    check: &SignatureCheck<'_>,
) {
    let refusal = match error {
        SignatureError::Missing => Refusal::NoSignature,
        SignatureError::UnknownKey => Refusal::UnknownSharedKey,
        SignatureError::BadSettings => Refusal::BadSignatureSettings,
        SignatureError::Mismatch | SignatureError::BodyHashMismatch => {
            match url_signed_instead(request, state, check) {
                Some(_) => Refusal::WrongUrl,
                None => Refusal::SignatureMismatch,
            }
        }
    };
    state.metrics.refused(refusal);
    if !Repeats::global().first(&format!("403 {}", refusal.label())) {
        return;
    }
    let hint = match refusal {
        Refusal::NoSignature => "no X-Twilio-Signature header: the request is not from Twilio, \
            or a proxy in front drops the header"
            .to_owned(),
        Refusal::UnknownSharedKey => "the X-Twilio-Webhooks-Signature-Settings header names a \
            shared key id that is not in STATUSHOOK_SHARED_KEYS"
            .to_owned(),
        Refusal::BadSignatureSettings => "the X-Twilio-Webhooks-Signature-Settings header names \
            an algorithm other than HMAC_SHA1 or HMAC_SHA256, or HMAC_SHA256 without a key id"
            .to_owned(),
        Refusal::WrongUrl => {
            let url = url_signed_instead(request, state, check).unwrap_or_default();
            format!(
                "the signature matches {} (the URL the request's Host header names), not \
                 the public URL: STATUSHOOK_PUBLIC_URL is probably wrong",
                loggable_url(&url)
            )
        }
        _ => "no key tried signs any URL tried: if every callback is refused, the auth token \
            is probably wrong (or the callback's account has no token in \
            TWILIO_ACCOUNT_TOKENS); else a URL Twilio calls is not the public URL"
            .to_owned(),
    };
    let tried_urls: Vec<String> = signature::url_variants(check.url)
        .iter()
        .map(|variant| loggable_url(variant))
        .collect();
    let tried_keys = signature::key_names(&state.signing_keys, check.params, check.settings);
    tracing::warn!(
        status = 403,
        reason = refusal.label(),
        problem = %error,
        hint,
        public_url = %state.public_url.for_log(),
        tried_urls = ?tried_urls,
        tried_keys = ?tried_keys,
        "callback refused with 403"
    );
}

/// What a signature was checked over.
struct SignatureCheck<'a> {
    url: &'a str,
    params: &'a [(Vec<u8>, Vec<u8>)],
    signature: Option<&'a str>,
    settings: Option<&'a str>,
}

/// For a signature that matches no variant of the public URL: the URL it does match, if
/// it is the one the request's `Host` (or `Forwarded`, `X-Forwarded-Host`) header names,
/// with the scheme the request names, or https or http. The headers are the caller's to
/// choose, so this only explains a refusal; it never lets a request in.
fn url_signed_instead(
    request: &HttpRequest,
    state: &AppState,
    check: &SignatureCheck<'_>,
) -> Option<String> {
    let info = request.connection_info();
    let target = request_target(request);
    let mut urls: Vec<String> = Vec::new();
    for scheme in [info.scheme(), "https", "http"] {
        let url = format!("{scheme}://{}{target}", info.host());
        if url != check.url && !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls.into_iter().find(|url| {
        signature::verify(
            &state.signing_keys,
            url,
            check.params,
            check.signature,
            check.settings,
        )
        .is_ok()
    })
}

/// Logs a signed callback refused with `400`, with its reason (never a value of it), and
/// counts it; repeats are summarised like those of a `403`.
fn refuse_content(state: &AppState, error: &CallbackError) {
    let (refusal, problem) = match error {
        CallbackError::Unreadable => (Refusal::UnreadableBody, "the body could not be read"),
        CallbackError::Malformed(EventError::MissingSid) => {
            (Refusal::MissingMessageSid, "MessageSid is missing")
        }
        CallbackError::Malformed(EventError::BadSid(_)) => (
            Refusal::BadMessageSid,
            "MessageSid is not SM or MM followed by 32 hex digits",
        ),
        CallbackError::Malformed(EventError::MissingStatus) => (
            Refusal::MissingMessageStatus,
            "MessageStatus is missing or empty",
        ),
        CallbackError::NotUtf8(_) => (
            Refusal::NotUtf8,
            "a parameter is not UTF-8 once percent-decoded",
        ),
        _ => return,
    };
    state.metrics.refused(refusal);
    if Repeats::global().first(&format!("400 {}", refusal.label())) {
        tracing::warn!(
            status = 400,
            reason = refusal.label(),
            problem,
            parameter = error.parameter(),
            "callback refused with 400"
        );
    }
}

/// The request's path and query exactly as received.
fn request_target(request: &HttpRequest) -> &str {
    request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |target| target.as_str())
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
