//! Exports: every message with its events, as JSON lines or CSV, for analysis or migration.
//!
//! A running service streams one from `GET /v1/export` (`routes/export.rs`, which
//! `statushook export --url` reads). Offline, `statushook export` reads a stopped sled
//! store (sled lets one process at a time open a folder) or a PostgreSQL database, page by
//! page as of one snapshot, as the route does. A JSON line is the message exactly as
//! `GET /v1/messages/{sid}` shows it, which `statushook import` reads back; CSV has one row
//! per event.

use std::io::{self, Write};

use crate::domain::{MessageSid, Timestamp};
use crate::routes::views::MessageView;
use crate::store::{Store, StoreError, StoredMessage};

/// Messages read from the store at a time.
const PAGE: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

const CSV_HEADER_LINE: &str =
    "sid,account_sid,from,to,messaging_service_sid,status,error_code,created_at,updated_at,\
event_status,event_error_code,received_at,source,raw_dlr_done_date,params\n";

/// Writes every message last updated at or after `since`, as the store stood when the
/// export started; answers how many.
pub async fn export(
    store: &Store,
    since: Option<Timestamp>,
    format: Format,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    if let Some(header) = header(format) {
        out.write_all(header)?;
    }
    let snapshot = store.snapshot().await?;
    let mut after: Option<MessageSid> = None;
    let mut count = 0;
    loop {
        let page = store.export_page(snapshot, after.clone(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.sid.clone());
        for message in page {
            if since.is_some_and(|since| message.state.updated_at < since) {
                continue;
            }
            write_message(out, message, format)?;
            count += 1;
        }
    }
    out.flush()?;
    Ok(count)
}

/// What an export starts with: the CSV header line, nothing for JSON lines.
pub fn header(format: Format) -> Option<&'static [u8]> {
    match format {
        Format::Jsonl => None,
        Format::Csv => Some(CSV_HEADER_LINE.as_bytes()),
    }
}

/// The JSON line of a message, or its CSV rows (one per event).
pub fn write_message(
    out: &mut impl Write,
    message: StoredMessage,
    format: Format,
) -> Result<(), ExportError> {
    match format {
        Format::Jsonl => {
            serde_json::to_writer(&mut *out, &MessageView::full(message))?;
            writeln!(out)?;
            Ok(())
        }
        Format::Csv => write_csv(out, message),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write: {0}")]
    Io(#[from] io::Error),
    #[error("cannot encode: {0}")]
    Json(#[from] serde_json::Error),
}

fn write_csv(out: &mut impl Write, message: StoredMessage) -> Result<(), ExportError> {
    let view = serde_json::to_value(MessageView::full(message))?;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let fields = [
        "sid",
        "account_sid",
        "from",
        "to",
        "messaging_service_sid",
        "status",
        "error_code",
        "created_at",
        "updated_at",
    ];
    let message_columns: Vec<String> = fields.iter().map(|field| text(&view[field])).collect();
    for event in view["events"].as_array().into_iter().flatten() {
        let mut row = message_columns.clone();
        for field in [
            "status",
            "error_code",
            "received_at",
            "source",
            "raw_dlr_done_date",
        ] {
            row.push(text(&event[field]));
        }
        row.push(event["params"].to_string());
        let line: Vec<String> = row.iter().map(|cell| csv_cell(cell)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

/// RFC 4180: quote a cell holding a comma, quote or line break, doubling its quotes.
fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell("+15005550006"), "+15005550006");
        assert_eq!(csv_cell(r#"{"a":"b,c"}"#), r#""{""a"":""b,c""}""#);
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
    }
}
