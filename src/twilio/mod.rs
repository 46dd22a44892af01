//! What Twilio sends and accepts: request signatures ([`signature`], pure, no I/O), the
//! decoding of its form-encoded callbacks ([`form`]), and the REST client ([`client`]) with
//! the CreateMessage parameters it sends ([`create_message`]).

pub mod client;
pub mod create_message;
pub mod form;
pub mod refusal;
pub mod signature;
