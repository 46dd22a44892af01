//! A model test: random callback sequences (any order, duplicates, unknown statuses,
//! repeated idempotency tokens, and Event Streams events beside the callbacks, some of
//! them echoes of a callback, recorded a run at a time with `Store::record_all`) applied to
//! the store and to a plain in-memory model give the same records, the same listings and
//! the same counts; the indexes stay equal to the records, also after a restart.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use proptest::prelude::*;
use statushook::domain::{KnownStatus, MessageSid, MessageStatus, Source, StatusEvent, Timestamp};
use statushook::store::{ListQuery, Store};

use crate::support::database::{open_store, test_database};

const STATUSES: &[&str] = &[
    "accepted",
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "read",
    "bounced",
];
const SIDS: usize = 6;

#[derive(Debug, Clone)]
struct Callback {
    sid: usize,
    status: &'static str,
    error_code: Option<u32>,
    dlr: Option<&'static str>,
    token: Option<&'static str>,
    /// An Event Streams event rather than a status callback.
    stream: bool,
}

fn callback() -> impl Strategy<Value = Callback> {
    (
        0..SIDS,
        prop::sample::select(STATUSES),
        prop::option::of(prop::sample::select(&[30003u32, 30005][..])),
        prop::option::of(prop::sample::select(&["2611260901", "2611260905"][..])),
        prop::option::of(prop::sample::select(&["t1", "t2", "t3"][..])),
        prop::bool::weighted(0.4),
    )
        .prop_map(|(sid, status, error_code, dlr, token, stream)| Callback {
            sid,
            status,
            error_code,
            dlr,
            token,
            stream,
        })
}

fn sid(n: usize) -> String {
    format!("SM{:032x}", n + 1)
}

