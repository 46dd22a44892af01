//! The service under test in this process: `spawn_app()` runs a real server on port 0
//! with a fresh temporary store, and gives a `TestApp` with one method per endpoint. The
//! tests that need a process of their own start the binary instead (`binary.rs`).

use reqwest::Response;
use serde_json::Value;
use statushook::config::{Config, ServeArgs};
use statushook::secret::Secret;
use statushook::startup::Application;
use tempfile::TempDir;

use super::binary::get_json;
use super::database::test_database;
use super::fixtures::{encode, sign, sign_with, API_TOKEN, AUTH_TOKEN, FORM, PUBLIC_URL};
use super::metrics::scrape;
use super::streams::{sign_url, target_for};

pub struct TestApp {
    pub address: String,
    pub public_url: String,
    pub client: reqwest::Client,
    /// Keeps the store's folder alive for the test's duration.
    _data_dir: TempDir,
}

/// Extra settings for a test app, on top of the ones every test needs.
#[derive(Default)]
pub struct Settings {
    pub public_url: Option<&'static str>,
    pub env: Vec<(&'static str, String)>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let public_url = settings.public_url.unwrap_or(PUBLIC_URL);
    let args = ServeArgs {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.path().join("db"),
        public_url: Some(public_url.into()),
        database_url: test_database().await.map(Secret::new),
    };
    let mut env = vec![
        ("STATUSHOOK_API_TOKEN", API_TOKEN.to_owned()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
    ];
    env.extend(settings.env);
    let config = Config::for_serve_with(&args, |name| {
        env.iter()
            .rev()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("a valid test configuration");
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        public_url: public_url.trim_end_matches('/').to_owned(),
        client: reqwest::Client::new(),
        _data_dir: data_dir,
    }
}

impl TestApp {
    /// The signature Twilio would send for `params` posted to `target` (path and query).
    pub fn sign(&self, target: &str, params: &[(String, String)]) -> String {
        sign(&format!("{}{target}", self.public_url), params)
    }

    /// Posts a correctly signed callback to `/twilio/status`.
    pub async fn post_callback(&self, params: &[(String, String)]) -> Response {
        self.post_signed("/twilio/status", params).await
    }

    /// Posts `body` to `/twilio/events` as a Twilio Event Streams sink does: `bodySHA256`
    /// appended to the URL, the URL signed with the test account's token, JSON.
    pub async fn post_events(&self, body: &str) -> Response {
        let target = target_for("/twilio/events", body.as_bytes());
        let signature = sign_url(&format!("{}{target}", self.public_url));
        self.post_raw(
            &target,
            body.to_owned(),
            &[
                ("Content-Type", "application/json"),
                ("X-Twilio-Signature", &signature),
            ],
        )
        .await
    }

    pub async fn post_signed(&self, target: &str, params: &[(String, String)]) -> Response {
        let signature = self.sign(target, params);
        self.post_form(target, params, &signature).await
    }

    /// Posts `params` to `/twilio/status`, signed with `token` for `signed_url`: the URL
    /// Twilio would have called.
    pub async fn post_signed_by(
        &self,
        token: &str,
        signed_url: &str,
        params: &[(String, String)],
    ) -> Response {
        let signature = sign_with(token, signed_url, params);
        self.post_form("/twilio/status", params, &signature).await
    }

    pub async fn post_raw(
        &self,
        target: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .post(format!("{}{target}", self.address))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the request is answered")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN)
            .json(body)
            .send()
            .await
            .expect("the request is answered")
    }

    pub async fn get_message(&self, sid: &str) -> Response {
        self.get_authorized(&format!("/v1/messages/{sid}")).await
    }

    /// A GET without credentials.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the request is answered")
    }

    pub async fn get_authorized(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the request is answered")
    }

    /// The JSON answer to an authorized GET of `path`; panics unless it is a `200`.
    pub async fn json(&self, path: &str) -> Value {
        get_json(&self.client, &format!("{}{path}", self.address)).await
    }

    /// The stored message as JSON; panics unless it exists.
    pub async fn message_json(&self, sid: &str) -> Value {
        let response = self.get_message(sid).await;
        assert_eq!(response.status(), 200, "message {sid} should be stored");
        response.json().await.expect("a JSON message")
    }

    pub async fn is_stored(&self, sid: &str) -> bool {
        match self.get_message(sid).await.status().as_u16() {
            200 => true,
            404 => false,
            other => panic!("unexpected status {other} looking up {sid}"),
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        scrape(&self.client, &self.address).await
    }

    /// Posts `params` as a form to `target` with `signature` as `X-Twilio-Signature`.
    async fn post_form(
        &self,
        target: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> Response {
        self.post_raw(
            target,
            encode(params),
            &[("Content-Type", FORM), ("X-Twilio-Signature", signature)],
        )
        .await
    }
}
