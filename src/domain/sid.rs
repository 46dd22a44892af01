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
}
