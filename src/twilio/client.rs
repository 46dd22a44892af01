//! The Twilio REST client: CreateMessage, with statushook's own callback registered, and
//! Fetch Message for the reconciler.
//!
//! [`CreateMessage`] (in `create_message.rs`) carries every parameter of Twilio's
//! CreateMessage operation and is checked before anything is sent. A rejected request sends
//! nothing and names the offending parameter.
//!
//! Retries differ by operation, because CreateMessage is not idempotent: a request that
//! reached Twilio may have created the message even when no answer came back, and a second
//! attempt would send the SMS twice. So CreateMessage is retried only where Twilio cannot
//! have created it: a `429` (Twilio refused to process the request; retried after its
//! `Retry-After`) and a connection that could not be established (nothing was sent). A `5xx`,
//! a timeout or a connection lost after the request went out is never retried; the caller
//! learns that the message may have been created ([`CreateError::may_have_created`]). Fetch
//! Message is a read, so it is also retried on `500`, `502`, `503` and `504`, with capped
//! exponential backoff and full jitter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::TwilioCredentials;
use crate::domain::{MessageSid, Source, StatusEvent};
use crate::twilio::create_message::{CreateMessage, InvalidParameter};

/// Twilio's error body, passed on to the caller intact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwilioError {
    pub code: Option<i64>,
    pub message: String,
    pub more_info: Option<String>,
    pub status: u16,
}

/// Why a Fetch Message failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("twilio error {}: {}", code_text(.0), .0.message)]
    Twilio(TwilioError),
    #[error("twilio did not answer in time")]
    Timeout,
    #[error("cannot reach twilio: {0}")]
    Transport(String),
}

/// Why a CreateMessage failed, sorted by what it means for the message: refused and
/// certainly not created, certainly not sent for a reason that has nothing to do with the
/// message, or possibly created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A parameter breaks a constraint of CreateMessage; nothing was sent.
    #[error("{0}")]
    Invalid(#[from] InvalidParameter),
    /// Twilio refused the message itself (a `4xx` such as an invalid `To` or an unverified
    /// sender): it was not created.
    #[error("twilio refused the message: error {}: {}", code_text(.0), .0.message)]
    Refused(TwilioError),
    /// Twilio refused statushook's credentials or account (`401`, `403`, `404`): a
    /// configuration problem; the message was not created.
    #[error("twilio refused statushook's credentials (HTTP {}): error {}: {}", .0.status, code_text(.0), .0.message)]
    Credentials(TwilioError),
    /// Twilio answered `429` to every attempt: it processed none of them.
    #[error("twilio is limiting the request rate: error {}: {}", code_text(.error), .error.message)]
    RateLimited {
        error: TwilioError,
        retry_after: Option<Duration>,
    },
    /// No connection to Twilio could be made on any attempt: nothing was sent.
    #[error("cannot connect to twilio; the message was not sent: {0}")]
    Unreachable(String),
    /// Twilio answered `5xx` (or something unexpected): it may have created the message.
    #[error("twilio failed (HTTP {}); the message may have been created: error {}: {}", .0.status, code_text(.0), .0.message)]
    Failed(TwilioError),
    /// No answer within the timeout: the message may have been created.
    #[error("twilio did not answer in time; the message may have been created")]
    Timeout,
    /// The connection broke after the request went out, or the answer could not be read:
    /// the message may have been created.
    #[error("the exchange with twilio broke off; the message may have been created: {0}")]
    Interrupted(String),
}

impl CreateError {
    /// True when Twilio may have created the message although no created message came back:
    /// sending again could send it twice.
    pub fn may_have_created(&self) -> bool {
        matches!(
            self,
            CreateError::Failed(_) | CreateError::Timeout | CreateError::Interrupted(_)
        )
    }
}

