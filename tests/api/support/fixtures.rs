//! What the tests send: the test credentials, fresh message SIDs, Twilio's callback
//! parameters and their signature, and the outcome mixes and arrival orders that several
//! features are tested over.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use statushook::secret::Secret;
use statushook::twilio::signature;

pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
pub const API_TOKEN: &str = "test-api-token-0123456789abcdef0123456789";
pub const FORM: &str = "application/x-www-form-urlencoded";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The public URL of every service the tests start, unless a test sets another.
pub const PUBLIC_URL: &str = "https://hooks.example.com";

/// A fresh message SID, unique within the test run.
pub fn new_sid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("SM{:016x}{:016x}", nanos, n)
}

/// The parameters Twilio sends with an SMS status callback.
pub fn callback(sid: &str, status: &str) -> Vec<(String, String)> {
    [
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", "+15005550009"),
        ("MessagingServiceSid", ""),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+15005550006"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn with(mut params: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    params.push((name.to_owned(), value.to_owned()));
    params
}

pub fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// The `X-Twilio-Signature` Twilio sends with `params` posted to `url`, signed with `token`.
pub fn sign_with(token: &str, url: &str, params: &[(String, String)]) -> String {
    signature::sign_sha1(&Secret::new(token), url, params)
}

/// The `X-Twilio-Signature` Twilio sends with `params` posted to `url`, signed with the
/// test account's token.
pub fn sign(url: &str, params: &[(String, String)]) -> String {
    sign_with(AUTH_TOKEN, url, params)
}

/// Statuses of a message's events, in the order the API lists them.
pub fn event_statuses(message: &Value) -> Vec<String> {
    message["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["status"].as_str().expect("a status").to_owned())
        .collect()
}

/// An outcome mix: (final status, error code, how many messages).
pub type Mix = [(&'static str, Option<u32>, usize)];

/// Each message of `mix` in turn, as its final status and error code.
pub fn messages_of(mix: &'static Mix) -> impl Iterator<Item = (&'static str, Option<u32>)> {
    mix.iter()
        .flat_map(|(status, code, count)| (0..*count).map(move |_| (*status, *code)))
}

/// The statuses a message reports on its way to `status`.
pub fn path_of(status: &str) -> &'static [&'static str] {
    match status {
        "queued" => &["queued"],
        "sent" => &["queued", "sent"],
        "read" => &["queued", "sent", "delivered", "read"],
        "failed" => &["queued", "failed"],
        "undelivered" => &["queued", "sent", "undelivered"],
        _ => &["queued", "sent", "delivered"],
    }
}

/// The callbacks of `sid` along [`path_of`] `status`, in order; the last one, of `status`
/// itself, carries `error_code`.
pub fn callbacks_to(
    sid: &str,
    status: &str,
    error_code: Option<u32>,
) -> Vec<Vec<(String, String)>> {
    path_of(status)
        .iter()
        .map(|step| match error_code {
            Some(code) if *step == status => {
                with(callback(sid, step), "ErrorCode", &code.to_string())
            }
            _ => callback(sid, step),
        })
        .collect()
}

/// Every order of `items`.
pub fn permutations(items: &[&'static str]) -> Vec<Vec<&'static str>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}
