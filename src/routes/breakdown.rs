//! `GET /v1/stats/breakdown?by=from|messaging_service|country&since=…&until=…&limit=…`:
//! the messages last updated in a window grouped by sender, messaging service or the
//! country of the recipient's number, the largest groups first, for the dashboard.
//!
//! Its cost is bounded twice: the store reads at most `store::MAX_SCANNED` messages, the
//! newest of the window (the answer's `complete` says whether that was all of them), and
//! the answer holds at most `limit` groups (at most [`MAX_GROUPS`]), the rest summed in
//! `others`. Countries come from the `phonenumber` crate (Google's libphonenumber
//! metadata), one lookup per distinct recipient, off the async threads, remembered for the
//! next breakdown (see [`Countries`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{LazyLock, Mutex, PoisonError};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::stats::{describe_errors, parse_window, CountsView};
use super::ApiError;
use crate::domain::{country, KnownStatus, RfcTime};
use crate::startup::AppState;
use crate::store::{Breakdown, Counts, Party, StoreError, MAX_SCANNED};

/// The most groups an answer lists.
pub const MAX_GROUPS: usize = 100;
/// Groups listed without `limit`.
const DEFAULT_GROUPS: usize = 10;

/// What a breakdown groups by, as `by` names it.
#[derive(Debug, Clone, Copy)]
enum By {
    From,
    MessagingService,
    Country,
}

impl By {
    fn parse(raw: &str) -> Option<By> {
        match raw {
            "from" => Some(By::From),
            "messaging_service" => Some(By::MessagingService),
            "country" => Some(By::Country),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            By::From => "from",
            By::MessagingService => "messaging_service",
            By::Country => "country",
        }
    }

    fn party(self) -> Party {
        match self {
            By::From => Party::From,
            By::MessagingService => Party::MessagingService,
            By::Country => Party::To,
        }
    }
}

#[derive(Serialize)]
struct BreakdownView {
    by: &'static str,
    since: Option<RfcTime>,
    until: Option<RfcTime>,
    /// Messages counted: the newest of the window, at most `store::MAX_SCANNED`.
    scanned: u64,
    /// Whether every message of the window was counted.
    complete: bool,
    /// The largest groups, most messages first.
    groups: Vec<GroupView>,
    /// The groups beyond `limit`, summed; null when there are none.
    others: Option<OthersView>,
    /// Twilio's title of each error code of any group (null for a code it does not know).
    error_descriptions: BTreeMap<String, Option<&'static str>>,
}

#[derive(Serialize)]
struct GroupView {
    /// The sender (`From`), the `MG…` service, or the ISO 3166-1 alpha-2 country; null for
    /// the messages without one.
    key: Option<String>,
    #[serde(flatten)]
    counts: CountsView,
}

#[derive(Serialize)]
struct OthersView {
    /// How many groups are summed here.
    groups: usize,
    #[serde(flatten)]
    counts: CountsView,
}

