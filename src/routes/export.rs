//! `GET /v1/export?since=…&until=…&format=jsonl|csv`: every message with its events,
//! streamed from the running service, consistent as of the start of the export.
//!
//! The export reads at the store's snapshot taken when the request arrives (see
//! `store/lifecycle.rs`): each message as it stood then, with the events received by then;
//! messages created later are left out. It reads a page of messages at a time on a blocking
//! thread, renders the page there too, and hands the bytes to the response through a short
//! channel, so a slow reader holds at most a few pages in memory and neither the async
//! threads nor the store's writer ever wait for it. A store error part-way ends the
//! response without its final chunk, so the client sees a broken transfer rather than a
//! short export that looks whole.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use tokio::sync::mpsc;

use super::{query_time, ApiError};
use crate::archive::export::{header, write_message, Format};
use crate::domain::{MessageSid, Timestamp};
use crate::startup::AppState;
use crate::store::{Store, StoredMessage};

/// Messages read and rendered at a time.
const PAGE: usize = 500;
/// Rendered pages waiting for the client, at most.
const AHEAD: usize = 4;

type Chunk = Result<web::Bytes, std::io::Error>;

struct ExportQuery {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    format: Format,
}

pub async fn export_messages(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse(request.query_string())?;
    let store = state.store.clone();
    let snapshot = store.snapshot().await?;
    let (content_type, extension) = match query.format {
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    // A browser (the dashboard, a link) saves the export as a file instead of showing it.
    let disposition = format!("attachment; filename=\"statushook-export.{extension}\"");
    let (chunks, received) = mpsc::channel::<Chunk>(AHEAD);
    actix_web::rt::spawn(produce(store, snapshot, query, chunks));
    let body = stream::unfold(received, |mut received| async move {
        received.recv().await.map(|chunk| (chunk, received))
    });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .streaming(body))
}

/// Reads, renders and sends the export page by page; stops when the client has gone.
async fn produce(store: Store, snapshot: u64, query: ExportQuery, chunks: mpsc::Sender<Chunk>) {
    if let Some(header) = header(query.format) {
        if chunks
            .send(Ok(web::Bytes::from_static(header)))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut after: Option<MessageSid> = None;
    let mut exported = 0usize;
    loop {
        let page = match store.export_page(snapshot, after.clone(), PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, exported, "an export failed part-way");
                let _ = chunks
                    .send(Err(std::io::Error::other("export failed")))
                    .await;
                return;
            }
        };
        let Some(last) = page.last() else {
            tracing::info!(exported, "export finished");
            return;
        };
        after = Some(last.sid.clone());
        let (since, until, format) = (query.since, query.until, query.format);
        let rendered = tokio::task::spawn_blocking(move || render(page, since, until, format));
        let chunk = match rendered.await {
            Ok(Ok((bytes, count))) => {
                exported += count;
                Ok(web::Bytes::from(bytes))
            }
            Ok(Err(error)) => {
                tracing::error!(%error, exported, "an export failed part-way");
                Err(std::io::Error::other("export failed"))
            }
            Err(error) => {
                tracing::error!(%error, exported, "an export failed part-way");
                Err(std::io::Error::other("export failed"))
            }
        };
        let failed = chunk.is_err();
        if chunks.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

/// The bytes of the messages of a page inside the window, and how many there were.
fn render(
    page: Vec<StoredMessage>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    format: Format,
) -> Result<(Vec<u8>, usize), crate::archive::export::ExportError> {
    let mut out = Vec::with_capacity(page.len() * 1024);
    let mut count = 0;
    for message in page {
        let updated_at = message.state.updated_at;
        if since.is_some_and(|since| updated_at < since)
            || until.is_some_and(|until| updated_at >= until)
        {
            continue;
        }
        write_message(&mut out, message, format)?;
        count += 1;
    }
    Ok((out, count))
}

fn parse(raw: &str) -> Result<ExportQuery, ApiError> {
    let mut query = ExportQuery {
        since: None,
        until: None,
        format: Format::Jsonl,
    };
    let bad = |name: &str, problem: String| ApiError::BadRequest(format!("{name}: {problem}"));
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "since" => query.since = Some(query_time("since", &value)?),
            "until" => query.until = Some(query_time("until", &value)?),
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
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since >= until {
            return Err(bad("until", "must be later than since".into()));
        }
    }
    Ok(query)
}
