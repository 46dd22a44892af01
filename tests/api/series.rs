//! `GET /v1/stats/series` against a model of the messages posted, and the
//! `error_description` that messages carry next to `error_code`.
//!
//! The store dates a message by its arrival, so every message of a test lands in the
//! current hour (or, at an hour's turn, in two): the model places each message in the
//! bucket of the `updated_at` the API reports for it, and every other bucket must be empty.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::fixtures::{callback, callbacks_to, messages_of, new_sid, with, Mix};
use crate::support::spawn::{spawn_app, TestApp};

/// (final status, error code, how many): 39999 is a code Twilio's table does not hold.
const MIX: &Mix = &[
    ("delivered", None, 9),
    ("read", None, 3),
    ("undelivered", Some(30003), 4),
    ("failed", Some(30008), 3),
    ("failed", Some(39999), 1),
    ("sent", None, 2),
    ("queued", None, 1),
];

struct Posted {
    status: &'static str,
    error_code: Option<u32>,
    updated_at: DateTime<Utc>,
}

async fn post_message(app: &TestApp, status: &'static str, error_code: Option<u32>) -> Posted {
    let sid = new_sid();
    for params in callbacks_to(&sid, status, error_code) {
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }
    let message = app.message_json(&sid).await;
    Posted {
        status,
        error_code,
        updated_at: time(&message["updated_at"]),
    }
}

async fn fill(app: &TestApp) -> Vec<Posted> {
    let posts = messages_of(MIX).map(|(status, code)| post_message(app, status, code));
    join_all(posts).await
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("an RFC 3339 time"))
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What one bucket must say about `messages`, computed the way `/v1/stats` defines it.
fn expected_bucket(messages: &[&Posted]) -> Value {
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_error: BTreeMap<String, u64> = BTreeMap::new();
    for message in messages {
        *by_status.entry(message.status).or_default() += 1;
        if let Some(code) = message.error_code {
            *by_error.entry(code.to_string()).or_default() += 1;
        }
    }
    let count = |names: &[&str]| -> u64 { names.iter().filter_map(|n| by_status.get(n)).sum() };
    let delivered = count(&["delivered", "read"]);
    let concluded = delivered + count(&["failed", "undelivered"]);
    json!({
        "total": messages.len(),
        "by_status": by_status,
        "by_error_code": by_error,
        "delivery_rate": (concluded > 0).then(|| delivered as f64 / concluded as f64),
    })
}

/// Checks every bucket of a series against the messages whose `updated_at` falls in it.
fn check_series(series: &Value, posted: &[Posted], width: Duration) {
    let since = time(&series["since"]);
    let buckets = series["series"].as_array().expect("a series");
    assert_eq!(time(&series["until"]), since + width * buckets.len() as i32);
    let mut counted = 0;
    for (index, bucket) in buckets.iter().enumerate() {
        let start = since + width * index as i32;
        assert_eq!(time(&bucket["start"]), start, "bucket {index}");
        let inside: Vec<&Posted> = posted
            .iter()
            .filter(|p| p.updated_at >= start && p.updated_at < start + width)
            .collect();
        counted += inside.len();
        let mut actual = bucket.clone();
        actual.as_object_mut().expect("an object").remove("start");
        assert_eq!(actual, expected_bucket(&inside), "bucket starting {start}");
    }
    assert_eq!(counted, posted.len(), "every message falls in a bucket");
}

#[tokio::test]
async fn series_counts_each_hour_and_day_like_a_model_of_the_messages_posted() {
    let app = spawn_app().await;
    let posted = fill(&app).await;
    let now = Utc::now();

    let since = rfc3339(now - Duration::hours(3));
    let until = rfc3339(now + Duration::hours(2));
    let hourly = app
        .json(&format!(
            "/v1/stats/series?since={since}&until={until}&bucket=hour"
        ))
        .await;
    assert_eq!(hourly["bucket"], "hour");
    let hour = Duration::hours(1);
    assert_eq!(
        time(&hourly["since"]),
        (now - Duration::hours(3))
            .duration_trunc(hour)
            .expect("aligned"),
        "since is aligned down to its hour"
    );
    let buckets = hourly["series"].as_array().expect("a series").len();
    assert!((5..=6).contains(&buckets), "{buckets} hours");
    check_series(&hourly, &posted, hour);
    let empty = hourly["series"][0].clone();
    assert_eq!(empty["total"], 0);
    assert_eq!(empty["delivery_rate"], Value::Null);

    let day = Duration::days(1);
    let since = rfc3339(now - Duration::days(3));
    let daily = app
        .json(&format!(
            "/v1/stats/series?since={since}&until={until}&bucket=day"
        ))
        .await;
    assert_eq!(daily["bucket"], "day");
    assert_eq!(
        time(&daily["since"]),
        (now - Duration::days(3))
            .duration_trunc(day)
            .expect("aligned")
    );
    check_series(&daily, &posted, day);

    // The buckets add up to /v1/stats over the window the series used.
    let stats = app
        .json(&format!(
            "/v1/stats?since={}&until={}",
            daily["since"].as_str().expect("since"),
            daily["until"].as_str().expect("until")
        ))
        .await;
    assert_eq!(stats["total"], posted.len());
    let sum: u64 = daily["series"]
        .as_array()
        .expect("a series")
        .iter()
        .map(|bucket| bucket["total"].as_u64().expect("a total"))
        .sum();
    assert_eq!(sum, posted.len() as u64);

    // Twilio's titles of the codes counted, null for a code outside the table.
    for answer in [&daily, &stats] {
        let descriptions = &answer["error_descriptions"];
        assert_eq!(descriptions["30003"], "Unreachable destination handset");
        assert_eq!(descriptions["30008"], "Unknown error");
        assert_eq!(descriptions["39999"], Value::Null);
        assert_eq!(descriptions.as_object().expect("an object").len(), 3);
    }
}

