//! The few private parsers the fuzz targets in `fuzz/` need, and nothing else.
//!
//! This module exists only for those targets: the service never calls it, it is hidden
//! from the docs, and it adds no behaviour — each item is the private function itself or a
//! one-line wrapper around it, so what the fuzzers exercise is exactly what runs.

use crate::twilio::signature;

/// The sled store's value codecs: records, event blocks and event values, and event keys.
pub mod stored {
    pub use crate::store::codecs::{
        decode, decode_block, encode, encode_block, event_key, event_seq, EventBody, Record,
    };
}

/// A callback body decoded into parameters, in arrival order, as the callback handler
/// decodes it; `None` when a name or value is not UTF-8 (the handler's `400`).
pub fn callback_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    crate::twilio::form::decode_text(body)
}

/// The URLs a signature is checked against, the URL as given first.
pub fn url_variants(url: &str) -> Vec<String> {
    signature::url_variants(url)
}

/// Twilio Event Streams bodies, as the handler reads them: parsed (the order of every
/// object's fields kept), the accounts they name, and their members.
pub mod cloudevents {
    pub use crate::twilio::cloudevents::{accounts, decode, parse, Decoded, Member, Node};
}
