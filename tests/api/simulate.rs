//! `simulate` against a test server: every simulated message ends in the status it intended,
//! reported by status callbacks, by Event Streams, or by both.

use std::collections::BTreeSet;

use statushook::cli::simulate::{plan, run, Channel, Options, Via};
use statushook::secret::Secret;

use crate::support::fixtures::AUTH_TOKEN;
use crate::support::spawn::{spawn_app, TestApp};

fn options(app: &TestApp, via: Via, batch: usize) -> Options {
    Options {
        url: format!("{}/twilio/status", app.address),
        signed_url: format!("{}/twilio/status", app.public_url),
        events_url: format!("{}/twilio/events", app.address),
        signed_events_url: format!("{}/twilio/events", app.public_url),
        token: Secret::new(AUTH_TOKEN),
        messages: 120,
        rate: 2000.0,
        seed: 7,
        concurrency: 16,
        via,
        batch,
    }
}

/// Plays the plan and checks every message: its final status and error code, and a history
/// of each distinct (status, channel) it was sent, once: repeats add nothing, and the same
/// transition by callback and by stream is kept twice, once by each.
async fn every_simulated_message_ends_as_planned(via: Via, batch: usize) {
    let app = spawn_app().await;
    let options = options(&app, via, batch);
    let planned = plan(&options);
    assert!(
        planned
            .iter()
            .any(|p| p.sent.len() > p.sent.iter().collect::<BTreeSet<_>>().len()),
        "some duplicates"
    );
    assert!(
        planned.iter().any(|p| p.final_status == "read")
            && planned.iter().any(|p| p.error_code.is_some())
    );

    let report = run(&options, &planned).await;

    assert_eq!(report.answered_200, report.requests, "{report:?}");
    for message in &planned {
        let stored = app.message_json(&message.sid).await;
        assert_eq!(stored["status"], message.final_status, "{}", message.sid);
        assert_eq!(
            stored["error_code"].as_u64().map(|c| c as u32),
            message.error_code,
            "{}",
            message.sid
        );
        let sent: BTreeSet<(String, &str)> = message
            .sent
            .iter()
            .zip(&message.channels)
            .map(|(status, channel)| {
                let source = match channel {
                    Channel::Callback => "callback",
                    Channel::EventStream => "event_stream",
                };
                (status.to_string(), source)
            })
            .collect();
        let recorded: Vec<(String, String)> = stored["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| {
                (
                    event["status"].as_str().unwrap_or_default().to_owned(),
                    event["source"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let mut expected: Vec<(String, String)> = sent
            .into_iter()
            .map(|(status, source)| (status, source.to_owned()))
            .collect();
        let mut recorded_sorted = recorded.clone();
        recorded_sorted.sort();
        expected.sort();
        assert_eq!(
            recorded_sorted, expected,
            "each delivery once: {}",
            message.sid
        );
    }
}

#[tokio::test]
async fn every_simulated_message_ends_in_its_intended_status() {
    every_simulated_message_ends_as_planned(Via::Callbacks, 1).await;
}

#[tokio::test]
async fn every_message_simulated_through_event_streams_in_batches_ends_in_its_intended_status() {
    every_simulated_message_ends_as_planned(Via::Streams, 10).await;
}

#[tokio::test]
async fn every_message_simulated_by_callbacks_streams_and_both_ends_in_its_intended_status() {
    let app_options = |via| Options {
        url: String::new(),
        signed_url: String::new(),
        events_url: String::new(),
        signed_events_url: String::new(),
        token: Secret::new(AUTH_TOKEN),
        messages: 120,
        rate: 1.0,
        seed: 7,
        concurrency: 1,
        via,
        batch: 1,
    };
    let mixed = plan(&app_options(Via::Mixed));
    assert!(
        mixed.iter().any(|p| p.channels.contains(&Channel::Callback)
            && p.channels.contains(&Channel::EventStream)),
        "some messages reported by both"
    );
    let callbacks = plan(&app_options(Via::Callbacks));
    assert!(callbacks
        .iter()
        .all(|p| p.channels.iter().all(|c| *c == Channel::Callback)));
    every_simulated_message_ends_as_planned(Via::Mixed, 1).await;
}
