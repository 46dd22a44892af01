//! Alerts: rules that watch delivery (`PUT /v1/alerts/rules/{name}`), evaluated every
//! `STATUSHOOK_ALERT_INTERVAL` by the replica that runs the background jobs, and the
//! notifications they send when they start firing and when they resolve.
//!
//! Each pass reads the rules, reads each rule's value from the store's counters
//! ([`measure`]: the cost does not grow with the number of messages), moves each alert
//! between `ok` and `firing` ([`state::judge`]: `min_messages`, and `resolve_below` for
//! hysteresis), and for each move puts one notification per channel into the outbox, in
//! the same write as the move ([`state`]). Notifications are sent from the outbox with
//! forwarding's machinery ([`outbox`]), retried with backoff until acknowledged, and leave
//! it only then; their bodies are decided when the alert moves ([`notify`]). Since the
//! state and the outbox are one value in the store, written only over what was read, a
//! leader's death or a change of leader neither repeats a notification nor loses one: the
//! next leader finds the alert firing, and what was not acknowledged still waiting.
//!
//! A `silence` rule that fires asks the reconciler to cover the messages concerned on its
//! next pass ([`Cover`]), without waiting for `STATUSHOOK_RECONCILE_AFTER`.

pub mod measure;
pub mod notify;
pub mod outbox;
pub mod rule;
pub mod state;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::reconciler::Cover;
use crate::config::PublicUrl;
use crate::domain::Timestamp;
use crate::forwarding::{deliver, Outcome, Retry};
use crate::store::{Store, StoreError};
use measure::Reader;
use notify::Incident;
use outbox::{Finished, Outbox};
use rule::{Channel, Metric, Rule, RuleName};
use state::{Alert, Event, Notification, Rules, State, Verdict};

/// The longest wait between two retries of a notification.
const RETRY_MAX: Duration = Duration::from_secs(600);
/// How long a pass waits after a failed read of the store before trying again.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The alerts job: what it needs to evaluate and notify.
pub struct Alerts {
    store: Store,
    interval: Duration,
    public_url: PublicUrl,
    /// The reconciler's, when it runs.
    cover: Option<Cover>,
    client: reqwest::Client,
    retry: Retry,
    metrics: Arc<AlertMetrics>,
}

/// What `/metrics` shows of the alerts: notifications by outcome, and the alerts firing at
/// the last evaluation on this replica (0 on a replica that does not evaluate).
#[derive(Debug, Default)]
pub struct AlertMetrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    firing: AtomicU64,
}

impl AlertMetrics {
    /// The alert lines of `/metrics`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP statushook_alerts_firing Alerts firing at the last evaluation (on the replica that evaluates; 0 elsewhere).\n\
             # TYPE statushook_alerts_firing gauge\n\
             statushook_alerts_firing {}\n\
             # HELP statushook_alert_notifications_total Alert notification attempts by outcome.\n\
             # TYPE statushook_alert_notifications_total counter",
            self.firing.load(Relaxed)
        );
        for outcome in Outcome::ALL {
            let _ = writeln!(
                out,
                "statushook_alert_notifications_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                self.outcomes[outcome as usize].load(Relaxed)
            );
        }
    }
}

/// Sets the firing gauge back to 0 when this replica stops evaluating.
struct Evaluating<'a>(&'a AlertMetrics);

impl Drop for Evaluating<'_> {
    fn drop(&mut self) {
        self.0.firing.store(0, Relaxed);
    }
}