/// The model: the contract's rules, written out as plainly as possible.
#[derive(Debug, Default, Clone)]
struct ModelMessage {
    events: Vec<&'static str>,
    /// (stream, status, error code) of the events stored: a repeat by the same channel is
    /// a duplicate, by the other an echo (kept, changing nothing).
    seen: BTreeSet<(bool, &'static str, Option<u32>)>,
    tokens: BTreeSet<&'static str>,
    current: Option<(&'static str, u8, Option<&'static str>, Option<u32>)>,
}

fn rank(status: &str) -> Option<u8> {
    KnownStatus::parse(status).map(KnownStatus::rank)
}

impl ModelMessage {
    fn apply(&mut self, c: &Callback) {
        let duplicate = c.token.is_some_and(|t| self.tokens.contains(t))
            || self.seen.contains(&(c.stream, c.status, c.error_code));
        if duplicate {
            return;
        }
        let echo = self.seen.contains(&(!c.stream, c.status, c.error_code));
        self.events.push(c.status);
        self.seen.insert((c.stream, c.status, c.error_code));
        self.tokens.extend(c.token);
        let Some(new_rank) = rank(c.status).filter(|_| !echo) else {
            return;
        };
        let takes_over = match self.current {
            None => true,
            Some((_, rank, dlr, _)) if new_rank == rank => match (dlr, c.dlr) {
                (Some(old), Some(new)) => new >= old,
                _ => true,
            },
            Some((_, rank, _, _)) => new_rank > rank,
        };
        if takes_over {
            self.current = Some((c.status, new_rank, c.dlr, c.error_code));
        }
    }
}

fn event(c: &Callback) -> StatusEvent {
    if c.stream {
        let params = vec![
            ("id".to_owned(), format!("EZ{}", c.sid)),
            ("data.messageSid".to_owned(), sid(c.sid)),
            (
                "data.messageStatus".to_owned(),
                c.status.to_ascii_uppercase(),
            ),
            ("data.to".to_owned(), format!("+1555000{}", c.sid % 2)),
            ("data.from".to_owned(), format!("+1500555{}", c.sid % 3)),
        ];
        return StatusEvent::new(
            MessageSid::parse(&sid(c.sid)).expect("a SID"),
            MessageStatus::parse(c.status).expect("a status"),
            c.error_code,
            c.dlr.map(str::to_owned),
            Source::EventStream,
            params,
        );
    }
    let mut params = vec![
        ("MessageSid".to_owned(), sid(c.sid)),
        ("MessageStatus".to_owned(), c.status.to_owned()),
    ];
    if let Some(code) = c.error_code {
        params.push(("ErrorCode".into(), code.to_string()));
    }
    if let Some(dlr) = c.dlr {
        params.push(("RawDlrDoneDate".into(), dlr.to_owned()));
    }
    params.push(("To".into(), format!("+1555000{}", c.sid % 2)));
    params.push(("From".into(), format!("+1500555{}", c.sid % 3)));
    StatusEvent::from_params(params, Source::Callback).expect("valid event")
}

async fn compare(store: &Store, model: &BTreeMap<usize, ModelMessage>) {
    store
        .check()
        .await
        .expect("indexes, counters and records agree");
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_error: BTreeMap<u32, u64> = BTreeMap::new();
    for (n, expected) in model {
        let sid = statushook::domain::MessageSid::parse(&sid(*n)).expect("sid");
        let stored = store
            .message(&sid)
            .await
            .expect("readable")
            .expect("stored");
        let statuses: Vec<String> = stored.events.iter().map(|e| e.status.to_string()).collect();
        assert_eq!(statuses, expected.events, "history of {sid}");
        let current = stored.state.status.map(KnownStatus::as_str);
        assert_eq!(current, expected.current.map(|c| c.0), "status of {sid}");
        if let Some((status, _, _, error)) = expected.current {
            assert_eq!(stored.state.error_code, error, "error code of {sid}");
            *by_status.entry(status).or_default() += 1;
            if let Some(error) = error {
                *by_error.entry(error).or_default() += 1;
            }
        }
    }
    let counts = store.stats(None, None).await.expect("counts");
    let counted: BTreeMap<&str, u64> = counts
        .by_status
        .iter()
        .map(|(s, c)| (s.as_str(), *c))
        .collect();
    assert_eq!(counted, by_status);
    assert_eq!(
        counts.by_error.into_iter().collect::<BTreeMap<_, _>>(),
        by_error
    );
    for status in KnownStatus::ALL {
        let query = ListQuery {
            statuses: vec![*status],
            limit: 1000,
            ..ListQuery::default()
        };
        let listed: BTreeSet<String> = store
            .list(query)
            .await
            .expect("list")
            .messages
            .into_iter()
            .map(|(sid, _)| sid.to_string())
            .collect();
        let expected: BTreeSet<String> = model
            .iter()
            .filter(|(_, m)| m.current.map(|c| c.0) == Some(status.as_str()))
            .map(|(n, _)| sid(*n))
            .collect();
        assert_eq!(listed, expected, "listing of {}", status.as_str());
    }
    let all = store
        .list(ListQuery {
            limit: 1000,
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(all.messages.len(), model.len());

    // Windowed stats (hourly and minutely buckets plus index edges) agree with the records.
    let windowed = store.stats(Some(Timestamp(0)), None).await.expect("stats");
    let all_time = store.stats(None, None).await.expect("stats");
    assert_eq!(windowed, all_time);
    let mut times: Vec<Timestamp> = all.messages.iter().map(|(_, s)| s.updated_at).collect();
    times.sort_unstable();
    let pivot = times[times.len() / 2];
    for (since, until) in [(Some(pivot), None), (Some(Timestamp(0)), Some(pivot))] {
        let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, record) in &all.messages {
            let inside = since.is_none_or(|s| record.updated_at >= s)
                && until.is_none_or(|u| record.updated_at < u);
            if let (true, Some(status)) = (inside, record.status) {
                *expected.entry(status.as_str()).or_default() += 1;
            }
        }
        let stats = store.stats(since, until).await.expect("stats");
        let counted: BTreeMap<&str, u64> = stats
            .by_status
            .iter()
            .map(|(s, c)| (s.as_str(), *c))
            .collect();
        assert_eq!(counted, expected, "window {since:?}..{until:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_callback_sequences_match_the_model(callbacks in prop::collection::vec(callback(), 1..60)) {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let path = dir.path().join("db");
            let database = test_database().await;
            let store = open_store(&path, database.as_deref()).await;
            let mut model: BTreeMap<usize, ModelMessage> = BTreeMap::new();
            for c in &callbacks {
                model.entry(c.sid).or_default().apply(c);
            }
            // All at once, so the writer meets several callbacks of one message in a group;
            // each run of stream events as one `record_all`, as a batch arrives.
            let runs = callbacks.chunk_by(|a, b| a.stream && b.stream);
            let recorded = join_all(runs.map(|run| async {
                let events: Vec<(StatusEvent, Option<String>)> = run
                    .iter()
                    .map(|c| (event(c), c.token.map(str::to_owned)))
                    .collect();
                if run[0].stream {
                    store.record_all(events).await.map(|_| ())
                } else {
                    let (event, token) = events.into_iter().next().expect("one callback");
                    store.record(event, token).await.map(|_| ())
                }
            }))
            .await;
            assert!(recorded.iter().all(Result::is_ok));
            compare(&store, &model).await;

            store.close().await.expect("closes");
            drop(store);
            let reopened = open_store(&path, database.as_deref()).await;
            compare(&reopened, &model).await;
            reopened.close().await.expect("closes");
        });
    }
}
