//! The CreateMessage request: every parameter of Twilio's operation, as one struct that is
//! the `POST /v1/messages` JSON body (snake_case) and what `statushook send` maps its flags
//! onto (in `cli.rs`), checked against the constraints of Twilio's OpenAPI description
//! before anything is sent, and encoded as Twilio's form.

use serde::{Deserialize, Serialize};

use crate::domain::{is_sid, Timestamp};

/// Every parameter of Twilio's CreateMessage. `None` and empty lists are not sent, so
/// Twilio applies its own defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    /// Recipient: E.164 number or channel address (whatsapp:+1…).
    pub to: String,
    /// Sender: a Twilio number, short code, alphanumeric ID or channel address.
    pub from: Option<String>,
    /// MG… messaging service, instead of `from`.
    pub messaging_service_sid: Option<String>,
    /// Text, at most 1,600 characters.
    pub body: Option<String>,
    /// Media URL; repeat for several (at most 10).
    #[serde(default)]
    pub media_url: Vec<String>,
    /// HX… content template.
    pub content_sid: Option<String>,
    /// JSON of template variables (needs `content_sid`).
    pub content_variables: Option<String>,
    /// Status callback URL; defaults to {PUBLIC_URL}/twilio/status with retry overrides.
    pub status_callback: Option<String>,
    /// AP… TwiML application.
    pub application_sid: Option<String>,
    /// Obsolete; accepted and passed on.
    pub max_price: Option<f64>,
    /// true or false.
    pub provide_feedback: Option<bool>,
    /// Total attempts made to send the message, this one included.
    #[serde(default, deserialize_with = "whole_number")]
    pub attempt: Option<i64>,
    /// Seconds the message may wait in Twilio's queue: 1 to 36000.
    #[serde(default, deserialize_with = "whole_number")]
    pub validity_period: Option<i64>,
    /// Reserved by Twilio; true or false.
    pub force_delivery: Option<bool>,
    /// retain or discard.
    pub content_retention: Option<String>,
    /// retain or obfuscate.
    pub address_retention: Option<String>,
    /// true or false.
    pub smart_encoded: Option<bool>,
    /// Rich action (e.g. a WhatsApp location); repeat for several.
    #[serde(default)]
    pub persistent_action: Vec<String>,
    /// free.
    pub traffic_type: Option<String>,
    /// true or false (needs `messaging_service_sid`).
    pub shorten_urls: Option<bool>,
    /// fixed (needs `send_at` and `messaging_service_sid`).
    pub schedule_type: Option<String>,
    /// RFC 3339 time to send at (needs `schedule_type` fixed).
    pub send_at: Option<String>,
    /// true or false.
    pub send_as_mms: Option<bool>,
    /// enable or disable.
    pub risk_check: Option<String>,
    /// SMS sender to fall back to when RCS cannot reach the recipient.
    pub fallback_from: Option<String>,
    /// AC… (sub)account to create the message in, with the configured account's
    /// credentials; the configured account when absent. Part of the URL, not of the form.
    pub account_sid: Option<String>,
}

/// A parameter that breaks a constraint of CreateMessage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {problem}")]
pub struct InvalidParameter {
    /// The parameter's name as Twilio spells it (`MediaUrl`).
    pub parameter: &'static str,
    pub problem: String,
}

fn invalid(parameter: &'static str, problem: impl Into<String>) -> InvalidParameter {
    InvalidParameter {
        parameter,
        problem: problem.into(),
    }
}

/// A JSON body that is not a CreateMessage: malformed, a wrong type, a missing or an
/// unknown field. `parameter` is the field's path (`validity_period`, `media_url[2]`) when
/// the problem is in one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .parameter { Some(parameter) => format!("{parameter}: {}", .problem), None => .problem.clone() })]
pub struct BodyError {
    pub parameter: Option<String>,
    pub problem: String,
}

/// The largest `Body`, in characters.
pub const MAX_BODY_CHARS: usize = 1600;
pub const MAX_MEDIA_URLS: usize = 10;

