//! `GET /v1/forwarding`: the forwarding queue's state; `POST /v1/forwarding/replay`: send a
//! time range of transitions again.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::query::pairs;
use super::{query_time, ApiError};
use crate::domain::Timestamp;
use crate::forwarding::ReplayRequest;
use crate::startup::AppState;

pub async fn forwarding_status(state: web::Data<AppState>) -> HttpResponse {
    let Some(forwarding) = &state.forwarding else {
        return HttpResponse::Ok().json(json!({ "enabled": false }));
    };
    let config = forwarding.config();
    let status = forwarding.status();
    let now = Timestamp::now();
    let time = |at: Timestamp| Value::from(at.to_rfc3339());
    let deliveries: serde_json::Map<String, Value> = forwarding
        .outcomes()
        .into_iter()
        .map(|(outcome, count)| (outcome.label().to_owned(), Value::from(count)))
        .collect();
    HttpResponse::Ok().json(json!({
        "enabled": true,
        "url": config.shown_url(),
        "statuses": config
            .statuses
            .as_ref()
            .map(|statuses| statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        "leader": status.leader,
        "depth": status.pending as u64 + status.backlog,
        "pending": status.pending,
        "in_flight": status.in_flight,
        "cursor": status.cursor,
        "oldest_pending": status.oldest.map(|(seq, at)| json!({
            "seq": seq,
            "received_at": time(at),
            "age_seconds": now.0.saturating_sub(at.0) as f64 / 1e6,
        })),
        "last_error": status.last_error.map(|error| json!({
            "seq": error.seq,
            "error": error.error,
            "at": time(error.at),
        })),
        "last_delivered_at": status.last_delivered.map(time),
        "deliveries": deliveries,
        "replay": status.replay.map(|(id, since, until, after)| json!({
            "id": id.to_string(),
            "since": time(since),
            "until": time(until),
            "walked_to_seq": after,
        })),
    }))
}

/// Queues a replay of the transitions that arrived within `[since, until)` (`until`
/// defaults to now). The forwarding process walks the feed over that range (plus a few
/// minutes either side) and sends each transition again with its original `webhook-id`,
/// in the spare room of its window, so live forwarding goes first.
pub async fn forwarding_replay(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bad = |name: &str, problem: String| ApiError::BadRequest(format!("{name}: {problem}"));
    let (mut since, mut until) = (None, None);
    for (name, value) in pairs(request.query_string(), &[])? {
        let time = query_time(&name, &value);
        match name.as_ref() {
            "since" => since = Some(time?),
            "until" => until = Some(time?),
            other => return Err(bad(other, "is not a parameter of a replay".into())),
        }
    }
    let since = since.ok_or_else(|| bad("since", "is required (an RFC 3339 time)".into()))?;
    let until = until.unwrap_or_else(Timestamp::now);
    if until <= since {
        return Err(bad("until", "must be later than since".into()));
    }
    let Some(forwarding) = &state.forwarding else {
        return Err(ApiError::ForwardingNotConfigured);
    };
    let replay = ReplayRequest {
        id: fastrand::u64(..),
        since: since.0,
        until: until.0,
    };
    forwarding.ask_replay(&state.store, &replay).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "replay": {
            "id": replay.id.to_string(),
            "since": since.to_rfc3339(),
            "until": until.to_rfc3339(),
        }
    })))
}
