//! The writer task: group commit of callbacks into one PostgreSQL transaction.
//!
//! Handlers queue `Record` commands; the writer takes everything queued (up to
//! [`MAX_GROUP`]) and writes it as one transaction in two pipelined round trips:
//!
//! 1. `BEGIN`; insert an empty row for each message of the group not stored yet
//!    (`ON CONFLICT DO NOTHING`); lock every message row of the group `FOR UPDATE`, in SID
//!    order so that two groups never wait on each other in a cycle; read their events
//!    (a statement that starts after the locks are granted sees every event committed
//!    before). Another replica recording the same message waits here until this commit.
//! 2. In Rust, with `domain::is_duplicate` and `domain::MessageState`: drop duplicates,
//!    give each event its arrival time (never before the message's last one), compute
//!    each message's new state.
//! 3. Update the messages rows, add the counter changes (one upsert per distinct counter,
//!    on this replica's stripe), take change-feed positions (`statushook_take_seqs`,
//!    which takes the feed lock), insert the events with their positions, move the
//!    messages' listing positions, and `COMMIT`. The feed lock is released after the
//!    commit is visible, so commits holding positions are visible in position order; and
//!    it is held only while the server runs the last statements and the commit, never
//!    across a round trip to this process.
//!
//! Every statement is multi-row (`unnest` of arrays), so a group costs the same number
//! of statements (and two round trips) whether it holds one callback or a thousand. No command is answered
//! before `COMMIT` returns with `synchronous_commit` on. A group that meets a deadlock, a
//! serialization failure, a unique violation (a duplicate that slipped past: the indexes
//! make a race harmless) or a broken connection is rolled back and written again, from a
//! fresh read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::rows::{self, source_name};
use super::{corrupt, to_i64};
use crate::domain::{is_duplicate, MessageState, Parties, StatusEvent, Timestamp, Transition};
use crate::store::{GroupObserver, Recorded, StoreError, CURSOR_LIFETIME};

/// The most commands written in one transaction.
pub const MAX_GROUP: usize = 1024;

/// How many times a group is tried before its commands get `Unavailable`.
pub(super) const ATTEMPTS: usize = 4;

/// Replaced listing positions are kept this long, a little more than a cursor lives.
const HISTORY_KEPT: u64 = CURSOR_LIFETIME.as_micros() as u64 + 5 * 60_000_000;

/// Counter stripes: each replica writes to one, chosen at random when it starts.
pub const STRIPES: i16 = 16;

pub enum Command {
    Record {
        event: StatusEvent,
        idempotency_token: Option<String>,
        reply: oneshot::Sender<Result<Recorded, StoreError>>,
    },
    /// Commits the group it arrived in, replies and stops the writer.
    Shutdown { reply: oneshot::Sender<()> },
}

/// What the writer tells readers.
pub struct Shared {
    /// The last change-feed position this replica committed (other replicas' commits are
    /// read from the database).
    pub watermark: watch::Sender<u64>,
    /// Set if the writer stops unexpectedly.
    pub failed: watch::Sender<Option<StoreError>>,
}

/// Starts the writer task; it stops after a `Shutdown`, or when every sender is gone.
pub fn spawn(
    pool: Pool,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    observe: GroupObserver,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut guard = FailOnDrop(Some(Arc::clone(&shared)));
        let mut writer = Writer {
            pool,
            connection: None,
            clock: Timestamp(0),
            stripe: fastrand::i16(0..STRIPES),
            shared,
        };
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = commands.recv().await {
            group.push(first);
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            observe(group.len());
            if writer.commit(&mut group).await == Continue::Stop {
                break;
            }
        }
        guard.0 = None;
    })
}

/// Marks the store failed if the writer task ends by panicking.
struct FailOnDrop(Option<Arc<Shared>>);

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            tracing::error!("the store's writer stopped unexpectedly");
            shared
                .failed
                .send_replace(Some(StoreError::unavailable("the writer stopped")));
        }
    }
}

#[derive(PartialEq, Eq)]
enum Continue {
    Go,
    Stop,
}

struct Writer {
    pool: Pool,
    /// The writer's own connection with its prepared statements, while it works.
    connection: Option<(ClientWrapper, Statements)>,
    /// The last arrival time handed out by this replica.
    clock: Timestamp,
    stripe: i16,
    shared: Arc<Shared>,
}

/// One callback to record.
struct Pending {
    event: StatusEvent,
    token: Option<String>,
}