impl CreateMessage {
    /// Reads a JSON body. An error names the field it is about, in the JSON's own terms
    /// (`validity_period: expected an integer`), rather than a line and column.
    pub fn from_json(body: &[u8]) -> Result<CreateMessage, BodyError> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let message: CreateMessage =
            serde_path_to_error::deserialize(&mut json).map_err(body_error)?;
        // Trailing characters after the object are a syntax error too.
        json.end().map_err(|error| BodyError {
            parameter: None,
            problem: format!("the body is not valid JSON: {error}"),
        })?;
        Ok(message)
    }

    /// Checks the constraints of Twilio's OpenAPI description and CreateMessage's rules.
    pub fn validate(&self) -> Result<(), InvalidParameter> {
        if self.to.trim().is_empty() {
            return Err(invalid("To", "is required"));
        }
        match (&self.from, &self.messaging_service_sid) {
            (None, None) => {
                return Err(invalid(
                    "From",
                    "either From or MessagingServiceSid is required",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "From",
                    "give either From or MessagingServiceSid, not both",
                ))
            }
            _ => {}
        }
        if self
            .from
            .as_deref()
            .is_some_and(|from| from.trim().is_empty())
        {
            return Err(invalid("From", "must not be empty"));
        }
        if self.body.is_none() && self.media_url.is_empty() && self.content_sid.is_none() {
            return Err(invalid(
                "Body",
                "at least one of Body, MediaUrl or ContentSid is required",
            ));
        }
        if let Some(body) = &self.body {
            let chars = body.chars().count();
            if chars > MAX_BODY_CHARS {
                return Err(invalid(
                    "Body",
                    format!("is {chars} characters; at most {MAX_BODY_CHARS}"),
                ));
            }
        }
        if self.media_url.len() > MAX_MEDIA_URLS {
            return Err(invalid(
                "MediaUrl",
                format!("{} given; at most {MAX_MEDIA_URLS}", self.media_url.len()),
            ));
        }
        if let Some(url) = self.media_url.iter().find(|url| !is_http_url(url)) {
            return Err(invalid(
                "MediaUrl",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        for (parameter, value, prefix) in [
            ("AccountSid", &self.account_sid, "AC"),
            ("MessagingServiceSid", &self.messaging_service_sid, "MG"),
            ("ContentSid", &self.content_sid, "HX"),
            ("ApplicationSid", &self.application_sid, "AP"),
        ] {
            if let Some(value) = value {
                if !is_sid(value, prefix) {
                    return Err(invalid(
                        parameter,
                        format!("must be {prefix} followed by 32 hex digits"),
                    ));
                }
            }
        }
        for (parameter, value, allowed) in [
            (
                "ContentRetention",
                &self.content_retention,
                &["retain", "discard"][..],
            ),
            (
                "AddressRetention",
                &self.address_retention,
                &["retain", "obfuscate"][..],
            ),
            ("TrafficType", &self.traffic_type, &["free"][..]),
            ("ScheduleType", &self.schedule_type, &["fixed"][..]),
            ("RiskCheck", &self.risk_check, &["enable", "disable"][..]),
        ] {
            if let Some(value) = value {
                if !allowed.contains(&value.as_str()) {
                    return Err(invalid(
                        parameter,
                        format!("{value:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
        }
        if let Some(period) = self.validity_period {
            if !(1..=36000).contains(&period) {
                return Err(invalid(
                    "ValidityPeriod",
                    format!("{period} is not from 1 to 36000 seconds"),
                ));
            }
        }
        if let Some(attempt) = self.attempt {
            if attempt < 1 {
                return Err(invalid("Attempt", "must be at least 1"));
            }
        }
        if let Some(price) = self.max_price {
            if !price.is_finite() || price < 0.0 {
                return Err(invalid("MaxPrice", "must be a non-negative number"));
            }
        }
        if self.content_variables.is_some() && self.content_sid.is_none() {
            return Err(invalid("ContentVariables", "needs ContentSid"));
        }
        if let Some(variables) = &self.content_variables {
            if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(variables)
                .is_err()
            {
                return Err(invalid("ContentVariables", "must be a JSON object"));
            }
        }
        if self.shorten_urls == Some(true) && self.messaging_service_sid.is_none() {
            return Err(invalid("ShortenUrls", "needs MessagingServiceSid"));
        }
        if let Some(callback) = &self.status_callback {
            if !is_http_url(callback) {
                return Err(invalid(
                    "StatusCallback",
                    format!("{callback:?} is not an http(s) URL"),
                ));
            }
        }
        match (&self.schedule_type, &self.send_at) {
            (Some(_), None) => return Err(invalid("SendAt", "is required with ScheduleType")),
            (None, Some(_)) => {
                return Err(invalid(
                    "ScheduleType",
                    "must be fixed when SendAt is given",
                ))
            }
            (Some(_), Some(send_at)) => {
                Timestamp::parse_rfc3339(send_at).map_err(|problem| invalid("SendAt", problem))?;
                if self.messaging_service_sid.is_none() {
                    return Err(invalid(
                        "MessagingServiceSid",
                        "is required to schedule a message",
                    ));
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// The form body of CreateMessage, in Twilio's parameter names; a repeated parameter
    /// repeats its name. `status_callback` is used when the request names none.
    pub fn to_form(&self, status_callback: &str) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", self.to.clone())];
        let text = |form: &mut Vec<_>, name, value: &Option<String>| {
            if let Some(value) = value {
                form.push((name, value.clone()));
            }
        };
        let flag = |form: &mut Vec<_>, name, value: Option<bool>| {
            if let Some(value) = value {
                form.push((name, value.to_string()));
            }
        };
        text(&mut form, "From", &self.from);
        text(
            &mut form,
            "MessagingServiceSid",
            &self.messaging_service_sid,
        );
        text(&mut form, "Body", &self.body);
        form.extend(self.media_url.iter().map(|url| ("MediaUrl", url.clone())));
        text(&mut form, "ContentSid", &self.content_sid);
        text(&mut form, "ContentVariables", &self.content_variables);
        let callback = self
            .status_callback
            .clone()
            .unwrap_or_else(|| status_callback.to_owned());
        form.push(("StatusCallback", callback));
        text(&mut form, "ApplicationSid", &self.application_sid);
        if let Some(price) = self.max_price {
            form.push(("MaxPrice", price.to_string()));
        }
        flag(&mut form, "ProvideFeedback", self.provide_feedback);
        if let Some(attempt) = self.attempt {
            form.push(("Attempt", attempt.to_string()));
        }
        if let Some(period) = self.validity_period {
            form.push(("ValidityPeriod", period.to_string()));
        }
        flag(&mut form, "ForceDelivery", self.force_delivery);
        text(&mut form, "ContentRetention", &self.content_retention);
        text(&mut form, "AddressRetention", &self.address_retention);
        flag(&mut form, "SmartEncoded", self.smart_encoded);
        form.extend(
            self.persistent_action
                .iter()
                .map(|action| ("PersistentAction", action.clone())),
        );
        text(&mut form, "TrafficType", &self.traffic_type);
        flag(&mut form, "ShortenUrls", self.shorten_urls);
        text(&mut form, "ScheduleType", &self.schedule_type);
        text(&mut form, "SendAt", &self.send_at);
        flag(&mut form, "SendAsMms", self.send_as_mms);
        text(&mut form, "RiskCheck", &self.risk_check);
        text(&mut form, "FallbackFrom", &self.fallback_from);
        form
    }
}

/// Turns serde's error into one naming the field. serde reports a missing or unknown field
/// at the object that lacks or holds it, so those name the field from the message itself.
fn body_error(error: serde_path_to_error::Error<serde_json::Error>) -> BodyError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return BodyError {
            parameter: None,
            problem: format!("the body is not valid JSON: {inner}"),
        };
    }
    // serde_json appends the position; the field's path says more.
    let text = inner.to_string();
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(text, _)| text);
    let quoted = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("missing field `") {
        return BodyError {
            parameter: Some(field),
            problem: "is required".into(),
        };
    }
    if let Some(rest) = text.strip_prefix("unknown field `") {
        // serde quotes the name in backticks, then lists the expected ones: the name ends
        // at the first "`, expected", as it may hold a backtick itself.
        let field = rest.find("`, expected").map_or(rest, |end| &rest[..end]);
        if field.is_empty() {
            return BodyError {
                parameter: None,
                problem: "a field with an empty name is not a parameter of CreateMessage".into(),
            };
        }
        return BodyError {
            parameter: Some(field.to_owned()),
            problem: "is not a parameter of CreateMessage".into(),
        };
    }
    let problem = match text.strip_prefix("invalid type: ") {
        Some(rest) => match rest.split_once(", expected ") {
            Some((found, expected)) => format!("expected {}, found {found}", plain(expected)),
            None => text.to_owned(),
        },
        None => text.to_owned(),
    };
    let parameter = (path != ".").then_some(path);
    BodyError { parameter, problem }
}

/// An optional integer field. JSON does not tell `686` from `686.0` (JSON Schema counts
/// both as integers, and some encoders write every number with a fraction), so a number
/// with a zero fraction is taken as the integer it is; `686.5` is refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    struct WholeNumber;

    impl<'de> serde::de::Visitor<'de> for WholeNumber {
        type Value = Option<i64>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("an integer")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value))
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            i64::try_from(value)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            // The bounds are exact powers of two, so the comparison is exact too.
            let whole = value.fract() == 0.0 && (-(2f64.powi(63))..2f64.powi(63)).contains(&value);
            if whole {
                Ok(Some(value as i64))
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(value), &self))
            }
        }
    }

    deserializer.deserialize_option(WholeNumber)
}

/// serde's names of the expected types, in words.
fn plain(expected: &str) -> &str {
    match expected {
        "i64" | "u64" | "i32" | "u32" => "an integer",
        "f64" => "a number",
        other => other,
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> CreateMessage {
        CreateMessage {
            to: "+15005550009".into(),
            from: Some("+15005550006".into()),
            body: Some("hello".into()),
            ..CreateMessage::default()
        }
    }

    #[test]
    fn the_form_repeats_media_urls_and_defaults_the_callback() {
        let request = CreateMessage {
            media_url: vec![
                "https://a.example/1.png".into(),
                "https://a.example/2.png".into(),
            ],
            send_as_mms: Some(false),
            ..minimal()
        };
        let form = request.to_form("https://hooks.example.com/twilio/status#rc=5");
        let media: Vec<_> = form
            .iter()
            .filter(|(name, _)| *name == "MediaUrl")
            .collect();
        assert_eq!(media.len(), 2);
        assert!(form.contains(&(
            "StatusCallback",
            "https://hooks.example.com/twilio/status#rc=5".into()
        )));
        assert!(form.contains(&("SendAsMms", "false".into())));
        assert!(!form.iter().any(|(name, _)| *name == "ProvideFeedback"));
    }

    #[test]
    fn a_body_of_1600_characters_passes_and_1601_does_not() {
        let ok = CreateMessage {
            body: Some("é".repeat(1600)),
            ..minimal()
        };
        assert_eq!(ok.validate(), Ok(()));
        let long = CreateMessage {
            body: Some("é".repeat(1601)),
            ..minimal()
        };
        assert_eq!(long.validate().map_err(|e| e.parameter), Err("Body"));
    }

    #[test]
    fn an_integer_written_with_a_zero_fraction_is_that_integer() {
        let body =
            r#"{"to": "+1", "from": "+2", "body": "x", "validity_period": 686.0, "attempt": null}"#;
        let message = CreateMessage::from_json(body.as_bytes()).expect("a valid body");
        assert_eq!(message.validity_period, Some(686));
        assert_eq!(message.attempt, None);
        let absent = CreateMessage::from_json(br#"{"to": "+1"}"#).expect("a valid body");
        assert_eq!(absent.validity_period, None);
        // Parsed exactly: a fast float parser reads this one a unit in the last place off
        // (2189522458348199.25), which is no integer.
        let large = br#"{"to": "+1", "attempt": 2189522458348199.0}"#;
        let message = CreateMessage::from_json(large).expect("a valid body");
        assert_eq!(message.attempt, Some(2_189_522_458_348_199));
    }

    #[test]
    fn a_json_body_error_names_the_field_not_a_line_and_column() {
        let cases = [
            (
                r#"{"to": "+1", "from": "+2", "body": "x", "validity_period": "ten"}"#,
                Some("validity_period"),
                "validity_period: expected an integer",
            ),
            (
                r#"{"to": "+1", "from": "+2", "body": "x", "attempt": 1.5}"#,
                Some("attempt"),
                "attempt: invalid value: floating point `1.5`, expected an integer",
            ),
            (
                r#"{"to": "+1", "from": "+2", "media_url": ["https://a.example", 7]}"#,
                Some("media_url[1]"),
                "media_url[1]: expected a string",
            ),
            (
                r#"{"to": "+1", "from": "+2", "send_as_mms": "yes"}"#,
                Some("send_as_mms"),
                "send_as_mms: expected a boolean",
            ),
            (
                r#"{"from": "+2", "body": "x"}"#,
                Some("to"),
                "to: is required",
            ),
            (
                r#"{"to": "+1", "from": "+2", "colour": "blue"}"#,
                Some("colour"),
                "colour: is not a parameter",
            ),
            (
                r#"{"to": "+1", "from": "+2", "a`b, c": 1}"#,
                Some("a`b, c"),
                "a`b, c: is not a parameter",
            ),
            (
                r#"{"to": "+1", "": null}"#,
                None,
                "a field with an empty name is not a parameter",
            ),
            (r#"{"to": "+1", "#, None, "the body is not valid JSON"),
            (r#"{"to": "+1"} x"#, None, "the body is not valid JSON"),
        ];
        for (body, parameter, problem) in cases {
            let error = CreateMessage::from_json(body.as_bytes()).expect_err(body);
            assert_eq!(error.parameter.as_deref(), parameter, "{body}");
            assert!(error.to_string().starts_with(problem), "{body}: {error}");
            assert!(
                parameter.is_none() || !error.to_string().contains("line"),
                "{error}"
            );
        }
    }
}
