//! The service's own state beside its messages, which a move carries in a small file of its
//! own: `statushook export --state FILE` writes it, `statushook import EXPORT --state FILE`
//! restores it after the messages. It holds where the change feed had got to (every
//! position handed out so far is at or below `feed`) and forwarding's progress (the
//! transitions read, and those not yet acknowledged, by feed position). An import keeps the
//! events' feed positions (`store/lifecycle.rs`), so with it a consumer of
//! `GET /v1/events` resumes from its old `next`, and forwarding goes on where it stopped
//! and re-sends nothing the receiver acknowledged. The export itself stays plain JSON lines
//! of messages, which any consumer reads without knowing of this file.
//!
//! ```json
//! {"feed": 1796690197000123, "meta": {"forwarding": {"cursor": …, "pending": […], …}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::forwarding::{PROGRESS_KEY, REPLAY_KEY};
use crate::store::{Store, StoreError};

/// The pieces of the service's own state (`Store::meta` keys) that a move carries: those
/// that name feed positions, which the import keeps.
const CARRIED: [&str; 2] = [PROGRESS_KEY, REPLAY_KEY];

/// The state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Every change-feed position handed out so far is at or below this one.
    pub feed: u64,
    /// The carried pieces of the service's own state, by key, as stored (JSON).
    pub meta: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}: {1}")]
    File(String, std::io::Error),
    #[error("{0}: not a state file written by statushook export --state ({1})")]
    Unreadable(String, serde_json::Error),
    #[error("the service's state {0:?} is not JSON")]
    NotJson(String),
}

/// Reads the state of `store` to carry: its carried pieces, then where its feed has got to
/// (read after them, so that no position they name lies past it).
pub async fn read(store: &Store) -> Result<State, StateError> {
    let mut meta = BTreeMap::new();
    for key in CARRIED {
        if let Some(bytes) = store.meta(key).await? {
            let value =
                serde_json::from_slice(&bytes).map_err(|_| StateError::NotJson(key.to_owned()))?;
            meta.insert(key.to_owned(), value);
        }
    }
    let feed = store.snapshot().await?;
    Ok(State { feed, meta })
}

/// Restores `state` into `store`, once its messages are imported: its feed goes on after
/// `state.feed`, and the carried pieces are stored as they were.
pub async fn restore(store: &Store, state: &State) -> Result<(), StateError> {
    store.continue_feed_after(state.feed).await?;
    for (key, value) in &state.meta {
        if CARRIED.contains(&key.as_str()) {
            let bytes = serde_json::to_vec(value).map_err(|_| StateError::NotJson(key.clone()))?;
            store.put_meta(key, Some(bytes)).await?;
        }
    }
    Ok(())
}

/// Writes `state` to `path`.
pub fn write(path: &Path, state: &State) -> Result<(), StateError> {
    let name = path.display().to_string();
    // Plain data: serializing it cannot fail.
    let text = serde_json::to_vec(state).unwrap_or_default();
    std::fs::write(path, text).map_err(|error| StateError::File(name, error))
}

/// Reads the state at `path`.
pub fn load(path: &Path) -> Result<State, StateError> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|error| StateError::File(name.clone(), error))?;
    serde_json::from_slice(&text).map_err(|error| StateError::Unreadable(name, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_round_trips() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("state.json");
        let mut meta = BTreeMap::new();
        meta.insert(
            PROGRESS_KEY.to_owned(),
            serde_json::json!({"cursor": 42, "pending": []}),
        );
        let state = State { feed: 43, meta };
        write(&path, &state).expect("written");
        assert_eq!(load(&path).expect("read"), state);
        std::fs::write(&path, "{\"sid\": \"SM…\"}").expect("written");
        assert!(matches!(load(&path), Err(StateError::Unreadable(..))));
    }
}
