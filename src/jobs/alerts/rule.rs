//! An alert rule: what it watches (`metric` over `window`, narrowed by `filter`), when it
//! fires and resolves (`threshold`, `resolve_below`, `min_messages`), and whom it tells
//! (`notify`). Pure: no I/O.
//!
//! A rule arrives as the JSON body of `PUT /v1/alerts/rules/{name}` and is read field by
//! field ([`Rule::parse`]), so that a refusal names the field at fault
//! (`notify[1].secret: …`) instead of quoting a decoder; unknown fields are refused, since a
//! misspelt `resolve_bellow` would otherwise be dropped without a word. What is accepted is
//! exactly what `openapi.json` describes (the description is tested against the service),
//! plus the rules no schema states: `resolve_below` not above `threshold`, and a URL that
//! parses. Rules are stored as the same JSON ([`Rule`]'s serde form).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::loggable_url;
use crate::domain::is_sid;
use crate::forwarding::SigningSecret;

/// Channels a rule may notify, at most.
pub const MAX_CHANNELS: usize = 10;
/// A failure rate over fewer messages than this does not fire unless the rule says
/// otherwise: two failures of three in a quiet hour are not an outage.
pub const DEFAULT_MIN_MESSAGES: u64 = 10;
/// PagerDuty's Events API v2, where a `pagerduty` channel sends unless it names a `url`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The longest URL a channel may have.
const MAX_URL: usize = 2048;
/// The longest `filter.from`.
const MAX_FROM: usize = 64;
/// The largest `min_messages`.
const MAX_MIN_MESSAGES: u64 = 1_000_000_000;

/// A rule's name, the last segment of its path: 1 to 64 letters, digits, `.`, `_` or `-`,
/// starting with a letter or digit. It appears in URLs, `webhook-id`s and PagerDuty's
/// `dedup_key`, hence the small alphabet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleName(String);

impl RuleName {
    pub fn parse(raw: &str) -> Result<RuleName, String> {
        let valid_start = raw.starts_with(|c: char| c.is_ascii_alphanumeric());
        let valid_rest = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if raw.is_empty() || raw.len() > 64 || !valid_start || !valid_rest {
            return Err(
                "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
                    .into(),
            );
        }
        Ok(RuleName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a rule measures over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `failed` + `undelivered` over the messages that reached a final status.
    FailureRate,
    /// `failed` + `undelivered`, counted.
    Failures,
    /// Messages sent (by the sender, or seen `accepted`, `queued`, `sending` or `sent`)
    /// that have heard nothing since, for at least the window.
    Silence,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FailureRate => "failure_rate",
            Metric::Failures => "failures",
            Metric::Silence => "silence",
        }
    }
}

/// A rule, as stored and as `GET /v1/alerts/rules` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub metric: Metric,
    pub threshold: f64,
    /// Once firing, the rule resolves when the value falls under this (hysteresis);
    /// `threshold` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_below: Option<f64>,
    pub window: Window,
    /// `failure_rate` only: the fewest messages with a final status in the window for the
    /// rule to fire ([`DEFAULT_MIN_MESSAGES`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_messages: Option<u64>,
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub filter: Filter,
    pub notify: Vec<Channel>,
}

/// The time a rule looks back over, in whole minutes: `5m`, `2h`, `1d`, kept as written.
/// The counters the values are read from count by the minute, so a window starts at a
/// minute's start (see `measure::window`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    text: String,
    duration: Duration,
}

/// Which messages a rule counts; every field present must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// For `failure_rate` and `failures`: the failures counted are those with this code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

/// Where a rule's notifications go.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Channel {
    /// A Standard Webhooks POST signed with `secret`, as forwarded transitions are.
    Webhook { url: String, secret: String },
    /// A Slack incoming webhook: a POST of `{"text": …}`.
    Slack { url: String },
    /// PagerDuty's Events API v2: `trigger`, then `resolve` with the same `dedup_key`.
    Pagerduty {
        routing_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<Severity>,
    },
}

