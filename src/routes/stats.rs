//! `GET /v1/stats?since=…&until=…`: messages by current status and error code;
//! `GET /v1/stats/series?since=…&until=…&bucket=hour|day`: the same counts per bucket of
//! `updated_at`, for charts.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::query::pairs;
use super::{query_time, ApiError};
use crate::domain::{error_codes, AccountSid, KnownStatus, RfcTime, Timestamp};
use crate::startup::AppState;
use crate::store::{BucketSize, Counts};

#[derive(Serialize)]
struct StatsView {
    since: Option<RfcTime>,
    until: Option<RfcTime>,
    #[serde(flatten)]
    counts: CountsView,
    /// Twilio's title of each code in `by_error_code` (null for a code it does not know).
    error_descriptions: BTreeMap<String, Option<&'static str>>,
}

/// The counts of `/v1/stats`, also those of each bucket of a series.
#[derive(Serialize)]
pub(super) struct CountsView {
    /// Messages whose current status is known, last updated within the window.
    total: u64,
    by_status: BTreeMap<&'static str, u64>,
    /// Keyed by the error code as a string (JSON object keys are strings).
    by_error_code: BTreeMap<String, u64>,
    /// (delivered + read) / (delivered + read + undelivered + failed); null when none of
    /// the messages has reached one of those statuses.
    delivery_rate: Option<f64>,
}

impl CountsView {
    pub(super) fn new(stats: &Counts) -> CountsView {
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
        CountsView {
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
        }
    }
}

pub(super) fn describe_errors<'a>(
    codes: impl IntoIterator<Item = &'a (u32, u64)>,
) -> BTreeMap<String, Option<&'static str>> {
    codes
        .into_iter()
        .map(|(code, _)| (code.to_string(), error_codes::describe(*code)))
        .collect()
}

pub async fn stats(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse_window(request.query_string(), "stats", &["account_sid"])?;
    let (since, until) = query.window;
    let account = query
        .extra
        .get("account_sid")
        .map(|raw| AccountSid::parse(raw))
        .transpose()
        .map_err(|_| {
            ApiError::BadRequest("account_sid: must be AC followed by 32 hex digits".into())
        })?;
    let stats = match account {
        Some(account) => {
            state
                .store
                .account_stats(account.as_str(), since, until)
                .await?
        }
        None => state.store.stats(since, until).await?,
    };
    let view = StatsView {
        since: since.map(RfcTime),
        until: until.map(RfcTime),
        counts: CountsView::new(&stats),
        error_descriptions: describe_errors(&stats.by_error),
    };
    Ok(HttpResponse::Ok().json(view))
}

/// The answer of `GET /v1/stats/series`.
#[derive(Serialize)]
struct SeriesView {
    bucket: &'static str,
    /// The window as used: the one asked for, widened to whole buckets.
    since: RfcTime,
    until: RfcTime,
    series: Vec<BucketView>,
    /// Twilio's title of each error code of any bucket (null for a code it does not know).
    error_descriptions: BTreeMap<String, Option<&'static str>>,
}

#[derive(Serialize)]
struct BucketView {
    start: RfcTime,
    #[serde(flatten)]
    counts: CountsView,
}

/// At most this many buckets in one series: a month of hours, or years of days.
pub const MAX_BUCKETS: u64 = 1000;
/// Without `since`, a series covers this many buckets before `until`: a day of hours or a
/// month of days.
const DEFAULT_HOURS: u64 = 24;
const DEFAULT_DAYS: u64 = 30;

/// `GET /v1/stats/series`: without `until`, up to now; without `since`, the 24 hours (or
/// 30 days) before `until`; `bucket` defaults to `hour`. The window is widened to whole
/// UTC hours or days, and the answer says which window it counted.
pub async fn stats_series(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse_window(request.query_string(), "stats/series", &["bucket"])?;
    let size = match query.extra.get("bucket") {
        None => BucketSize::Hour,
        Some(raw) => BucketSize::parse(raw).ok_or_else(|| {
            ApiError::BadRequest(format!("bucket: {raw:?} is not one of hour, day"))
        })?,
    };
    let until = match query.window.1 {
        Some(until) => until,
        None => state.store.now().await?,
    };
    let until = size.ceil(until);
    let default_buckets = match size {
        BucketSize::Hour => DEFAULT_HOURS,
        BucketSize::Day => DEFAULT_DAYS,
    };
    let since = query
        .window
        .0
        .unwrap_or_else(|| Timestamp(until.0.saturating_sub(default_buckets * size.micros())));
    if since >= until {
        return Err(ApiError::BadRequest(
            "since: must be earlier than until".into(),
        ));
    }
    let buckets = size.count(since, until);
    if buckets > MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "since: the window holds {buckets} {} buckets, at most {MAX_BUCKETS}: \
             shorten it or use a larger bucket",
            size.as_str()
        )));
    }
    let series = state.store.series(since, until, size).await?;
    let error_descriptions = describe_errors(
        series
            .buckets
            .iter()
            .flat_map(|bucket| bucket.by_error.iter()),
    );
    let view = SeriesView {
        bucket: size.as_str(),
        since: RfcTime(series.since),
        until: RfcTime(series.until),
        series: series
            .buckets
            .iter()
            .enumerate()
            .map(|(index, stats)| BucketView {
                start: RfcTime(Timestamp(series.since.0 + index as u64 * size.micros())),
                counts: CountsView::new(stats),
            })
            .collect(),
        error_descriptions,
    };
    Ok(HttpResponse::Ok().json(view))
}

pub(super) struct WindowQuery {
    pub(super) window: (Option<Timestamp>, Option<Timestamp>),
    /// Values of the other parameters the route takes.
    pub(super) extra: BTreeMap<String, String>,
}

/// Reads `since` and `until`, and the parameters named in `extra`; any other name is
/// refused, naming the route.
pub(super) fn parse_window(
    raw: &str,
    route: &str,
    extra: &[&str],
) -> Result<WindowQuery, ApiError> {
    let (mut since, mut until) = (None, None);
    let mut values = BTreeMap::new();
    for (name, value) in pairs(raw, &[])? {
        let time = || query_time(&name, &value);
        match name.as_ref() {
            "since" => since = Some(time()?),
            "until" => until = Some(time()?),
            other if extra.contains(&other) => {
                values.insert(other.to_owned(), value.into_owned());
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other}: is not a parameter of {route}"
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
    Ok(WindowQuery {
        window: (since, until),
        extra: values,
    })
}
