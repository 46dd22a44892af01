//! The arrays a group's multi-row statements take, one per column: the changed message
//! rows, the counter changes, the events and the listing positions, built from what the
//! writer planned (`group.rs`); and how the `counters` table keys the counters
//! `domain::counters` names.

use std::collections::{BTreeMap, HashMap};

use super::group::{Loaded, Plan, Seqs};
use super::rows::source_name;
use super::to_i64;
use crate::domain::counters::{counters, Counted, Counter, Span, Width};
use crate::domain::MessageState;

/// A counter as the `counters` table keys it: (span, bucket, kind, value).
pub type CounterKey = (i8, i64, i8, String);

// The `span` and `kind` columns hold one ASCII letter each.
pub const SPAN_ALL: i8 = b'a' as i8;
pub const SPAN_HOUR: i8 = b'h' as i8;
pub const SPAN_MINUTE: i8 = b'm' as i8;
pub const KIND_STATUS: i8 = b's' as i8;
pub const KIND_ERROR: i8 = b'e' as i8;

/// The keys of every counter a message in `state` counts in (`domain::counters` says
/// which).
pub fn counter_keys(state: &MessageState) -> Vec<CounterKey> {
    counters(state).iter().map(key_of).collect()
}

/// The key of `counter`; the all-time counters are bucket 0.
fn key_of(counter: &Counter) -> CounterKey {
    let (span, bucket) = match counter.span {
        Span::AllTime => (SPAN_ALL, 0),
        Span::Bucket(width, bucket) => (span_of(width), to_i64(bucket)),
    };
    match counter.counted {
        Counted::Status(status) => (span, bucket, KIND_STATUS, status.as_str().to_owned()),
        Counted::Error(error) => (span, bucket, KIND_ERROR, error.to_string()),
    }
}

/// The span of the counters of buckets `width` wide.
pub fn span_of(width: Width) -> i8 {
    match width {
        Width::Hour => SPAN_HOUR,
        Width::Minute => SPAN_MINUTE,
    }
}

/// The changed messages' rows and the counter changes, as statement arrays.
#[derive(Default)]
pub(super) struct Changes {
    pub sids: Vec<String>,
    pub account_sid: Vec<Option<String>>,
    pub from: Vec<Option<String>>,
    pub to: Vec<Option<String>>,
    pub messaging_service_sid: Vec<Option<String>>,
    pub status: Vec<Option<&'static str>>,
    pub error_code: Vec<Option<i64>>,
    pub status_dlr_done: Vec<Option<String>>,
    pub created_at: Vec<i64>,
    pub updated_at: Vec<i64>,
    pub counters: CounterColumns,
}

impl Changes {
    pub(super) fn of(messages: &HashMap<String, Loaded>) -> Changes {
        let mut changes = Changes::default();
        let mut deltas: BTreeMap<CounterKey, i64> = BTreeMap::new();
        for (sid, message) in messages {
            let (Some(state), Some(_)) = (&message.state, message.last_event) else {
                continue;
            };
            changes.sids.push(sid.clone());
            changes
                .account_sid
                .push(message.parties.account_sid.clone());
            changes.from.push(message.parties.from.clone());
            changes.to.push(message.parties.to.clone());
            changes
                .messaging_service_sid
                .push(message.parties.messaging_service_sid.clone());
            changes.status.push(state.status.map(|s| s.as_str()));
            changes.error_code.push(state.error_code.map(i64::from));
            changes.status_dlr_done.push(state.status_dlr_done.clone());
            changes.created_at.push(to_i64(state.created_at.0));
            changes.updated_at.push(to_i64(state.updated_at.0));
            if let Some(before) = &message.before {
                for key in counter_keys(before) {
                    *deltas.entry(key).or_default() -= 1;
                }
            }
            for key in counter_keys(state) {
                *deltas.entry(key).or_default() += 1;
            }
        }
        changes.counters = CounterColumns::of(deltas);
        changes
    }
}

/// Counter changes as statement arrays.
#[derive(Default)]
pub(super) struct CounterColumns {
    pub span: Vec<i8>,
    pub bucket: Vec<i64>,
    pub kind: Vec<i8>,
    pub value: Vec<String>,
    pub delta: Vec<i64>,
}

