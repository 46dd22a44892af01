//! The counters both stores keep, and how a time window is read from them. No I/O.
//!
//! For every known status and every error code, a store counts the messages currently in
//! it: all time, and per hour and per minute of their `updated_at`. A message counts once
//! in each of its [`counters`]; when it moves, its old state's counters go down by one and
//! its new state's go up. A count over a window of `updated_at` then adds up a few buckets
//! instead of reading every message: [`split`] says which buckets cover the window, and
//! what is left at its edges to count exactly. The sled store keys its counters one way
//! and PostgreSQL another; which counters exist and what they cover is decided here.

use super::{KnownStatus, MessageState, Timestamp};

/// A minute in microseconds, the unit of every stored time.
pub const MINUTE: u64 = 60_000_000;
/// An hour in microseconds.
pub const HOUR: u64 = 60 * MINUTE;
/// A day in microseconds.
pub const DAY: u64 = 24 * HOUR;

/// The width of a counter's bucket of `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    Hour,
    Minute,
}

/// The stretch of `updated_at` a counter covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Span {
    AllTime,
    /// Bucket number `n` of its width since the epoch: `[n * width, (n + 1) * width)`.
    Bucket(Width, u64),
}

/// What a counter counts: the messages whose current status is one status, or whose
/// current status came with one error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counted {
    Status(KnownStatus),
    Error(u32),
}

/// One counter: the messages of `counted` last updated within `span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Counter {
    pub span: Span,
    pub counted: Counted,
}

/// How much of a window one read covers: see [`split`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Buckets `[first, last)` of one width, added up from their counters.
    Buckets { width: Width, first: u64, last: u64 },
    /// `[from, to)`, shorter than a minute: counted message by message.
    Exact { from: u64, to: u64 },
}

impl Width {
    /// Coarsest first: the order [`split`] tries them in.
    pub const ALL: [Width; 2] = [Width::Hour, Width::Minute];

    /// The bucket's width in microseconds.
    pub fn micros(self) -> u64 {
        match self {
            Width::Hour => HOUR,
            Width::Minute => MINUTE,
        }
    }

    /// The number of the bucket holding `time`.
    pub fn bucket(self, time: Timestamp) -> u64 {
        time.0 / self.micros()
    }
}

/// Every counter a message in `state` counts in: by its status and by its error code (if
/// it has one), all time and in the hour and the minute of its `updated_at`. None while the
/// message has no known status: an unknown status is never current, so it counts nowhere.
pub fn counters(state: &MessageState) -> Vec<Counter> {
    let Some(status) = state.status else {
        return Vec::new();
    };
    let spans = [
        Span::AllTime,
        Span::Bucket(Width::Hour, Width::Hour.bucket(state.updated_at)),
        Span::Bucket(Width::Minute, Width::Minute.bucket(state.updated_at)),
    ];
    let mut counted = vec![Counted::Status(status)];
    counted.extend(state.error_code.map(Counted::Error));
    let mut counters = Vec::with_capacity(spans.len() * counted.len());
    for counted in counted {
        for span in spans {
            counters.push(Counter { span, counted });
        }
    }
    counters
}

/// The window `[since, until)` of a count, in microseconds, with its open ends closed:
/// from the epoch, and until an hour after `now`. Nothing is updated in the future, so the
/// bound on `until` changes no count, and it keeps bucket numbers small.
pub fn window(since: Option<Timestamp>, until: Option<Timestamp>, now: Timestamp) -> (u64, u64) {
    let horizon = now.0.saturating_add(HOUR);
    let from = since.map_or(0, |t| t.0);
    let to = until.map_or(horizon, |t| t.0.min(horizon));
    (from, to)
}

/// Covers `[from, to)` with the whole hours inside it, the whole minutes of its partial
/// hours, and the partial minutes at its edges, exactly: a few hundred keys or rows
/// however many messages the window holds. The pieces do not overlap; each width's
/// buckets come before the pieces of the window's head, which come before its tail's.
pub fn split(from: u64, to: u64) -> Vec<Piece> {
    let mut pieces = Vec::new();
    split_at(from, to, &Width::ALL, &mut pieces);
    pieces
}

