//! Structured logs through `tracing`: human-readable text by default, one JSON object per
//! line with `STATUSHOOK_LOG_FORMAT=json`; the level comes from `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second initialisation (tests start many apps) is harmless; ignore its error.
    let _ = if format == LogFormat::Json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// One structured line per request: request id, method, path (never the query, which can
/// hold phone numbers), status and latency. The id comes from `X-Request-Id` when a proxy
/// set one, and is echoed back in the answer's `X-Request-Id`.
pub async fn log_request(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::header::{HeaderName, HeaderValue};
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

    let started = std::time::Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.len() <= 64 && value.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{:x}",
                std::process::id(),
                NEXT_ID.fetch_add(1, Ordering::Relaxed)
            )
        });
    let method = request.method().clone();
    let path = request.path().to_owned();
    let mut response = next.call(request).await?;
    let status = response.status().as_u16();
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        status,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}
