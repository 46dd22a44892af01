//! Leader election for the background jobs: the replica whose session holds an advisory
//! lock runs them. The lock lives as long as the session, so when a leader dies (its
//! process ends, its connection drops), PostgreSQL releases it and another replica, which
//! tries again every [`RETRY`], takes over within seconds.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_postgres::Client;

use super::DatabaseUrl;

/// The advisory lock key of the job lease (distinct from the feed and migration keys).
pub const LEADER_LOCK: i64 = 7_342_002;
/// The advisory lock key of the forwarding lease: forwarding may lead on another replica.
pub const FORWARD_LOCK: i64 = 7_342_003;
/// How often a follower tries to take the lease.
const RETRY: Duration = Duration::from_secs(2);
/// How often a leader checks that its session (and so its lock) is still alive.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The job lease of this replica, held by a dedicated session. Dropping it ends the
/// session, which releases the lock.
pub struct Lease {
    /// Turns true once the session has ended or stopped answering.
    lost: watch::Receiver<bool>,
    /// Watches the session: ends with it, or when a heartbeat goes unanswered.
    watchdog: JoinHandle<()>,
    driver: AbortHandle,
}

impl Lease {
    /// Resolves when the lease is lost: the session broke or stopped answering. Cancel-safe:
    /// a job may wait for it afresh in every round of its loop (the forwarder does), since
    /// the heartbeat runs in a task of its own, whose schedule no caller restarts.
    pub async fn lost(&mut self) {
        // An error means the watchdog is gone, which also ends the lease.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    fn watch(client: Client, mut driver: JoinHandle<()>) -> Lease {
        let (tell, lost) = watch::channel(false);
        let abort = driver.abort_handle();
        let watchdog = tokio::spawn(async move {
            let heartbeat = async {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let alive =
                        tokio::time::timeout(HEARTBEAT * 2, client.simple_query("SELECT 1"));
                    if !matches!(alive.await, Ok(Ok(_))) {
                        return;
                    }
                }
            };
            // A session the server ended (and its lock with it) is noticed at once; one that
            // stops answering, within three heartbeats.
            tokio::select! {
                _ = &mut driver => {}
                _ = heartbeat => {}
            }
            let _ = tell.send(true);
        });
        Lease {
            lost,
            watchdog,
            driver: abort,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.watchdog.abort();
        self.driver.abort();
    }
}

/// Waits until this replica takes the lease on the advisory lock `key` (the job lease, the
/// forwarding lease, or a replica's own owner key, see `idempotency.rs`). A replica that
/// finds the job or forwarding lease held by another says once that it stands by.
pub async fn acquire(url: &DatabaseUrl, key: i64) -> Lease {
    let mut session: Option<(Client, JoinHandle<()>)> = None;
    let mut said = false;
    loop {
        if session
            .as_ref()
            .is_none_or(|(_, driver)| driver.is_finished())
        {
            session = connect(url).await;
        }
        if let Some((client, _)) = &session {
            match client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .and_then(|row| row.try_get::<_, bool>(0))
            {
                Ok(true) => {
                    if let Some((client, driver)) = session.take() {
                        return Lease::watch(client, driver);
                    }
                }
                Ok(false) => {
                    if let Some(what) = lease_name(key).filter(|_| !said) {
                        tracing::info!("another replica runs {what}; this one stands by");
                        said = true;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, key, "cannot ask for a lease");
                    session = None;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// What the lease on `key` is for, as the log names it; `None` for an owner key.
fn lease_name(key: i64) -> Option<&'static str> {
    match key {
        LEADER_LOCK => Some("the background jobs"),
        FORWARD_LOCK => Some("forwarding"),
        _ => None,
    }
}

async fn connect(url: &DatabaseUrl) -> Option<(Client, JoinHandle<()>)> {
    match url.session().await {
        Ok((client, connection)) => {
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            Some((client, driver))
        }
        Err(error) => {
            let error = super::url::connect_failed(&error);
            tracing::warn!(%error, "cannot connect for a lease");
            None
        }
    }
}