impl Writer {
    async fn commit(&mut self, group: &mut Vec<Command>) -> Continue {
        let mut next = Continue::Go;
        let mut pending = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        let mut done = Vec::new();
        for command in group.drain(..) {
            match command {
                Command::Record {
                    event,
                    idempotency_token,
                    reply,
                } => {
                    pending.push(Pending {
                        event,
                        token: idempotency_token,
                    });
                    replies.push(reply);
                }
                Command::Shutdown { reply } => {
                    next = Continue::Stop;
                    done.push(reply);
                }
            }
        }
        if !pending.is_empty() {
            match self.write(&pending).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, size = pending.len(), "a group could not be stored");
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
        for reply in done {
            let _ = reply.send(());
        }
        next
    }

    /// Writes a group, trying again from a fresh read after a conflict or a lost
    /// connection.
    async fn write(&mut self, pending: &[Pending]) -> Result<Vec<Recorded>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.attempt(pending).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(error) => error,
            };
            let retry = match &error {
                Failure::Database(error) => {
                    // After any database error the connection may be mid-transaction or
                    // broken: roll back, and if that fails, drop it.
                    self.roll_back().await;
                    worth_retrying(error)
                }
                Failure::Pool(_) => true,
                Failure::Vanished => {
                    self.roll_back().await;
                    true
                }
                Failure::Store(_) => {
                    self.roll_back().await;
                    false
                }
            };
            if !retry || attempt >= ATTEMPTS {
                return Err(error.to_store_error());
            }
            tracing::warn!(error = %error.to_store_error(), attempt, "writing a group again");
            if matches!(error, Failure::Pool(_)) {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
        }
    }

    async fn roll_back(&mut self) {
        if let Some((client, _)) = &self.connection {
            if client.batch_execute("ROLLBACK").await.is_ok() {
                return;
            }
        }
        // A broken connection is closed.
        self.connection = None;
    }

    /// The writer's connection, taken out of the pool for good (it is closed when dropped),
    /// so that its settings never reach a reader.
    async fn connection(&mut self) -> Result<&(ClientWrapper, Statements), Failure> {
        if self.connection.is_none() {
            let client = Object::take(
                self.pool
                    .get()
                    .await
                    .map_err(|e| Failure::Pool(e.to_string()))?,
            );
            client
                .batch_execute(WRITER_SETTINGS)
                .await
                .map_err(Failure::Database)?;
            let statements = Statements::prepare(&client)
                .await
                .map_err(Failure::Database)?;
            self.connection = Some((client, statements));
        }
        self.connection
            .as_ref()
            .ok_or_else(|| Failure::Pool("no connection".into()))
    }

    async fn attempt(&mut self, pending: &[Pending]) -> Result<Vec<Recorded>, Failure> {
        let mut sids: Vec<String> = pending
            .iter()
            .map(|p| p.event.sid().as_str().to_owned())
            .collect();
        sids.sort_unstable();
        sids.dedup();

        // Round trip 1: lock the group's messages and read their events.
        let (client, st) = self.connection().await?;
        let by_sid: [&(dyn ToSql + Sync); 1] = [&sids];
        let (_, _, locked, stored) = tokio::try_join!(
            client.batch_execute("BEGIN"),
            client.execute(&st.insert_messages, &by_sid),
            client.query(&st.lock_messages, &by_sid),
            client.query(&st.read_events, &by_sid),
        )
        .map_err(Failure::Database)?;
        let mut messages = load(&locked, &stored).map_err(Failure::Store)?;
        if messages.len() < sids.len() {
            return Err(Failure::Vanished);
        }

        // In Rust: the domain's rules decide duplicates and states.
        let plan = self.plan(pending, &mut messages);
        if plan.events.is_empty() {
            let (client, _) = self.connection().await?;
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(Failure::Database)?;
            return Ok(plan.outcomes);
        }
        // Round trip 2: everything `apply` writes, and the commit, sent together.
        let stripe = self.stripe;
        let (client, st) = self.connection().await?;
        let (first, _) = tokio::try_join!(
            apply(client, st, stripe, &plan, &messages),
            client.batch_execute("COMMIT"),
        )
        .map_err(Failure::Database)?;
        let count = i64::try_from(plan.events.len()).unwrap_or(i64::MAX);
        let last = u64::try_from(first + count - 1).unwrap_or(0);
        self.shared.watermark.send_if_modified(|watermark| {
            let newer = last > *watermark;
            if newer {
                *watermark = last;
            }
            newer
        });
        Ok(plan.outcomes)
    }

    /// Decides, in command order, which commands store an event, and the states they
    /// leave.
    fn plan(&mut self, pending: &[Pending], messages: &mut HashMap<String, Loaded>) -> Plan {
        let mut plan = Plan {
            outcomes: Vec::with_capacity(pending.len()),
            events: Vec::new(),
        };
        for p in pending {
            let sid = p.event.sid().as_str();
            let Some(message) = messages.get_mut(sid) else {
                // Every SID of the group was inserted or locked above.
                plan.outcomes.push(Recorded::Duplicate);
                continue;
            };
            if is_duplicate(
                &message.transitions,
                &message.tokens,
                &p.event,
                p.token.as_deref(),
            ) {
                plan.outcomes.push(Recorded::Duplicate);
                continue;
            }
            let at = self.tick(message.state.as_ref().map(|s| s.updated_at));
            message.parties.fill_from(&p.event);
            let transition = Transition::of(&p.event, at);
            message.state = Some(match message.state.take() {
                Some(mut state) => {
                    state.apply(&transition);
                    state.parties = message.parties.clone();
                    state
                }
                None => MessageState::first(message.parties.clone(), &transition),
            });
            let n = i32::try_from(message.transitions.len()).unwrap_or(i32::MAX);
            message.last_event = Some(plan.events.len());
            plan.events.push(NewEvent {
                sid: sid.to_owned(),
                n,
                transition: transition.clone(),
                token: p.token.clone(),
                params: serde_json::to_string(p.event.params()).unwrap_or_else(|_| "[]".into()),
            });
            message.transitions.push(transition);
            message.tokens.extend(p.token.clone());
            plan.outcomes.push(Recorded::Stored);
        }
        plan
    }

    /// An arrival time after this replica's last one and after `floor` (the message's
    /// last update, possibly by another replica), so a message's times never go back.
    fn tick(&mut self, floor: Option<Timestamp>) -> Timestamp {
        let mut at = Timestamp::now().max(Timestamp(self.clock.0 + 1));
        if let Some(floor) = floor {
            at = at.max(Timestamp(floor.0 + 1));
        }
        self.clock = at;
        at
    }
}