/// PagerDuty's `payload.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

/// A field of a rule that is missing or malformed: `{field}: {problem}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path: `threshold`, `filter.account_sid`, `notify[1].url`.
    pub field: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl Rule {
    /// Reads a rule from the body of `PUT /v1/alerts/rules/{name}`.
    pub fn parse(body: &[u8]) -> Result<Rule, FieldError> {
        let value: Value = serde_json::from_slice(body).map_err(|error| FieldError {
            field: "body".into(),
            problem: format!("is not JSON ({error})"),
        })?;
        let rule = Fields::of("", &value)?;
        rule.only(&[
            "metric",
            "threshold",
            "resolve_below",
            "window",
            "min_messages",
            "filter",
            "notify",
        ])?;
        let metric = match rule.required("metric")?.as_str() {
            Some("failure_rate") => Metric::FailureRate,
            Some("failures") => Metric::Failures,
            Some("silence") => Metric::Silence,
            _ => return Err(rule.refuse("metric", "must be failure_rate, failures or silence")),
        };
        let threshold = rule
            .required("threshold")?
            .as_f64()
            .ok_or_else(|| rule.refuse("threshold", "must be a number"))?;
        match metric {
            Metric::FailureRate if !(threshold > 0.0 && threshold <= 1.0) => {
                return Err(rule.refuse(
                    "threshold",
                    "a failure rate is a fraction: more than 0 and at most 1 (0.05 is 5%)",
                ))
            }
            _ if threshold <= 0.0 => return Err(rule.refuse("threshold", "must be more than 0")),
            _ => {}
        }
        let resolve_below = match rule.optional("resolve_below") {
            None => None,
            Some(value) => {
                let below = value
                    .as_f64()
                    .ok_or_else(|| rule.refuse("resolve_below", "must be a number"))?;
                if below < 0.0 {
                    return Err(rule.refuse("resolve_below", "must be 0 or more"));
                }
                if below > threshold {
                    return Err(rule.refuse("resolve_below", "must not be above threshold"));
                }
                Some(below)
            }
        };
        let window = rule
            .required("window")?
            .as_str()
            .and_then(|raw| Window::parse(raw).ok())
            .ok_or_else(|| {
                rule.refuse(
                    "window",
                    "must be whole minutes, hours or days such as 5m, 2h or 1d (1 to 99999 of m, h or d)",
                )
            })?;
        if metric != Metric::FailureRate && rule.present("min_messages") {
            return Err(rule.refuse("min_messages", "applies to failure_rate only"));
        }
        let min_messages = match rule.optional("min_messages") {
            None => None,
            Some(value) => Some(
                whole(value)
                    .filter(|n| (1..=MAX_MIN_MESSAGES).contains(n))
                    .ok_or_else(|| {
                        rule.refuse(
                            "min_messages",
                            format!("must be a whole number from 1 to {MAX_MIN_MESSAGES}"),
                        )
                    })?,
            ),
        };
        let filter = match rule.optional("filter") {
            None => Filter::default(),
            Some(value) => Filter::parse(&Fields::of("filter", value)?, metric)?,
        };
        let channels = rule
            .required("notify")?
            .as_array()
            .ok_or_else(|| rule.refuse("notify", "must be a list of channels"))?;
        if channels.len() > MAX_CHANNELS {
            return Err(rule.refuse(
                "notify",
                format!("names {} channels; at most {MAX_CHANNELS}", channels.len()),
            ));
        }
        let notify = channels
            .iter()
            .enumerate()
            .map(|(i, channel)| Channel::parse(&Fields::of(&format!("notify[{i}]"), channel)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            metric,
            threshold,
            resolve_below,
            window,
            min_messages,
            filter,
            notify,
        })
    }

    /// The level under which a firing rule resolves.
    pub fn resolve_level(&self) -> f64 {
        self.resolve_below.unwrap_or(self.threshold)
    }

    /// The fewest messages for a `failure_rate` to count.
    pub fn min_messages(&self) -> u64 {
        self.min_messages.unwrap_or(DEFAULT_MIN_MESSAGES)
    }

    /// The rule as a reader of the read-only token may see it: every channel's secrets
    /// hidden (see [`Channel::masked`]).
    pub fn masked(&self) -> Rule {
        Rule {
            notify: self.notify.iter().map(Channel::masked).collect(),
            ..self.clone()
        }
    }
}

