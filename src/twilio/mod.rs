//! What Twilio sends and accepts: request signatures ([`signature`], pure, no I/O), the
//! decoding of its form-encoded callbacks ([`form`]) and of its Event Streams CloudEvents
//! ([`cloudevents`]), the REST client ([`client`]) with the CreateMessage parameters it
//! sends ([`create_message`]), and the Event Streams API's sinks and subscriptions
//! ([`event_streams`]).

pub mod client;
pub mod cloudevents;
pub mod create_message;
pub mod event_streams;
pub mod form;
pub mod refusal;
pub mod signature;