/// [`split`] with the bucket widths `widths` (coarsest first) left to use.
fn split_at(from: u64, to: u64, widths: &[Width], pieces: &mut Vec<Piece>) {
    if from >= to {
        return;
    }
    let Some((&width, finer)) = widths.split_first() else {
        pieces.push(Piece::Exact { from, to });
        return;
    };
    let size = width.micros();
    let (first, last) = (from.div_ceil(size), to / size);
    if first >= last {
        return split_at(from, to, finer, pieces);
    }
    pieces.push(Piece::Buckets { width, first, last });
    split_at(from, first * size, finer, pieces);
    split_at(last * size, to, finer, pieces);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Parties;

    /// The start of an hour in 2026.
    const T: u64 = 1_790_002_800_000_000;

    fn state(status: Option<KnownStatus>, error_code: Option<u32>, at: u64) -> MessageState {
        MessageState {
            parties: Parties::default(),
            status,
            error_code,
            status_dlr_done: None,
            created_at: Timestamp(at),
            updated_at: Timestamp(at),
        }
    }

    fn covered(piece: &Piece) -> (u64, u64) {
        match *piece {
            Piece::Buckets { width, first, last } => {
                (first * width.micros(), last * width.micros())
            }
            Piece::Exact { from, to } => (from, to),
        }
    }

    #[test]
    fn a_message_counts_by_status_and_error_all_time_and_in_its_hour_and_minute() {
        assert_eq!(T % HOUR, 0);
        let at = T + 2 * MINUTE + 5;
        let failed = state(Some(KnownStatus::Failed), Some(30007), at);
        let (hour, minute) = (T / HOUR, T / MINUTE + 2);
        let mut expected = Vec::new();
        for counted in [Counted::Status(KnownStatus::Failed), Counted::Error(30007)] {
            for span in [
                Span::AllTime,
                Span::Bucket(Width::Hour, hour),
                Span::Bucket(Width::Minute, minute),
            ] {
                expected.push(Counter { span, counted });
            }
        }
        assert_eq!(counters(&failed), expected);

        let sent = state(Some(KnownStatus::Sent), None, at);
        assert_eq!(counters(&sent).len(), 3, "no error code, no error counters");
        assert!(counters(&sent)
            .iter()
            .all(|c| c.counted == Counted::Status(KnownStatus::Sent)));

        let unknown = state(None, Some(30007), at);
        assert_eq!(counters(&unknown), [], "no known status, no counter");
    }

    #[test]
    fn open_window_ends_close_at_the_epoch_and_an_hour_after_now() {
        let now = Timestamp(T);
        assert_eq!(window(None, None, now), (0, T + HOUR));
        assert_eq!(
            window(Some(Timestamp(5)), Some(Timestamp(T + 2 * HOUR)), now),
            (5, T + HOUR),
            "a bound in the future is brought back"
        );
        assert_eq!(window(Some(Timestamp(5)), Some(Timestamp(7)), now), (5, 7));
    }

    #[test]
    fn a_window_is_whole_hours_then_whole_minutes_then_exact_edges() {
        let (from, to) = (T - 90 * MINUTE - 7, T + 2 * HOUR + 3 * MINUTE + 11);
        assert_eq!(
            split(from, to),
            [
                Piece::Buckets {
                    width: Width::Hour,
                    first: T / HOUR - 1,
                    last: T / HOUR + 2
                },
                Piece::Buckets {
                    width: Width::Minute,
                    first: (T - 90 * MINUTE) / MINUTE,
                    last: (T - HOUR) / MINUTE
                },
                Piece::Exact {
                    from,
                    to: T - 90 * MINUTE
                },
                Piece::Buckets {
                    width: Width::Minute,
                    first: (T + 2 * HOUR) / MINUTE,
                    last: (T + 2 * HOUR) / MINUTE + 3
                },
                Piece::Exact {
                    from: T + 2 * HOUR + 3 * MINUTE,
                    to
                },
            ]
        );
    }

    #[test]
    fn aligned_short_and_empty_windows() {
        assert_eq!(
            split(T, T + HOUR),
            [Piece::Buckets {
                width: Width::Hour,
                first: T / HOUR,
                last: T / HOUR + 1
            }]
        );
        assert_eq!(
            split(T + 1, T + 2),
            [Piece::Exact {
                from: T + 1,
                to: T + 2
            }],
            "under a minute: counted exactly"
        );
        assert_eq!(
            split(T + MINUTE, T + 3 * MINUTE),
            [Piece::Buckets {
                width: Width::Minute,
                first: T / MINUTE + 1,
                last: T / MINUTE + 3
            }],
            "no whole hour: minutes"
        );
        assert_eq!(split(T, T), []);
        assert_eq!(split(T + 1, T), []);
    }

    #[test]
    fn the_pieces_of_a_window_cover_it_exactly_once() {
        let edges = [
            0,
            1,
            MINUTE - 1,
            MINUTE,
            HOUR - 1,
            HOUR,
            HOUR + 1,
            T - 1,
            T,
            T + 59 * MINUTE + 1,
            T + DAY + 1,
        ];
        for from in edges {
            for to in edges {
                let mut pieces: Vec<(u64, u64)> = split(from, to).iter().map(covered).collect();
                pieces.sort_unstable();
                let mut at = from;
                for (start, end) in &pieces {
                    assert_eq!(*start, at, "[{from}, {to}): a gap or an overlap");
                    assert!(start < end, "[{from}, {to}): an empty piece");
                    at = *end;
                }
                assert_eq!(at, from.max(to), "[{from}, {to}) is covered to its end");
            }
        }
        assert!(split(0, DAY).iter().all(|piece| matches!(
            piece,
            Piece::Buckets {
                width: Width::Hour,
                ..
            }
        )));
    }
}
