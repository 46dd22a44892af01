//! Retention: with `STATUSHOOK_RETENTION`, messages whose `updated_at` is older than that
//! are deleted with every trace of them (see `store/lifecycle.rs`).
//!
//! A pass runs every `STATUSHOOK_RETENTION_INTERVAL` and deletes in batches
//! (`Store::expiry_batch`: 100 messages with sled, 1,000 with PostgreSQL), oldest first,
//! until none is left, one batch at a time: each batch is one atomic store write (with
//! sled a writer command that callbacks queue behind; with PostgreSQL a transaction of its
//! own that holds only the locks of its messages), so callbacks wait for at most one batch
//! however much there is to delete. After each batch
//! the job pauses as long as the batch took, so it never has more than half of the store's
//! time. It is one of the background jobs (`jobs.rs`): it runs on the replica holding the
//! job lease, one replica at a time, and stops between two batches when the service
//! shuts down, before the store is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::metrics::{Deletion, Metrics};
use crate::store::{Store, StoreError};

pub struct Retention {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Messages last updated longer ago than this are deleted.
    pub age: Duration,
    /// The pause between two passes.
    pub interval: Duration,
}

impl Retention {
    /// Runs passes until `stop` turns true (or its sender is gone).
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            match self.pass(&stop).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "retention deleted old messages"),
                Err(error) => tracing::warn!(%error, "retention pass failed"),
            }
        }
    }

    /// Deletes every message older than the retention age, a batch at a time; answers
    /// how many. Returns early when `stop` turns true.
    pub async fn pass(&self, stop: &watch::Receiver<bool>) -> Result<u64, StoreError> {
        let age = self.age.as_micros() as u64;
        // By the store's clock, which stamped `updated_at`.
        let before = Timestamp(self.store.now().await?.0.saturating_sub(age));
        let mut total = 0;
        while !*stop.borrow() {
            let started = std::time::Instant::now();
            let deleted = self.store.expire(before, self.store.expiry_batch()).await?;
            self.metrics.deleted(Deletion::Retention, deleted);
            total += deleted;
            if deleted == 0 {
                break;
            }
            tokio::time::sleep(started.elapsed()).await;
        }
        Ok(total)
    }
}