impl Alerts {
    pub fn new(
        store: Store,
        interval: Duration,
        public_url: PublicUrl,
        cover: Option<Cover>,
    ) -> anyhow::Result<Alerts> {
        Ok(Alerts {
            store,
            interval,
            public_url,
            cover,
            client: deliver::client(4)?,
            // Retried as forwards are, from the interval (at most 5 s) doubling to 10
            // minutes: a resolution should not wait an hour behind a receiver that was down.
            retry: Retry {
                min: interval.min(Duration::from_secs(5)),
                max: RETRY_MAX,
                ..Retry::default()
            },
            metrics: Arc::default(),
        })
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> Arc<AlertMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Evaluates and notifies for as long as it is polled: the jobs task polls it while
    /// this replica holds the job lease, and drops it (deliveries in flight with it) when
    /// the lease is lost.
    pub async fn run(&self) {
        let _evaluating = Evaluating(&self.metrics);
        let mut leader = loop {
            match Leader::load(self).await {
                Ok(leader) => break leader,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the alert state; trying again");
                    tokio::time::sleep(AFTER_FAILURE).await;
                }
            }
        };
        let mut next_pass = Instant::now();
        let mut next_due: Option<Instant> = None;
        loop {
            let due = next_due.unwrap_or(next_pass);
            // When a pass began, for the log line that times it with its save.
            let mut evaluated = None;
            tokio::select! {
                Some(joined) = leader.outbox.next_finished() => {
                    if let Some((attempt, finished)) = leader.outbox.finished(joined, &self.retry) {
                        self.metrics.outcomes[attempt as usize].fetch_add(1, Relaxed);
                        if let Finished::GaveUp(_) = finished {
                            self.metrics.outcomes[Outcome::GivenUp as usize].fetch_add(1, Relaxed);
                        }
                        leader.report(finished);
                    }
                }
                _ = tokio::time::sleep_until(next_pass) => {
                    let started = std::time::Instant::now();
                    // Passes keep to the interval however long each takes.
                    next_pass += self.interval;
                    match leader.pass(self).await {
                        Ok(rules) => {
                            evaluated = Some((started, rules));
                            next_pass = next_pass.max(Instant::now());
                        }
                        Err(error) => {
                            tracing::warn!(%error, "evaluating the alert rules failed; trying again");
                            next_pass = Instant::now() + AFTER_FAILURE.min(self.interval);
                        }
                    }
                }
                _ = tokio::time::sleep_until(due) => {}
            }
            if let Err(error) = leader.save(self).await {
                tracing::warn!(%error, "cannot save the alert state; trying again");
            }
            if let Some((started, rules)) = evaluated {
                let firing = leader.state.alerts.values().filter(|a| a.firing).count();
                self.metrics.firing.store(firing as u64, Relaxed);
                tracing::debug!(
                    rules,
                    took_ms = started.elapsed().as_secs_f64() * 1e3,
                    "alert rules evaluated"
                );
            }
            // Nothing goes out before the state that holds it is saved: a notification
            // sent and then lost with an unsaved state would be sent again by the next
            // leader.
            next_due = match leader.unsaved {
                false => leader.outbox.start_due(&self.client).map(|due| {
                    let wait = due.0.saturating_sub(Timestamp::now().0);
                    Instant::now() + Duration::from_micros(wait)
                }),
                true => Some(Instant::now() + AFTER_FAILURE),
            };
        }
    }
}

/// The state of the replica that evaluates, between passes.
struct Leader {
    state: State,
    /// The stored value this replica last read or wrote: its next write goes over it
    /// only.
    stored: Option<Vec<u8>>,
    outbox: Outbox,
    /// The state changed since it was last saved.
    unsaved: bool,
}

impl Leader {
    async fn load(alerts: &Alerts) -> Result<Leader, StoreError> {
        let (state, stored) = State::load(&alerts.store).await?;
        let outbox = Outbox::of(&state.outbox);
        if !outbox.is_empty() {
            tracing::info!(waiting = state.outbox.len(), "alert notifications resume");
        }
        Ok(Leader {
            state,
            stored,
            outbox,
            unsaved: false,
        })
    }

    /// One evaluation of every rule; answers how many rules there were.
    async fn pass(&mut self, alerts: &Alerts) -> Result<usize, StoreError> {
        let (Rules(rules), _) = Rules::load(&alerts.store).await?;
        let now = alerts.store.now().await?;
        let mut reader = Reader::new(&alerts.store, alerts.cover.as_ref(), now);
        for (name, rule) in &rules {
            let reading = match reader.read(rule).await {
                Ok(reading) => reading,
                Err(error) => {
                    tracing::warn!(rule = %name, %error, "cannot read an alert rule's value");
                    continue;
                }
            };
            let alert = self
                .state
                .alerts
                .entry(name.clone())
                .or_insert_with(|| Alert::new(now.0));
            alert.value = reading.value;
            alert.messages = reading.messages;
            alert.complete = reading.complete;
            let verdict = state::judge(rule, alert.firing, reading.value, reading.messages);
            if rule.metric == Metric::Silence && (alert.firing || verdict == Verdict::Fire) {
                if let (Some(cover), Some(until)) = (&alerts.cover, reading.until) {
                    cover.ask(until);
                }
            }
            match verdict {
                Verdict::Stay => continue,
                Verdict::Fire => {
                    let samples = measure::samples(&alerts.store, rule, &reading)
                        .await
                        .unwrap_or_default();
                    let link = notify::dashboard_link(
                        &alerts.public_url,
                        rule.metric,
                        &rule.filter,
                        reading.since,
                        reading.until,
                    );
                    alert.fire(now.0, rule);
                    let incident = Incident {
                        top_errors: reading.top_errors.clone(),
                        sample_sids: samples.iter().map(|sid| sid.as_str().to_owned()).collect(),
                        link: Some(link),
                        ..incident(name, rule, alert, Event::Firing, now)
                    };
                    tracing::warn!(rule = %name, value = ?reading.value, "alert firing");
                    self.enqueue(alerts, &incident, &rule.notify);
                }
                Verdict::Resolve => {
                    let since = Timestamp(alert.since);
                    let fired = alert.resolve(now.0).unwrap_or_else(|| rule.clone());
                    let incident = Incident {
                        since,
                        top_errors: reading.top_errors.clone(),
                        ..incident(name, rule, alert, Event::Resolved, now)
                    };
                    tracing::info!(rule = %name, value = ?reading.value, "alert resolved");
                    self.enqueue(alerts, &incident, &fired.notify);
                }
            }
        }
        // A rule deleted while firing resolves: whoever was paged hears that it is over.
        let gone: Vec<RuleName> = self
            .state
            .alerts
            .keys()
            .filter(|name| !rules.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            let Some(mut alert) = self.state.alerts.remove(&name) else {
                continue;
            };
            if !alert.firing {
                continue;
            }
            let since = Timestamp(alert.since);
            if let Some(fired) = alert.resolve(now.0) {
                let incident = Incident {
                    since,
                    reason: Some("its rule was deleted"),
                    ..incident(&name, &fired, &alert, Event::Resolved, now)
                };
                tracing::info!(rule = %name, "alert resolved: its rule was deleted");
                self.enqueue(alerts, &incident, &fired.notify);
            }
        }
        self.state.evaluated_at = Some(now.0);
        self.unsaved = true;
        Ok(rules.len())
    }