impl CounterColumns {
    /// The changes that are not zero, in key order (a BTreeMap), so that two transactions
    /// on one stripe lock counters in one order.
    pub(super) fn of(deltas: BTreeMap<CounterKey, i64>) -> CounterColumns {
        let mut columns = CounterColumns::default();
        for ((span, bucket, kind, value), delta) in deltas {
            if delta == 0 {
                continue;
            }
            columns.span.push(span);
            columns.bucket.push(bucket);
            columns.kind.push(kind);
            columns.value.push(value);
            columns.delta.push(delta);
        }
        columns
    }
}

/// The events of a plan as statement arrays.
pub(super) struct EventColumns {
    pub sid: Vec<String>,
    pub n: Vec<i32>,
    pub seq: Vec<i64>,
    pub status: Vec<String>,
    pub error_code: Vec<Option<i64>>,
    pub raw_dlr_done_date: Vec<Option<String>>,
    pub received_at: Vec<i64>,
    pub source: Vec<&'static str>,
    pub token: Vec<Option<String>>,
    pub params: Vec<String>,
}

/// The position of the plan's event `index` as a statement sends it: relative (1 = the
/// group's first) when taken, the event's own when kept.
fn seq_of(plan: &Plan, index: usize, seqs: Seqs) -> i64 {
    match seqs {
        Seqs::Take => index as i64 + 1,
        Seqs::Keep => plan
            .events
            .get(index)
            .and_then(|event| event.kept_seq)
            .unwrap_or(0),
    }
}

impl EventColumns {
    pub(super) fn of(plan: &Plan, seqs: Seqs) -> EventColumns {
        let size = plan.events.len();
        let mut columns = EventColumns {
            sid: Vec::with_capacity(size),
            n: Vec::with_capacity(size),
            seq: Vec::with_capacity(size),
            status: Vec::with_capacity(size),
            error_code: Vec::with_capacity(size),
            raw_dlr_done_date: Vec::with_capacity(size),
            received_at: Vec::with_capacity(size),
            source: Vec::with_capacity(size),
            token: Vec::with_capacity(size),
            params: Vec::with_capacity(size),
        };
        for (i, event) in plan.events.iter().enumerate() {
            let t = &event.transition;
            columns.sid.push(event.sid.clone());
            columns.n.push(event.n);
            columns.seq.push(seq_of(plan, i, seqs));
            columns.status.push(t.status.as_str().to_owned());
            columns.error_code.push(t.error_code.map(i64::from));
            columns.raw_dlr_done_date.push(t.raw_dlr_done_date.clone());
            columns.received_at.push(to_i64(t.received_at.0));
            columns.source.push(source_name(t.source));
            columns.token.push(event.token.clone());
            columns.params.push(event.params.clone());
        }
        columns
    }
}

/// The listing positions a group moves: each changed message leaves its live position
/// (if it had one) and takes a new one, both at the position of its last event in the
/// group. Snapshots are only ever taken between groups, so the states a message passed
/// through inside one group were never visible and need no position.
#[derive(Default)]
pub(super) struct PositionColumns {
    pub replaced_sids: Vec<String>,
    pub replaced_seq: Vec<i64>,
    pub replaced_at: Vec<i64>,
    pub sids: Vec<String>,
    pub placed_seq: Vec<i64>,
    pub status: Vec<Option<&'static str>>,
    pub error_code: Vec<Option<i64>>,
    pub updated_at: Vec<i64>,
}

impl PositionColumns {
    pub(super) fn of(
        messages: &HashMap<String, Loaded>,
        plan: &Plan,
        seqs: Seqs,
    ) -> PositionColumns {
        let mut columns = PositionColumns::default();
        for (sid, message) in messages {
            let (Some(state), Some(last)) = (&message.state, message.last_event) else {
                continue;
            };
            let seq = seq_of(plan, last, seqs);
            if message.before.is_some() {
                columns.replaced_sids.push(sid.clone());
                columns.replaced_seq.push(seq);
                columns.replaced_at.push(to_i64(state.updated_at.0));
            }
            columns.sids.push(sid.clone());
            columns.placed_seq.push(seq);
            columns.status.push(state.status.map(|s| s.as_str()));
            columns.error_code.push(state.error_code.map(i64::from));
            columns.updated_at.push(to_i64(state.updated_at.0));
        }
        columns
    }
}
