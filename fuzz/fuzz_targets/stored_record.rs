//! The sled store's values read back from disk: a message record, an event value, a block
//! of events, an event key. Whatever the bytes, decoding answers a value or an error — no panic,
//! no allocation beyond the value's own size — and a decoded value encodes and decodes to
//! itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::fuzzing::stored::{self, EventBody, Record};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = stored::decode::<Record>(data) {
        let _ = record.state();
        if let Some(first) = record.transitions.first() {
            let _ = record.state_at(first.received_at);
        }
        let bytes = stored::encode(&record).expect("a decoded record encodes");
        assert_eq!(stored::decode::<Record>(&bytes).ok(), Some(record));
    }
    if let Ok(event) = stored::decode::<EventBody>(data) {
        let bytes = stored::encode(&event).expect("a decoded event encodes");
        assert_eq!(stored::decode::<EventBody>(&bytes).ok(), Some(event));
    }
    // A block decodes at any key its events do not precede, and encodes back to itself.
    if let Ok(events) = stored::decode_block(7, data) {
        let bytes = stored::encode_block(7, &events).expect("a decoded block encodes");
        assert_eq!(stored::decode_block(7, &bytes).ok(), Some(events));
    }
    if let Ok(seq) = stored::event_seq(data) {
        assert_eq!(&stored::event_key(seq)[..], data);
    }
});
