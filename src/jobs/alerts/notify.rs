//! What a notification says, for each kind of channel. Pure: no I/O, no clock.
//!
//! - A webhook gets `{"type": "alert.firing"|"alert.resolved", "timestamp", "data"}`, the
//!   Standard Webhooks envelope, signed like forwarded transitions; its `webhook-id` is
//!   the same for every attempt of one notification ([`webhook_id`]).
//! - Slack gets an incoming-webhook message: `{"text": …}` in Slack's markup.
//! - PagerDuty gets an Events API v2 event: `trigger` with a `payload` (summary, source,
//!   severity, timestamp, custom details) and the dashboard's link, then `resolve` with the
//!   same `dedup_key` ([`dedup_key`]), which PagerDuty de-duplicates by.
//!
//! A firing notification names the most frequent error codes with Twilio's title of each
//! (`domain::error_codes`), a few sample SIDs, and the dashboard's list of those messages.

use serde_json::{json, Value};

use super::rule::{Channel, Filter, Metric, RuleName, Severity};
use super::state::Event;
use crate::config::PublicUrl;
use crate::domain::{error_codes, Timestamp};

/// What one notification is about.
#[derive(Debug, Clone)]
pub struct Incident {
    pub rule: RuleName,
    pub event: Event,
    pub metric: Metric,
    pub value: Option<f64>,
    pub messages: u64,
    pub threshold: f64,
    pub resolve_below: f64,
    pub window: String,
    pub filter: Filter,
    /// When the alert started firing: what identifies the incident.
    pub since: Timestamp,
    /// When this notification was decided (the firing or the resolution).
    pub at: Timestamp,
    pub top_errors: Vec<(u32, u64)>,
    pub sample_sids: Vec<String>,
    /// The dashboard's list of the messages concerned.
    pub link: Option<String>,
    /// Why a rule resolved other than by its value: `rule deleted`.
    pub reason: Option<&'static str>,
}

/// The `webhook-id` of a webhook notification: the rule, the incident and the event, the
/// same at every attempt and on every replica.
pub fn webhook_id(incident: &Incident) -> String {
    format!(
        "alert_{}_{}_{}",
        incident.rule,
        incident.since.0,
        incident.event.as_str()
    )
}

/// PagerDuty's `dedup_key` of an incident: its `trigger` and its `resolve` share it.
pub fn dedup_key(incident: &Incident) -> String {
    format!("statushook/{}/{}", incident.rule, incident.since.0)
}

/// The body `channel` is sent for `incident`.
pub fn body(channel: &Channel, incident: &Incident, public_url: &PublicUrl) -> Value {
    match channel {
        Channel::Webhook { .. } => webhook(incident),
        Channel::Slack { .. } => slack(incident),
        Channel::Pagerduty {
            routing_key,
            severity,
            ..
        } => pagerduty(
            incident,
            routing_key,
            severity.unwrap_or(Severity::Critical),
            public_url,
        ),
    }
}

/// The dashboard's list of the messages a rule counts over `[since, until)`.
pub fn dashboard_link(
    public_url: &PublicUrl,
    metric: Metric,
    filter: &Filter,
    since: Timestamp,
    until: Option<Timestamp>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for status in super::measure::statuses_of(metric) {
        query.append_pair("status", status.as_str());
    }
    if let Some(code) = filter.error_code {
        query.append_pair("error_code", &code.to_string());
    }
    if let Some(from) = &filter.from {
        query.append_pair("from", from);
    }
    query.append_pair("since", &since.to_rfc3339());
    if let Some(until) = until {
        query.append_pair("until", &until.to_rfc3339());
    }
    public_url.join(&format!("/ui/#/messages?{}", query.finish()))
}

fn webhook(incident: &Incident) -> Value {
    let mut data = json!({
        "rule": incident.rule.as_str(),
        "metric": incident.metric.as_str(),
        "value": incident.value,
        "messages": incident.messages,
        "threshold": incident.threshold,
        "resolve_below": incident.resolve_below,
        "window": incident.window,
        "since": incident.since.to_rfc3339(),
        "top_errors": top_errors(incident),
        "sample_sids": incident.sample_sids,
        "url": incident.link,
    });
    if !incident.filter.is_empty() {
        data["filter"] = json!(incident.filter);
    }
    if incident.event == Event::Resolved {
        data["resolved_at"] = json!(incident.at.to_rfc3339());
    }
    if let Some(reason) = incident.reason {
        data["reason"] = json!(reason);
    }
    json!({
        "type": format!("alert.{}", incident.event.as_str()),
        "timestamp": incident.at.to_rfc3339(),
        "data": data,
    })
}

