//! `GET /v1/stats/breakdown`: messages grouped by sender, messaging service and the
//! country of the recipient's number, against a model of the callbacks posted.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::fixtures::{callbacks_to, new_sid};
use crate::support::spawn::{spawn_app, TestApp};

const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";

/// One message: recipient, sender, messaging service, final status and error code; and
/// the country the recipient's number belongs to.
struct Sent {
    to: &'static str,
    from: &'static str,
    service: Option<&'static str>,
    status: &'static str,
    error_code: Option<u32>,
    country: Option<&'static str>,
}

const fn sent(
    to: &'static str,
    from: &'static str,
    service: Option<&'static str>,
    outcome: (&'static str, Option<u32>),
    country: Option<&'static str>,
) -> Sent {
    Sent {
        to,
        from,
        service,
        status: outcome.0,
        error_code: outcome.1,
        country,
    }
}

const DELIVERED: (&str, Option<u32>) = ("delivered", None);
const UNREACHABLE: (&str, Option<u32>) = ("undelivered", Some(30003));
const UNKNOWN: (&str, Option<u32>) = ("failed", Some(30008));
const SENT: (&str, Option<u32>) = ("sent", None);

/// Three senders, one service, recipients in six countries and one that is no number:
/// `+1 876` is Jamaica, not the United States; `+44 7911` is Guernsey, not Britain; a
/// WhatsApp address counts as its number.
const MESSAGES: &[Sent] = &[
    sent(
        "+14155550100",
        "+15005550006",
        Some(SERVICE),
        DELIVERED,
        Some("US"),
    ),
    sent(
        "+14155550101",
        "+15005550006",
        Some(SERVICE),
        DELIVERED,
        Some("US"),
    ),
    sent(
        "+14155550102",
        "+15005550006",
        Some(SERVICE),
        UNREACHABLE,
        Some("US"),
    ),
    sent("+14155550102", "+15005550006", None, DELIVERED, Some("US")),
    sent("+18765550100", "+15005550006", None, UNKNOWN, Some("JM")),
    sent(
        "+447400123456",
        "+447700900001",
        Some(SERVICE),
        DELIVERED,
        Some("GB"),
    ),
    sent(
        "+447400123457",
        "+447700900001",
        None,
        UNREACHABLE,
        Some("GB"),
    ),
    sent(
        "+447911123456",
        "+447700900001",
        None,
        UNREACHABLE,
        Some("GG"),
    ),
    sent(
        "whatsapp:+4915112345678",
        "whatsapp:+14155238886",
        None,
        DELIVERED,
        Some("DE"),
    ),
    sent(
        "whatsapp:+4915112345679",
        "whatsapp:+14155238886",
        None,
        SENT,
        Some("DE"),
    ),
    sent(
        "+33612345678",
        "+15005550006",
        Some(SERVICE),
        UNKNOWN,
        Some("FR"),
    ),
    sent(
        "messenger:1234567890",
        "messenger:9876543210",
        None,
        DELIVERED,
        None,
    ),
];

async fn post(app: &TestApp, message: &Sent) {
    let sid = new_sid();
    for mut params in callbacks_to(&sid, message.status, message.error_code) {
        for (name, value) in params.iter_mut() {
            match name.as_str() {
                "To" => *value = message.to.to_owned(),
                "From" => *value = message.from.to_owned(),
                "MessagingServiceSid" => *value = message.service.unwrap_or("").to_owned(),
                _ => {}
            }
        }
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }
}

async fn fill(app: &TestApp) {
    join_all(MESSAGES.iter().map(|message| post(app, message))).await;
}

/// The groups the model expects, largest first, ties in key order, the null key last:
/// each as the API shows counts (`/v1/stats`' shape) with its key.
fn expected(key_of: impl Fn(&Sent) -> Option<&'static str>) -> Vec<Value> {
    let mut groups: BTreeMap<Option<&str>, Vec<&Sent>> = BTreeMap::new();
    for message in MESSAGES {
        groups.entry(key_of(message)).or_default().push(message);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|(key, messages)| (std::cmp::Reverse(messages.len()), key.is_none(), *key));
    groups
        .into_iter()
        .map(|(key, messages)| {
            let mut counts = counts(&messages);
            counts["key"] = json!(key);
            counts
        })
        .collect()
}

fn counts(messages: &[&Sent]) -> Value {
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

#[tokio::test]
async fn a_breakdown_groups_messages_by_sender_service_and_country_like_a_model() {
    let app = spawn_app().await;
    fill(&app).await;
    for (by, key_of) in [
        (
            "from",
            (|m: &Sent| Some(m.from)) as fn(&Sent) -> Option<&'static str>,
        ),
        ("messaging_service", |m: &Sent| m.service),
        ("country", |m: &Sent| m.country),
    ] {
        let answer = app
            .json(&format!("/v1/stats/breakdown?by={by}&limit=100"))
            .await;
        assert_eq!(answer["by"], by);
        assert_eq!(answer["scanned"], MESSAGES.len());
        assert_eq!(answer["complete"], true);
        assert_eq!(answer["others"], Value::Null, "{by}");
        assert_eq!(answer["since"], Value::Null);
        assert_eq!(
            answer["groups"].as_array().expect("groups"),
            &expected(key_of),
            "{by}"
        );
        assert_eq!(
            answer["error_descriptions"]["30003"],
            "Unreachable destination handset"
        );
    }
}

#[tokio::test]
async fn a_breakdown_lists_the_largest_groups_and_sums_the_rest() {
    let app = spawn_app().await;
    fill(&app).await;
    let answer = app.json("/v1/stats/breakdown?by=country&limit=2").await;
    let all = expected(|m| m.country);
    assert_eq!(answer["groups"].as_array().expect("groups"), &all[..2]);
    let rest: Vec<&Sent> = MESSAGES
        .iter()
        .filter(|m| !["US", "DE"].contains(&m.country.unwrap_or("")))
        .collect();
    let mut others = counts(&rest);
    others["groups"] = json!(all.len() - 2);
    assert_eq!(answer["others"], others);
    // Without a limit, ten groups at most.
    let answer = app.json("/v1/stats/breakdown?by=from").await;
    assert_eq!(answer["groups"].as_array().expect("groups").len(), 4);
}

#[tokio::test]
async fn a_breakdown_counts_only_the_messages_updated_in_its_window() {
    let app = spawn_app().await;
    fill(&app).await;
    let time =
        |offset: Duration| (Utc::now() + offset).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (hour_ago, in_an_hour) = (time(-Duration::hours(1)), time(Duration::hours(1)));
    let around = app
        .json(&format!(
            "/v1/stats/breakdown?by=from&since={hour_ago}&until={in_an_hour}"
        ))
        .await;
    assert_eq!(around["scanned"], MESSAGES.len());
    assert_eq!(around["since"], hour_ago.replace('Z', ".000Z"));
    let later = app
        .json(&format!("/v1/stats/breakdown?by=from&since={in_an_hour}"))
        .await;
    let earlier = app
        .json(&format!("/v1/stats/breakdown?by=from&until={hour_ago}"))
        .await;
    for empty in [later, earlier] {
        assert_eq!(empty["scanned"], 0);
        assert_eq!(empty["complete"], true);
        assert_eq!(empty["groups"], json!([]));
        assert_eq!(empty["others"], Value::Null);
    }
}

#[tokio::test]
async fn a_malformed_breakdown_query_is_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, parameter) in [
        ("", "by"),
        ("by=to", "by"),
        ("by=from&by=country", "by"),
        ("by=from&limit=0", "limit"),
        ("by=from&limit=101", "limit"),
        ("by=from&limit=ten", "limit"),
        ("by=from&since=yesterday", "since"),
        (
            "by=from&since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
        ("by=from&bucket=hour", "bucket"),
    ] {
        let response = app
            .get_authorized(&format!("/v1/stats/breakdown?{query}"))
            .await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("a JSON error");
        let error = body["error"].as_str().expect("an error message");
        assert!(
            error.starts_with(&format!("{parameter}:")),
            "{query}: {error}"
        );
    }
}
