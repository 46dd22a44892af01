//! What the feature tests share: the services under test and how to start them, what
//! they are sent, and how their answers, metrics and background work are read. Each test
//! file uses the one version here rather than a copy of its own.

pub mod alerts;
pub mod binary;
pub mod database;
pub mod fixtures;
pub mod metrics;
pub mod poll;
pub mod receiver;
pub mod spawn;
pub mod streams;
pub mod twilio;