#[tokio::test]
async fn series_defaults_to_the_last_day_by_hour_and_widens_a_window_to_whole_buckets() {
    let app = spawn_app().await;
    let before = Utc::now();
    let series = app.json("/v1/stats/series").await;
    let after = Utc::now();
    assert_eq!(series["bucket"], "hour");
    assert_eq!(series["series"].as_array().expect("a series").len(), 24);
    let until = time(&series["until"]);
    assert!(
        until > before && until <= after + Duration::hours(1),
        "{until}"
    );
    assert_eq!(until.duration_trunc(Duration::hours(1)).ok(), Some(until));
    assert_eq!(time(&series["since"]), until - Duration::hours(24));

    let days = app.json("/v1/stats/series?bucket=day").await;
    assert_eq!(days["series"].as_array().expect("a series").len(), 30);

    let widened = app
        .json("/v1/stats/series?since=2026-01-01T10:30:00Z&until=2026-01-01T12:10:00Z")
        .await;
    assert_eq!(widened["since"], "2026-01-01T10:00:00.000Z");
    assert_eq!(widened["until"], "2026-01-01T13:00:00.000Z");
    let starts: Vec<&str> = widened["series"]
        .as_array()
        .expect("a series")
        .iter()
        .map(|bucket| bucket["start"].as_str().expect("a start"))
        .collect();
    assert_eq!(
        starts,
        [
            "2026-01-01T10:00:00.000Z",
            "2026-01-01T11:00:00.000Z",
            "2026-01-01T12:00:00.000Z"
        ]
    );

    // The most buckets a series may hold are allowed; one more is not.
    let longest = app
        .json("/v1/stats/series?since=2026-01-01T00:00:00Z&until=2026-02-11T16:00:00Z")
        .await;
    assert_eq!(longest["series"].as_array().expect("a series").len(), 1000);
}

#[tokio::test]
async fn bad_series_parameters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        ("bucket=week", "bucket"),
        ("bucket=", "bucket"),
        ("since=noon", "since"),
        ("until=2026-11-26", "until"),
        (
            "since=2026-11-26T10:00:00Z&until=2026-11-26T09:00:00Z",
            "until",
        ),
        ("since=2999-01-01T00:00:00Z", "since"),
        (
            "since=2026-01-01T00:00:00Z&until=2026-02-11T17:00:00Z",
            "since",
        ),
        (
            "since=1990-01-01T00:00:00Z&until=2026-01-01T00:00:00Z&bucket=day",
            "since",
        ),
        ("colour=blue", "colour"),
    ];
    for (query, parameter) in cases {
        let path = format!("/v1/stats/series?{query}");
        let response = app.get_authorized(&path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.expect("json");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{parameter}:")),
            "{path}: {message}"
        );
    }
    assert_eq!(app.get("/v1/stats/series").await.status(), 401);
}

#[tokio::test]
async fn messages_carry_twilio_s_description_of_their_error_code() {
    let app = spawn_app().await;
    let failed = new_sid();
    let unknown = new_sid();
    let params = with(callback(&failed, "failed"), "ErrorCode", "30008");
    assert_eq!(app.post_callback(&params).await.status(), 200);
    let params = with(callback(&unknown, "undelivered"), "ErrorCode", "39999");
    assert_eq!(app.post_callback(&params).await.status(), 200);

    let message = app.message_json(&failed).await;
    assert_eq!(message["error_code"], 30008);
    assert_eq!(message["error_description"], "Unknown error");
    assert_eq!(message["events"][0]["error_description"], "Unknown error");
    let message = app.message_json(&unknown).await;
    assert_eq!(message["error_description"], Value::Null);
    assert_eq!(message["events"][0]["error_description"], Value::Null);

    let listing = app.json("/v1/messages?status=failed").await;
    assert_eq!(listing["messages"][0]["sid"], failed.as_str());
    assert_eq!(listing["messages"][0]["error_description"], "Unknown error");
    let delivered = new_sid();
    assert_eq!(
        app.post_callback(&callback(&delivered, "delivered"))
            .await
            .status(),
        200
    );
    let message = app.message_json(&delivered).await;
    let fields = message.as_object().expect("an object");
    assert_eq!(fields.get("error_description"), Some(&Value::Null));
}
