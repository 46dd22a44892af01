//! How a replica learns that the change feed grew, without asking the database per
//! waiter: one session per replica `LISTEN`s on [`CHANNEL`], which every transaction that
//! takes feed positions notifies with the last one it took (migration 004, in the same
//! function that takes them, so that imports notify too). The listener publishes the
//! highest position heard on a watch channel; long polls (`GET /v1/events?wait=`) and the
//! forwarder wait on that channel, and on the writer's own watermark for this replica's
//! commits.
//!
//! A notification sent while the session is down is lost, so on every (re)connection the
//! listener reads the feed's end once after `LISTEN`, and while anyone waits the feed's end
//! is also read every [`FALLBACK`] through the pool: a waiter is woken at most that late
//! whatever happens to the listening session. The session runs over the URL's TLS like
//! every other, and is taken again after a loss.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::url::{connect_failed, Connection};
use super::{unavailable, watermark, DatabaseUrl};
use crate::store::StoreError;

/// The channel `statushook_take_seqs` notifies (see `migrations/004_feed_notify.sql`).
const CHANNEL: &str = "statushook_feed";
/// How often the feed's end is read while anyone waits, in case a notification was lost.
const FALLBACK: Duration = Duration::from_secs(5);
/// How long the listener waits before connecting again after a loss.
const RECONNECT: Duration = Duration::from_secs(1);
/// How often the listening session is checked: a session whose server vanished without
/// closing it would otherwise wait for a notification forever.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Starts the listener and the fallback reads; they publish on `committed` the highest
/// feed position known committed, by any replica. Aborting the task stops both.
pub fn spawn(url: DatabaseUrl, pool: Pool, committed: Arc<watch::Sender<u64>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(listen(&url, &committed), fallback(&pool, &committed));
    })
}

/// Raises `committed` to `seq` if that is higher.
fn publish(committed: &watch::Sender<u64>, seq: u64) {
    committed.send_if_modified(|known| {
        let newer = seq > *known;
        if newer {
            *known = seq;
        }
        newer
    });
}

async fn listen(url: &DatabaseUrl, committed: &Arc<watch::Sender<u64>>) {
    // Logged once per outage, not at every attempt.
    let mut down = false;
    loop {
        let ended = session(url, committed, &mut down).await;
        if !down {
            tracing::warn!(
                error = %ended,
                "the change feed's listening session ended; long polls are woken every {}s \
                 until it is back",
                FALLBACK.as_secs()
            );
            down = true;
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One listening session, from connecting until it fails; answers why it ended.
async fn session(
    url: &DatabaseUrl,
    committed: &Arc<watch::Sender<u64>>,
    down: &mut bool,
) -> StoreError {
    let (client, connection) = match url.session().await {
        Ok(connected) => connected,
        Err(error) => return connect_failed(&error),
    };
    let mut driver = Driver(tokio::spawn(drive(connection, Arc::clone(committed))));
    let listening = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(unavailable)?;
        // What was committed while no session listened.
        let end = client
            .query_one("SELECT coalesce(max(seq), 0) FROM events", &[])
            .await
            .map_err(unavailable)?;
        let end: i64 = end.try_get(0).map_err(unavailable)?;
        Ok::<_, StoreError>(u64::try_from(end).unwrap_or(0))
    };
    match listening.await {
        Ok(end) => publish(committed, end),
        Err(error) => return error,
    }
    if std::mem::take(down) {
        tracing::info!("the change feed's listening session is back");
    }
    loop {
        tokio::select! {
            ended = &mut driver.0 => {
                return match ended {
                    Ok(Err(error)) => unavailable(error),
                    _ => StoreError::unavailable("the server closed the session"),
                };
            }
            _ = tokio::time::sleep(HEARTBEAT) => {
                let answered = tokio::time::timeout(HEARTBEAT, client.simple_query("")).await;
                match answered {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return unavailable(error),
                    Err(_) => return StoreError::unavailable("the session stopped answering"),
                }
            }
        }
    }
}

/// Drives the session's connection and publishes each notification's position.
async fn drive(
    mut connection: Connection,
    committed: Arc<watch::Sender<u64>>,
) -> Result<(), tokio_postgres::Error> {
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(notification) = message? {
            if let Ok(seq) = notification.payload().parse() {
                publish(&committed, seq);
            }
        }
    }
    Ok(())
}

/// Ends the connection's task with the session that owns it.
struct Driver(JoinHandle<Result<(), tokio_postgres::Error>>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the feed's end every [`FALLBACK`] while anyone waits on `committed`.
async fn fallback(pool: &Pool, committed: &watch::Sender<u64>) {
    loop {
        tokio::time::sleep(FALLBACK).await;
        if committed.receiver_count() == 0 {
            continue;
        }
        let Ok(client) = pool.get().await else {
            continue;
        };
        if let Ok(end) = watermark(&client).await {
            publish(committed, end);
        }
    }
}
