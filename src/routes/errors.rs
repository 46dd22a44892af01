//! Every error answer is `{"error": "…"}` JSON, whichever layer produced it.
//!
//! The handlers answer their own errors as JSON; what is left are the errors actix-web
//! answers by itself — an extractor that refuses a body (`413`, `400`), a path segment it
//! cannot decode — which come as text or with no body at all. [`json_errors`] rewrites any
//! `4xx`/`5xx` answer whose body is not JSON, keeping its status and headers (`Allow`,
//! `Retry-After`, `WWW-Authenticate`). The text of a `5xx` is never passed on, since it
//! may describe internals.
//!
//! The HTTP parser's own answers (a head too large or malformed) are written before any
//! service runs and cannot be rewritten here; `docs/operations.md` lists them ("What actix-web
//! does not let the service shape").

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;

use super::limits::{is_deadline, BODY_DEADLINE};

/// Middleware: see the module's documentation.
pub async fn json_errors(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let mut response = next.call(request).await?;
    let status = response.status();
    if status.as_u16() < 400 || is_json(&response) {
        return Ok(response.map_into_left_body());
    }
    let (status, message) = describe(&response, status);
    *response.response_mut().status_mut() = status;
    Ok(response.map_body(|head, _| {
        head.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        let body = serde_json::json!({ "error": message }).to_string();
        EitherBody::right(BoxBody::new(body))
    }))
}

fn is_json<B>(response: &ServiceResponse<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The status and message of an error answer: from the error actix attached to it when
/// there is one, else from the status.
fn describe<B>(response: &ServiceResponse<B>, status: StatusCode) -> (StatusCode, String) {
    let error = response.response().error();
    if let Some(payload) = error.and_then(|error| error.as_error::<PayloadError>()) {
        return match payload {
            error if is_deadline(error) => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s of the head",
                    BODY_DEADLINE.as_secs()
                ),
            ),
            PayloadError::Overflow => (status, "the body is too large".to_owned()),
            PayloadError::Incomplete(_) => (status, "the body ended early".to_owned()),
            _ => (status, "the body could not be read".to_owned()),
        };
    }
    let message = match (status.is_client_error(), error) {
        (true, Some(error)) => lowercase_first(&error.to_string()),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    (status, message)
}

/// actix's messages start with a capital and end with a period; ours do neither.
fn lowercase_first(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "the request was refused".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::lowercase_first;

    #[test]
    fn actix_messages_are_written_like_ours() {
        assert_eq!(
            lowercase_first("Payload reached size limit."),
            "payload reached size limit"
        );
        assert_eq!(lowercase_first(""), "the request was refused");
    }
}
