//! What every request must keep to before a handler runs, and how bodies are read.
//!
//! [`guard_request`] runs in front of every route:
//!
//! - a request target longer than [`MAX_TARGET`] is `414` and headers larger than
//!   [`MAX_HEADERS`] are `431`, as JSON (heads larger still, or malformed, are refused by
//!   actix's HTTP parser before any of this runs; see `docs/operations.md`, "Hostile
//!   clients");
//! - a body with a `Content-Encoding` other than `identity` is `415` before a byte of it is
//!   read. actix-web's `compress-gzip` feature (kept for compressing answers) makes its
//!   body extractors inflate such a body as it arrives, and its size limits count the
//!   inflated bytes only after a whole chunk has been inflated: 64 KB of gzip became 63 MiB
//!   in memory before the `413`. No sender of this service's bodies compresses them (Twilio
//!   does not), so none is decoded;
//! - the body must arrive within [`BODY_DEADLINE`] of the head, and never exceeds
//!   [`MOST_BODY`], counted on the bytes as they arrive;
//! - a body the route did not read to its end is kept until the answer has been sent, so
//!   that actix closes the connection after the answer instead of reading, and discarding,
//!   the rest of a chunked body for as long as its sender cares to send it.
//!
//! Handlers that take a body read it with [`read_body`], under their own limit.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{self, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpMessage, HttpResponse};
use futures_util::{Stream, StreamExt};
use serde_json::json;

use crate::connections::hold_until_sent;

/// How long a request's whole body may take to arrive after its head. Twilio and proxies
/// send a body with its head; a client that needs longer for 64 KiB (13 KB/s) is either
/// broken or holding the connection on purpose.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// The largest body any route reads, whatever its own limit: a backstop.
pub const MOST_BODY: usize = 1024 * 1024;
/// The longest request target (path and query). The API's longest legitimate query, every
/// status and filter given once, is under 1 KiB.
pub const MAX_TARGET: usize = 8 * 1024;
/// The most bytes of headers (names, values and separators).
pub const MAX_HEADERS: usize = 32 * 1024;

/// Middleware in front of every route; see the module's documentation.
pub async fn guard_request(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let has_body = has_body(&request);
    let payload = if has_body {
        Some(Rc::new(RefCell::new(request.take_payload())))
    } else {
        None
    };
    if let Some(refusal) = refusal(&request, has_body) {
        let response = request.into_response(refusal);
        return Ok(response.map_body(|_, body| hold_until_sent(body.boxed(), payload)));
    }
    if let Some(payload) = &payload {
        let guarded = Guarded {
            payload: Rc::clone(payload),
            deadline: Box::pin(actix_web::rt::time::sleep(BODY_DEADLINE)),
            received: 0,
            finished: false,
        };
        let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(guarded);
        request.set_payload(dev::Payload::from(stream));
    }
    let response = next.call(request).await?;
    Ok(response.map_body(|_, body| hold_until_sent(body.boxed(), payload)))
}

/// Whether the request says it carries a body.
fn has_body(request: &ServiceRequest) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|length| length.trim() != "0")
}

/// The answer to a request refused before routing, if it is.
fn refusal(request: &ServiceRequest, has_body: bool) -> Option<HttpResponse> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_TARGET {
        return Some(HttpResponse::UriTooLong().json(json!({
            "error": format!(
                "the request target is {target} bytes long, more than the {} KiB accepted",
                MAX_TARGET / 1024
            ),
        })));
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADERS {
        return Some(
            HttpResponse::build(actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).json(
                json!({
                    "error": format!(
                        "the headers are {headers} bytes long, more than the {} KiB accepted",
                        MAX_HEADERS / 1024
                    ),
                }),
            ),
        );
    }
    let encoding = request.headers().get(header::CONTENT_ENCODING)?;
    let identity = encoding
        .to_str()
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("identity"));
    if !has_body || identity {
        return None;
    }
    let shown = String::from_utf8_lossy(encoding.as_bytes())
        .chars()
        .take(32)
        .collect::<String>();
    Some(HttpResponse::UnsupportedMediaType().json(json!({
        "error": format!(
            "Content-Encoding {shown:?} is not accepted: send the body uncompressed (gzip, \
             deflate, br and zstd bodies are refused before they are read)"
        ),
    })))
}

/// A request body under the guard's rules: it fails with a timed-out I/O error once
/// [`BODY_DEADLINE`] has passed, and with `Overflow` past [`MOST_BODY`].
struct Guarded {
    payload: Rc<RefCell<dev::Payload>>,
    deadline: Pin<Box<actix_web::rt::time::Sleep>>,
    received: usize,
    finished: bool,
}

impl Stream for Guarded {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.finished = true;
            return Poll::Ready(Some(Err(deadline_passed())));
        }
        let polled = self.payload.borrow_mut().poll_next_unpin(cx);
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len();
                if self.received > MOST_BODY {
                    self.finished = true;
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.finished = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn deadline_passed() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the body did not arrive within {} s of the head",
            BODY_DEADLINE.as_secs()
        ),
    ))
}

/// Whether a payload error is the guard's deadline.
pub fn is_deadline(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(error) if error.kind() == std::io::ErrorKind::TimedOut)
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive within {} s", BODY_DEADLINE.as_secs())]
    TimedOut,
    #[error("the body could not be read")]
    Unreadable(#[source] PayloadError),
}

/// Reads a body of at most `limit` bytes, counted as they arrive: a `Content-Length` over
/// the limit is refused before anything is read, and the reading stops at the first byte
/// past it. The bytes are the ones sent: nothing here decodes a `Content-Encoding`.
pub async fn read_body(
    request: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = BytesMut::with_capacity(declared.map_or(1024, |length| length as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) if is_deadline(&error) => return Err(BodyError::TimedOut),
            Err(PayloadError::Overflow) => return Err(BodyError::TooLarge(limit)),
            Err(error) => return Err(BodyError::Unreadable(error)),
        };
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