fn code_text(error: &TwilioError) -> String {
    error
        .code
        .map_or_else(|| "-".to_owned(), |code| code.to_string())
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

impl RetryPolicy {
    /// The longest a call can take with every attempt and every wait between them.
    pub fn longest_call(&self) -> Duration {
        let attempts = self.attempts.max(1);
        self.timeout.saturating_mul(attempts) + self.cap.saturating_mul(attempts - 1)
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

    /// The `AC…` account messages are sent from.
    pub fn account_sid(&self) -> &str {
        &self.credentials.account_sid
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Creates a message; `status_callback` is used unless the request names its own.
    /// Answers Twilio's message resource as JSON. Retried only where Twilio cannot have
    /// created the message (see the module documentation).
    pub async fn create_message(
        &self,
        request: &CreateMessage,
        status_callback: &str,
    ) -> Result<serde_json::Value, CreateError> {
        request.validate()?;
        // The parent account's credentials act on its subaccounts: a request naming one
        // creates the message in it.
        let account = request
            .account_sid
            .as_deref()
            .unwrap_or(&self.credentials.account_sid);
        let url = format!(
            "{}/2010-04-01/Accounts/{account}/Messages.json",
            self.credentials.api_base
        );
        let form = request.to_form(status_callback);
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .post(&url)
                .form(&form)
                .basic_auth(
                    &self.credentials.username,
                    Some(self.credentials.password.expose()),
                )
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                // A connect error comes before a byte of the request is written: Twilio
                // has seen nothing, so another attempt cannot send the message twice.
                Err(error) if error.is_connect() => {
                    let error = error.without_url().to_string();
                    if attempt >= self.retry.attempts {
                        return Err(CreateError::Unreachable(error));
                    }
                    self.wait_before_retry(attempt, None, "cannot connect to twilio")
                        .await;
                    attempt += 1;
                    continue;
                }
                Err(error) if error.is_timeout() => return Err(CreateError::Timeout),
                Err(error) => {
                    return Err(CreateError::Interrupted(error.without_url().to_string()))
                }
            };
            let status = response.status().as_u16();
            if response.status().is_success() {
                return response.json().await.map_err(|error| {
                    if error.is_timeout() {
                        CreateError::Timeout
                    } else {
                        CreateError::Interrupted(error.without_url().to_string())
                    }
                });
            }
            let retry_after = retry_after(&response);
            if status == 429 && attempt < self.retry.attempts {
                self.wait_before_retry(attempt, retry_after, "twilio asked to retry")
                    .await;
                attempt += 1;
                continue;
            }
            let error = twilio_error(status, response).await;
            return Err(match status {
                429 => CreateError::RateLimited { error, retry_after },
                401 | 403 | 404 => CreateError::Credentials(error),
                400..=499 => CreateError::Refused(error),
                _ => CreateError::Failed(error),
            });
        }
    }

    /// Fetches a message's current state from the configured account.
    pub async fn fetch_message(&self, sid: &MessageSid) -> Result<serde_json::Value, SendError> {
        self.fetch_message_in(&self.credentials.account_sid, sid)
            .await
    }

    /// Fetches a message's current state from `account_sid`: the configured account or
    /// one of its subaccounts, whose resources the parent's credentials may read.
    pub async fn fetch_message_in(
        &self,
        account_sid: &str,
        sid: &MessageSid,
    ) -> Result<serde_json::Value, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            self.credentials.api_base
        );
        let mut attempt = 1;
        loop {
            let response = self
                .http
                .get(&url)
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
            let retryable = matches!(status, 429 | 500 | 502 | 503 | 504);
            if !retryable || attempt >= self.retry.attempts {
                return Err(SendError::Twilio(twilio_error(status, response).await));
            }
            let after = retry_after(&response).filter(|_| status == 429);
            self.wait_before_retry(attempt, after, "twilio asked to retry")
                .await;
            attempt += 1;
        }
    }

    /// Waits a `Retry-After` (capped) when Twilio gave one, else a backoff.
    async fn wait_before_retry(&self, attempt: u32, retry_after: Option<Duration>, why: &str) {
        let wait = match retry_after {
            Some(after) => after.min(self.retry.cap),
            None => self.backoff(attempt),
        };
        tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, "{why}");
        tokio::time::sleep(wait).await;
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

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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
