//! What the alert tests share: a short evaluation interval, rules put through the API,
//! bursts of callbacks, and the local receivers of Slack's and PagerDuty's requests
//! (wiremock servers on loopback, which record what they are sent).

use std::cell::RefCell;
use std::collections::HashSet;

use reqwest::Response;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::fixtures::{callback, new_sid, with, API_TOKEN};
use super::poll;
use super::receiver::{Delivery, Receiver, SECRET};

/// Evaluations every 200 ms, so that a test sees several in a second.
pub const INTERVAL: (&str, &str) = ("STATUSHOOK_ALERT_INTERVAL", "200ms");
/// A PagerDuty integration key of the right shape.
pub const ROUTING_KEY: &str = "R0123456789abcdefABCDEF012345678";

/// The settings of a service that evaluates every [`INTERVAL`].
pub fn alert_env() -> Vec<(&'static str, String)> {
    vec![(INTERVAL.0, INTERVAL.1.to_owned())]
}

/// The API of a running service, for the alert routes.
pub struct Alerting<'a> {
    pub client: &'a reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub address: &'a str,
}

impl Alerting<'_> {
    pub async fn put_rule(&self, name: &str, rule: &Value) -> Response {
        self.client
            .put(format!("{}/v1/alerts/rules/{name}", self.address))
            .bearer_auth(API_TOKEN)
            .json(rule)
            .send()
            .await
            .expect("the request is answered")
    }

    /// Puts `rule` and checks that it is accepted.
    pub async fn rule(&self, name: &str, rule: Value) {
        let response = self.put_rule(name, &rule).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{name}: {status} {body}");
    }

    pub async fn delete_rule(&self, name: &str) -> Response {
        self.client
            .delete(format!("{}/v1/alerts/rules/{name}", self.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the request is answered")
    }

    /// `GET /v1/alerts`.
    pub async fn alerts(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/v1/alerts", self.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the request is answered");
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    /// The alert of rule `name` in `GET /v1/alerts`.
    pub async fn alert(&self, name: &str) -> Value {
        let alerts = self.alerts().await;
        alerts["alerts"]
            .as_array()
            .and_then(|alerts| alerts.iter().find(|alert| alert["rule"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no alert of {name}: {alerts}"))
    }

    /// Waits until the alert of `name` satisfies `done`; answers it.
    pub async fn alert_when(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll::until(what, || async {
            let alert = self.alert(name).await;
            if done(&alert) {
                Ok(alert)
            } else {
                Err(alert.to_string())
            }
        })
        .await
    }
}

/// Waits for `count` more evaluations (`evaluated_at` changing in `GET /v1/alerts`).
pub async fn passes(alerting: &Alerting<'_>, count: usize) {
    let seen = RefCell::new(HashSet::new());
    let first = alerting.alerts().await["evaluated_at"].clone();
    seen.borrow_mut().insert(first.to_string());
    poll::until(&format!("{count} evaluations"), || async {
        let at = alerting.alerts().await["evaluated_at"].to_string();
        let mut seen = seen.borrow_mut();
        seen.insert(at);
        if seen.len() > count {
            Ok(())
        } else {
            Err(format!("{} so far", seen.len() - 1))
        }
    })
    .await
}

/// Reads every line the receiver has written so far (it answers a command after the
/// deliveries it reported before it).
pub async fn drain(receiver: &mut Receiver) {
    receiver.command("delay 0").await;
}

/// A webhook channel to `receiver`, signed with the receiver's secret.
pub fn webhook_to(receiver: &Receiver) -> Value {
    json!({"type": "webhook", "url": receiver.url, "secret": SECRET})
}

/// The callback of a message that failed with `code`.
pub fn failed(sid: &str, code: u32) -> Vec<(String, String)> {
    with(callback(sid, "failed"), "ErrorCode", &code.to_string())
}

/// `count` fresh SIDs.
pub fn sids(count: usize) -> Vec<String> {
    (0..count).map(|_| new_sid()).collect()
}

/// The alert notifications among `deliveries`, as `(type, rule)`, in arrival order.
pub fn notifications(deliveries: &[Delivery]) -> Vec<(String, String)> {
    deliveries
        .iter()
        .filter(|d| d.answer == 200)
        .map(|d| {
            (
                d.body["type"].as_str().unwrap_or_default().to_owned(),
                d.body["data"]["rule"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// A local stand-in for Slack's incoming webhooks or PagerDuty's Events API: it answers
/// every POST as the real one does and keeps what it was sent.
pub struct Stand {
    pub server: MockServer,
}

impl Stand {
    /// Slack answers `200` with the text `ok`.
    pub async fn slack() -> Stand {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&server)
            .await;
        Stand { server }
    }

    /// PagerDuty answers `202` with `{"status": "success", …}`.
    pub async fn pagerduty() -> Stand {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": "statushook"
            })))
            .mount(&server)
            .await;
        Stand { server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.uri())
    }

    /// The JSON bodies received so far, in order.
    pub async fn bodies(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|request| serde_json::from_slice(&request.body).expect("a JSON body"))
            .collect()
    }

    /// Waits until `count` bodies have arrived; answers them.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        poll::until(&format!("{count} requests"), || async {
            let bodies = self.bodies().await;
            if bodies.len() >= count {
                Ok(bodies)
            } else {
                Err(format!("{bodies:?}"))
            }
        })
        .await
    }
}
