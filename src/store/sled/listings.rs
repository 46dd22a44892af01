//! Which of the writer's moves leave history behind. A store nobody pages keeps none; a
//! listing's first page registers here, and from then on moves keep their old positions
//! for as long as its cursor may read them. The writer asks before each group and
//! publishes after it; a listing that registers meanwhile waits here for that group.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::store::{StoreError, HISTORY_KEPT};

/// Which moves leave history behind.
///
/// A position a message leaves (history) is read only by listings whose snapshot precedes
/// the move. So a listing registers when it takes its snapshot ([`Listings::snapshot`]),
/// and for [`HISTORY_KEPT`] after that every move keeps its old position as history, as
/// long as a cursor of that listing can be used. Without a registered listing, the writer
/// removes the old position instead (one write either way): a store nobody pages holds no
/// history at all, and the sweep of old history has nothing to do.
///
/// A listing that registers while the writer applies a group which keeps no history waits
/// for that group to be published, and takes its snapshot after it: every move of that
/// group is then before the snapshot, where history is never read.
pub struct Listings {
    state: Mutex<ListingState>,
    published: Condvar,
}

struct ListingState {
    /// Until when (writer's clock, microseconds) a registered listing may read history.
    keep_until: u64,
    /// A group that keeps no history is being applied.
    unkept_group: bool,
}

/// How long a listing waits for the writer to publish a group before it gives up (a
/// group takes milliseconds; a minute means the writer is stuck).
const PUBLISH_WAIT: Duration = Duration::from_secs(60);

impl Listings {
    /// `keep_until`: 0 for a new store; for one that may have served cursors before it
    /// was reopened, the time those may still be used.
    pub fn new(keep_until: u64) -> Listings {
        Listings {
            state: Mutex::new(ListingState {
                keep_until,
                unkept_group: false,
            }),
            published: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ListingState> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// For the writer, before it plans a group: whether the group's moves keep history.
    pub(super) fn keep_history(&self, now: Timestamp) -> bool {
        let mut state = self.lock();
        let keep = now.0 < state.keep_until;
        state.unkept_group = !keep;
        keep
    }

    /// For the writer, after a group is durable: publishes the new watermark and lets
    /// waiting listings take their snapshot. After a failed group (`None`) the flag stays:
    /// its moves may be in the tree without history, under a watermark that no longer
    /// grows, so no listing takes a snapshot from then on (the service is exiting).
    pub(super) fn publish(&self, watermark: &watch::Sender<u64>, clock: Option<Timestamp>) {
        let mut state = self.lock();
        if let Some(clock) = clock {
            watermark.send_replace(clock.0);
            state.unkept_group = false;
        }
        self.published.notify_all();
    }

    /// For a listing's first page: registers the listing and returns its snapshot.
    pub fn snapshot(
        &self,
        watermark: &watch::Sender<u64>,
        failed: &watch::Sender<Option<StoreError>>,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let until = Timestamp::now()
            .0
            .saturating_add(HISTORY_KEPT.as_micros() as u64);
        state.keep_until = state.keep_until.max(until);
        let deadline = Instant::now() + PUBLISH_WAIT;
        while state.unkept_group {
            if let Some(error) = failed.borrow().clone() {
                return Err(error);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::unavailable(
                    "the writer did not publish a group",
                ));
            }
            state = self
                .published
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        Ok(*watermark.borrow())
    }
}
