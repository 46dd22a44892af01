//! HTTP handlers, kept thin: parse the request into domain types, call the store, map the
//! outcome to an answer. The `/v1` API shares one error type, [`ApiError`], mapped to a
//! status code in one place; sending has its own, [`SendFailure`], because its answers are
//! kept under idempotency keys.

mod errors;
mod events;
mod export;
mod fallback;
mod forwarding;
mod health;
mod limits;
mod messages;
mod openapi;
mod query;
mod refusals;
mod send;
mod stats;
mod status_callback;
mod ui;
pub mod views;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use refusals::{Token, Verdict};

pub use errors::json_errors;
pub use events::events;
pub use export::export_messages;
pub use export::MOST_EXPORTS;
pub use fallback::no_route;
pub use forwarding::{forwarding_replay, forwarding_status};
pub use health::{healthz, metrics, readyz};
pub use limits::guard_request;
pub use messages::{delete_message, delete_messages, get_message, list_messages};
pub use openapi::openapi;
pub use refusals::Refusals;
pub use send::{send_message, SendFailure};
pub use stats::{stats, stats_series};
pub use status_callback::status_callback;
pub use ui::ui_routes;

use crate::startup::AppState;
use crate::store::StoreError;
use crate::telemetry::Repeats;

/// Errors of the `/v1` API. Bodies are `{"error": "..."}` and never carry internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{parameter}: {problem}")]
    InvalidParameter {
        parameter: &'static str,
        problem: String,
    },
    #[error("{0}: given more than once; this parameter takes one value")]
    RepeatedParameter(String),
    #[error("no such message")]
    NotFound,
    #[error("the store is unavailable, try again")]
    Unavailable(#[source] StoreError),
    #[error("a stored record could not be read")]
    Internal(#[source] StoreError),
    #[error("forwarding is not configured: set STATUSHOOK_FORWARD_URL")]
    ForwardingNotConfigured,
    /// Too many wrong tokens came from this address.
    #[error("too many wrong bearer tokens from this address; try again in {0} s")]
    Throttled(u64),
    /// A bounded resource is in full use; retry after this many seconds.
    #[error("{what}; try again in {retry_after} s")]
    Busy {
        what: &'static str,
        retry_after: u64,
    },
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::RepeatedParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_)
            | ApiError::ForwardingNotConfigured
            | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable(error) => {
                if Repeats::global().first("API request failed: store unavailable") {
                    tracing::error!(%error, "store unavailable");
                }
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::InvalidParameter { parameter, .. } => {
                return response.json(serde_json::json!({
                    "error": self.to_string(),
                    "parameter": parameter,
                }));
            }
            ApiError::RepeatedParameter(parameter) => {
                return response.json(serde_json::json!({
                    "error": self.to_string(),
                    "parameter": parameter,
                }));
            }
            ApiError::Throttled(seconds)
            | ApiError::Busy {
                retry_after: seconds,
                ..
            } => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            ApiError::Internal(error)
                if Repeats::global().first("API request failed: a stored record is corrupt") =>
            {
                tracing::error!(%error, "a stored record is corrupt");
            }
            _ => {}
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt(_) => ApiError::Internal(error),
            StoreError::Unavailable(_) => ApiError::Unavailable(error),
        }
    }
}

/// Middleware for `/v1`: answers 401 unless `Authorization: Bearer <STATUSHOOK_API_TOKEN>`,
/// and 429 to a token presented from an address that has used up its budget of wrong
/// ones ([`refusals`]). A refusal is logged with why (never with the token presented), a burst
/// of them summarised, and both are counted in `/metrics`.
pub async fn require_bearer(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Ok(request
            .error_response(ApiError::Unauthorized)
            .map_into_right_body());
    };
    let (token, reason) = match request.headers().get(header::AUTHORIZATION) {
        None => (Token::Missing, "no Authorization header"),
        Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            None => (
                Token::Missing,
                "the Authorization header is not a bearer token",
            ),
            Some(token)
                if !constant_time_eq(
                    token.trim().as_bytes(),
                    state.api_token.expose().as_bytes(),
                ) =>
            {
                (Token::Wrong, "the bearer token is wrong")
            }
            Some(_) => (Token::Right, ""),
        },
    };
    let address = request.peer_addr().map(|address| address.ip());
    let verdict = state
        .refusals
        .judge(address, token, std::time::Instant::now());
    let error = match verdict {
        Verdict::Serve => return Ok(next.call(request).await?.map_into_left_body()),
        Verdict::Throttle(wait) => {
            state.metrics.throttled();
            if Repeats::global().first("API requests refused with 429") {
                tracing::warn!(
                    method = %request.method(),
                    path = %request.path(),
                    "API requests refused with 429: too many wrong tokens from one address"
                );
            }
            ApiError::Throttled(wait.as_secs_f64().ceil().max(1.0) as u64)
        }
        Verdict::Refuse => {
            state.metrics.unauthorized();
            if Repeats::global().first(&format!("API request refused with 401: {reason}")) {
                tracing::warn!(
                    method = %request.method(),
                    path = %request.path(),
                    reason,
                    "API request refused with 401"
                );
            }
            ApiError::Unauthorized
        }
    };
    // An answer rather than an error, so that it passes the request log like any other.
    Ok(request.error_response(error).map_into_right_body())
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
