pub mod cli;
pub mod config;
pub mod domain;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod reconciler;
pub mod routes;
pub mod sender;
pub mod signature;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telemetry;
