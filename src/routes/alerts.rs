//! The alert rules and their alerts: `PUT`, `GET` and `DELETE /v1/alerts/rules/{name}`
//! (`GET /v1/alerts/rules` lists them) and `GET /v1/alerts`, each rule's alert with its
//! recent history. Rules are read field by field (`jobs::alerts::rule`) and kept in the
//! store, where every replica reads them; the replica that runs the background jobs
//! evaluates them (`jobs::alerts`).

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::query::pairs;
use super::{Access, ApiError};
use crate::domain::Timestamp;
use crate::jobs::alerts::rule::{Rule, RuleName};
use crate::jobs::alerts::state::{Alert, Rules, State, MAX_RULES};
use crate::startup::AppState;

/// `PUT /v1/alerts/rules/{name}`: creates the rule (`201`) or replaces it (`200`); answers
/// it as stored.
pub async fn put_alert_rule(
    request: HttpRequest,
    name: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    no_parameters(&request)?;
    let name = rule_name(&name)?;
    // The limit (the scope's `PayloadConfig`, 64 KiB) is checked while reading.
    let body = body.map_err(|error| {
        let payload = error.as_error::<actix_web::error::PayloadError>();
        if payload.is_some_and(super::limits::is_deadline) {
            ApiError::BodyTimedOut
        } else if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge
        } else {
            ApiError::BadRequest("the body could not be read".into())
        }
    })?;
    let rule = Rule::parse(&body).map_err(|error| ApiError::InvalidField {
        field: error.field,
        problem: error.problem,
    })?;
    let created = Rules::change(&state.store, |Rules(rules)| {
        if !rules.contains_key(&name) && rules.len() >= MAX_RULES {
            return Err(ApiError::TooManyRules);
        }
        Ok(rules.insert(name.clone(), rule.clone()).is_none())
    })
    .await?;
    tracing::info!(rule = %name, created, "alert rule stored");
    let mut response = match created {
        true => HttpResponse::Created(),
        false => HttpResponse::Ok(),
    };
    Ok(response
        .insert_header((header::LOCATION, format!("/v1/alerts/rules/{name}")))
        .json(rule_view(&name, &rule)))
}

/// `GET /v1/alerts/rules`: every rule, by name. The read-only token sees the channels
/// without their secrets.
pub async fn list_alert_rules(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    no_parameters(&request)?;
    let (Rules(rules), _) = Rules::load(&state.store).await?;
    let rules: Vec<Value> = rules
        .iter()
        .map(|(name, rule)| shown(&request, name, rule))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "rules": rules })))
}

/// `GET /v1/alerts/rules/{name}`: one rule, or `404`.
pub async fn get_alert_rule(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    no_parameters(&request)?;
    let name = rule_name(&name)?;
    let (Rules(rules), _) = Rules::load(&state.store).await?;
    let rule = rules.get(&name).ok_or(ApiError::NoSuchRule)?;
    Ok(HttpResponse::Ok().json(shown(&request, &name, rule)))
}

/// `DELETE /v1/alerts/rules/{name}`: `204`, or `404` when there is no such rule. A rule
/// deleted while firing resolves at the next evaluation.
pub async fn delete_alert_rule(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    no_parameters(&request)?;
    let name = rule_name(&name)?;
    let removed = Rules::change(&state.store, |Rules(rules)| {
        Ok::<_, ApiError>(rules.remove(&name).is_some())
    })
    .await?;
    if !removed {
        return Err(ApiError::NoSuchRule);
    }
    tracing::info!(rule = %name, "alert rule deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/alerts`: every rule's alert, as of the last evaluation, with its recent
/// history and the notifications still waiting to be delivered.
pub async fn list_alerts(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    no_parameters(&request)?;
    let (Rules(rules), _) = Rules::load(&state.store).await?;
    let (stored, _) = State::load(&state.store).await?;
    let mut waiting: HashMap<&RuleName, (usize, Option<&str>)> = HashMap::new();
    for notification in &stored.outbox {
        let entry = waiting.entry(&notification.rule).or_default();
        entry.0 += 1;
        entry.1 = entry.1.or(notification.last_error.as_deref());
    }
    let time = |micros: u64| Value::from(Timestamp(micros).to_rfc3339());
    let alerts: Vec<Value> = rules
        .iter()
        .map(|(name, rule)| {
            let alert = stored.alerts.get(name);
            let (pending, last_error) = waiting.get(name).copied().unwrap_or_default();
            json!({
                "rule": name.as_str(),
                "metric": rule.metric.as_str(),
                "state": if alert.is_some_and(|a| a.firing) { "firing" } else { "ok" },
                "value": alert.and_then(|a| a.value),
                "messages": alert.map(|a| a.messages),
                "complete": alert.is_none_or(|a| a.complete),
                "threshold": rule.threshold,
                "resolve_below": rule.resolve_level(),
                "window": rule.window.as_str(),
                "since": alert.map(|a| time(a.since)),
                "history": alert.map_or_else(Vec::new, |a| history(a, &time)),
                "notifications": {
                    "pending": pending,
                    "last_error": last_error,
                },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "alerts": alerts,
        "evaluated_at": stored.evaluated_at.map(time),
        "interval": interval(state.alert_interval),
    })))
}

/// The changes of an alert, the newest first.
fn history(alert: &Alert, time: &dyn Fn(u64) -> Value) -> Vec<Value> {
    alert
        .history
        .iter()
        .rev()
        .map(|change| {
            json!({
                "event": change.state.as_str(),
                "at": time(change.at),
                "value": change.value,
            })
        })
        .collect()
}

/// A rule as the request's token may see it: the read-only token sees its channels
/// without their secrets.
fn shown(request: &HttpRequest, name: &RuleName, rule: &Rule) -> Value {
    match request.extensions().get::<Access>() {
        Some(Access::Full) => rule_view(name, rule),
        _ => rule_view(name, &rule.masked()),
    }
}

fn rule_view(name: &RuleName, rule: &Rule) -> Value {
    let mut view = json!({ "name": name.as_str() });
    if let (Some(view), Ok(Value::Object(fields))) =
        (view.as_object_mut(), serde_json::to_value(rule))
    {
        view.extend(fields);
    }
    view
}

fn rule_name(raw: &str) -> Result<RuleName, ApiError> {
    RuleName::parse(raw).map_err(|problem| ApiError::InvalidField {
        field: "name".into(),
        problem,
    })
}

/// These routes take no query parameter; one given is refused rather than ignored.
fn no_parameters(request: &HttpRequest) -> Result<(), ApiError> {
    match pairs(request.query_string(), &[])?.into_iter().next() {
        Some((name, _)) => Err(ApiError::BadRequest(format!(
            "{name}: is not a parameter of this route"
        ))),
        None => Ok(()),
    }
}

/// `30s`, or `200ms` for an interval that is not whole seconds.
fn interval(interval: std::time::Duration) -> String {
    match interval.subsec_millis() {
        0 => format!("{}s", interval.as_secs()),
        _ => format!("{}ms", interval.as_millis()),
    }
}
