//! `GET /v1/messages` and `GET /v1/stats` over a few hundred messages with mixed outcomes.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::fixtures::{callback, callbacks_to, messages_of, new_sid, Mix};
use crate::support::spawn::{spawn_app, TestApp};

/// What the test itself knows about each message it sent.
#[derive(Debug, Clone)]
struct Expected {
    status: &'static str,
    error_code: Option<u32>,
    to: String,
    from: String,
}

/// The outcome mix: (final status, error code, how many messages).
const MIX: &Mix = &[
    ("delivered", None, 120),
    ("read", None, 20),
    ("undelivered", Some(30003), 40),
    ("undelivered", Some(30005), 25),
    ("failed", Some(30008), 30),
    ("failed", Some(21610), 15),
    ("sent", None, 30),
    ("queued", None, 20),
];

async fn send_message(app: &TestApp, sid: &str, expected: &Expected) {
    for mut params in callbacks_to(sid, expected.status, expected.error_code) {
        for (name, value) in params.iter_mut() {
            match name.as_str() {
                "To" => *value = expected.to.clone(),
                "From" => *value = expected.from.clone(),
                _ => {}
            }
        }
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }
}

async fn fill(app: &TestApp) -> HashMap<String, Expected> {
    let mut model = HashMap::new();
    for (n, (status, error_code)) in messages_of(MIX).enumerate() {
        let expected = Expected {
            status,
            error_code,
            to: format!("+1555000{:04}", n % 37),
            from: format!("+1500555{:04}", n % 3),
        };
        model.insert(new_sid(), expected);
    }
    let all: Vec<_> = model.iter().collect();
    for chunk in all.chunks(40) {
        join_all(
            chunk
                .iter()
                .map(|(sid, expected)| send_message(app, sid, expected)),
        )
        .await;
    }
    model
}

/// Every page of a listing, following cursors; returns the messages in order.
async fn all_pages(app: &TestApp, query: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/messages?{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.json(&path).await;
        messages.extend(
            page["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return messages,
        }
    }
}

fn sids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["sid"].as_str().expect("sid").to_owned())
        .collect()
}

fn expected_sids(
    model: &HashMap<String, Expected>,
    keep: impl Fn(&Expected) -> bool,
) -> HashSet<String> {
    model
        .iter()
        .filter(|(_, e)| keep(e))
        .map(|(sid, _)| sid.clone())
        .collect()
}

