//! Waiting for what a service does in the background (a job's pass, a lease taken, a queue
//! drained): look, and look again a moment later, until it shows or the time is up. The
//! time is a guard against a test that would hang, not a measure of speed: a test that
//! bounds how long something takes asserts that itself.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for a background effect before it fails.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long it waits between two looks.
const INTERVAL: Duration = Duration::from_millis(20);

/// Looks with `look` until it finds what it looks for (`Ok`), and answers that. `Err`
/// carries what it saw instead, which the failure shows when the time is up.
pub async fn until<T, F, Fut>(what: &str, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = match look().await {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            if seen.is_empty() {
                panic!("timed out waiting for {what}");
            }
            panic!("timed out waiting for {what}: {seen}");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Waits until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until(what, || {
        let holds = check();
        async move { holds.await.then_some(()).ok_or_else(String::new) }
    })
    .await
}
