//! A phone number as a privacy erasure names it: E.164, and every form in which a
//! message's `To` or `From` can carry it; and the country an address's number belongs to.

use std::fmt;

/// The channels whose addresses carry a phone number after their name and a colon, as
/// Twilio writes them in `To` and `From`: `whatsapp:+14155550100`, `rcs:+14155550100`.
const CHANNELS: [&str; 2] = ["whatsapp", "rcs"];

/// An E.164 number: `+`, then up to 15 digits, the first not 0.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts exactly `^\+[1-9][0-9]{0,14}$`. The problem does not quote the value, which
    /// is personal data.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let digits = raw.strip_prefix('+').ok_or("must start with +")?;
        let valid = (1..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(PhoneNumber(raw.to_owned()))
        } else {
            Err("must be + followed by 1 to 15 digits, the first not 0")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every value a `To` or `From` holding this number can have: the number itself and
    /// its address on each channel that carries phone numbers.
    pub fn addresses(&self) -> Vec<String> {
        std::iter::once(self.0.clone())
            .chain(
                CHANNELS
                    .iter()
                    .map(|channel| format!("{channel}:{}", self.0)),
            )
            .collect()
    }
}

/// The country (ISO 3166-1 alpha-2, `US`, `GB`…) of the phone number in a `To` or `From`
/// address, plain or on a channel (`whatsapp:+44…`), from its calling code and leading
/// digits as Google's libphonenumber metadata (the `phonenumber` crate) assigns them: `+1`
/// alone is shared by some twenty countries, `+44 7911` is Guernsey. A number whose
/// leading digits no country's plan claims counts as the calling code's main country
/// (`+1 500…` is `US`), as libphonenumber has it. `None` for an address that is no phone
/// number (a short code, a `messenger:` id) or a calling code no country has.
pub fn country(address: &str) -> Option<String> {
    let number = CHANNELS
        .iter()
        .find_map(|channel| {
            address
                .strip_prefix(channel)
                .and_then(|rest| rest.strip_prefix(':'))
        })
        .unwrap_or(address);
    let number = PhoneNumber::parse(number).ok()?;
    let parsed = phonenumber::parse(None, number.as_str()).ok()?;
    let id = parsed.country().id()?;
    Some(id.as_ref().to_owned())
}

/// Never the number itself: it is personal data, and debug output ends up in logs.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_e164_numbers_are_phone_numbers() {
        for valid in ["+14155550100", "+1", "+123456789012345"] {
            assert!(PhoneNumber::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "4155550100",
            "+",
            "+0123",
            "+1234567890123456",
            "+1 415",
            " 14155550100",
            "whatsapp:+14155550100",
            "+1415555010a",
        ] {
            assert!(PhoneNumber::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn a_number_is_found_in_every_channel_form() {
        let number = PhoneNumber::parse("+14155550100").expect("valid");
        assert_eq!(
            number.addresses(),
            ["+14155550100", "whatsapp:+14155550100", "rcs:+14155550100"]
        );
        assert!(!format!("{number:?}").contains("415"));
    }

    #[test]
    fn an_address_has_the_country_of_its_number() {
        for (address, expected) in [
            ("+14155550100", Some("US")),
            ("+16135550100", Some("CA")),
            ("+18765550100", Some("JM")),
            ("+447400123456", Some("GB")),
            ("+447911123456", Some("GG")),
            ("+15005550006", Some("US")),
            ("whatsapp:+4915112345678", Some("DE")),
            ("rcs:+33612345678", Some("FR")),
            ("+5511987654321", Some("BR")),
            ("12345", None),
            ("messenger:1234567890", None),
            ("+999123456", None),
        ] {
            assert_eq!(country(address).as_deref(), expected, "{address}");
        }
    }
}
