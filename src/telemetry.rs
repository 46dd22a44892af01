//! Structured logs through `tracing`: human-readable text by default, one JSON object per
//! line with `STATUSHOOK_LOG_FORMAT=json`; the level comes from `RUST_LOG` (default `info`).
//! Warnings that can come in floods (refused callbacks, a failing store) go through
//! [`Repeats`], which logs each kind once and summarises its repeats.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// How long repeats of one warning are counted before their summary is logged.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);
/// Distinct warnings counted at once; past this, new kinds are counted under one key, so a
/// client that varies its requests cannot grow the table.
const MAX_KINDS: usize = 256;
const OTHER_KIND: &str = "other warnings";

/// Summarises repeated warnings instead of dropping them: the first warning of a kind is
/// logged at once ([`Repeats::first`] answers `true`), later ones of the same kind within
/// [`REPEAT_WINDOW`] are counted, and when the window closes one line says "and N more like
/// it in the last 10 s". Every kind reaches the log at least once, and none is lost to a
/// burst; a flood costs one line per kind per window.
pub struct Repeats {
    window: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    since: Instant,
    more: u64,
}

impl Repeats {
    /// The process's summariser; its first use starts the thread that logs the summaries.
    pub fn global() -> &'static Repeats {
        static GLOBAL: OnceLock<Repeats> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("log-repeats".into())
                .spawn(|| loop {
                    std::thread::sleep(Duration::from_secs(1));
                    Repeats::global().flush(Instant::now());
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start the thread that summarises repeated warnings");
            }
            Repeats::new(REPEAT_WINDOW)
        })
    }

    pub fn new(window: Duration) -> Repeats {
        Repeats {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a warning of `kind` should be logged now: `true` for the first in its
    /// window, `false` (and counted) for a repeat.
    pub fn first(&self, kind: &str) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let full = seen.len() >= MAX_KINDS;
        let kind = if full && !seen.contains_key(kind) {
            OTHER_KIND
        } else {
            kind
        };
        match seen.get_mut(kind) {
            Some(seen) => {
                seen.more += 1;
                false
            }
            None => {
                // The catch-all kind is never logged by its caller: its first counts too.
                let first = kind != OTHER_KIND;
                seen.insert(
                    kind.to_owned(),
                    Seen {
                        since: Instant::now(),
                        more: u64::from(!first),
                    },
                );
                first
            }
        }
    }

    /// Logs the summary of every kind counted so far, closed window or not: at exit, so
    /// that no repeat goes uncounted.
    pub fn flush_all(&self) -> Vec<(String, u64)> {
        self.flush(Instant::now() + self.window)
    }

    /// Logs the summary of every window that has closed by `now`, and forgets those kinds.
    /// Answers the summaries logged, as (kind, repeats).
    pub fn flush(&self, now: Instant) -> Vec<(String, u64)> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = self.window;
        let mut logged = Vec::new();
        seen.retain(|kind, seen| {
            if now.saturating_duration_since(seen.since) < window {
                return true;
            }
            if seen.more > 0 {
                tracing::warn!(
                    kind = %kind,
                    repeats = seen.more,
                    "and {} more like it in the last {} s",
                    seen.more,
                    window.as_secs()
                );
                logged.push((kind.clone(), seen.more));
            }
            false
        });
        logged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_kind_is_logged_and_repeats_are_summarised_once_the_window_closes() {
        let repeats = Repeats::new(Duration::from_secs(10));
        assert!(repeats.first("403 bad signature"));
        assert!(repeats.first("400 missing MessageSid"));
        for _ in 0..37 {
            assert!(!repeats.first("403 bad signature"));
        }
        let start = Instant::now();
        assert!(repeats.flush(start).is_empty(), "no window has closed yet");
        let summaries = repeats.flush(start + Duration::from_secs(11));
        assert_eq!(summaries, vec![("403 bad signature".to_owned(), 37)]);
        assert!(
            repeats.first("403 bad signature"),
            "a new window logs again"
        );
    }

    #[test]
    fn a_flood_of_distinct_kinds_is_counted_under_one_key() {
        let repeats = Repeats::new(Duration::from_secs(10));
        for n in 0..MAX_KINDS + 50 {
            repeats.first(&format!("kind {n}"));
        }
        let summaries = repeats.flush(Instant::now() + Duration::from_secs(11));
        assert_eq!(summaries, vec![(OTHER_KIND.to_owned(), 50)]);
    }
}
