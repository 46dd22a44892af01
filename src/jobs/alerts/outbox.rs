//! The notifications waiting to go out, sent with forwarding's machinery: its window
//! (`forwarding::window`: what is due, backoff with jitter, giving up after 24 hours, and
//! per target only the earliest notification in flight, so that a resolution never
//! overtakes its firing) and its delivery (`forwarding::deliver`: one client, Standard
//! Webhooks signing, what an answer means). What it holds is saved with the alerts' state
//! (`state::Notification`), so a notification waits in the store until a receiver
//! acknowledges it, whichever replica sends it.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::{Id, JoinError, JoinSet};

use super::state::Notification;
use crate::domain::Timestamp;
use crate::forwarding::deliver::{self, Attempt, Post};
use crate::forwarding::window::{AfterFailure, Pending, Window};
use crate::forwarding::{Outcome, Retry};

/// Notifications in flight at once, at most.
const CONCURRENCY: usize = 16;

/// The outbox of the replica that evaluates.
#[derive(Default)]
pub struct Outbox {
    window: Window,
    notifications: HashMap<u64, Notification>,
    deliveries: JoinSet<(u64, Attempt)>,
    /// The notification each delivery task sends, to find it again if the task fails.
    tasks: HashMap<Id, u64>,
}

/// How a delivery ended, for the caller to log and count.
pub enum Finished {
    Delivered(Notification),
    Retry(Notification),
    GaveUp(Notification),
}

impl Outbox {
    /// The outbox as saved: every notification due at once (a retry's wait is not saved).
    pub fn of(saved: &[Notification]) -> Outbox {
        let mut outbox = Outbox::default();
        for notification in saved {
            outbox.add(notification.clone());
        }
        outbox
    }

    /// Adds a notification to send.
    pub fn add(&mut self, notification: Notification) {
        let mut pending = Pending::new(
            // One target at a time: a rule's notifications to one URL go in order.
            format!("{}\n{}", notification.rule, notification.channel.url()),
            notification.webhook_id.clone(),
            Timestamp::now(),
            Arc::from(notification.body.as_bytes()),
        );
        pending.attempts = notification.attempts;
        pending.first_attempt = notification.first_attempt.map(Timestamp);
        pending.last_error = notification.last_error.clone();
        self.window.insert(notification.id, pending);
        self.notifications.insert(notification.id, notification);
    }

    /// Every notification waiting, with its attempts so far, by id: what is saved.
    pub fn saved(&self) -> Vec<Notification> {
        let mut saved: Vec<Notification> = self
            .window
            .iter()
            .filter_map(|(id, pending)| {
                let mut notification = self.notifications.get(&id)?.clone();
                notification.attempts = pending.attempts;
                notification.first_attempt = pending.first_attempt.map(|at| at.0);
                notification.last_error = pending.last_error.clone();
                Some(notification)
            })
            .collect();
        saved.sort_by_key(|notification| notification.id);
        saved
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Starts the deliveries that are due; answers when the next one falls due.
    pub fn start_due(&mut self, client: &reqwest::Client) -> Option<Timestamp> {
        let room = CONCURRENCY.saturating_sub(self.window.in_flight());
        let (started, next_due) = self.window.start_due(Timestamp::now(), room);
        for id in started {
            let Some(notification) = self.notifications.get(&id) else {
                continue;
            };
            let (client, notification) = (client.clone(), notification.clone());
            let task = self.deliveries.spawn(async move {
                let attempt = match reqwest::Url::parse(notification.channel.url()) {
                    Ok(url) => {
                        let secret = notification.channel.secret();
                        let post = Post {
                            url: &url,
                            body: notification.body.as_bytes(),
                            signed: secret
                                .as_ref()
                                .map(|s| (s, notification.webhook_id.as_str())),
                        };
                        deliver::post(&client, post).await
                    }
                    Err(error) => Attempt::Unreachable(format!("the URL is not valid: {error}")),
                };
                (id, attempt)
            });
            self.tasks.insert(task.id(), id);
        }
        next_due
    }

    /// Waits for a delivery in flight to end; `None` at once when none is in flight.
    pub async fn next_finished(&mut self) -> Option<Result<(Id, (u64, Attempt)), JoinError>> {
        self.deliveries.join_next_with_id().await
    }

    /// Takes the outcome of a delivery: the notification leaves the outbox when
    /// acknowledged, or when it has failed for 24 hours; else it is tried again later.
    /// Answers the attempt's outcome (delivered, rejected or unreachable) with it.
    pub fn finished(
        &mut self,
        joined: Result<(Id, (u64, Attempt)), JoinError>,
        retry: &Retry,
    ) -> Option<(Outcome, Finished)> {
        let (id, attempt) = match joined {
            Ok((task, outcome)) => {
                self.tasks.remove(&task);
                outcome
            }
            Err(error) => {
                let id = self.tasks.remove(&error.id())?;
                (
                    id,
                    Attempt::Unreachable(format!("the delivery failed: {error}")),
                )
            }
        };
        let (outcome, error) = match attempt {
            Attempt::Delivered => {
                self.window.delivered(id);
                let sent = self.notifications.remove(&id)?;
                return Some((Outcome::Delivered, Finished::Delivered(sent)));
            }
            Attempt::Rejected(status) => (Outcome::Rejected, format!("answered {status}")),
            Attempt::Unreachable(error) => (Outcome::Unreachable, error),
        };
        let after = self
            .window
            .failed(id, error.clone(), Timestamp::now(), retry, fastrand::f64());
        let finished = match after? {
            AfterFailure::GaveUp { .. } => Finished::GaveUp(self.notifications.remove(&id)?),
            AfterFailure::RetryAt(_) => {
                let attempts = self.window.get(id)?.attempts;
                let notification = self.notifications.get_mut(&id)?;
                notification.attempts = attempts;
                notification.last_error = Some(error);
                Finished::Retry(notification.clone())
            }
        };
        Some((outcome, finished))
    }
}
