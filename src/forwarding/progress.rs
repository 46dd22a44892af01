//! What the forwarder keeps in the store between runs, under two `meta` keys.
//!
//! `forwarding` is its progress: the feed position read up to, and every transition read
//! but not yet acknowledged (with its attempts, so the 24 hours of retries count from the
//! first attempt across restarts). Everything at or below `cursor` that is not in
//! `pending` was acknowledged or given up. Progress is saved in batches, so after a crash
//! the transitions acknowledged since the last save are sent again: delivery is
//! at-least-once, and `webhook-id` lets a receiver drop the repeats.
//!
//! `forwarding.replay` is the last replay asked for through the API. Any replica may write
//! it; the one forwarding carries it out once, remembering its id in its progress.

use serde::{Deserialize, Serialize};

pub const PROGRESS_KEY: &str = "forwarding";
pub const REPLAY_KEY: &str = "forwarding.replay";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The feed has been read up to and including this seq.
    pub cursor: u64,
    pub pending: Vec<Saved>,
    pub replay: Option<Replay>,
    /// The id of the last replay request taken up.
    pub last_replay_request: Option<u64>,
}

/// A transition read but not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub seq: u64,
    pub attempts: u32,
    /// Microseconds since the epoch.
    pub first_attempt: Option<u64>,
}

/// A replay in progress: transitions that arrived within `[since, until)` are sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub id: u64,
    /// Microseconds since the epoch.
    pub since: u64,
    pub until: u64,
    /// The feed has been walked up to and including this seq.
    pub after: u64,
}

/// A replay asked for through `POST /v1/forwarding/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub id: u64,
    pub since: u64,
    pub until: u64,
}

impl Progress {
    pub fn decode(bytes: &[u8]) -> Result<Progress, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data: serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl ReplayRequest {
    pub fn decode(bytes: &[u8]) -> Result<ReplayRequest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips() {
        let progress = Progress {
            cursor: 42,
            pending: vec![Saved {
                seq: 40,
                attempts: 3,
                first_attempt: Some(1_700_000_000_000_000),
            }],
            replay: Some(Replay {
                id: 7,
                since: 1,
                until: 2,
                after: 0,
            }),
            last_replay_request: Some(7),
        };
        assert_eq!(
            Progress::decode(&progress.encode()).expect("decodes"),
            progress
        );
    }
}
