//! The few private parsers the fuzz targets in `fuzz/` need, and nothing else.
//!
//! This module exists only for those targets: the service never calls it, it is hidden
//! from the docs, and it adds no behaviour — each item is the private function itself or a
//! one-line wrapper around it, so what the fuzzers exercise is exactly what runs.

use crate::signature::{self, SignatureError};

/// The sled store's value codecs: records, event values and change-feed entries.
pub mod stored {
    pub use crate::store::sled::keys::{
        decode, encode, feed_value, parse_feed_value, EventBody, Record,
    };
}

/// A callback body decoded into parameters, in arrival order, as the callback handler
/// decodes it.
pub fn callback_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The URLs a signature is checked against, the URL as given first.
pub fn url_variants(url: &str) -> Vec<String> {
    signature::url_variants(url)
}

/// The shared key named by an `X-Twilio-Webhooks-Signature-Settings` header.
pub fn shared_key_id(settings: &str) -> Result<&str, SignatureError> {
    signature::shared_key_id(settings)
}