    /// Puts one notification of `incident` per channel into the outbox.
    fn enqueue(&mut self, alerts: &Alerts, incident: &Incident, channels: &[Channel]) {
        for channel in channels {
            let id = self.state.next_id;
            self.state.next_id += 1;
            let body = notify::body(channel, incident, &alerts.public_url).to_string();
            self.outbox.add(Notification {
                id,
                rule: incident.rule.clone(),
                event: incident.event,
                channel: channel.clone(),
                webhook_id: notify::webhook_id(incident),
                body,
                attempts: 0,
                first_attempt: None,
                last_error: None,
            });
        }
        self.unsaved = true;
    }

    /// Logs what became of a delivery.
    fn report(&mut self, finished: Finished) {
        self.unsaved = true;
        match finished {
            Finished::Delivered(sent) => tracing::info!(
                rule = %sent.rule,
                event = sent.event.as_str(),
                channel = sent.channel.kind(),
                "alert notification delivered"
            ),
            Finished::Retry(failed) => tracing::warn!(
                rule = %failed.rule,
                event = failed.event.as_str(),
                channel = sent_to(&failed),
                attempts = failed.attempts,
                error = failed.last_error.as_deref().unwrap_or_default(),
                "an alert notification failed; it will be retried"
            ),
            Finished::GaveUp(failed) => tracing::error!(
                rule = %failed.rule,
                event = failed.event.as_str(),
                channel = sent_to(&failed),
                "gave up an alert notification that failed for 24 hours"
            ),
        }
    }

    /// Writes the state (with the outbox) over the one last read or written. If another
    /// replica wrote in between, this one is no longer the only one evaluating: it takes
    /// up what is stored, and whatever it decided since is dropped (the other replica
    /// decided it too).
    async fn save(&mut self, alerts: &Alerts) -> Result<(), StoreError> {
        if !self.unsaved {
            return Ok(());
        }
        self.state.outbox = self.outbox.saved();
        let bytes = self.state.encode();
        if self.stored.as_deref() == Some(&bytes[..]) {
            self.unsaved = false;
            return Ok(());
        }
        if alerts
            .store
            .swap_meta(state::STATE_KEY, self.stored.clone(), Some(bytes.clone()))
            .await?
        {
            self.stored = Some(bytes);
            self.unsaved = false;
            return Ok(());
        }
        tracing::warn!("another replica changed the alert state; taking it up");
        *self = Leader::load(alerts).await?;
        Ok(())
    }
}

/// The channel of a notification and its URL without secrets, for a log line.
fn sent_to(notification: &Notification) -> String {
    format!(
        "{} {}",
        notification.channel.kind(),
        notification.channel.shown_url()
    )
}

/// The incident of `alert` under `rule` at `now`, without samples.
fn incident(name: &RuleName, rule: &Rule, alert: &Alert, event: Event, now: Timestamp) -> Incident {
    Incident {
        rule: name.clone(),
        event,
        metric: rule.metric,
        value: alert.value,
        messages: alert.messages,
        threshold: rule.threshold,
        resolve_below: rule.resolve_level(),
        window: rule.window.as_str().to_owned(),
        filter: rule.filter.clone(),
        since: Timestamp(alert.since),
        at: now,
        top_errors: Vec::new(),
        sample_sids: Vec::new(),
        link: None,
        reason: None,
    }
}