impl Window {
    /// `1` to `99999` (no leading zero) followed by `m`, `h` or `d`.
    pub fn parse(raw: &str) -> Result<Window, String> {
        let problem = || format!("{raw:?} is not a window such as 5m, 2h or 1d");
        let split = raw.len().checked_sub(1).ok_or_else(problem)?;
        let (number, unit) = raw.split_at(split);
        let scale = match unit {
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(problem()),
        };
        let shaped = (1..=5).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_digit())
            && !number.starts_with('0');
        let count: u64 = number.parse().ok().filter(|_| shaped).ok_or_else(problem)?;
        Ok(Window {
            text: raw.to_owned(),
            duration: Duration::from_secs(count * scale),
        })
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn micros(&self) -> u64 {
        self.duration.as_micros() as u64
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Window {
    type Error = String;

    fn try_from(raw: String) -> Result<Window, String> {
        Window::parse(&raw)
    }
}

impl From<Window> for String {
    fn from(window: Window) -> String {
        window.text
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.account_sid.is_none() && self.from.is_none() && self.error_code.is_none()
    }

    /// Whether the counters by status and error code answer the rule alone: no filter by
    /// account or sender, which only a walk over the window's messages can answer.
    pub fn counters_answer(&self) -> bool {
        self.account_sid.is_none() && self.from.is_none()
    }

    fn parse(fields: &Fields, metric: Metric) -> Result<Filter, FieldError> {
        fields.only(&["account_sid", "from", "error_code"])?;
        let account_sid = match fields.optional("account_sid") {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .filter(|sid| is_sid(sid, "AC"))
                    .ok_or_else(|| {
                        fields.refuse("account_sid", "must be AC followed by 32 hex digits")
                    })?
                    .to_owned(),
            ),
        };
        let from = match fields.optional("from") {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .filter(|from| (1..=MAX_FROM).contains(&from.chars().count()))
                    .ok_or_else(|| {
                        fields.refuse(
                            "from",
                            format!("must be the sender's address, 1 to {MAX_FROM} characters"),
                        )
                    })?
                    .to_owned(),
            ),
        };
        if metric == Metric::Silence && fields.present("error_code") {
            return Err(fields.refuse(
                "error_code",
                "does not apply to silence: messages without a callback carry no error code",
            ));
        }
        let error_code = match fields.optional("error_code") {
            None => None,
            Some(value) => Some(
                whole(value)
                    .and_then(|code| u32::try_from(code).ok())
                    .ok_or_else(|| {
                        fields.refuse("error_code", "must be a whole number from 0 to 4294967295")
                    })?,
            ),
        };
        Ok(Filter {
            account_sid,
            from,
            error_code,
        })
    }
}