fn slack(incident: &Incident) -> Value {
    let mut text = match incident.event {
        Event::Firing => format!(
            ":rotating_light: *statushook alert `{}` is firing*: {}",
            incident.rule,
            escape(&describe(incident))
        ),
        Event::Resolved => format!(
            ":white_check_mark: *statushook alert `{}` resolved*: {} (it fired at {})",
            incident.rule,
            escape(&describe(incident)),
            incident.since.to_rfc3339()
        ),
    };
    if incident.event == Event::Firing {
        let errors: Vec<String> = top_errors(incident)
            .iter()
            .map(|error| match error["description"].as_str() {
                Some(title) => format!("{} {} ({})", error["code"], title, error["count"]),
                None => format!("{} ({})", error["code"], error["count"]),
            })
            .collect();
        if !errors.is_empty() {
            text.push_str(&format!("\nTop errors: {}", escape(&errors.join(", "))));
        }
        if !incident.sample_sids.is_empty() {
            text.push_str(&format!(
                "\nFor example: {}",
                incident.sample_sids.join(", ")
            ));
        }
        if let Some(link) = &incident.link {
            text.push_str(&format!(
                "\n<{}|See these messages in statushook>",
                escape(link)
            ));
        }
    }
    json!({ "text": text })
}

fn pagerduty(
    incident: &Incident,
    routing_key: &str,
    severity: Severity,
    public_url: &PublicUrl,
) -> Value {
    if incident.event == Event::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(incident),
        });
    }
    let source = reqwest::Url::parse(&public_url.join("/"))
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "statushook".into());
    let mut summary = format!(
        "statushook alert {} is firing: {}",
        incident.rule,
        describe(incident)
    );
    // PagerDuty's limit on the summary.
    if summary.chars().count() > 1024 {
        summary = summary.chars().take(1023).collect::<String>() + "…";
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(incident),
        "payload": {
            "summary": summary,
            "source": source,
            "severity": severity.as_str(),
            "timestamp": incident.since.to_rfc3339(),
            "component": "statushook",
            "group": incident.rule.as_str(),
            "class": incident.metric.as_str(),
            "custom_details": webhook(incident)["data"],
        },
        "client": "statushook",
        "client_url": public_url.join("/ui/"),
    });
    if let Some(link) = &incident.link {
        event["links"] = json!([{ "href": link, "text": "The messages in statushook" }]);
    }
    event
}

/// One sentence on the value against the rule: `40.0% of 50 messages failed in the last
/// 5m (fires at 20.0%, resolves under 10.0%)`.
fn describe(incident: &Incident) -> String {
    let scope = scope(&incident.filter);
    let levels = |show: &dyn Fn(f64) -> String| {
        if incident.resolve_below < incident.threshold {
            format!(
                "fires at {}, resolves under {}",
                show(incident.threshold),
                show(incident.resolve_below)
            )
        } else {
            format!("fires at {}", show(incident.threshold))
        }
    };
    let percent = |rate: f64| format!("{:.1}%", rate * 100.0);
    let count = |n: f64| format!("{n}");
    let mut text = match (incident.metric, incident.value) {
        (Metric::FailureRate, Some(rate)) => format!(
            "{} of {} messages{scope} failed in the last {} ({})",
            percent(rate),
            incident.messages,
            incident.window,
            levels(&percent)
        ),
        (Metric::FailureRate, None) => format!(
            "no message{scope} reached a final status in the last {} ({})",
            incident.window,
            levels(&percent)
        ),
        (Metric::Failures, value) => format!(
            "{} messages{scope} failed in the last {} ({})",
            value.unwrap_or(0.0),
            incident.window,
            levels(&count)
        ),
        (Metric::Silence, value) => format!(
            "{} messages{scope} sent between {} and {} ago have had no callback since ({})",
            value.unwrap_or(0.0),
            incident.window,
            twice(&incident.window),
            levels(&count)
        ),
    };
    if let Some(reason) = incident.reason {
        text.push_str(&format!("; {reason}"));
    }
    text
}

/// ` from +1555… of AC… with error 30003`, or nothing.
fn scope(filter: &Filter) -> String {
    let mut scope = String::new();
    if let Some(from) = &filter.from {
        scope.push_str(&format!(" from {from}"));
    }
    if let Some(account) = &filter.account_sid {
        scope.push_str(&format!(" of {account}"));
    }
    if let Some(code) = filter.error_code {
        scope.push_str(&format!(" with error {code}"));
    }
    scope
}

