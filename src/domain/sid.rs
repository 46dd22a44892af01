use std::fmt;

/// A message SID: `SM` or `MM` followed by 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageSid(String);

impl MessageSid {
    pub const LEN: usize = 34;

    /// Accepts exactly `^(SM|MM)[0-9a-fA-F]{32}$`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = raw.len() == Self::LEN
            && (raw.starts_with("SM") || raw.starts_with("MM"))
            && raw.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit);
        if valid {
            Ok(MessageSid(raw.to_owned()))
        } else {
            Err(format!(
                "{raw:?} is not a message SID (SM or MM followed by 32 hex digits)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account SID: `AC` followed by 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountSid(String);

impl AccountSid {
    /// Accepts exactly `^AC[0-9a-fA-F]{32}$`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if is_sid(raw, "AC") {
            Ok(AccountSid(raw.to_owned()))
        } else {
            Err(format!(
                "{raw:?} is not an account SID (AC followed by 32 hex digits)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `value` is `prefix` followed by 32 hex digits, the shape of every Twilio SID.
pub fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sm_and_mm_with_32_hex_digits_parse() {
        assert!(MessageSid::parse("SM0123456789abcdef0123456789ABCDEF").is_ok());
        assert!(MessageSid::parse("MM0123456789abcdef0123456789abcdef").is_ok());
        let bad = [
            "",
            "SM0123456789abcdef0123456789abcde",
            "SM0123456789abcdef0123456789abcdef0",
            "CA0123456789abcdef0123456789abcdef",
            "SM0123456789abcdef0123456789abcdeg",
            "sm0123456789abcdef0123456789abcdef",
        ];
        for raw in bad {
            assert!(MessageSid::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn only_ac_with_32_hex_digits_is_an_account_sid() {
        assert!(AccountSid::parse("AC0123456789abcdef0123456789ABCDEF").is_ok());
        for raw in [
            "",
            "AC0123",
            "SM0123456789abcdef0123456789abcdef",
            "ac0123456789abcdef0123456789abcdef",
        ] {
            assert!(AccountSid::parse(raw).is_err(), "{raw}");
        }
    }
}
