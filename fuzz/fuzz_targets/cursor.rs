//! The listing cursor. The input is a cursor's text, a newline, then the bytes the rest
//! of the case is made of. Any text, read at any time, is a cursor or a clear refusal,
//! never a panic; a cursor that reads has exactly that text; a cursor issued within its
//! lifetime round-trips through its text.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use statushook::domain::{MessageSid, Timestamp};
use statushook::store::{Cursor, CURSOR_LIFETIME};

#[derive(Arbitrary, Debug)]
struct Input {
    now: u64,
    snapshot: u64,
    age: u64,
    updated_at: u64,
    sid: [u8; 16],
    mms: bool,
}

const SLACK: u64 = 60_000_000;

fuzz_target!(|data: &[u8]| {
    let (raw, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (data, &[][..]),
    };
    let Ok(raw) = std::str::from_utf8(raw) else {
        return;
    };
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(rest)) else {
        return;
    };
    let now = Timestamp(input.now);
    if let Ok(cursor) = Cursor::decode(raw, now) {
        assert_eq!(cursor.encode(), raw, "one text per cursor");
        assert_eq!(Cursor::decode(&cursor.encode(), now), Ok(cursor));
    }

    let lifetime = CURSOR_LIFETIME.as_micros() as u64;
    let hex: String = input.sid.iter().map(|b| format!("{b:02x}")).collect();
    let prefix = if input.mms { "MM" } else { "SM" };
    let sid = MessageSid::parse(&format!("{prefix}{hex}")).expect("a valid SID");
    // Issued anywhere from an hour ago to a minute ahead (another replica's clock).
    let earliest = input.now.saturating_sub(lifetime);
    let latest = input.now.saturating_add(SLACK);
    let issued_at = earliest + input.age % (latest - earliest + 1);
    let cursor = Cursor {
        snapshot: input.snapshot,
        issued_at: Timestamp(issued_at),
        updated_at: Timestamp(input.updated_at),
        sid,
    };
    assert_eq!(Cursor::decode(&cursor.encode(), now), Ok(cursor));
});