/// Whether a transaction that failed with `error` may succeed when tried again from a
/// fresh read: it met a deadlock, a serialization failure or a unique violation (a race
/// the indexes made harmless), or the connection broke.
pub(super) fn worth_retrying(error: &tokio_postgres::Error) -> bool {
    let conflict = error.code().is_some_and(|code| {
        [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::UNIQUE_VIOLATION,
        ]
        .contains(code)
    });
    conflict || error.is_closed() || error.code().is_none()
}

/// The second round trip of a group, inside its open transaction on `client`: the changed
/// messages' rows, their counters (on `stripe`), change-feed positions for the plan's
/// events (`statushook_take_seqs`, which takes the feed lock), the events and the listing
/// positions; answers the first position. Positions are sent relative (1 = the group's
/// first) and made absolute by the server from `currval('feed_seq')`, and every statement
/// is sent before any answer is awaited: a caller that polls its `COMMIT` right after this
/// (the writer joins them) holds the feed lock for no round trip to this process.
pub(super) async fn apply(
    client: &tokio_postgres::Client,
    st: &Statements,
    stripe: i16,
    plan: &Plan,
    messages: &HashMap<String, Loaded>,
) -> Result<i64, tokio_postgres::Error> {
    let changes = Changes::of(messages);
    let count = i64::try_from(plan.events.len()).unwrap_or(i64::MAX);
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
    let how_many: [&(dyn ToSql + Sync); 1] = [&count];
    let events = EventColumns::of(plan, 1);
    let positions = PositionColumns::of(messages, 1);
    let replaced: [&(dyn ToSql + Sync); 4] = [
        &positions.replaced_sids,
        &positions.replaced_seq,
        &positions.replaced_at,
        &count,
    ];
    let event_rows: [&(dyn ToSql + Sync); 11] = [
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
    ];
    let placed: [&(dyn ToSql + Sync); 6] = [
        &positions.sids,
        &positions.placed_seq,
        &positions.status,
        &positions.error_code,
        &positions.updated_at,
        &count,
    ];
    let (_, _, first, _, _, _) = tokio::try_join!(
        client.execute(&st.update_messages, &message_rows),
        client.execute(&st.add_counters, &counters),
        client.query_one(&st.take_seqs, &how_many),
        client.execute(&st.replace_positions, &replaced),
        client.execute(&st.insert_events, &event_rows),
        client.execute(&st.insert_positions, &placed),
    )?;
    first.try_get(0)
}

