//! `check`: reads the whole store in one snapshot and verifies that message rows, listing
//! positions and counters are exactly what the events imply. A full scan, for tests and
//! maintenance, never on a request path.

use std::collections::{BTreeMap, HashMap};

use super::columns::{counter_keys, CounterKey};
use super::rows::{self, History};
use super::PgStore;
use crate::domain::MessageState;
use crate::store::{CheckError, CheckReport};

/// A message row: its stored state columns.
struct Row {
    status: Option<String>,
    error_code: Option<i64>,
    status_dlr_done: Option<String>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

/// A listing position row.
struct Position {
    placed_seq: i64,
    replaced_seq: Option<i64>,
    status: Option<String>,
    error_code: Option<i64>,
    updated_at: i64,
}

impl PgStore {
    pub async fn check(&self) -> Result<CheckReport, CheckError> {
        let mut client = self.client().await?;
        let transaction = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(unreadable)?;
        let query = |sql: &'static str| {
            let transaction = &transaction;
            async move { transaction.query(sql, &[]).await.map_err(unreadable) }
        };
        let message_rows = query(
            "SELECT sid, account_sid, from_number, to_number, messaging_service_sid, status, \
             error_code, status_dlr_done, created_at, updated_at FROM messages ORDER BY sid",
        )
        .await?;
        let event_rows = query(
            "SELECT e.sid, e.n, e.status, e.error_code, e.raw_dlr_done_date, e.received_at, \
             e.source, e.seq FROM events e ORDER BY e.sid, e.n",
        )
        .await?;
        let position_rows = query(
            "SELECT sid, placed_seq, replaced_seq, status, error_code, updated_at \
             FROM positions ORDER BY sid, placed_seq",
        )
        .await?;
        let counter_rows = query(
            "SELECT span, bucket, kind, value, sum(n)::int8 FROM counters \
             GROUP BY span, bucket, kind, value",
        )
        .await?;
        transaction.commit().await.map_err(unreadable)?;

        let text = |e: tokio_postgres::Error| CheckError::Undecodable(e.to_string());
        let mut histories: BTreeMap<String, (History, Row)> = BTreeMap::new();
        for row in &message_rows {
            let sid: String = row.try_get(0).map_err(text)?;
            let parties = rows::parties(row, 1)?;
            let stored = Row {
                status: row.try_get(5).map_err(text)?,
                error_code: row.try_get(6).map_err(text)?,
                status_dlr_done: row.try_get(7).map_err(text)?,
                created_at: row.try_get(8).map_err(text)?,
                updated_at: row.try_get(9).map_err(text)?,
            };
            let history = History {
                parties,
                transitions: Vec::new(),
                seqs: Vec::new(),
            };
            histories.insert(sid, (history, stored));
        }
        let mut report = CheckReport {
            messages: 0,
            events: 0,
            index_entries: 0,
        };
        for row in &event_rows {
            let (sid, transition) = rows::transition_with_sid(row, 0)?;
            let n: i32 = row.try_get(1).map_err(text)?;
            let seq: i64 = row.try_get(7).map_err(text)?;
            let (history, _) = histories.get_mut(sid.as_str()).ok_or_else(|| {
                CheckError::EventsWithoutMessage {
                    sid: sid.to_string(),
                }
            })?;
            if n as usize != history.transitions.len() {
                return Err(inconsistent(
                    sid.as_str(),
                    format!("event {n} out of sequence"),
                ));
            }
            if let (Some(last), Some(last_seq)) = (history.transitions.last(), history.seqs.last())
            {
                if transition.received_at <= last.received_at || seq <= *last_seq {
                    return Err(inconsistent(
                        sid.as_str(),
                        format!("event {n} is not after event {}", n - 1),
                    ));
                }
            }
            history.transitions.push(transition);
            history.seqs.push(seq);
            report.events += 1;
        }

        let mut positions: HashMap<String, Vec<Position>> = HashMap::new();
        for row in &position_rows {
            let sid: String = row.try_get(0).map_err(text)?;
            positions.entry(sid).or_default().push(Position {
                placed_seq: row.try_get(1).map_err(text)?,
                replaced_seq: row.try_get(2).map_err(text)?,
                status: row.try_get(3).map_err(text)?,
                error_code: row.try_get(4).map_err(text)?,
                updated_at: row.try_get(5).map_err(text)?,
            });
            report.index_entries += 1;
        }

