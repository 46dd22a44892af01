//! What Twilio Event Streams sends: CloudEvents of `Messaging.MessageStatus`, alone or in
//! batches, and the request target and signature of a body (`bodySHA256` appended to the
//! URL, the URL alone signed).

use serde_json::{json, Value};
use statushook::secret::Secret;
use statushook::twilio::signature;

use super::fixtures::{ACCOUNT_SID, AUTH_TOKEN};

/// The CloudEvent Twilio sends when message `sid` reaches `status` (lower case here, upper
/// case in the event, as Twilio writes it), with the error code, if any, as an integer.
pub fn status_event(id: &str, sid: &str, status: &str, error_code: Option<u32>) -> Value {
    let mut data = json!({
        "messageSid": sid,
        "timestamp": "2026-11-26T09:00:00.000Z",
        "accountSid": ACCOUNT_SID,
        "eventName": format!("com.twilio.messaging.message.{status}"),
        "apiVersion": "2010-04-01",
        "from": "+15005550006",
        "to": "+15005550009",
        "messageStatus": status.to_ascii_uppercase(),
        "body": "hello",
        "tags": {"campaign": "winter"},
        "numberOfSegments": 1,
    });
    if let Some(code) = error_code {
        data["errorCode"] = json!(code);
    }
    json!({
        "specversion": "1.0",
        "type": format!("com.twilio.messaging.message.{status}"),
        "source": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
        "id": id,
        "dataschema": "https://events-schemas.twilio.com/Messaging.MessageStatus/7",
        "datacontenttype": "application/json",
        "time": "2026-11-26T09:00:00.000Z",
        "data": data,
    })
}

/// An event of a type statushook does not store.
pub fn other_event(id: &str, kind: &str) -> Value {
    json!({
        "specversion": "1.0",
        "type": kind,
        "source": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CA0.json",
        "id": id,
        "time": "2026-11-26T09:00:00.000Z",
        "data": {"callSid": "CA0123456789abcdef0123456789abcdef"},
    })
}

/// A fresh CloudEvent id, unique within the test run (Twilio's are `EZ…`).
pub fn new_event_id() -> String {
    format!("EZ{}", &super::fixtures::new_sid()[2..])
}

/// `path` with `bodySHA256` of `body` appended to its query, as Twilio calls a sink.
pub fn target_for(path: &str, body: &[u8]) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{separator}bodySHA256={}",
        signature::body_sha256(body)
    )
}

/// The `X-Twilio-Signature` of a request to `url` (the public URL and the target, with its
/// `bodySHA256`), signed with `token`: the URL alone, no parameters.
pub fn sign_url_with(token: &str, url: &str) -> String {
    let none: &[(&str, &str)] = &[];
    signature::sign_sha1(&Secret::new(token), url, none)
}

/// [`sign_url_with`] the test account's token.
pub fn sign_url(url: &str) -> String {
    sign_url_with(AUTH_TOKEN, url)
}