/// Deletes replaced listing positions older than any valid cursor; returns how many.
pub async fn forget_history(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await.map_err(StoreError::unavailable)?;
    let horizon = to_i64(Timestamp::now().0.saturating_sub(HISTORY_KEPT));
    let mut total = 0;
    loop {
        // In batches, so that no transaction holds many row locks for long.
        let deleted = client
            .execute(
                "DELETE FROM positions WHERE ctid = ANY(ARRAY(SELECT ctid FROM positions \
                 WHERE replaced_at < $1 LIMIT 5000))",
                &[&horizon],
            )
            .await
            .map_err(StoreError::unavailable)?;
        total += deleted;
        if deleted < 5000 {
            return Ok(total);
        }
    }
}

pub(super) enum Failure {
    Database(tokio_postgres::Error),
    Pool(String),
    Store(StoreError),
    /// A message row of the group was deleted (an erasure or retention, see
    /// `lifecycle.rs`) between its insert, which found it there, and its lock, which found
    /// it gone. The group is written again: the next insert makes the row anew, so the
    /// callback starts a new message instead of being lost.
    Vanished,
}

impl Failure {
    pub(super) fn to_store_error(&self) -> StoreError {
        match self {
            Failure::Database(error) => StoreError::unavailable(error.to_string()),
            Failure::Pool(error) => StoreError::unavailable(error.clone()),
            Failure::Store(error) => error.clone(),
            Failure::Vanished => StoreError::unavailable("a message was deleted while written"),
        }
    }
}

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

pub(super) struct Plan {
    pub outcomes: Vec<Recorded>,
    pub events: Vec<NewEvent>,
}

pub(super) struct NewEvent {
    pub sid: String,
    pub n: i32,
    pub transition: Transition,
    pub token: Option<String>,
    /// The parameters as a JSON array of `[name, value]` pairs.
    pub params: String,
}

/// The changed messages' rows and the counter changes, as statement arrays.
#[derive(Default)]
struct Changes {
    sids: Vec<String>,
    account_sid: Vec<Option<String>>,
    from: Vec<Option<String>>,
    to: Vec<Option<String>>,
    messaging_service_sid: Vec<Option<String>>,
    status: Vec<Option<&'static str>>,
    error_code: Vec<Option<i64>>,
    status_dlr_done: Vec<Option<String>>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    counters: CounterColumns,
}

