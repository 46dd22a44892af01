//! The export format: every message with its events as JSON lines (exactly as
//! `GET /v1/messages/{sid}` shows them) or CSV, written by `GET /v1/export` and
//! `statushook export` ([`export`]), read back by `statushook import` ([`import`]). An
//! export imported into an empty store of either kind gives the same API answers, which is
//! how a sled store moves to PostgreSQL. What the service keeps besides its messages (where
//! the change feed had got to, forwarding's progress) moves in a state file of its own
//! ([`state`]).

pub mod export;
pub mod import;
pub mod state;
