//! The Twilio REST client: CreateMessage, with statushook's own callback registered, and
//! Fetch Message for the reconciler.
//!
//! [`CreateMessage`] (in `create_message.rs`) carries every parameter of Twilio's
//! CreateMessage operation and is checked before anything is sent. A rejected request sends
//! nothing and names the offending parameter.
//!
//! Retries: a `429` was never processed, so it is retried after its `Retry-After`; `500`,
//! `502`, `503` and `504` are retried with capped exponential backoff and full jitter. No
//! other answer is retried, and neither is a timeout, which may have created the message.

mod create_message;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use create_message::{CreateMessage, InvalidParameter, MAX_BODY_CHARS, MAX_MEDIA_URLS};

use crate::config::TwilioCredentials;
use crate::domain::{MessageSid, Source, StatusEvent};

/// Twilio's error body, passed on to the caller intact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwilioError {
    pub code: Option<i64>,
    pub message: String,
    pub more_info: Option<String>,
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Invalid(#[from] InvalidParameter),
    #[error("twilio error {}: {}", .0.code.map_or("-".to_owned(), |c| c.to_string()), .0.message)]
    Twilio(TwilioError),
    #[error("twilio did not answer in time")]
    Timeout,
    #[error("cannot reach twilio: {0}")]
    Transport(String),
}

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    /// The longest wait between two attempts, a `Retry-After` included.
    pub cap: Duration,
    /// How long one request may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
            timeout: Duration::from_secs(15),
        }
    }
}

/// A client of Twilio's REST API for one account.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    credentials: TwilioCredentials,
    retry: RetryPolicy,
}

impl TwilioClient {
    pub fn new(credentials: TwilioCredentials, retry: RetryPolicy) -> Result<Self, SendError> {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(retry.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("statushook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| SendError::Transport(error.to_string()))?;
        Ok(TwilioClient {
            http,
            credentials,
            retry,
        })
    }

    /// Creates a message; `status_callback` is used unless the request names its own.
    /// Answers Twilio's message resource as JSON.
    pub async fn create_message(
        &self,
        request: &CreateMessage,
        status_callback: &str,
    ) -> Result<serde_json::Value, SendError> {
        request.validate()?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.credentials.api_base, self.credentials.account_sid
        );
        let form = request.to_form(status_callback);
        self.with_retries(|| self.http.post(&url).form(&form)).await
    }

    /// Fetches a message's current state.
    pub async fn fetch_message(&self, sid: &MessageSid) -> Result<serde_json::Value, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages/{sid}.json",
            self.credentials.api_base, self.credentials.account_sid
        );
        self.with_retries(|| self.http.get(&url)).await
    }

    async fn with_retries(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, SendError> {
        let mut attempt = 1;
        loop {
            let response = request()
                .basic_auth(
                    &self.credentials.username,
                    Some(self.credentials.password.expose()),
                )
                .send()
                .await
                .map_err(|error| {
                    if error.is_timeout() {
                        SendError::Timeout
                    } else {
                        SendError::Transport(error.without_url().to_string())
                    }
                })?;
            let status = response.status().as_u16();
            if response.status().is_success() {
                return response
                    .json()
                    .await
                    .map_err(|error| SendError::Transport(error.to_string()));
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let retryable = matches!(status, 429 | 500 | 502 | 503 | 504);
            if !retryable || attempt >= self.retry.attempts {
                return Err(SendError::Twilio(twilio_error(status, response).await));
            }
            let backoff = self.backoff(attempt);
            let wait = match (status, retry_after) {
                (429, Some(after)) => after.min(self.retry.cap),
                _ => backoff,
            };
            tracing::warn!(
                status,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "twilio asked to retry"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Full jitter: a random wait up to `base * 2^(attempt-1)`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry
            .base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.retry.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// A status event made from Twilio's message resource (as CreateMessage and Fetch Message
/// answer it), with the resource's fields under the names callbacks use.
pub fn event_from_resource(resource: &serde_json::Value, source: Source) -> Option<StatusEvent> {
    let fields = [
        ("sid", "MessageSid"),
        ("status", "MessageStatus"),
        ("account_sid", "AccountSid"),
        ("from", "From"),
        ("to", "To"),
        ("messaging_service_sid", "MessagingServiceSid"),
        ("api_version", "ApiVersion"),
        ("num_segments", "NumSegments"),
        ("num_media", "NumMedia"),
        ("error_code", "ErrorCode"),
        ("date_sent", "DateSent"),
    ];
    let params = fields
        .iter()
        .filter_map(|(field, name)| {
            let value = match &resource[*field] {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Number(number) => number.to_string(),
                _ => return None,
            };
            Some(((*name).to_owned(), value))
        })
        .collect();
    StatusEvent::from_params(params, source).ok()
}

async fn twilio_error(status: u16, response: reqwest::Response) -> TwilioError {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<TwilioError>(&text).unwrap_or_else(|_| TwilioError {
        code: None,
        message: if text.is_empty() {
            format!("HTTP {status}")
        } else {
            text
        },
        more_info: None,
        status,
    })
}
