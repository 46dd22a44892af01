//! `GET /v1/export?since=…&until=…&format=jsonl|csv`: every message with its events,
//! streamed from the running service, consistent as of the start of the export; with the
//! listing's filters (`status`, `error_code`, `to`, `from`, `account_sid`), only the
//! messages the listing would show (the dashboard's "Export" of the list it shows).
//!
//! The export reads at the store's snapshot taken when the request arrives (see
//! `store/lifecycle.rs`): each message as it stood then, with the events received by then;
//! messages created later are left out. It reads a page of messages at a time, renders it
//! on a blocking thread in chunks of about [`CHUNK`] bytes, and hands the chunks to the
//! response through a short channel, so a slow reader holds one page and a few chunks in
//! memory, and neither the async threads nor the store's writer ever wait for it. A store
//! error part-way, or a reader that takes nothing for [`STALL`], ends the response without
//! its final chunk, so the client sees a broken transfer rather than a short export that
//! looks whole.
//!
//! At most [`MOST_EXPORTS`] run at once; one more is answered `503` with `Retry-After`, so
//! that slow readers cannot add up to more memory than a few exports take.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::messages::{check_window, filter};
use super::query::pairs;
use super::ApiError;
use crate::archive::export::{header, write_message, Format};
use crate::domain::MessageSid;
use crate::startup::AppState;
use crate::store::{ListQuery, Store, StoredMessage};

/// Exports running at once, at most. An export is an operator's tool (a backup, a move to
/// another store); four at once is plenty, and four stalled ones cost a few MiB.
pub const MOST_EXPORTS: usize = 4;
/// The `Retry-After` of an export refused for want of a place.
const RETRY_AFTER: u64 = 10;
/// Messages read at a time: with messages of a few KiB, a page is well under a MiB.
const PAGE: usize = 100;
/// Bytes rendered at a time, about (a chunk holds at least one message).
const CHUNK: usize = 64 * 1024;
/// Rendered chunks waiting for the client, at most.
const AHEAD: usize = 4;
/// How long a reader may take nothing before the export is abandoned.
const STALL: Duration = Duration::from_secs(60);

type Chunk = Result<web::Bytes, std::io::Error>;

struct ExportQuery {
    /// The listing's filters; its `limit` and `cursor` are not used.
    filter: ListQuery,
    format: Format,
}

