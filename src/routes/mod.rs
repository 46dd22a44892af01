//! HTTP handlers, kept thin: parse the request into domain types, call the store, map the
//! outcome to an answer. The `/v1` API shares one error type, [`ApiError`], mapped to a
//! status code in one place; sending has its own, [`SendFailure`], because its answers are
//! kept under idempotency keys.

mod events;
mod export;
mod health;
mod messages;
mod send;
mod stats;
mod status_callback;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

pub use events::{events, FeedEventView};
pub use export::export_messages;
pub use health::{healthz, metrics, readyz};
pub use messages::{delete_message, delete_messages, get_message, list_messages, MessageView};
pub use send::{send_message, SendFailure};
pub use stats::stats;
pub use status_callback::{status_callback, MAX_BODY as MAX_CALLBACK_BODY};

use crate::startup::AppState;
use crate::store::StoreError;

/// Errors of the `/v1` API. Bodies are `{"error": "..."}` and never carry internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("no such message")]
    NotFound,
    #[error("the store is unavailable, try again")]
    Unavailable(#[source] StoreError),
    #[error("a stored record could not be read")]
    Internal(#[source] StoreError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
pub async fn require_bearer(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let authorized = request
        .app_data::<web::Data<AppState>>()
        .zip(request.headers().get(header::AUTHORIZATION))
        .and_then(|(state, value)| {
            let token = value.to_str().ok()?.strip_prefix("Bearer ")?;
            Some(constant_time_eq(
                token.trim().as_bytes(),
                state.api_token.expose().as_bytes(),
            ))
        })
        .unwrap_or(false);
    if !authorized {
        return Err(ApiError::Unauthorized.into());
    }
    next.call(request).await
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
