//! HTTP handlers, kept thin: parse the request into domain types, call the store, map the
//! outcome to an answer. The `/v1` API shares one error type, [`ApiError`], mapped to a
//! status code in one place; sending has its own, [`SendFailure`], because its answers are
//! kept under idempotency keys.

mod alerts;
mod breakdown;
mod errors;
mod event_streams;
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
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use refusals::{Token, Verdict};

pub use alerts::{
    delete_alert_rule, get_alert_rule, list_alert_rules, list_alerts, put_alert_rule,
};
pub use breakdown::stats_breakdown;
pub use errors::json_errors;
pub use event_streams::{event_streams, MAX_BODY as MAX_EVENT_STREAM_BODY};
pub use events::{events, MAX_LONG_POLLS};
pub use export::export_messages;
pub use export::MOST_EXPORTS;
pub use fallback::no_route;
pub use forwarding::{forwarding_replay, forwarding_status};
pub use health::{healthz, metrics, readyz};
pub use limits::guard_request;
pub use messages::{delete_message, delete_messages, get_message, list_messages};
pub use openapi::openapi;
pub use refusals::Refusals;
pub use send::{send_message, SendFailure, MAX_BODY as MAX_SEND_BODY};
pub use stats::{stats, stats_series};
pub use status_callback::status_callback;
pub use ui::ui_routes;

use crate::domain::Timestamp;
use crate::metrics::Refusal;
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
    /// A field of a JSON body is missing or malformed (`notify[1].url`).
    #[error("{field}: {problem}")]
    InvalidField { field: String, problem: String },
    #[error("no such message")]
    NotFound,
    #[error("no such alert rule")]
    NoSuchRule,
    #[error(
        "the store holds {} alert rules, the most it may; delete one first",
        crate::jobs::alerts::state::MAX_RULES
    )]
    TooManyRules,
    #[error("the body is larger than 64 KiB")]
    BodyTooLarge,
    #[error("the body did not arrive within {} s of the head", limits::BODY_DEADLINE.as_secs())]
    BodyTimedOut,
    #[error("the store is unavailable, try again")]
    Unavailable(#[source] StoreError),
    #[error("too many long polls are waiting, try again")]
    TooManyLongPolls,
    #[error("a stored record could not be read")]
    Internal(#[source] StoreError),
    #[error("forwarding is not configured: set STATUSHOOK_FORWARD_URL")]
    ForwardingNotConfigured,
    #[error("this token is read-only (STATUSHOOK_READ_TOKEN): it may only GET; use STATUSHOOK_API_TOKEN to change anything")]
    ReadOnly,
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
            ApiError::ReadOnly => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::InvalidField { .. }
            | ApiError::RepeatedParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound | ApiError::NoSuchRule => StatusCode::NOT_FOUND,
            ApiError::TooManyRules => StatusCode::CONFLICT,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_)
            | ApiError::ForwardingNotConfigured
            | ApiError::TooManyLongPolls
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
            ApiError::TooManyLongPolls => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::InvalidParameter { parameter, .. } => {
                return response.json(serde_json::json!({
                    "error": self.to_string(),
                    "parameter": parameter,
                }));
            }
            ApiError::RepeatedParameter(parameter)
            | ApiError::InvalidField {
                field: parameter, ..
            } => {
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

/// Middleware for `/v1`: answers 401 unless `Authorization: Bearer <token>` (the scheme's
/// name in any case, RFC 9110) carries the API token or the read token, 403 when the read
/// token comes with anything but `GET`, and 429 to a token presented from an address that
/// has used up its budget of wrong ones ([`refusals`]). A refusal is logged with why (never
/// with the token presented), a burst of them summarised, and counted in `/metrics`.
pub async fn require_bearer(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Ok(request
            .error_response(ApiError::Unauthorized)
            .map_into_right_body());
    };
    let access = match request.headers().get(header::AUTHORIZATION) {
        None => Err(Refusal::NoToken),
        Some(value) => match value.to_str().ok().and_then(bearer_token) {
            None => Err(Refusal::NotBearer),
            Some(token) => access(state, token).ok_or(Refusal::WrongToken),
        },
    };
    if let Ok(access) = access {
        // For `GET /v1/access`, which tells a client (the dashboard) what its token may do.
        request.extensions_mut().insert(access);
    }
    let refusal = match access {
        Ok(Access::Full) => None,
        Ok(Access::Read) if reads(request.method()) => None,
        Ok(Access::Read) => Some(Refusal::ReadOnlyToken),
        Err(refusal) => Some(refusal),
    };
    let presented = match access {
        Ok(_) => Token::Right,
        Err(Refusal::WrongToken) => Token::Wrong,
        Err(_) => Token::Missing,
    };
    let address = request.peer_addr().map(|address| address.ip());
    let verdict = state
        .refusals
        .judge(address, presented, std::time::Instant::now());
    let error = match (verdict, refusal) {
        (Verdict::Throttle(wait), _) => {
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
        (_, None) => {
            // What the token may do, for the handlers that show less to the read token.
            if let Ok(access) = access {
                request.extensions_mut().insert(access);
            }
            return Ok(next.call(request).await?.map_into_left_body());
        }
        (_, Some(refusal)) => {
            state.metrics.refused(refusal);
            let error = if refusal == Refusal::ReadOnlyToken {
                ApiError::ReadOnly
            } else {
                state.metrics.unauthorized();
                ApiError::Unauthorized
            };
            let reason = match refusal {
                Refusal::NoToken => "no Authorization header",
                Refusal::NotBearer => "the Authorization header is not a bearer token",
                Refusal::ReadOnlyToken => "the read-only token may only GET",
                _ => "the bearer token is wrong",
            };
            let kind = format!("API request refused with {}: {reason}", refusal.status());
            if Repeats::global().first(&kind) {
                tracing::warn!(
                    method = %request.method(),
                    path = %request.path(),
                    reason,
                    refusal = refusal.label(),
                    "API request refused with {}",
                    refusal.status()
                );
            }
            error
        }
    };
    // An answer rather than an error, so that it passes the request log like any other.
    Ok(request.error_response(error).map_into_right_body())
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `STATUSHOOK_API_TOKEN`: everything.
    Full,
    /// `STATUSHOOK_READ_TOKEN`: `GET` only.
    Read,
}

/// The access `token` gives, if any. Both tokens are compared, each in constant time, so
/// the time taken tells nothing about which one (or which prefix) matched.
fn access(state: &AppState, token: &str) -> Option<Access> {
    let full = constant_time_eq(token.as_bytes(), state.api_token.expose().as_bytes());
    let read = state
        .read_token
        .as_ref()
        .is_some_and(|read| constant_time_eq(token.as_bytes(), read.expose().as_bytes()));
    match (full, read) {
        (true, _) => Some(Access::Full),
        (false, true) => Some(Access::Read),
        (false, false) => None,
    }
}

/// `GET /v1/access`: what the bearer token presented may do, `{"access": "full"}` for the
/// API token and `{"access": "read"}` for the read-only one, so that a client such as the
/// dashboard leaves out what it may not do without trying it.
pub async fn token_access(request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let access = match request.extensions().get::<Access>() {
        Some(Access::Full) => "full",
        Some(Access::Read) => "read",
        None => return Err(ApiError::Unauthorized),
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "access": access })))
}

