//! Validated values. Raw form parameters become these types on a handler's first line;
//! nothing below the handlers sees a SID or a status as a bare `String`.

pub mod counters;
pub mod error_codes;
mod event;
mod message;
mod phone;
mod sid;
mod status;
mod timestamp;

pub use event::{EventError, Source, StatusEvent};
pub use message::{effective, is_duplicate, is_echo, MessageState, Parties, Transition};
pub use phone::{country, PhoneNumber};
pub use sid::{is_sid, AccountSid, MessageSid};
pub use status::{KnownStatus, MessageStatus};
pub use timestamp::{RfcTime, Timestamp};
