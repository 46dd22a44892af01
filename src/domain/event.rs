use super::{MessageSid, MessageStatus};

/// Where a status event came from.
///
/// The sled store encodes a source by its position here: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A signed status callback from Twilio.
    Callback,
    /// The record made when statushook itself created the message.
    Sender,
    /// A status fetched from Twilio's API for a message whose callback never came.
    Reconciler,
    /// A message status event from a Twilio Event Streams webhook sink (CloudEvents).
    EventStream,
}

impl Source {
    /// Whether events of this source are Twilio's own report of a transition (a status
    /// callback or a stream event), rather than statushook's record of one.
    pub fn is_twilio_report(self) -> bool {
        matches!(self, Source::Callback | Source::EventStream)
    }
}

/// One reported transition of one message, with every parameter it arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    sid: MessageSid,
    status: MessageStatus,
    error_code: Option<u32>,
    raw_dlr_done_date: Option<String>,
    source: Source,
    /// Every parameter as received, in arrival order, repeated names included: Twilio adds
    /// parameters without notice, and they are the user's data.
    params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("MessageSid is missing")]
    MissingSid,
    #[error("MessageSid {0}")]
    BadSid(String),
    #[error("MessageStatus is missing or empty")]
    MissingStatus,
}

impl StatusEvent {
    /// A status event from values already read, with every parameter it arrived with: for
    /// sources whose parameters are not a callback's (Event Streams names them its own way).
    pub fn new(
        sid: MessageSid,
        status: MessageStatus,
        error_code: Option<u32>,
        raw_dlr_done_date: Option<String>,
        source: Source,
        params: Vec<(String, String)>,
    ) -> StatusEvent {
        StatusEvent {
            sid,
            status,
            error_code,
            raw_dlr_done_date,
            source,
            params,
        }
    }

    /// Reads a status event out of callback parameters.
    ///
    /// `MessageSid` and a non-empty `MessageStatus` are required. `ErrorCode` is optional;
    /// a value that is not a whole number is kept in `params` but not as a code.
    pub fn from_params(params: Vec<(String, String)>, source: Source) -> Result<Self, EventError> {
        let first = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let sid = first("MessageSid").ok_or(EventError::MissingSid)?;
        let sid = MessageSid::parse(sid).map_err(EventError::BadSid)?;
        let status = first("MessageStatus")
            .and_then(|raw| MessageStatus::parse(raw).ok())
            .ok_or(EventError::MissingStatus)?;
        let error_code = first("ErrorCode").and_then(|raw| raw.trim().parse().ok());
        let raw_dlr_done_date = first("RawDlrDoneDate")
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
            .map(str::to_owned);
        Ok(StatusEvent {
            sid,
            status,
            error_code,
            raw_dlr_done_date,
            source,
            params,
        })
    }

    pub fn sid(&self) -> &MessageSid {
        &self.sid
    }

    pub fn status(&self) -> &MessageStatus {
        &self.status
    }

    pub fn error_code(&self) -> Option<u32> {
        self.error_code
    }

    pub fn raw_dlr_done_date(&self) -> Option<&str> {
        self.raw_dlr_done_date.as_deref()
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The first value of a parameter, if it was sent and is not empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    pub fn into_params(self) -> Vec<(String, String)> {
        self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sid_and_status_are_required() {
        let sid = "SM0123456789abcdef0123456789abcdef";
        let cases = [
            (params(&[("MessageStatus", "sent")]), EventError::MissingSid),
            (
                params(&[("MessageSid", "SM1"), ("MessageStatus", "sent")]),
                EventError::BadSid(String::new()),
            ),
            (params(&[("MessageSid", sid)]), EventError::MissingStatus),
            (
                params(&[("MessageSid", sid), ("MessageStatus", "")]),
                EventError::MissingStatus,
            ),
        ];
        for (input, expected) in cases {
            let error = StatusEvent::from_params(input, Source::Callback).expect_err("invalid");
            assert_eq!(
                std::mem::discriminant(&error),
                std::mem::discriminant(&expected)
            );
        }
    }

    #[test]
    fn optional_fields_are_read_and_every_param_is_kept() {
        let input = params(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("RawDlrDoneDate", "2611260900"),
            ("Extra", "a"),
            ("Extra", "b"),
        ]);
        let event = StatusEvent::from_params(input.clone(), Source::Callback).expect("valid");
        assert_eq!(event.error_code(), Some(30003));
        assert_eq!(event.raw_dlr_done_date(), Some("2611260900"));
        assert_eq!(event.params(), input.as_slice());
    }
}
