//! One delivery attempt: a POST of a JSON body, signed as Standard Webhooks when a secret
//! is given, acknowledged by any `2xx` within [`TIMEOUT`]. Forwarding sends every
//! transition through it, and alert notifications (`jobs/alerts`) theirs, so both share one
//! HTTP client's settings, one signing and one reading of what an answer means.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::CONTENT_TYPE;

use super::{sign, SigningSecret, TIMEOUT};

/// How one delivery attempt ended.
#[derive(Debug)]
pub enum Attempt {
    Delivered,
    Rejected(u16),
    Unreachable(String),
}

/// What one attempt sends.
pub struct Post<'a> {
    pub url: &'a reqwest::Url,
    pub body: &'a [u8],
    /// The secret and `webhook-id` of a Standard Webhooks request; `None` for a plain POST
    /// (Slack's and PagerDuty's endpoints take the body alone).
    pub signed: Option<(&'a SigningSecret, &'a str)>,
}

/// The HTTP client of deliveries: [`TIMEOUT`] an attempt, redirects not followed (a
/// receiver that moved must be configured anew, not followed blindly), statushook's
/// user agent, and up to `idle` connections kept per host.
pub fn client(idle: usize) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("statushook/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(idle)
        .build()
}

/// One attempt: the POST, then its answer read (so that the connection can be reused).
pub async fn post(client: &reqwest::Client, post: Post<'_>) -> Attempt {
    let mut request = client
        .post(post.url.clone())
        .header(CONTENT_TYPE, "application/json");
    if let Some((secret, id)) = post.signed {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        request = request
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign::sign(secret, id, timestamp, post.body),
            );
    }
    match request.body(post.body.to_vec()).send().await {
        Ok(mut response) => {
            // Read the (small) answer so the connection can be reused.
            let mut read = 0;
            while let Ok(Some(chunk)) = response.chunk().await {
                read += chunk.len();
                if read > 64 * 1024 {
                    break;
                }
            }
            if response.status().is_success() {
                Attempt::Delivered
            } else {
                Attempt::Rejected(response.status().as_u16())
            }
        }
        Err(error) if error.is_timeout() => {
            Attempt::Unreachable(format!("no answer within {} s", TIMEOUT.as_secs()))
        }
        // Without the URL, which may hold credentials.
        Err(error) => Attempt::Unreachable(describe(&error.without_url())),
    }
}

/// An error with its causes, `outer: inner: innermost`.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