fn assert_newest_first(messages: &[Value]) {
    for pair in messages.windows(2) {
        let updated = |m: &Value| m["updated_at"].as_str().unwrap_or_default().to_owned();
        assert!(
            updated(&pair[0]) >= updated(&pair[1]),
            "{} listed before {}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test]
async fn every_filter_and_union_is_exact_and_paging_visits_each_message_once() {
    let app = spawn_app().await;
    let model = fill(&app).await;

    let to = "+15550000005";
    let from = "+15005550001";
    type Keep = Box<dyn Fn(&Expected) -> bool>;
    let cases: Vec<(String, Keep)> = vec![
        // No filter: every message. (Each case gets its `limit` below.)
        (String::new(), Box::new(|_| true)),
        ("status=failed".into(), Box::new(|e| e.status == "failed")),
        (
            "status=delivered".into(),
            Box::new(|e| e.status == "delivered"),
        ),
        ("status=read".into(), Box::new(|e| e.status == "read")),
        ("status=queued".into(), Box::new(|e| e.status == "queued")),
        (
            "status=failed&status=undelivered".into(),
            Box::new(|e| matches!(e.status, "failed" | "undelivered")),
        ),
        (
            "error_code=30003".into(),
            Box::new(|e| e.error_code == Some(30003)),
        ),
        (
            "error_code=30008&status=undelivered".into(),
            Box::new(|_| false),
        ),
        (format!("to=%2B{}", &to[1..]), Box::new(move |e| e.to == to)),
        (
            format!("from=%2B{}", &from[1..]),
            Box::new(move |e| e.from == from),
        ),
        (
            format!("from=%2B{}&status=delivered", &from[1..]),
            Box::new(move |e| e.from == from && e.status == "delivered"),
        ),
        (
            format!("to=%2B{}&status=failed&status=delivered", &to[1..]),
            Box::new(move |e| e.to == to && matches!(e.status, "failed" | "delivered")),
        ),
    ];
    for (query, keep) in &cases {
        let expected = expected_sids(&model, keep);
        for limit in [1000, 7] {
            let messages = all_pages(&app, &format!("{query}&limit={limit}")).await;
            let listed = sids(&messages);
            let unique: HashSet<_> = listed.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                listed.len(),
                "{query} limit {limit}: a message was listed twice"
            );
            assert_eq!(unique, expected, "{query} limit {limit}");
            assert_newest_first(&messages);
        }
    }

    // Listings carry the fields of the message, without events.
    let first = &all_pages(&app, "status=undelivered&limit=1000").await[0];
    let expected = &model[first["sid"].as_str().expect("sid")];
    assert_eq!(
        first["error_code"].as_u64().map(|c| c as u32),
        expected.error_code
    );
    assert_eq!(first["to"], expected.to.as_str());
    assert!(first.get("events").is_none());
}

#[tokio::test]
async fn since_and_until_bound_updated_at_inclusive_and_exclusive() {
    let app = spawn_app().await;
    let model = fill(&app).await;
    let everything = all_pages(&app, "limit=1000").await;
    assert_eq!(everything.len(), model.len());
    // A time in the middle of the fill, taken from a message's own updated_at.
    let pivot = everything[everything.len() / 2]["updated_at"]
        .as_str()
        .expect("time")
        .to_owned();
    let at_or_after: HashSet<String> = everything
        .iter()
        .filter(|m| m["updated_at"].as_str().unwrap_or_default() >= pivot.as_str())
        .map(|m| m["sid"].as_str().unwrap_or_default().to_owned())
        .collect();
    let before: HashSet<String> = sids(&everything)
        .into_iter()
        .filter(|s| !at_or_after.contains(s))
        .collect();
    assert!(!at_or_after.is_empty() && !before.is_empty());

    let since = sids(&all_pages(&app, &format!("since={pivot}&limit=9")).await);
    assert_eq!(since.into_iter().collect::<HashSet<_>>(), at_or_after);
    let until = sids(&all_pages(&app, &format!("until={pivot}&limit=9")).await);
    assert_eq!(until.into_iter().collect::<HashSet<_>>(), before);

    // The same boundaries hold for stats.
    let stats = app.json(&format!("/v1/stats?since={pivot}")).await;
    assert_eq!(stats["total"].as_u64(), Some(at_or_after.len() as u64));
    let stats = app.json(&format!("/v1/stats?until={pivot}")).await;
    assert_eq!(stats["total"].as_u64(), Some(before.len() as u64));
}

#[tokio::test]
async fn paging_while_callbacks_arrive_visits_every_message_exactly_once() {
    let app = spawn_app().await;
    let model = fill(&app).await;
    let everything: HashSet<String> = model.keys().cloned().collect();
    assert_eq!(
        sids(&all_pages(&app, "limit=1000").await)
            .into_iter()
            .collect::<HashSet<_>>(),
        everything
    );
    for (query, unpaged) in [
        ("limit=13", "limit=1000"),
        ("status=delivered&limit=11", "status=delivered&limit=1000"),
    ] {
        // What matches when paging begins (the first pass's writes changed the state).
        let expected: HashSet<String> = sids(&all_pages(&app, unpaged).await).into_iter().collect();
        assert!(expected.len() > 50, "{query}");
        let seen = page_while_writing(&app, query, &expected).await;
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{query}: a message was listed twice"
        );
        assert_eq!(
            unique, expected,
            "{query}: every message as it stood when paging began"
        );
    }
}

/// Pages through `query`; between pages a new message arrives, a message already listed
/// changes, and a message not listed yet changes (moving above the cursor).
async fn page_while_writing(app: &TestApp, query: &str, expected: &HashSet<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/messages?{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.json(&path).await;
        let listed = sids(page["messages"].as_array().expect("messages"));
        seen.extend(listed.iter().cloned());
        let newcomer = new_sid();
        assert_eq!(
            app.post_callback(&callback(&newcomer, "delivered"))
                .await
                .status(),
            200
        );
        if let Some(listed_before) = listed.first() {
            assert_eq!(
                app.post_callback(&callback(listed_before, "read"))
                    .await
                    .status(),
                200
            );
        }
        let not_yet = expected.iter().find(|sid| !seen.contains(sid));
        if let Some(not_yet) = not_yet {
            assert_eq!(
                app.post_callback(&callback(not_yet, "read")).await.status(),
                200
            );
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(pages > 5, "{query}: {pages} pages");
    seen
}

#[tokio::test]
async fn stats_equal_a_count_of_the_messages_sent() {
    let app = spawn_app().await;
    let model = fill(&app).await;
    let stats = app.json("/v1/stats").await;

    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_error: BTreeMap<String, u64> = BTreeMap::new();
    for expected in model.values() {
        *by_status.entry(expected.status).or_default() += 1;
        if let Some(code) = expected.error_code {
            *by_error.entry(code.to_string()).or_default() += 1;
        }
    }
    let as_map = |value: &Value| -> BTreeMap<String, u64> {
        value
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect()
    };
    let expected_status: BTreeMap<String, u64> =
        by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(as_map(&stats["by_status"]), expected_status);
    assert_eq!(as_map(&stats["by_error_code"]), by_error);
    assert_eq!(stats["total"].as_u64(), Some(model.len() as u64));
    let delivered = (by_status["delivered"] + by_status["read"]) as f64;
    let concluded = delivered + (by_status["failed"] + by_status["undelivered"]) as f64;
    let rate = stats["delivery_rate"].as_f64().expect("a rate");
    assert!((rate - delivered / concluded).abs() < 1e-9, "{rate}");

    // A window covering everything counts the same as no window.
    let windowed = app
        .json("/v1/stats?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(windowed["by_status"], stats["by_status"]);
    assert_eq!(windowed["by_error_code"], stats["by_error_code"]);
}

#[tokio::test]
async fn bad_listing_and_stats_parameters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        ("/v1/messages?limit=0", "limit"),
        ("/v1/messages?limit=1001", "limit"),
        ("/v1/messages?limit=ten", "limit"),
        ("/v1/messages?cursor=not-a-cursor", "cursor"),
        ("/v1/messages?cursor=", "cursor"),
        ("/v1/messages?since=yesterday", "since"),
        ("/v1/messages?until=2026-13-01T00:00:00Z", "until"),
        (
            "/v1/messages?since=2026-11-26T10:00:00Z&until=2026-11-26T09:00:00Z",
            "until",
        ),
        ("/v1/messages?status=", "status"),
        ("/v1/messages?status=bounced", "status"),
        ("/v1/messages?error_code=abc", "error_code"),
        ("/v1/messages?to=", "to"),
        ("/v1/messages?colour=blue", "colour"),
        ("/v1/stats?since=noon", "since"),
        ("/v1/stats?until=2026-11-26", "until"),
        ("/v1/stats?limit=5", "limit"),
    ];
    for (path, parameter) in cases {
        let response = app.get_authorized(path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.expect("json");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(parameter), "{path}: {message}");
    }
    for path in ["/v1/messages", "/v1/stats"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 401, "{path}");
    }
}
