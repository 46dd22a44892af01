//! `GET /v1/messages/{sid}`: one message, its current status and its whole history;
//! `GET /v1/messages`: the listing, filtered and paged. (`POST /v1/messages` is in `send.rs`.)

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::query::pairs;
use super::{query_time, ApiError};
use crate::domain::{AccountSid, KnownStatus, MessageSid, PhoneNumber};
use crate::metrics::Deletion;
use crate::routes::views::MessageView;
use crate::startup::AppState;
use crate::store::{Cursor, ListQuery};

pub async fn get_message(
    sid: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sid = MessageSid::parse(&sid).map_err(ApiError::BadRequest)?;
    let message = state.store.message(&sid).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(MessageView::full(message)))
}

/// The answer of `GET /v1/messages`.
#[derive(Serialize)]
struct ListView {
    messages: Vec<MessageView>,
    next_cursor: Option<String>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /v1/messages`: newest `updated_at` first, filtered, paged by an opaque cursor.
pub async fn list_messages(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (mut query, cursor) = parse_list_query(request.query_string())?;
    if let Some(cursor) = cursor {
        // Judged by the store's clock, which issued it (with PostgreSQL, the database's,
        // the same for every replica).
        let now = state.store.now().await?;
        let cursor = Cursor::decode(&cursor, now);
        query.cursor = Some(cursor.map_err(|e| bad("cursor", e.to_string()))?);
    }
    let page = state.store.list(query).await?;
    let next_cursor = page.next.map(|cursor| cursor.encode());
    let messages = page
        .messages
        .into_iter()
        .map(|(sid, record)| MessageView::summary(sid.as_str(), record))
        .collect();
    Ok(HttpResponse::Ok().json(ListView {
        messages,
        next_cursor,
    }))
}

fn bad(name: &str, problem: String) -> ApiError {
    ApiError::BadRequest(format!("{name}: {problem}"))
}

/// The listing's filters, and its cursor as given (read against the store's clock).
fn parse_list_query(raw: &str) -> Result<(ListQuery, Option<String>), ApiError> {
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    let mut cursor = None;
    for (name, value) in pairs(raw, &["status"])? {
        if filter(&mut query, &name, &value)? {
            continue;
        }
        match name.as_ref() {
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
                    })?;
            }
            "cursor" => cursor = Some(value.into_owned()),
            other => return Err(bad(other, "is not a parameter of this listing".into())),
        }
    }
    check_window(&query)?;
    Ok((query, cursor))
}

/// Reads the listing filter `name` (`status`, `error_code`, `account_sid`, `to`, `from`,
/// `since`, `until`) into `query`; answers `false` for a name that is none of them. The
/// export takes the same filters.
pub(super) fn filter(query: &mut ListQuery, name: &str, value: &str) -> Result<bool, ApiError> {
    match name {
        "status" => {
            let status = KnownStatus::parse(value)
                .ok_or_else(|| bad("status", format!("{value:?} is not a message status")))?;
            if !query.statuses.contains(&status) {
                query.statuses.push(status);
            }
        }
        "error_code" => query.error_code = Some(error_code(value)?),
        "account_sid" => {
            let account = AccountSid::parse(value).map_err(|_| ApiError::InvalidParameter {
                parameter: "account_sid",
                problem: "must be AC followed by 32 hex digits".into(),
            })?;
            query.account_sid = Some(account.as_str().to_owned());
        }
        "to" => query.to = Some(phone_filter("to", value)?),
        "from" => query.from = Some(phone_filter("from", value)?),
        "since" => query.since = Some(query_time("since", value)?),
        "until" => query.until = Some(query_time("until", value)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// `until` must come after `since` when both are given.
pub(super) fn check_window(query: &ListQuery) -> Result<(), ApiError> {
    match (query.since, query.until) {
        (Some(since), Some(until)) if since >= until => {
            Err(bad("until", "must be later than since".into()))
        }
        _ => Ok(()),
    }
}

/// An `error_code` filter: a whole number that fits an error code (Twilio's are five
/// digits).
fn error_code(value: &str) -> Result<u32, ApiError> {
    let invalid = |problem: String| ApiError::InvalidParameter {
        parameter: "error_code",
        problem,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{value:?} is not a whole number")));
    }
    value.parse().map_err(|_| {
        invalid(format!(
            "{value} is out of range: error codes go from 0 to {}",
            u32::MAX
        ))
    })
}

/// A `to` or `from` filter. A leading space is what an unencoded `+` becomes in a query
/// string (`?to=+1555…`); it would silently match nothing, so it is refused with the fix.
fn phone_filter(parameter: &'static str, value: &str) -> Result<String, ApiError> {
    let invalid = |problem: String| ApiError::InvalidParameter { parameter, problem };
    if value.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if value.starts_with(' ') {
        return Err(invalid(format!(
            "starts with a space, which is what an unencoded + becomes in a query string: \
             encode + as %2B ({parameter}=%2B{})",
            value.trim_start()
        )));
    }
    Ok(value.to_owned())
}

/// `DELETE /v1/messages/{sid}`: the message and every trace of it leave the store.
pub async fn delete_message(
    sid: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sid = MessageSid::parse(&sid).map_err(ApiError::BadRequest)?;
    if !state.store.delete_message(&sid).await? {
        return Err(ApiError::NotFound);
    }
    state.metrics.deleted(Deletion::Erasure, 1);
    tracing::info!(%sid, "message erased on request");
    Ok(HttpResponse::NoContent().finish())
}

/// The `phone` of an erasure: an E.164 number, whose channel forms (`whatsapp:+1…`)
/// are erased with it. Anything else would silently erase nothing, which for an erasure
/// request is the wrong answer, so it is refused saying what to give.
fn phone_number(value: &str) -> Result<PhoneNumber, ApiError> {
    if value.starts_with(' ') {
        phone_filter("phone", value)?;
    }
    PhoneNumber::parse(value).map_err(|problem| ApiError::InvalidParameter {
        parameter: "phone",
        problem: format!(
            "{problem}: give the number in E.164 form, such as phone=%2B14155550100 \
             (its whatsapp: and rcs: forms are erased with it)"
        ),
    })
}

/// `DELETE /v1/messages?phone=…`: a privacy erasure of every message whose recipient or
/// sender is that number, in any channel form. The number is never logged.
pub async fn delete_messages(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut phone = None;
    for (name, value) in pairs(request.query_string(), &[])? {
        match name.as_ref() {
            "phone" => phone = Some(phone_number(&value)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other}: is not a parameter of this deletion (give phone)"
                )))
            }
        }
    }
    let phone = phone.ok_or_else(|| ApiError::InvalidParameter {
        parameter: "phone",
        problem: "is required (the number whose messages to delete, + encoded as %2B)".into(),
    })?;
    let deleted = state.store.delete_by_phone(&phone).await?;
    state.metrics.deleted(Deletion::Erasure, deleted);
    tracing::info!(deleted, "messages of a phone number erased on request");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": deleted })))
}
