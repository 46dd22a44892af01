//! statushook: verify, store and serve Twilio message status callbacks.
//!
//! The modules in reading order: the values and rules (`domain`), what Twilio sends and
//! accepts (`twilio`), where everything is kept (`store`), the HTTP boundary (`routes`,
//! `startup`), the background work (`jobs`, `forwarding`), and the command line (`cli`).
//! ARCHITECTURE.md has the map.

pub mod archive;
pub mod cli;
pub mod config;
pub mod connections;
pub mod domain;
pub mod forwarding;
#[doc(hidden)]
pub mod fuzzing;
pub mod jobs;
pub mod metrics;
pub mod routes;
pub mod secret;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod twilio;
