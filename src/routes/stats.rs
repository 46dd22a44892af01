//! `GET /v1/stats?since=…&until=…`: messages by current status and error code.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::ApiError;
use crate::domain::{KnownStatus, RfcTime, Timestamp};
use crate::startup::AppState;

#[derive(Serialize)]
struct StatsView {
    since: Option<RfcTime>,
    until: Option<RfcTime>,
    /// Messages whose current status is known, last updated within the window.
    total: u64,
    by_status: BTreeMap<&'static str, u64>,
    /// Keyed by the error code as a string (JSON object keys are strings).
    by_error_code: BTreeMap<String, u64>,
    /// (delivered + read) / (delivered + read + undelivered + failed); null when none of
    /// the messages has reached one of those statuses.
    delivery_rate: Option<f64>,
}

pub async fn stats(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (since, until, account) = parse_window(request.query_string())?;
    let stats = match &account {
        Some(account) => state.store.account_stats(account, since, until).await?,
        None => state.store.stats(since, until).await?,
    };
    let count = |wanted: &[KnownStatus]| -> u64 {
        stats
            .by_status
            .iter()
            .filter(|(status, _)| wanted.contains(status))
            .map(|(_, count)| count)
            .sum()
    };
    let delivered = count(&[KnownStatus::Delivered, KnownStatus::Read]);
    let concluded = delivered + count(&[KnownStatus::Undelivered, KnownStatus::Failed]);
    let view = StatsView {
        since: since.map(RfcTime),
        until: until.map(RfcTime),
        total: stats.by_status.iter().map(|(_, count)| count).sum(),
        by_status: stats
            .by_status
            .iter()
            .map(|(status, count)| (status.as_str(), *count))
            .collect(),
        by_error_code: stats
            .by_error
            .iter()
            .map(|(code, count)| (code.to_string(), *count))
            .collect(),
        delivery_rate: (concluded > 0).then(|| delivered as f64 / concluded as f64),
    };
    Ok(HttpResponse::Ok().json(view))
}

type Window = (Option<Timestamp>, Option<Timestamp>, Option<String>);

/// `since`, `until` and `account_sid`.
fn parse_window(raw: &str) -> Result<Window, ApiError> {
    let (mut since, mut until, mut account) = (None, None, None);
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let time = || {
            Timestamp::parse_rfc3339(&value)
                .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
        };
        match name.as_ref() {
            "since" => since = Some(time()?),
            "until" => until = Some(time()?),
            "account_sid" if crate::config::is_sid(&value, "AC") => {
                account = Some(value.clone().into_owned())
            }
            "account_sid" => {
                return Err(ApiError::BadRequest(
                    "account_sid: must be AC followed by 32 hex digits".into(),
                ))
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other}: is not a parameter of stats"
                )))
            }
        }
    }
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            return Err(ApiError::BadRequest(
                "until: must be later than since".into(),
            ));
        }
    }
    Ok((since, until, account))
}
