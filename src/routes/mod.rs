//! HTTP handlers, kept thin: parse the request into domain types, call the store, map the
//! outcome to an answer. The `/v1` API shares one error type, [`ApiError`], mapped to a
//! status code in one place; sending has its own, [`SendFailure`], because its answers are
//! kept under idempotency keys.

mod events;
mod export;
mod fallback;
mod forwarding;
mod health;
mod messages;
mod openapi;
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

pub use events::{events, MAX_LONG_POLLS};
pub use export::export_messages;
pub use fallback::no_route;
pub use forwarding::{forwarding_replay, forwarding_status};
pub use health::{healthz, metrics, readyz};
pub use messages::{delete_message, delete_messages, get_message, list_messages};
pub use openapi::openapi;
pub use send::{send_message, SendFailure};
pub use stats::{stats, stats_series};
pub use status_callback::{status_callback, MAX_BODY as MAX_CALLBACK_BODY};
pub use ui::ui_routes;

use crate::startup::AppState;
use crate::store::StoreError;

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
    #[error("no such message")]
    NotFound,
    #[error("the store is unavailable, try again")]
    Unavailable(#[source] StoreError),
    #[error("too many long polls are waiting, try again")]
    TooManyLongPolls,
    #[error("a stored record could not be read")]
    Internal(#[source] StoreError),
    #[error("forwarding is not configured: set STATUSHOOK_FORWARD_URL")]
    ForwardingNotConfigured,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) | ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_)
            | ApiError::TooManyLongPolls
            | ApiError::ForwardingNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
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
                tracing::error!(%error, "store unavailable");
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::TooManyLongPolls => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::InvalidParameter { parameter, .. } => {
                return response.json(serde_json::json!({
                    "error": self.to_string(),
                    "parameter": parameter,
                }));
            }
            ApiError::Internal(error) => tracing::error!(%error, "a stored record is corrupt"),
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

/// Middleware for `/v1`: answers 401 unless `Authorization: Bearer <STATUSHOOK_API_TOKEN>`.
/// A refusal is logged with why (never with the token presented) and counted in `/metrics`.
pub async fn require_bearer(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Ok(request
            .error_response(ApiError::Unauthorized)
            .map_into_right_body());
    };
    let refusal = match request.headers().get(header::AUTHORIZATION) {
        None => Some("no Authorization header"),
        Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            None => Some("the Authorization header is not a bearer token"),
            Some(token)
                if !constant_time_eq(
                    token.trim().as_bytes(),
                    state.api_token.expose().as_bytes(),
                ) =>
            {
                Some("the bearer token is wrong")
            }
            Some(_) => None,
        },
    };
    if let Some(reason) = refusal {
        state.metrics.unauthorized();
        tracing::warn!(
            method = %request.method(),
            path = %request.path(),
            reason,
            "API request refused with 401"
        );
        // An answer rather than an error, so that it passes the request log like any other.
        return Ok(request
            .error_response(ApiError::Unauthorized)
            .map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
