//! HTTP handlers, kept thin: parse the request into domain types, call the store, map the
//! outcome to an answer. The `/v1` API shares one error type, [`ApiError`], mapped to a
//! status code in one place.

mod events;
mod forwarding;
mod health;
mod messages;
mod stats;
mod status_callback;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

pub use events::{events, FeedEventView};
pub use forwarding::{forwarding_replay, forwarding_status};
pub use health::{healthz, metrics, readyz};
pub use messages::{get_message, list_messages, send_message, MessageView};
pub use stats::stats;
pub use status_callback::{status_callback, MAX_BODY as MAX_CALLBACK_BODY};

use crate::sender::{InvalidParameter, SendError, TwilioError};
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
    #[error("{0}")]
    Unprocessable(InvalidParameter),
    #[error("twilio rejected the request")]
    Twilio(TwilioError),
    #[error("twilio did not answer in time; the message may or may not have been created")]
    TwilioTimeout,
    #[error("cannot reach twilio")]
    TwilioUnreachable(String),
    #[error("sending is not configured: set TWILIO_ACCOUNT_SID and credentials")]
    SendingNotConfigured,
    #[error("forwarding is not configured: set STATUSHOOK_FORWARD_URL")]
    ForwardingNotConfigured,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_)
            | ApiError::SendingNotConfigured
            | ApiError::ForwardingNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Twilio(_) | ApiError::TwilioUnreachable(_) => StatusCode::BAD_GATEWAY,
            ApiError::TwilioTimeout => StatusCode::GATEWAY_TIMEOUT,
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
            ApiError::Unprocessable(invalid) => {
                return response.json(serde_json::json!({
                    "error": self.to_string(),
                    "parameter": invalid.parameter,
                }));
            }
            // Twilio's own error body reaches the caller intact, beside ours.
            ApiError::Twilio(twilio) => {
                return response.json(serde_json::json!({
                    "error": self.to_string(),
                    "code": twilio.code,
                    "message": twilio.message,
                    "more_info": twilio.more_info,
                    "status": twilio.status,
                }));
            }
            ApiError::TwilioUnreachable(error) => tracing::error!(%error, "twilio unreachable"),
            _ => {}
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<SendError> for ApiError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Invalid(invalid) => ApiError::Unprocessable(invalid),
            SendError::Twilio(twilio) => ApiError::Twilio(twilio),
            SendError::Timeout => ApiError::TwilioTimeout,
            SendError::Transport(error) => ApiError::TwilioUnreachable(error),
        }
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