        let mut counters: HashMap<CounterKey, i64> = HashMap::new();
        for (sid, (history, stored)) in &histories {
            let state = MessageState::replay(&history.parties, &history.transitions)
                .ok_or_else(|| inconsistent(sid, "a message row without events"))?;
            let columns_agree = stored.status.as_deref() == state.status.map(|s| s.as_str())
                && stored.error_code == state.error_code.map(i64::from)
                && stored.status_dlr_done == state.status_dlr_done
                && stored.created_at == Some(state.created_at.0 as i64)
                && stored.updated_at == Some(state.updated_at.0 as i64);
            if !columns_agree {
                return Err(inconsistent(
                    sid,
                    "the message row is not its events' state",
                ));
            }
            check_positions(
                sid,
                history,
                &state,
                positions.remove(sid).unwrap_or_default(),
            )?;
            for key in counter_keys(&state) {
                *counters.entry(key).or_default() += 1;
            }
            report.messages += 1;
        }
        if let Some(sid) = positions.keys().next() {
            return Err(CheckError::PositionsWithoutMessage { sid: sid.clone() });
        }
        for row in &counter_rows {
            let key: CounterKey = (
                row.try_get(0).map_err(text)?,
                row.try_get(1).map_err(text)?,
                row.try_get(2).map_err(text)?,
                row.try_get(3).map_err(text)?,
            );
            let stored: i64 = row.try_get(4).map_err(text)?;
            let expected = counters.remove(&key).unwrap_or(0);
            if stored != expected {
                return Err(CheckError::CounterDisagrees {
                    key: format!("{key:?}"),
                    stored: i128::from(stored),
                    expected,
                    implied_by: "events",
                });
            }
        }
        if let Some((key, count)) = counters.into_iter().find(|(_, count)| *count != 0) {
            return Err(CheckError::CounterMissing {
                key: format!("{key:?}"),
                expected: count,
                implied_by: "events",
            });
        }
        Ok(report)
    }
}

/// A message has exactly one live position, at its current state; every position is the
/// state the message had at the position's `placed_seq`, and a replaced one is followed
/// by the position that replaced it (unless that was removed as old history, never
/// the live one).
fn check_positions(
    sid: &str,
    history: &History,
    state: &MessageState,
    positions: Vec<Position>,
) -> Result<(), CheckError> {
    let live: Vec<&Position> = positions
        .iter()
        .filter(|p| p.replaced_seq.is_none())
        .collect();
    let [live] = live.as_slice() else {
        return Err(inconsistent(
            sid,
            format!("{} live listing positions", live.len()),
        ));
    };
    let agrees = |p: &Position, s: &MessageState| {
        p.status.as_deref() == s.status.map(|s| s.as_str())
            && p.error_code == s.error_code.map(i64::from)
            && p.updated_at == s.updated_at.0 as i64
    };
    if !agrees(live, state) {
        return Err(inconsistent(
            sid,
            "the live listing position is not its state",
        ));
    }
    for position in &positions {
        if !history.seqs.contains(&position.placed_seq) {
            return Err(inconsistent(
                sid,
                format!(
                    "a position placed at {} names no event",
                    position.placed_seq
                ),
            ));
        }
        let then = history
            .state_at(position.placed_seq)
            .ok_or_else(|| inconsistent(sid, format!("no state at {}", position.placed_seq)))?;
        if !agrees(position, &then) {
            return Err(inconsistent(
                sid,
                format!(
                    "the position placed at {} is not its state then",
                    position.placed_seq
                ),
            ));
        }
        if let Some(replaced) = position.replaced_seq {
            let successor = positions.iter().any(|p| p.placed_seq == replaced);
            if replaced <= position.placed_seq || !successor {
                return Err(inconsistent(
                    sid,
                    format!(
                        "the position placed at {} was replaced at {replaced}, which placed none",
                        position.placed_seq
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A message whose rows disagree with its events.
fn inconsistent(sid: &str, problem: impl Into<String>) -> CheckError {
    CheckError::Message {
        sid: sid.to_owned(),
        problem: problem.into(),
    }
}

/// The database could not be read to the end.
fn unreadable(error: tokio_postgres::Error) -> CheckError {
    CheckError::Unreadable(error.to_string())
}