impl Changes {
    fn of(messages: &HashMap<String, Loaded>) -> Changes {
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

/// A counter: (span, bucket, kind, value); see the `counters` table.
pub type CounterKey = (i8, i64, i8, String);

pub const SPAN_ALL: i8 = b'a' as i8;
pub const SPAN_HOUR: i8 = b'h' as i8;
pub const SPAN_MINUTE: i8 = b'm' as i8;
pub const KIND_STATUS: i8 = b's' as i8;
pub const KIND_ERROR: i8 = b'e' as i8;
pub const HOUR: u64 = 3_600_000_000;
pub const MINUTE: u64 = 60_000_000;

/// Every counter a message in `state` counts in: by status and by error code, all time
/// and in the hour and the minute of its `updated_at`.
pub fn counter_keys(state: &MessageState) -> Vec<CounterKey> {
    let Some(status) = state.status else {
        return Vec::new();
    };
    let at = state.updated_at.0;
    let spans = [
        (SPAN_ALL, 0),
        (SPAN_HOUR, to_i64(at / HOUR)),
        (SPAN_MINUTE, to_i64(at / MINUTE)),
    ];
    let mut keys = Vec::with_capacity(6);
    for (span, bucket) in spans {
        keys.push((span, bucket, KIND_STATUS, status.as_str().to_owned()));
        if let Some(error) = state.error_code {
            keys.push((span, bucket, KIND_ERROR, error.to_string()));
        }
    }
    keys
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

struct EventColumns {
    sid: Vec<String>,
    n: Vec<i32>,
    seq: Vec<i64>,
    status: Vec<String>,
    error_code: Vec<Option<i64>>,
    raw_dlr_done_date: Vec<Option<String>>,
    received_at: Vec<i64>,
    source: Vec<&'static str>,
    token: Vec<Option<String>>,
    params: Vec<String>,
}

impl EventColumns {
    fn of(plan: &Plan, first: i64) -> EventColumns {
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
            columns.seq.push(first + i as i64);
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
struct PositionColumns {
    replaced_sids: Vec<String>,
    replaced_seq: Vec<i64>,
    replaced_at: Vec<i64>,
    sids: Vec<String>,
    placed_seq: Vec<i64>,
    status: Vec<Option<&'static str>>,
    error_code: Vec<Option<i64>>,
    updated_at: Vec<i64>,
}

impl PositionColumns {
    fn of(messages: &HashMap<String, Loaded>, first: i64) -> PositionColumns {
        let mut columns = PositionColumns::default();
        for (sid, message) in messages {
            let (Some(state), Some(last)) = (&message.state, message.last_event) else {
                continue;
            };
            let seq = first + last as i64;
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

/// The writer connection's settings. Every statement of the writer reaches a handful of
/// rows through a primary key or a unique index, whatever the size of the tables, so it is
/// planned once per connection (a generic plan) instead of at each execution, which cost a
/// third as much as running it; and sequential scans are ruled out, so that a plan made
/// while a table was new and small (and never analyzed) is not a scan of it later.
const WRITER_SETTINGS: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

/// The writer's statements, prepared once per connection (and used by the deletions and
/// imports of `lifecycle.rs` on theirs).
pub(super) struct Statements {
    insert_messages: Statement,
    pub lock_messages: Statement,
    pub read_events: Statement,
    update_messages: Statement,
    pub add_counters: Statement,
    take_seqs: Statement,
    replace_positions: Statement,
    insert_events: Statement,
    insert_positions: Statement,
}

impl Statements {
    pub(super) async fn prepare(
        client: &ClientWrapper,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            insert_messages: client
                .prepare_cached(
                    "INSERT INTO messages (sid) SELECT s FROM unnest($1::text[]) AS s ORDER BY s \
                     ON CONFLICT (sid) DO NOTHING",
                )
                .await?,
            lock_messages: client
                .prepare_cached(&format!(
                    "SELECT m.sid, {} FROM messages m WHERE m.sid = ANY($1::text[]) \
                     ORDER BY m.sid FOR UPDATE",
                    rows::PARTIES
                ))
                .await?,
            read_events: client
                .prepare_cached(&format!(
                    "SELECT {}, e.token FROM events e WHERE e.sid = ANY($1::text[]) \
                     ORDER BY e.sid, e.n",
                    rows::EVENT_WITH_SID
                ))
                .await?,
            update_messages: client
                .prepare_cached(
                    "UPDATE messages AS m SET account_sid = u.account_sid, \
                     from_number = u.from_number, to_number = u.to_number, \
                     messaging_service_sid = u.messaging_service_sid, status = u.status, \
                     error_code = u.error_code, status_dlr_done = u.status_dlr_done, \
                     created_at = u.created_at, updated_at = u.updated_at \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::int8[], $8::text[], $9::int8[], $10::int8[]) \
                     AS u(sid, account_sid, from_number, to_number, messaging_service_sid, \
                     status, error_code, status_dlr_done, created_at, updated_at) \
                     WHERE m.sid = u.sid",
                )
                .await?,
            add_counters: client
                .prepare_cached(
                    "INSERT INTO counters (span, bucket, kind, value, stripe, n) \
                     SELECT u.span, u.bucket, u.kind, u.value, $5::int2, u.n \
                     FROM unnest($1::\"char\"[], $2::int8[], $3::\"char\"[], $4::text[], \
                     $6::int8[]) AS u(span, bucket, kind, value, n) \
                     ORDER BY u.span, u.bucket, u.kind, u.value \
                     ON CONFLICT (span, bucket, kind, value, stripe) \
                     DO UPDATE SET n = counters.n + excluded.n",
                )
                .await?,
            take_seqs: client
                .prepare_cached("SELECT statushook_take_seqs($1::int8)")
                .await?,
            replace_positions: client
                .prepare_cached(
                    "UPDATE positions AS p \
                     SET replaced_seq = currval('feed_seq') - $4::int8 + u.seq, replaced_at = u.at \
                     FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(sid, seq, at) \
                     WHERE p.sid = u.sid AND p.replaced_seq IS NULL",
                )
                .await?,
            insert_events: client
                .prepare_cached(
                    "INSERT INTO events (sid, n, seq, status, error_code, raw_dlr_done_date, \
                     received_at, source, token, params) \
                     SELECT u.sid, u.n, currval('feed_seq') - $11::int8 + u.seq, u.status, \
                     u.error_code, u.dlr, u.received_at, \
                     u.source, u.token, u.params::jsonb \
                     FROM unnest($1::text[], $2::int4[], $3::int8[], $4::text[], $5::int8[], \
                     $6::text[], $7::int8[], $8::text[], $9::text[], $10::text[]) \
                     AS u(sid, n, seq, status, error_code, dlr, received_at, source, token, \
                     params)",
                )
                .await?,
            insert_positions: client
                .prepare_cached(
                    "INSERT INTO positions (sid, placed_seq, status, error_code, updated_at) \
                     SELECT u.sid, currval('feed_seq') - $6::int8 + u.placed, u.status, \
                     u.error_code, u.updated_at \
                     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[]) \
                     AS u(sid, placed, status, error_code, updated_at)",
                )
                .await?,
        })
    }
}