/// The methods the read token may use: those that change nothing.
fn reads(method: &actix_web::http::Method) -> bool {
    matches!(
        *method,
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    )
}

/// The token of an `Authorization` header of the `Bearer` scheme, whose name is
/// case-insensitive (RFC 9110, 11.1): `Bearer`, `bearer` and `BEARER` are the same.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// An RFC 3339 time given as the query parameter `name` (`since`, `until`). A space where
/// the offset's `+` belongs is what an unencoded `+` becomes in a query string: it is
/// refused with the fix, as the `to` and `from` filters are.
fn query_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(value).map_err(|problem| {
        let hint = match value.rsplit_once(' ') {
            Some((time, offset))
                if Timestamp::parse_rfc3339(&format!("{time}+{offset}")).is_ok() =>
            {
                format!(
                    ": the space is what an unencoded + becomes in a query string; encode + \
                     as %2B ({name}={time}%2B{offset})"
                )
            }
            _ => String::new(),
        };
        ApiError::BadRequest(format!("{name}: {problem}{hint}"))
    })
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "  bEaReR   t0k  "] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header:?}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn a_time_whose_plus_arrived_as_a_space_is_refused_with_the_fix() {
        let error = query_time("since", "2026-12-07T10:00:00 01:00").expect_err("a space");
        assert!(
            error
                .to_string()
                .contains("encode + as %2B (since=2026-12-07T10:00:00%2B01:00)"),
            "{error}"
        );
        let error = query_time("until", "yesterday").expect_err("not a time");
        assert!(!error.to_string().contains("%2B"), "{error}");
        assert!(query_time("since", "2026-12-07T10:00:00+01:00").is_ok());
    }
}
