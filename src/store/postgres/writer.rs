//! The writer task: group commit of callbacks into one PostgreSQL transaction.
//!
//! Handlers queue `Record` commands; the writer takes everything queued (up to
//! [`MAX_GROUP`]) and writes it as one transaction in two pipelined round trips:
//!
//! 1. `BEGIN`; insert an empty row for each message of the group not stored yet
//!    (`ON CONFLICT DO NOTHING`); lock every message row of the group `FOR UPDATE`, in SID
//!    order so that two groups never wait on each other in a cycle; read their events
//!    (a statement that starts after the locks are granted sees every event committed
//!    before), and read the database's clock. Another replica recording the same message
//!    waits here until this commit.
//! 2. In Rust, with `domain::is_duplicate` and `domain::MessageState`: drop duplicates,
//!    give each event its arrival time (the database's clock, after this replica's last
//!    time and the message's last one), compute each message's new state.
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
//!
//! This file is the loop, its retries and the decisions of step 2. What the round trips
//! read and write is in `group.rs`, the arrays they send in `columns.rs` and their SQL in
//! `statements.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::corrupt;
use super::group::{apply, load, Loaded, NewEvent, Plan, Seqs};
use super::statements::{Statements, WRITER_SETTINGS};
use crate::domain::{is_duplicate, is_echo, MessageState, StatusEvent, Timestamp, Transition};
use crate::store::{GroupObserver, Recorded, StoreError};

/// The most commands written in one transaction.
pub const MAX_GROUP: usize = 1024;

/// How many times a group is tried before its commands get `Unavailable`.
pub(super) const ATTEMPTS: usize = 4;

/// Counter stripes: each replica writes to one, chosen at random when it starts.
pub const STRIPES: i16 = 16;

pub enum Command {
    Record {
        event: StatusEvent,
        idempotency_token: Option<String>,
        reply: oneshot::Sender<Result<Recorded, StoreError>>,
    },
    /// Records several events in the group's one transaction: every one of them is
    /// committed, or none.
    RecordAll {
        events: Vec<(StatusEvent, Option<String>)>,
        reply: oneshot::Sender<Result<Vec<Recorded>, StoreError>>,
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

/// Who waits for the outcomes of a group's events, in the order they were queued.
enum Waiting {
    One(oneshot::Sender<Result<Recorded, StoreError>>),
    /// A `RecordAll` of this many events.
    All(usize, oneshot::Sender<Result<Vec<Recorded>, StoreError>>),
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
                    replies.push(Waiting::One(reply));
                }
                Command::RecordAll { events, reply } => {
                    replies.push(Waiting::All(events.len(), reply));
                    pending.extend(
                        events
                            .into_iter()
                            .map(|(event, token)| Pending { event, token }),
                    );
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
                    let mut outcomes = outcomes.into_iter();
                    for reply in replies {
                        match reply {
                            Waiting::One(reply) => {
                                let outcome = outcomes.next().ok_or_else(missing_outcome);
                                let _ = reply.send(outcome);
                            }
                            Waiting::All(count, reply) => {
                                let taken: Vec<Recorded> = outcomes.by_ref().take(count).collect();
                                let outcome = if taken.len() == count {
                                    Ok(taken)
                                } else {
                                    Err(missing_outcome())
                                };
                                let _ = reply.send(outcome);
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, size = pending.len(), "a group could not be stored");
                    for reply in replies {
                        match reply {
                            Waiting::One(reply) => {
                                let _ = reply.send(Err(error.clone()));
                            }
                            Waiting::All(_, reply) => {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
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
        let (_, _, locked, stored, now) = tokio::try_join!(
            client.batch_execute("BEGIN"),
            client.execute(&st.insert_messages, &by_sid),
            client.query(&st.lock_messages, &by_sid),
            client.query(&st.read_events, &by_sid),
            client.query_one(&st.now, &[]),
        )
        .map_err(Failure::Database)?;
        let mut messages = load(&locked, &stored).map_err(Failure::Store)?;
        if messages.len() < sids.len() {
            return Err(Failure::Vanished);
        }
        let now: i64 = now.try_get(0).map_err(|e| Failure::Store(corrupt(e)))?;
        let now = Timestamp(u64::try_from(now).unwrap_or(0));

        // In Rust: the domain's rules decide duplicates and states.
        let plan = self.plan(pending, &mut messages, now);
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
            apply(client, st, stripe, &plan, &messages, Seqs::Take),
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
    fn plan(
        &mut self,
        pending: &[Pending],
        messages: &mut HashMap<String, Loaded>,
        now: Timestamp,
    ) -> Plan {
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
            let at = self.tick(now, message.state.as_ref().map(|s| s.updated_at));
            let old_parties = message.parties.clone();
            message.parties.fill_from(&p.event);
            let transition = Transition::of(&p.event, at);
            let echo = is_echo(&message.transitions, &transition);
            message.state = Some(match message.state.take() {
                // One transition in effect: an echo changes no state, only the parties it
                // may be the first to carry.
                Some(mut state) if echo => {
                    state.parties = message.parties.clone();
                    state
                }
                Some(mut state) => {
                    state.apply(&transition);
                    state.parties = message.parties.clone();
                    state
                }
                None => MessageState::first(message.parties.clone(), &transition),
            });
            let n = i32::try_from(message.transitions.len()).unwrap_or(i32::MAX);
            // The message's row and listing position are written after its last event of
            // the group that changed something; an echo that changes nothing leaves them.
            if !echo || message.parties != old_parties {
                message.last_event = Some(plan.events.len());
            }
            plan.events.push(NewEvent {
                sid: sid.to_owned(),
                n,
                transition: transition.clone(),
                token: p.token.clone(),
                params: serde_json::to_string(p.event.params()).unwrap_or_else(|_| "[]".into()),
                kept_seq: None,
            });
            message.transitions.push(transition);
            message.tokens.extend(p.token.clone());
            plan.outcomes.push(Recorded::Stored);
        }
        plan
    }

    /// An arrival time from the database's clock (`now`, read once per group after its
    /// locks were granted), after this replica's last one and after `floor` (the message's
    /// last update, possibly by another replica), so a message's times never go back.
    /// Every replica reads the same clock, so replicas whose own clocks disagree still
    /// agree on order, windows and ages.
    fn tick(&mut self, now: Timestamp, floor: Option<Timestamp>) -> Timestamp {
        let mut at = now.max(Timestamp(self.clock.0 + 1));
        if let Some(floor) = floor {
            at = at.max(Timestamp(floor.0 + 1));
        }
        self.clock = at;
        at
    }
}

fn missing_outcome() -> StoreError {
    StoreError::unavailable("the writer lost track of a group's outcomes")
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

/// Why an attempt at a group failed: it decides whether the group is tried again.
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
