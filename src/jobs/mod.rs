//! The background jobs (the reconciler, retention, the removal of old listing history and
//! the alerts) run on one replica at a time: the one holding the store's job lease (see `Store::lead`).
//! With sled there is one process and the lease is never lost. The jobs are one owned task
//! that `serve` stops and joins before it closes the store; a job stopped part-way (the
//! lease lost, or the service stopping) leaves no write half-done, since each store write
//! is atomic.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod alerts;
pub mod reconciler;
pub mod retention;

use crate::metrics::{Lease, Metrics};
use crate::store::Store;
use alerts::Alerts;
use reconciler::Reconciler;
use retention::Retention;

/// How often the leader removes listing history no cursor can need (with sled a scan of
/// the listing indexes: about a second per million messages).
const FORGET_EVERY: Duration = Duration::from_secs(5 * 60);

/// The running job task.
pub struct Jobs {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Jobs {
    /// Starts waiting for the lease; while it is held, runs the jobs. A replica that has to
    /// wait says so once (see `store/postgres/leader.rs`); taking and losing the lease are
    /// logged and shown in `/metrics` (`statushook_leader{job="jobs"}`).
    pub fn start(
        store: Store,
        mut reconciler: Option<Reconciler>,
        retention: Option<Retention>,
        alerts: Alerts,
        metrics: Arc<Metrics>,
    ) -> Jobs {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let mut lease = tokio::select! {
                    lease = store.lead() => lease,
                    _ = stopped.changed() => return,
                };
                tracing::info!("this replica runs the background jobs");
                metrics.lease_taken(Lease::Jobs);
                tokio::select! {
                    _ = lease.lost() => {
                        tracing::warn!("lost the job lease; another replica takes over");
                    }
                    _ = run(&store, reconciler.as_mut(), retention.as_ref(), &alerts, stopped.clone()) => {}
                    _ = stopped.changed() => return,
                }
                metrics.lease_lost(Lease::Jobs);
            }
        });
        Jobs { stop, task }
    }

    /// Stops the jobs wherever they are and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    store: &Store,
    reconciler: Option<&mut Reconciler>,
    retention: Option<&Retention>,
    alerts: &Alerts,
    stopped: watch::Receiver<bool>,
) {
    let forget = async {
        loop {
            tokio::time::sleep(FORGET_EVERY).await;
            let started = std::time::Instant::now();
            match store.forget_history().await {
                Ok(removed) => tracing::debug!(
                    removed,
                    took_ms = started.elapsed().as_millis() as u64,
                    "removed old listing history"
                ),
                Err(error) => tracing::warn!(%error, "removing old listing history failed"),
            }
        }
    };
    let reconcile = async {
        match reconciler {
            Some(reconciler) => reconciler.run().await,
            None => std::future::pending().await,
        }
    };
    let expire = async {
        match retention {
            Some(retention) => retention.run(stopped).await,
            None => std::future::pending().await,
        }
    };
    tokio::join!(forget, reconcile, expire, alerts.run());
}
