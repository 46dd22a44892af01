//! `POST /twilio/status`: Twilio's message status callbacks.
//!
//! Checks run in the contract's order — size (413, enforced by the payload limit before
//! this handler runs), content type (415), signature (403), content (400) — and a request
//! that fails one gets that answer and nothing after it runs. The signed URL is the
//! configured public URL plus the request target exactly as received; `Host` and
//! `X-Forwarded-*` are never consulted, since the caller controls them.

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::domain::{EventError, Source, StatusEvent};
use crate::metrics::Outcome;
use crate::signature::{self, SignatureError};
use crate::startup::AppState;
use crate::store::{Recorded, StoreError};

/// The largest callback body accepted; Twilio's are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the body is larger than 64 KiB")]
    TooLarge,
    #[error("the body could not be read")]
    Unreadable,
    #[error("the content type must be application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("the request is not signed by Twilio")]
    Forbidden(#[source] SignatureError),
    #[error("{0}")]
    Malformed(#[source] EventError),
    #[error("the store cannot take the write, retry later")]
    Unavailable(#[source] StoreError),
}

impl ResponseError for CallbackError {
    fn status_code(&self) -> StatusCode {
        match self {
            CallbackError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            CallbackError::Unreadable => StatusCode::BAD_REQUEST,
            CallbackError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CallbackError::Forbidden(_) => StatusCode::FORBIDDEN,
            CallbackError::Malformed(_) => StatusCode::BAD_REQUEST,
            CallbackError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let CallbackError::Unavailable(error) = self {
            tracing::warn!(%error, "callback not stored; answered 503");
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

impl CallbackError {
    fn outcome(&self) -> Outcome {
        match self {
            CallbackError::TooLarge => Outcome::TooLarge,
            CallbackError::Unreadable => Outcome::Malformed,
            CallbackError::UnsupportedMediaType => Outcome::UnsupportedMediaType,
            CallbackError::Forbidden(_) => Outcome::Forged,
            CallbackError::Malformed(_) => Outcome::Malformed,
            CallbackError::Unavailable(_) => Outcome::StoreError,
        }
    }
}

pub async fn status_callback(
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, CallbackError> {
    let started = Instant::now();
    let result = match body {
        Ok(body) => receive(&request, &body, &state).await,
        // The payload limit (`MAX_BODY`) is checked while reading, before anything else.
        Err(error) if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(CallbackError::TooLarge)
        }
        Err(_) => Err(CallbackError::Unreadable),
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
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |target| target.as_str());
    let url = state.public_url.join(target);
    signature::verify(
        &state.signing_keys,
        &url,
        &params,
        header_str(request, "X-Twilio-Signature"),
        header_str(request, "X-Twilio-Webhooks-Signature-Settings"),
    )
    .map_err(CallbackError::Forbidden)?;
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
