//! Twilio's form-encoded requests (status callbacks), decoded the way Twilio signed them.
//!
//! The body is percent-decoded into bytes, and the signature is checked over those bytes;
//! only then is each name and value required to be UTF-8 ([`into_text`]). A value that is
//! not is refused, never stored with U+FFFD in place of what Twilio sent. Pure, no I/O.

/// A parameter whose percent-decoded name or value is not UTF-8.
#[derive(Debug)]
pub enum NotUtf8 {
    /// The value of this (UTF-8) name.
    Value(String),
    /// A name, shown percent-encoded since it cannot be shown as text.
    Name(String),
}

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotUtf8::Value(name) => write!(f, "the value of {name}"),
            NotUtf8::Name(encoded) => write!(f, "the parameter name {encoded}"),
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` as the WHATWG URL standard does (`&`
/// separates pairs, the first `=` separates name and value, `+` is a space, `%XX` is a
/// byte, and an invalid escape stays as written), but into bytes: no lossy step before the
/// signature check.
pub fn decode(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                input.get(i + 1).and_then(|b| hex(*b)),
                input.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// The parameters as text, or the first one that is not UTF-8.
pub fn into_text(params: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(String, String)>, NotUtf8> {
    params
        .into_iter()
        .map(|(name, value)| {
            let name = String::from_utf8(name).map_err(|error| {
                NotUtf8::Name(form_urlencoded::byte_serialize(error.as_bytes()).collect::<String>())
            })?;
            match String::from_utf8(value) {
                Ok(value) => Ok((name, value)),
                Err(_) => Err(NotUtf8::Value(name)),
            }
        })
        .collect()
}

/// A callback body decoded into parameters, in arrival order; `None` when a name or value
/// is not UTF-8 (the callback handler's `400`).
pub fn decode_text(body: &[u8]) -> Option<Vec<(String, String)>> {
    into_text(decode(body)).ok()
}
