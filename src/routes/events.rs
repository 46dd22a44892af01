//! `GET /v1/events?after=SEQ&limit=…&wait=…`: the change feed, every stored transition in
//! commit order, each once.
//!
//! A consumer keeps the `next` of its last answer and asks again with `after=next`: the
//! store hands out sequence numbers in commit order and shows none before every smaller
//! one is visible, so resuming from any `next`, also after a crash of either side, misses
//! nothing and repeats nothing. With `wait`, an empty answer is held open until a
//! transition newer than `after` arrives, or for `wait` seconds (long polling), whatever
//! was erased meanwhile: a consumer following the loop never spins. A waiting poll costs
//! the store nothing (the sled writer and PostgreSQL's notifications wake it), but each
//! holds a connection and a task, so a replica holds at most [`MAX_LONG_POLLS`] at once and
//! answers more with `503` and `Retry-After`.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use tokio::time::Instant;

use super::query::pairs;
use super::ApiError;
use crate::routes::views::FeedEventView;
use crate::startup::AppState;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const MAX_WAIT: u64 = 30;
/// Requests with `wait` served at once by one replica, at most.
pub const MAX_LONG_POLLS: usize = 1000;

#[derive(Serialize)]
struct FeedView {
    events: Vec<FeedEventView>,
    /// The `after` of the next request: the last `seq` returned, else the `after` given.
    next: u64,
}

struct FeedQuery {
    after: u64,
    limit: usize,
    wait: Duration,
}

pub async fn events(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse(request.query_string())?;
    // Taken before the first read, so that a poll beyond the cap costs the store nothing.
    let _permit = match query.wait.is_zero() {
        true => None,
        false => match state.long_polls.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return Err(ApiError::TooManyLongPolls),
        },
    };
    let deadline = Instant::now() + query.wait;
    let mut entries = state.store.feed(query.after, query.limit).await?;
    // A wake-up is a hint, not a promise: what woke the wait may have been erased before
    // the read, or been a write that is no transition. Until something newer than `after`
    // is read, the request waits out the rest of its time.
    while entries.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        state.store.wait_for_feed(query.after, left).await;
        entries = state.store.feed(query.after, query.limit).await?;
    }
    // Never behind `after`, whatever was erased: a consumer's position only moves on.
    let next = entries.last().map_or(query.after, |entry| entry.seq);
    // An echo (Twilio's second report of a transition already here) is not shown, but
    // `next` moves past it.
    let events = entries
        .into_iter()
        .filter(|entry| !entry.echo)
        .map(FeedEventView::from)
        .collect();
    Ok(HttpResponse::Ok().json(FeedView { events, next }))
}

fn parse(raw: &str) -> Result<FeedQuery, ApiError> {
    let mut query = FeedQuery {
        after: 0,
        limit: DEFAULT_LIMIT,
        wait: Duration::ZERO,
    };
    let bad = |name: &str, problem: String| ApiError::BadRequest(format!("{name}: {problem}"));
    for (name, value) in pairs(raw, &[])? {
        match name.as_ref() {
            "after" => {
                query.after = value.parse().map_err(|_| {
                    bad(
                        "after",
                        format!("{value:?} is not a sequence number (a whole number)"),
                    )
                })?
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("{value:?} is not a number from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            "wait" => {
                let seconds: u64 = value
                    .parse()
                    .ok()
                    .filter(|seconds| *seconds <= MAX_WAIT)
                    .ok_or_else(|| {
                        bad(
                            "wait",
                            format!("{value:?} is not a number of seconds from 0 to {MAX_WAIT}"),
                        )
                    })?;
                query.wait = Duration::from_secs(seconds);
            }
            other => return Err(bad(other, "is not a parameter of the event feed".into())),
        }
    }
    Ok(query)
}
