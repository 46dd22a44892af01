//! `simulate` against a test server: every simulated message ends in the status it intended.

use statushook::cli::simulate::{plan, run, Options};
use statushook::secret::Secret;

use crate::support::fixtures::{event_statuses, AUTH_TOKEN};
use crate::support::spawn::spawn_app;

#[tokio::test]
async fn every_simulated_message_ends_in_its_intended_status() {
    let app = spawn_app().await;
    let options = Options {
        url: format!("{}/twilio/status", app.address),
        signed_url: format!("{}/twilio/status", app.public_url),
        token: Secret::new(AUTH_TOKEN),
        messages: 120,
        rate: 2000.0,
        seed: 7,
        concurrency: 16,
    };
    let planned = plan(&options);
    assert!(
        planned.iter().any(|p| p.sent.len()
            > p.sent
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()),
        "some duplicates"
    );
    assert!(
        planned.iter().any(|p| p.final_status == "read")
            && planned.iter().any(|p| p.error_code.is_some())
    );

    let report = run(&options, &planned).await;

    assert_eq!(report.answered_200, report.callbacks, "{report:?}");
    for message in &planned {
        let stored = app.message_json(&message.sid).await;
        assert_eq!(stored["status"], message.final_status, "{}", message.sid);
        assert_eq!(
            stored["error_code"].as_u64().map(|c| c as u32),
            message.error_code,
            "{}",
            message.sid
        );
        let mut distinct = message.sent.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut recorded = event_statuses(&stored);
        recorded.sort_unstable();
        assert_eq!(
            recorded, distinct,
            "duplicates add no event: {}",
            message.sid
        );
    }
}