pub async fn stats_breakdown(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse_window(request.query_string(), "stats/breakdown", &["by", "limit"])?;
    let by = match query.extra.get("by") {
        None => {
            return Err(ApiError::InvalidParameter {
                parameter: "by",
                problem: "required: one of from, messaging_service, country".into(),
            })
        }
        Some(raw) => By::parse(raw).ok_or_else(|| ApiError::InvalidParameter {
            parameter: "by",
            problem: format!("{raw:?} is not one of from, messaging_service, country"),
        })?,
    };
    let limit = match query.extra.get("limit") {
        None => DEFAULT_GROUPS,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_GROUPS).contains(limit))
            .ok_or_else(|| ApiError::InvalidParameter {
                parameter: "limit",
                problem: format!("must be an integer from 1 to {MAX_GROUPS}"),
            })?,
    };
    let (since, until) = query.window;
    let breakdown = state.store.breakdown(by.party(), since, until).await?;
    let (scanned, complete) = (breakdown.scanned, breakdown.complete);
    let mut groups = match by {
        // A lookup per distinct recipient: up to `MAX_SCANNED` of them, so not on the
        // threads that serve requests.
        By::Country => tokio::task::spawn_blocking(move || by_country(breakdown))
            .await
            .map_err(|error| {
                ApiError::Unavailable(StoreError::unavailable(format!(
                    "a breakdown was cancelled: {error}"
                )))
            })?,
        By::From | By::MessagingService => breakdown.groups,
    };
    // Most messages first; ties in key order, the messages without one last.
    groups.sort_by_cached_key(|(key, counts)| {
        let total: u64 = counts.by_status.iter().map(|(_, count)| count).sum();
        (std::cmp::Reverse(total), key.is_none(), key.clone())
    });
    let rest = groups.split_off(limit.min(groups.len()));
    let error_descriptions = describe_errors(
        groups
            .iter()
            .chain(&rest)
            .flat_map(|(_, counts)| counts.by_error.iter()),
    );
    let others = (!rest.is_empty()).then(|| OthersView {
        groups: rest.len(),
        counts: CountsView::new(&sum(rest.into_iter().map(|(_, counts)| counts))),
    });
    let view = BreakdownView {
        by: by.as_str(),
        since: since.map(RfcTime),
        until: until.map(RfcTime),
        scanned,
        complete,
        groups: groups
            .into_iter()
            .map(|(key, counts)| GroupView {
                counts: CountsView::new(&counts),
                key,
            })
            .collect(),
        others,
        error_descriptions,
    };
    Ok(HttpResponse::Ok().json(view))
}

/// The countries of recipients already looked up. A lookup tries the number against the
/// plans of every country that shares its calling code (tens of microseconds for `+1`), and
/// the dashboard asks for the same window again on every refresh. Keyed by a hash of the
/// address under this process's random key, never by the number itself, which is personal
/// data and may be erased; at most `MAX_SCANNED` entries, emptied when full.
struct Countries {
    key: std::collections::hash_map::RandomState,
    known: HashMap<u64, Option<String>>,
}

static COUNTRIES: LazyLock<Mutex<Countries>> = LazyLock::new(|| {
    Mutex::new(Countries {
        key: std::collections::hash_map::RandomState::new(),
        known: HashMap::new(),
    })
});

impl Countries {
    fn of(&mut self, address: &str) -> Option<String> {
        let hash = self.key.hash_one(address);
        if let Some(known) = self.known.get(&hash) {
            return known.clone();
        }
        if self.known.len() as u64 >= MAX_SCANNED {
            self.known.clear();
        }
        let found = country(address);
        self.known.insert(hash, found.clone());
        found
    }
}

/// The recipients' groups merged by the country of their numbers.
fn by_country(breakdown: Breakdown) -> Vec<(Option<String>, Counts)> {
    // A lookup only reads and inserts whole entries: one that panicked left none half made.
    let mut known = COUNTRIES.lock().unwrap_or_else(PoisonError::into_inner);
    let mut countries: HashMap<Option<String>, Vec<Counts>> = HashMap::new();
    for (to, counts) in breakdown.groups {
        let key = to.as_deref().and_then(|to| known.of(to));
        countries.entry(key).or_default().push(counts);
    }
    drop(known);
    countries
        .into_iter()
        .map(|(key, counts)| (key, sum(counts)))
        .collect()
}

/// Counts added together.
fn sum(all: impl IntoIterator<Item = Counts>) -> Counts {
    let mut by_status: BTreeMap<KnownStatus, u64> = BTreeMap::new();
    let mut by_error: BTreeMap<u32, u64> = BTreeMap::new();
    for counts in all {
        for (status, count) in counts.by_status {
            *by_status.entry(status).or_default() += count;
        }
        for (code, count) in counts.by_error {
            *by_error.entry(code).or_default() += count;
        }
    }
    Counts {
        by_status: by_status.into_iter().collect(),
        by_error: by_error.into_iter().collect(),
    }
}