pub async fn export_messages(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse(request.query_string())?;
    let Ok(place) = Arc::clone(&state.exports).try_acquire_owned() else {
        state.metrics.export_refused();
        return Err(ApiError::Busy {
            what: "the most exports that run at once are running",
            retry_after: RETRY_AFTER,
        });
    };
    let store = state.store.clone();
    let snapshot = store.snapshot().await?;
    let (content_type, extension) = match query.format {
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    // A browser (the dashboard, a link) saves the export as a file instead of showing it.
    let disposition = format!("attachment; filename=\"statushook-export.{extension}\"");
    let (chunks, received) = mpsc::channel::<Chunk>(AHEAD);
    let complete = Arc::new(AtomicBool::new(false));
    actix_web::rt::spawn(produce(
        Export {
            store,
            snapshot,
            query,
            chunks,
            complete: Arc::clone(&complete),
        },
        place,
    ));
    // The channel closes when the producer ends; if it ended without finishing, the
    // response ends with an error instead of looking complete.
    let body = stream::unfold(Some(received), move |received| {
        let complete = Arc::clone(&complete);
        async move {
            let mut received = received?;
            match received.recv().await {
                Some(chunk) => Some((chunk, Some(received))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((Err(std::io::Error::other("export abandoned")), None)),
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .streaming(body))
}

/// One export in progress, as its producer sees it.
struct Export {
    store: Store,
    snapshot: u64,
    query: ExportQuery,
    chunks: mpsc::Sender<Chunk>,
    /// Set once every message has been sent.
    complete: Arc<AtomicBool>,
}

impl Export {
    /// Hands a chunk to the response; `false` when the client has gone or took nothing
    /// for [`STALL`].
    async fn send(&self, chunk: Chunk, exported: usize) -> bool {
        match tokio::time::timeout(STALL, self.chunks.send(chunk)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::warn!(
                    exported,
                    "an export was abandoned: its reader took nothing for a minute"
                );
                false
            }
        }
    }
}

/// Reads, renders and sends the export page by page; stops when the client has gone. It
/// holds its `place` among the exports running until then.
async fn produce(export: Export, _place: OwnedSemaphorePermit) {
    let format = export.query.format;
    if let Some(header) = header(format) {
        if !export.send(Ok(web::Bytes::from_static(header)), 0).await {
            return;
        }
    }
    let mut after: Option<MessageSid> = None;
    let mut exported = 0usize;
    loop {
        let page = match export
            .store
            .export_page(export.snapshot, after.clone(), PAGE)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, exported, "an export failed part-way");
                let _ = export
                    .send(Err(std::io::Error::other("export failed")), exported)
                    .await;
                return;
            }
        };
        let Some(last) = page.last() else {
            export.complete.store(true, Ordering::Release);
            tracing::info!(exported, "export finished");
            return;
        };
        after = Some(last.sid.clone());
        let mut messages = page.into_iter();
        loop {
            let filter = export.query.filter.clone();
            let rendered = tokio::task::spawn_blocking(move || {
                let rendered = render(&mut messages, &filter, format);
                (messages, rendered)
            })
            .await;
            let (rest, rendered) = match rendered {
                Ok(done) => done,
                Err(error) => {
                    tracing::error!(%error, exported, "an export failed part-way");
                    let _ = export
                        .send(Err(std::io::Error::other("export failed")), exported)
                        .await;
                    return;
                }
            };
            messages = rest;
            let chunk = match rendered {
                Ok((bytes, _)) if bytes.is_empty() => break,
                Ok((bytes, count)) => {
                    exported += count;
                    Ok(web::Bytes::from(bytes))
                }
                Err(error) => {
                    tracing::error!(%error, exported, "an export failed part-way");
                    Err(std::io::Error::other("export failed"))
                }
            };
            let failed = chunk.is_err();
            if !export.send(chunk, exported).await || failed {
                return;
            }
        }
    }
}

/// The bytes of the next messages that pass the filter, about [`CHUNK`] of them, and how
/// many messages they hold; empty when `messages` is exhausted.
fn render(
    messages: &mut std::vec::IntoIter<StoredMessage>,
    filter: &ListQuery,
    format: Format,
) -> Result<(Vec<u8>, usize), crate::archive::export::ExportError> {
    let mut out = Vec::with_capacity(CHUNK + CHUNK / 4);
    let mut count = 0;
    for message in messages.by_ref() {
        if !filter.matches(&message.state) {
            continue;
        }
        write_message(&mut out, message, format)?;
        count += 1;
        if out.len() >= CHUNK {
            break;
        }
    }
    Ok((out, count))
}

fn parse(raw: &str) -> Result<ExportQuery, ApiError> {
    let mut query = ExportQuery {
        filter: ListQuery::default(),
        format: Format::Jsonl,
    };
    let bad = |name: &str, problem: String| ApiError::BadRequest(format!("{name}: {problem}"));
    for (name, value) in pairs(raw, &["status"])? {
        if filter(&mut query.filter, &name, &value)? {
            continue;
        }
        match name.as_ref() {
            "format" => {
                query.format = match value.as_ref() {
                    "jsonl" => Format::Jsonl,
                    "csv" => Format::Csv,
                    other => return Err(bad("format", format!("{other:?} is not jsonl or csv"))),
                }
            }
            other => return Err(bad(other, "is not a parameter of the export".into())),
        }
    }
    check_window(&query.filter)?;
    Ok(query)
}
