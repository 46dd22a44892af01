//! One group on its way through a transaction: what its first round trip reads back
//! ([`load`]: the locked messages with their events and states) and what its second
//! writes ([`apply`]: rows, counters, feed positions, events, listing positions). The
//! writer decides in between; deletions and imports (`lifecycle.rs`) use the same halves.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::columns::{Changes, EventColumns, PositionColumns};
use super::corrupt;
use super::rows;
use super::statements::Statements;
use crate::domain::{MessageState, Parties, Transition};
use crate::store::{Recorded, StoreError};

/// A message of the group as stored, then as the group leaves it.
pub(super) struct Loaded {
    pub parties: Parties,
    pub transitions: Vec<Transition>,
    pub tokens: Vec<String>,
    /// The state before the group (`None` for a new message).
    pub before: Option<MessageState>,
    /// The state as the group's events so far leave it.
    pub state: Option<MessageState>,
    /// The index in `Plan::events` of the group's last event of this message.
    pub last_event: Option<usize>,
}

/// The group's messages, by SID, from the rows of `lock_messages` and `read_events`: each
/// with its history and the state it replays to before the group.
pub(super) fn load(
    locked: &[tokio_postgres::Row],
    stored: &[tokio_postgres::Row],
) -> Result<HashMap<String, Loaded>, StoreError> {
    let mut messages = HashMap::with_capacity(locked.len());
    for row in locked {
        let sid: String = row.try_get(0).map_err(corrupt)?;
        messages.insert(
            sid,
            Loaded {
                parties: rows::parties(row, 1)?,
                transitions: Vec::new(),
                tokens: Vec::new(),
                before: None,
                state: None,
                last_event: None,
            },
        );
    }
    for row in stored {
        let sid: &str = row.try_get(0).map_err(corrupt)?;
        let (_, transition) = rows::transition(row, 1)?;
        let token: Option<String> = row.try_get(7).map_err(corrupt)?;
        if let Some(message) = messages.get_mut(sid) {
            message.transitions.push(transition);
            message.tokens.extend(token);
        }
    }
    for message in messages.values_mut() {
        message.before = MessageState::replay(&message.parties, &message.transitions);
        message.state = message.before.clone();
    }
    Ok(messages)
}

/// What the writer decided for a group: an outcome per command, in command order, and the
/// events to store.
pub(super) struct Plan {
    pub outcomes: Vec<Recorded>,
    pub events: Vec<NewEvent>,
}

/// An event to store: its message, its number in that message's history, its transition
/// and delivery token.
pub(super) struct NewEvent {
    pub sid: String,
    pub n: i32,
    pub transition: Transition,
    pub token: Option<String>,
    /// The parameters as a JSON array of `[name, value]` pairs.
    pub params: String,
    /// The change-feed position it keeps ([`Seqs::Keep`]).
    pub kept_seq: Option<i64>,
}

/// Where a group's change-feed positions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seqs {
    /// Taken from the feed's sequence, in the plan's order (`statushook_take_seqs`): the
    /// writer's groups, and imports of exports without positions.
    Take,
    /// Each event's own (`NewEvent::kept_seq`), the sequence moved past the largest
    /// (`statushook_keep_seqs`): an import that keeps the positions its events had in the
    /// store they were exported from.
    Keep,
}

/// The second round trip of a group, inside its open transaction on `client`: the changed
/// messages' rows, their counters (on `stripe`), change-feed positions for the plan's
/// events (`statushook_take_seqs`, or with [`Seqs::Keep`] `statushook_keep_seqs`, either of
/// which takes the feed lock), the events and the listing positions; answers the first
/// position taken. Taken positions are sent relative (1 = the group's first) and made
/// absolute by the server from `currval('feed_seq')`; kept ones are sent as they are. Every
/// statement is sent before any answer is awaited: a caller that polls its `COMMIT` right
/// after this (the writer joins them) holds the feed lock for no round trip to this
/// process.
pub(super) async fn apply(
    client: &tokio_postgres::Client,
    st: &Statements,
    stripe: i16,
    plan: &Plan,
    messages: &HashMap<String, Loaded>,
    seqs: Seqs,
) -> Result<i64, tokio_postgres::Error> {
    let changes = Changes::of(messages);
    let count = i64::try_from(plan.events.len()).unwrap_or(i64::MAX);
    // What the relative positions are added to: none for kept ones.
    let (base, seqs_wanted, lock) = match seqs {
        Seqs::Take => (None::<i64>, count, &st.take_seqs),
        Seqs::Keep => {
            let last = plan.events.iter().filter_map(|e| e.kept_seq).max();
            (Some(0), last.unwrap_or(0), &st.keep_seqs)
        }
    };
    let message_rows: [&(dyn ToSql + Sync); 10] = [
        &changes.sids,
        &changes.account_sid,
        &changes.from,
        &changes.to,
        &changes.messaging_service_sid,
        &changes.status,
        &changes.error_code,
        &changes.status_dlr_done,
        &changes.created_at,
        &changes.updated_at,
    ];
    let counters: [&(dyn ToSql + Sync); 6] = [
        &changes.counters.span,
        &changes.counters.bucket,
        &changes.counters.kind,
        &changes.counters.value,
        &stripe,
        &changes.counters.delta,
    ];
    let how_many: [&(dyn ToSql + Sync); 1] = [&seqs_wanted];
    let events = EventColumns::of(plan, seqs);
    let positions = PositionColumns::of(messages, plan, seqs);
    let replaced: [&(dyn ToSql + Sync); 4] = [
        &positions.replaced_sids,
        &positions.replaced_seq,
        &positions.replaced_at,
        &count,
    ];
    let event_rows: [&(dyn ToSql + Sync); 12] = [
        &events.sid,
        &events.n,
        &events.seq,
        &events.status,
        &events.error_code,
        &events.raw_dlr_done_date,
        &events.received_at,
        &events.source,
        &events.token,
        &events.params,
        &count,
        &base,
    ];
    let placed: [&(dyn ToSql + Sync); 7] = [
        &positions.sids,
        &positions.placed_seq,
        &positions.status,
        &positions.error_code,
        &positions.updated_at,
        &count,
        &base,
    ];
    let (_, _, first, _, _, _) = tokio::try_join!(
        client.execute(&st.update_messages, &message_rows),
        client.execute(&st.add_counters, &counters),
        client.query_one(lock, &how_many),
        client.execute(&st.replace_positions, &replaced),
        client.execute(&st.insert_events, &event_rows),
        client.execute(&st.insert_positions, &placed),
    )?;
    first.try_get(0)
}