impl Channel {
    /// The type's name, as in the rule.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Slack { .. } => "slack",
            Channel::Pagerduty { .. } => "pagerduty",
        }
    }

    /// Where the channel's notifications are POSTed.
    pub fn url(&self) -> &str {
        match self {
            Channel::Webhook { url, .. } | Channel::Slack { url } => url,
            Channel::Pagerduty { url, .. } => url.as_deref().unwrap_or(PAGERDUTY_EVENTS_URL),
        }
    }

    /// The URL without user info or query (which may hold credentials): for logs.
    pub fn shown_url(&self) -> String {
        loggable_url(self.url())
    }

    /// The webhook's signing secret; checked when the rule was accepted.
    pub fn secret(&self) -> Option<SigningSecret> {
        match self {
            Channel::Webhook { secret, .. } => SigningSecret::parse(secret).ok(),
            _ => None,
        }
    }

    /// The channel with its secrets hidden: the webhook's secret, PagerDuty's routing
    /// key, and every URL's path, query and password (a Slack incoming webhook's path is
    /// its secret).
    pub fn masked(&self) -> Channel {
        const HIDDEN: &str = "[redacted]";
        let url = |url: &str| {
            let shown = loggable_url(url);
            match shown.split_once("://") {
                Some((scheme, rest)) => {
                    let host = rest.split('/').next().unwrap_or_default();
                    format!("{scheme}://{host}/{HIDDEN}")
                }
                None => HIDDEN.to_owned(),
            }
        };
        match self {
            Channel::Webhook { url: target, .. } => Channel::Webhook {
                url: url(target),
                secret: HIDDEN.into(),
            },
            Channel::Slack { url: target } => Channel::Slack { url: url(target) },
            Channel::Pagerduty {
                url: target,
                severity,
                ..
            } => Channel::Pagerduty {
                routing_key: HIDDEN.into(),
                url: target.as_deref().map(url),
                severity: *severity,
            },
        }
    }

    fn parse(fields: &Fields) -> Result<Channel, FieldError> {
        let kind = fields.required("type")?.as_str();
        let url = |name: &str| -> Result<String, FieldError> {
            let raw = fields.required(name)?;
            check_url(raw).map_err(|problem| fields.refuse(name, problem))
        };
        match kind {
            Some("webhook") => {
                fields.only(&["type", "url", "secret"])?;
                let url = url("url")?;
                let secret = fields
                    .required("secret")?
                    .as_str()
                    .filter(|secret| secret.trim() == *secret)
                    .ok_or_else(|| fields.refuse("secret", "must be a whsec_ secret"))?;
                SigningSecret::parse(secret).map_err(|problem| fields.refuse("secret", problem))?;
                Ok(Channel::Webhook {
                    url,
                    secret: secret.to_owned(),
                })
            }
            Some("slack") => {
                fields.only(&["type", "url"])?;
                Ok(Channel::Slack { url: url("url")? })
            }
            Some("pagerduty") => {
                fields.only(&["type", "routing_key", "url", "severity"])?;
                let routing_key = fields
                    .required("routing_key")?
                    .as_str()
                    .filter(|key| key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .ok_or_else(|| {
                        fields.refuse(
                            "routing_key",
                            "must be the 32-character integration key of a PagerDuty service",
                        )
                    })?
                    .to_owned();
                let url = match fields.optional("url") {
                    None => None,
                    Some(raw) => {
                        Some(check_url(raw).map_err(|problem| fields.refuse("url", problem))?)
                    }
                };
                let severity = match fields.optional("severity") {
                    None => None,
                    Some(value) => Some(match value.as_str() {
                        Some("critical") => Severity::Critical,
                        Some("error") => Severity::Error,
                        Some("warning") => Severity::Warning,
                        Some("info") => Severity::Info,
                        _ => {
                            return Err(fields
                                .refuse("severity", "must be critical, error, warning or info"))
                        }
                    }),
                };
                Ok(Channel::Pagerduty {
                    routing_key,
                    url,
                    severity,
                })
            }
            _ => Err(fields.refuse("type", "must be webhook, slack or pagerduty")),
        }
    }
}

/// Hides the secrets: the webhook's secret, PagerDuty's routing key, URLs' paths and
/// queries.
impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("type", &self.kind())
            .field("url", &self.masked().url())
            .finish()
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// An `http://` or `https://` URL with a host, as written (no trimming), that parses.
fn check_url(raw: &Value) -> Result<String, String> {
    let raw = raw.as_str().ok_or("must be an http:// or https:// URL")?;
    raw.strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .filter(|rest| !rest.is_empty() && !rest.starts_with('/'))
        .ok_or("must be an http:// or https:// URL")?;
    if raw.chars().count() > MAX_URL {
        return Err(format!("is longer than {MAX_URL} characters"));
    }
    let parsed =
        reqwest::Url::parse(raw).map_err(|error| format!("is not a valid URL ({error})"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("is not a valid URL (it has no host)".into());
    }
    Ok(raw.to_owned())
}

/// A whole number, written as an integer or as a number with no fraction (JSON Schema's
/// `integer` admits `5.0`).
fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u64::MAX as f64)
            .map(|n| n as u64)
    })
}