/// `5m` → `10m`.
fn twice(window: &str) -> String {
    let (number, unit) = window.split_at(window.len().saturating_sub(1));
    number
        .parse::<u64>()
        .map_or_else(|_| window.to_owned(), |n| format!("{}{unit}", n * 2))
}

/// `[{"code", "count", "description", "url"}]`, the most frequent first.
fn top_errors(incident: &Incident) -> Vec<Value> {
    incident
        .top_errors
        .iter()
        .map(|(code, count)| {
            json!({
                "code": code,
                "count": count,
                "description": error_codes::describe(*code),
                "url": error_codes::docs_url(*code),
            })
        })
        .collect()
}

/// Slack's markup escapes `&`, `<` and `>`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(event: Event) -> Incident {
        Incident {
            rule: RuleName::parse("carrier-errors").expect("a name"),
            event,
            metric: Metric::FailureRate,
            value: Some(0.4),
            messages: 50,
            threshold: 0.2,
            resolve_below: 0.1,
            window: "5m".into(),
            filter: Filter::default(),
            since: Timestamp(1_790_000_000_000_000),
            at: Timestamp(1_790_000_060_000_000),
            top_errors: vec![(30003, 12), (99999, 3)],
            sample_sids: vec!["SM0123456789abcdef0123456789abcdef".into()],
            link: Some("https://hooks.example.com/ui/#/messages?status=failed".into()),
            reason: None,
        }
    }

    fn public() -> PublicUrl {
        PublicUrl::parse("https://hooks.example.com").expect("a URL")
    }

    #[test]
    fn a_webhook_says_what_fired_with_the_error_titles_samples_and_link() {
        let body = webhook(&incident(Event::Firing));
        assert_eq!(body["type"], "alert.firing");
        let data = &body["data"];
        assert_eq!(data["rule"], "carrier-errors");
        assert_eq!(data["value"], 0.4);
        assert_eq!(data["window"], "5m");
        assert_eq!(data["since"], "2026-09-21T14:13:20.000Z");
        assert_eq!(
            data["top_errors"][0]["description"],
            "Unreachable destination handset"
        );
        assert_eq!(data["top_errors"][1]["description"], Value::Null);
        assert_eq!(data["sample_sids"][0], "SM0123456789abcdef0123456789abcdef");
        let resolved = webhook(&incident(Event::Resolved));
        assert_eq!(resolved["type"], "alert.resolved");
        assert_eq!(resolved["data"]["resolved_at"], "2026-09-21T14:14:20.000Z");
        assert_ne!(
            webhook_id(&incident(Event::Firing)),
            webhook_id(&incident(Event::Resolved))
        );
    }

    #[test]
    fn slack_gets_text_and_pagerduty_a_trigger_then_a_resolve_of_the_same_key() {
        let text = slack(&incident(Event::Firing))["text"]
            .as_str()
            .map(str::to_owned);
        let text = text.expect("text");
        assert!(text.contains("`carrier-errors` is firing"), "{text}");
        assert!(
            text.contains("40.0% of 50 messages failed in the last 5m"),
            "{text}"
        );
        assert!(
            text.contains("30003 Unreachable destination handset (12)"),
            "{text}"
        );
        assert!(
            text.contains("<https://hooks.example.com/ui/#/messages?status=failed|"),
            "{text}"
        );
        let key = "R0123456789abcdefABCDEF012345678";
        let trigger = pagerduty(&incident(Event::Firing), key, Severity::Error, &public());
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["source"], "hooks.example.com");
        assert!(trigger["payload"]["summary"]
            .as_str()
            .is_some_and(|s| s.len() <= 1024));
        let resolve = pagerduty(&incident(Event::Resolved), key, Severity::Error, &public());
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    }

    #[test]
    fn the_dashboard_link_lists_the_failures_of_the_window() {
        let filter = Filter {
            from: Some("+15005550006".into()),
            ..Filter::default()
        };
        let link = dashboard_link(&public(), Metric::Failures, &filter, Timestamp(0), None);
        assert_eq!(
            link,
            "https://hooks.example.com/ui/#/messages?status=failed&status=undelivered\
             &from=%2B15005550006&since=1970-01-01T00%3A00%3A00.000Z"
        );
    }
}