/// The fields of one JSON object of a rule, read by name; `path` is where it sits.
struct Fields<'a> {
    path: String,
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn of(path: &str, value: &'a Value) -> Result<Fields<'a>, FieldError> {
        let object = value.as_object().ok_or_else(|| FieldError {
            field: if path.is_empty() { "body" } else { path }.to_owned(),
            problem: "must be a JSON object".into(),
        })?;
        Ok(Fields {
            path: path.to_owned(),
            object,
        })
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    fn refuse(&self, field: &str, problem: impl Into<String>) -> FieldError {
        FieldError {
            field: self.name(field),
            problem: problem.into(),
        }
    }

    /// A field that must be there; `null` counts as absent.
    fn required(&self, field: &str) -> Result<&'a Value, FieldError> {
        self.optional(field)
            .ok_or_else(|| self.refuse(field, "is required"))
    }

    /// A field that may be left out; `null` is the same as leaving it out.
    fn optional(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|value| !value.is_null())
    }

    /// Whether the field is there at all, `null` included.
    fn present(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    /// Refuses a field not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), FieldError> {
        match self
            .object
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            Some(unknown) => Err(self.refuse(
                unknown,
                format!("is not a field here (the fields are {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const KEY: &str = "R0123456789abcdefABCDEF012345678";

    fn parse(value: Value) -> Result<Rule, FieldError> {
        Rule::parse(value.to_string().as_bytes())
    }

    fn valid() -> Value {
        json!({
            "metric": "failure_rate",
            "threshold": 0.2,
            "resolve_below": 0.1,
            "window": "5m",
            "min_messages": 20,
            "filter": {"error_code": 30003},
            "notify": [
                {"type": "webhook", "url": "https://hooks.example.com/alerts", "secret": SECRET},
                {"type": "slack", "url": "https://hooks.slack.com/services/T0/B0/xyz"},
                {"type": "pagerduty", "routing_key": KEY, "severity": "warning"}
            ]
        })
    }

    #[test]
    fn a_valid_rule_is_read_and_stored_as_it_came() {
        let rule = parse(valid()).expect("valid");
        assert_eq!(rule.metric, Metric::FailureRate);
        assert_eq!(rule.window.duration(), Duration::from_secs(300));
        assert_eq!(rule.resolve_level(), 0.1);
        assert_eq!(rule.notify[2].url(), PAGERDUTY_EVENTS_URL);
        let stored = serde_json::to_value(&rule).expect("serializes");
        assert_eq!(stored, valid());
        let back: Rule = serde_json::from_value(stored).expect("deserializes");
        assert_eq!(back, rule);
        let minimal =
            parse(json!({"metric": "silence", "threshold": 1, "window": "10m", "notify": []}))
                .expect("valid");
        assert_eq!((minimal.resolve_level(), minimal.min_messages()), (1.0, 10));
    }

    #[test]
    fn each_malformed_field_is_named() {
        let with = |path: &[&str], value: Value| {
            let mut rule = valid();
            let mut at = &mut rule;
            for step in &path[..path.len() - 1] {
                at = match step.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*step],
                };
            }
            let last = path[path.len() - 1];
            match value {
                Value::Null if last != "null" => {
                    at.as_object_mut().expect("an object").remove(last);
                }
                value => at[last] = value,
            }
            rule
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([]), "body", "JSON object"),
            (
                with(&["metric"], json!("latency")),
                "metric",
                "failure_rate, failures or silence",
            ),
            (with(&["metric"], Value::Null), "metric", "is required"),
            (
                with(&["threshold"], json!("high")),
                "threshold",
                "must be a number",
            ),
            (with(&["threshold"], json!(5)), "threshold", "at most 1"),
            (with(&["threshold"], json!(0)), "threshold", "more than 0"),
            (
                with(&["resolve_below"], json!(0.3)),
                "resolve_below",
                "not be above threshold",
            ),
            (
                with(&["resolve_below"], json!(-1)),
                "resolve_below",
                "0 or more",
            ),
            (with(&["window"], json!("5")), "window", "5m, 2h"),
            (with(&["window"], json!("05m")), "window", "5m, 2h"),
            (with(&["window"], json!("90s")), "window", "5m, 2h"),
            (with(&["window"], json!("500ms")), "window", "5m, 2h"),
            (
                with(&["min_messages"], json!(0)),
                "min_messages",
                "whole number",
            ),
            (
                with(&["min_messages"], json!(2.5)),
                "min_messages",
                "whole number",
            ),
            (
                with(&["filter", "account_sid"], json!("AC1")),
                "filter.account_sid",
                "32 hex",
            ),
            (
                with(&["filter", "from"], json!("")),
                "filter.from",
                "1 to 64",
            ),
            (
                with(&["filter", "error_code"], json!(-3)),
                "filter.error_code",
                "whole number",
            ),
            (
                with(&["filter", "to"], json!("+1555")),
                "filter.to",
                "not a field",
            ),
            (with(&["notify"], json!({})), "notify", "list of channels"),
            (
                with(&["notify", "0", "url"], json!("ftp://x.example")),
                "notify[0].url",
                "http://",
            ),
            (
                with(&["notify", "0", "url"], json!("https://")),
                "notify[0].url",
                "http://",
            ),
            (
                with(&["notify", "0", "url"], json!("http://a:99999/")),
                "notify[0].url",
                "not a valid URL",
            ),
            (
                with(&["notify", "0", "secret"], json!("s3cr3t")),
                "notify[0].secret",
                "whsec_",
            ),
            (
                with(&["notify", "0", "secret"], Value::Null),
                "notify[0].secret",
                "is required",
            ),
            (
                with(&["notify", "1", "type"], json!("email")),
                "notify[1].type",
                "webhook, slack or pagerduty",
            ),
            (
                with(&["notify", "1", "secret"], json!(SECRET)),
                "notify[1].secret",
                "not a field",
            ),
            (
                with(&["notify", "2", "routing_key"], json!("short")),
                "notify[2].routing_key",
                "32-character",
            ),
            (
                with(&["notify", "2", "severity"], json!("high")),
                "notify[2].severity",
                "critical, error",
            ),
            (
                with(&["resolve_bellow"], json!(0.1)),
                "resolve_bellow",
                "not a field",
            ),
        ];
        for (body, field, problem) in cases {
            let error = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(error.field, field, "{body}: {error}");
            assert!(
                error.problem.contains(problem),
                "{error} should say {problem:?}"
            );
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
        let silence = json!({"metric": "silence", "threshold": 5, "window": "5m", "notify": [],
            "filter": {"error_code": 30003}});
        assert_eq!(
            parse(silence).expect_err("silence").field,
            "filter.error_code"
        );
        let counted = json!({"metric": "failures", "threshold": 5, "window": "5m", "notify": [],
            "min_messages": null});
        assert_eq!(parse(counted).expect_err("failures").field, "min_messages");
        assert_eq!(Rule::parse(b"{").expect_err("not JSON").field, "body");
    }

    #[test]
    fn rule_names_are_a_small_alphabet() {
        for good in ["a", "carrier-errors", "EU.failures_2", &"x".repeat(64)] {
            assert!(RuleName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(RuleName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_print_and_masking_hides_them() {
        let rule = parse(valid()).expect("valid");
        let printed = format!("{rule:?}");
        for secret in ["MfKQ9r8G", KEY, "xyz", "/alerts"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        let masked = serde_json::to_string(&rule.masked()).expect("serializes");
        for secret in ["MfKQ9r8G", KEY, "xyz", "/alerts"] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(
            masked.contains("https://hooks.slack.com/[redacted]"),
            "{masked}"
        );
    }
}
