//! The data lifecycle on the embedded store (the contract is in `store/lifecycle.rs`).
//!
//! Finding what to delete is a read, done here on a blocking thread; the deleting itself is
//! a writer command, so it is ordered with callbacks, atomic and fsynced like them, and the
//! writer re-reads each record when it deletes it (a retention candidate updated since it
//! was found stays). Retention finds its candidates in the status index: the live entry of
//! every message is there, under its current `updated_at`, so the oldest messages are the
//! first entries of each status range.
//!
//! # What a deletion leaves on disk
//!
//! sled is log-structured: a removal writes new versions of the tree pages, and the old
//! versions, which still hold the deleted values (a phone number in a record, index key
//! and event), stay in the log file until sled relocates the live pages of their segment
//! and frees it. sled 0.34 does that once a segment is at most half live; a freed segment
//! is reused for new writes, cut off when it is the last one of the file, and overwritten
//! with zeros when the store is next opened. A segment that stays mostly live keeps its
//! dead values indefinitely. [`compact`] (`statushook compact`, with the service stopped)
//! copies the live data into a fresh store and replaces the old one, after which no file of
//! the store holds a deleted value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use tokio::sync::oneshot;

use super::keys::index::{self, BY_ACCOUNT, BY_FROM, BY_STATUS, BY_TO, NO_STATUS};
use super::keys::{decode, meta_key, record_key, Record};
use super::writer::Command;
use super::{open_db, unavailable, wait_for, SledStore};
use crate::domain::{KnownStatus, MessageSid, Timestamp};
use crate::store::{Counts, ImportError, Imported, StoreError, StoredMessage, DELETE_BATCH};

/// The meta key set once every stored message has its account index entry.
const ACCOUNTS_INDEXED: &[u8] = b"accounts-indexed";

/// How far a retention pass has walked each status range. Everything below `from[code]`
/// in the range of `code` is history, deleted, or was found updated since `before` (and
/// then has a newer live entry): a new live entry below `before` cannot appear while the
/// pass runs, as the writer's times only grow, except by an import, which the next pass
/// (a new `before`) finds.
#[derive(Default)]
pub(super) struct ExpiryScan {
    before: Option<Timestamp>,
    from: HashMap<u8, Vec<u8>>,
}

impl SledStore {
    /// Deletes `sids` in writer commands of [`DELETE_BATCH`]; answers how many were deleted.
    pub async fn delete(
        &self,
        sids: Vec<MessageSid>,
        updated_before: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for batch in sids.chunks(DELETE_BATCH) {
            let (store, prefetch) = (self.clone(), batch.to_vec());
            crate::store::blocking(move || store.prefetch(&prefetch)).await?;
            let (reply, answer) = oneshot::channel();
            self.send(Command::Delete {
                sids: batch.to_vec(),
                updated_before,
                reply,
            })
            .await?;
            deleted += wait_for(answer).await?;
        }
        Ok(deleted)
    }

    /// Deletes the messages whose recipient or sender is one of `addresses`.
    pub async fn delete_by_addresses(&self, addresses: Vec<String>) -> Result<u64, StoreError> {
        let store = self.clone();
        let sids = crate::store::blocking(move || {
            let mut sids = BTreeSet::new();
            for address in &addresses {
                sids.extend(store.sids_of_number(address)?);
            }
            Ok(sids.into_iter().collect())
        })
        .await?;
        self.delete(sids, None).await
    }

    /// Deletes up to `limit` messages last updated before `before`, oldest first.
    pub async fn expire(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let store = self.clone();
        let sids = crate::store::blocking(move || store.oldest(before, limit)).await?;
        if sids.is_empty() {
            return Ok(0);
        }
        self.delete(sids, Some(before)).await
    }

    /// Reads what deleting `sids` will touch (records, events, number and account
    /// entries), so that the pages are in sled's cache when the writer deletes: the disk
    /// reads happen here, on a blocking thread, and not on the writer's, where callbacks
    /// would wait for them.
    fn prefetch(&self, sids: &[MessageSid]) -> Result<(), StoreError> {
        for sid in sids {
            let Some(record) = self.trees.record(sid)? else {
                continue;
            };
            for transition in &record.transitions {
                // Only to warm the cache: the writer reports a block it cannot read.
                let _ = self.trees.block_at(transition.received_at.0);
            }
            for key in index::numbers(sid, &record.parties) {
                self.trees.data.get(key).map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// The messages with `phone` as recipient or sender, from the `t` and `f` indexes.
    fn sids_of_number(&self, phone: &str) -> Result<Vec<MessageSid>, StoreError> {
        let mut sids = BTreeSet::new();
        for kind in [BY_TO, BY_FROM] {
            let prefix = index::prefix(kind, &index::text_value(phone));
            for entry in self.trees.data.scan_prefix(&prefix) {
                let (key, _) = entry.map_err(unavailable)?;
                if let Some(sid) = sid_after(&key, prefix.len()) {
                    sids.insert(sid);
                }
            }
        }
        Ok(sids.into_iter().collect())
    }

    /// Up to `limit` messages whose live status-index entry is older than `before`,
    /// oldest first: the head of each status range, merged.
    ///
    /// A retention pass asks again and again with the same `before`, so each range is
    /// walked on from where the last call left it ([`ExpiryScan`]) instead of from its
    /// start, where the pass's history entries and deleted keys would be walked again
    /// every time: a pass reads each entry once.
    fn oldest(&self, before: Timestamp, limit: usize) -> Result<Vec<MessageSid>, StoreError> {
        let mut scan = self
            .expiry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if scan.before != Some(before) {
            *scan = ExpiryScan {
                before: Some(before),
                from: HashMap::new(),
            };
        }
        // (updated_at, sid, status code, key) of the live entries found.
        let mut found = Vec::new();
        let mut ends = HashMap::new();
        let codes = KnownStatus::ALL.iter().map(|s| s.code()).chain([NO_STATUS]);
        for code in codes {
            let prefix = index::prefix(BY_STATUS, &[code]);
            let (low, high) = super::query::bounds(&prefix, None, Some(before), None);
            let low = scan.from.get(&code).cloned().unwrap_or(low);
            let mut end = high.clone();
            let mut taken = 0;
            for entry in self.trees.data.range(low..high) {
                let (key, value) = entry.map_err(unavailable)?;
                // History entries are positions a message has left, not its age.
                if !value.is_empty() {
                    continue;
                }
                if taken == limit {
                    end = key.to_vec();
                    break;
                }
                if let Some((updated_at, sid)) = index::tail(&key) {
                    found.push((updated_at, sid.to_owned(), code, key.to_vec()));
                    taken += 1;
                }
            }
            ends.insert(code, end);
        }
        found.sort_unstable();
        let left = found.split_off(found.len().min(limit));
        // Each range goes on at its first entry not taken now: the oldest one left over,
        // or where its walk stopped.
        for (code, end) in ends {
            let next = left.iter().find(|entry| entry.2 == code);
            scan.from
                .insert(code, next.map_or(end, |entry| entry.3.clone()));
        }
        Ok(found
            .into_iter()
            .filter_map(|(_, sid, _, _)| MessageSid::parse(&sid).ok())
            .collect())
    }

    /// Up to `limit` messages after `after` in SID order, as they stood at `snapshot`.
    pub fn export_page(
        &self,
        snapshot: u64,
        after: Option<&MessageSid>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let snapshot = Timestamp(snapshot);
        let low = match after {
            // The key right after `m sid`: the sid with a 0 byte appended.
            Some(sid) => {
                let mut key = record_key(sid);
                key.push(0);
                key
            }
            None => b"m".to_vec(),
        };
        let mut messages = Vec::with_capacity(limit);
        for entry in self.trees.data.range(low..b"n".to_vec()) {
            if messages.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(unavailable)?;
            let Some(sid) = sid_after(&key, 1) else {
                continue;
            };
            let record: Record = decode(&value)?;
            let Some(state) = record.state_at(snapshot) else {
                continue;
            };
            let received = record
                .transitions
                .iter()
                .take_while(|t| t.received_at <= snapshot)
                .count();
            let as_of = Record {
                transitions: record.transitions[..received].to_vec(),
                ..record
            };
            match self.trees.events(&sid, &as_of) {
                Ok(events) => messages.push(StoredMessage { sid, state, events }),
                // Deleted between the record read and its events: no longer exported.
                Err(StoreError::Corrupt(_)) if self.trees.record(&sid)?.is_none() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(messages)
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        match self.trees.data.scan_prefix(b"m").next() {
            None => Ok(true),
            Some(entry) => entry.map(|_| false).map_err(unavailable),
        }
    }

    pub async fn import(&self, messages: Vec<StoredMessage>) -> Result<Imported, ImportError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Import { messages, reply }).await?;
        match tokio::time::timeout(IMPORT_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::unavailable("the writer has stopped").into()),
            Err(_) => Err(StoreError::unavailable("the store did not answer in time").into()),
        }
    }

    /// Counts of one account's messages by current status and error code, updated within
    /// `[since, until)`: read from the account index and each message's record, so it
    /// costs one record read per message of the account.
    pub fn account_stats(
        &self,
        account: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, StoreError> {
        let prefix = index::prefix(BY_ACCOUNT, &index::text_value(account));
        let mut by_status = BTreeMap::new();
        let mut by_error = BTreeMap::new();
        for entry in self.trees.data.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(unavailable)?;
            let Some(sid) = sid_after(&key, prefix.len()) else {
                continue;
            };
            let Some(state) = self.trees.record(&sid)?.and_then(|r| r.state()) else {
                continue;
            };
            let inside = since.is_none_or(|since| state.updated_at >= since)
                && until.is_none_or(|until| state.updated_at < until);
            let Some(status) = state.status.filter(|_| inside) else {
                continue;
            };
            *by_status.entry(status.code()).or_insert(0) += 1;
            if let Some(error) = state.error_code {
                *by_error.entry(error).or_insert(0) += 1;
            }
        }
        Ok(Counts {
            by_status: by_status
                .into_iter()
                .filter_map(|(code, count)| Some((KnownStatus::from_code(code)?, count)))
                .collect(),
            by_error: by_error.into_iter().collect(),
        })
    }

    /// Marks a new, empty store as account-indexed, before `open` returns: every message
    /// it will hold gets its entry as it is recorded, so there is nothing to back-fill and
    /// no thread to start. Written straight into the tree, as nothing else writes yet; it
    /// becomes durable with the writer's first fsync, and a store that loses it before then
    /// has no message and is marked again at its next open.
    pub(super) fn mark_accounts_indexed(&self) -> Result<(), StoreError> {
        self.trees
            .data
            .insert(meta_key(ACCOUNTS_INDEXED), &[1][..])
            .map_err(unavailable)?;
        Ok(())
    }

    /// Gives every stored message its account index entry, once, on a store written before
    /// that index existed: found off the writer's thread, added by the writer.
    pub(super) fn index_accounts(&self) {
        if !matches!(self.meta(ACCOUNTS_INDEXED), Ok(None)) {
            return;
        }
        let (data, commands) = (self.trees.data.clone(), self.commands.clone());
        let scan = move || {
            let mut sids = Vec::new();
            for entry in data.scan_prefix(b"m") {
                let Ok((key, _)) = entry else { return };
                sids.extend(sid_after(&key, 1));
                if sids.len() >= DELETE_BATCH {
                    let batch = std::mem::take(&mut sids);
                    let command = Command::IndexAccounts {
                        sids: batch,
                        done: None,
                    };
                    if commands.blocking_send(command).is_err() {
                        return;
                    }
                }
            }
            let done = Some(ACCOUNTS_INDEXED.to_vec());
            let _ = commands.blocking_send(Command::IndexAccounts { sids, done });
        };
        let _ = std::thread::Builder::new()
            .name("statushook-accounts".into())
            .spawn(scan);
    }
}

/// An import batch writes up to a few thousand messages in one group.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The SID at the end of a key whose first `skip` bytes are its prefix.
fn sid_after(key: &[u8], skip: usize) -> Option<MessageSid> {
    let sid = std::str::from_utf8(key.get(skip..)?).ok()?;
    MessageSid::parse(sid).ok()
}

/// What [`compact`] did.
#[derive(Debug, Clone, Copy)]
pub struct Compacted {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub keys: u64,
}

/// Rewrites the stopped store in `path` into a fresh one holding only its live data, and
/// replaces it: afterwards no file of the store holds a value that was deleted or
/// overwritten. The copy is made and synced in `path.compacting` first; the old folder is
/// renamed away and removed only once the copy is complete, so an interruption leaves
/// either store whole. (The file system may keep the freed blocks on the disk until they
/// are reused; that is below any file.)
pub fn compact(path: &Path) -> Result<Compacted, StoreError> {
    let fresh = sibling(path, "compacting");
    let old = sibling(path, "compacted-old");
    for leftover in [&fresh, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(StoreError::unavailable)?;
        }
    }
    let source = open_db(path)?;
    let bytes_before = source.size_on_disk().map_err(unavailable)?;
    let target = open_db(&fresh)?;
    let mut keys = 0;
    for name in source.tree_names() {
        let (from, to) = (
            source.open_tree(&name).map_err(unavailable)?,
            target.open_tree(&name).map_err(unavailable)?,
        );
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in from.iter() {
            let (key, value) = entry.map_err(unavailable)?;
            batch.insert(key, value);
            pending += 1;
            keys += 1;
            if pending == 10_000 {
                to.apply_batch(std::mem::take(&mut batch))
                    .map_err(unavailable)?;
                pending = 0;
            }
        }
        to.apply_batch(batch).map_err(unavailable)?;
    }
    target.flush().map_err(unavailable)?;
    let bytes_after = target.size_on_disk().map_err(unavailable)?;
    drop(source);
    drop(target);
    sync_files(&fresh).map_err(StoreError::unavailable)?;
    std::fs::rename(path, &old).map_err(StoreError::unavailable)?;
    std::fs::rename(&fresh, path).map_err(StoreError::unavailable)?;
    // The renames are entries of the parent folder.
    let parent = match path.parent() {
        Some(parent) if parent != Path::new("") => parent,
        _ => Path::new("."),
    };
    sync_dir(parent).map_err(StoreError::unavailable)?;
    std::fs::remove_dir_all(&old).map_err(StoreError::unavailable)?;
    Ok(Compacted {
        bytes_before,
        bytes_after,
        keys,
    })
}

/// `path` with `.suffix` appended to its last component.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Syncs every file of a folder (sled's `flush` does not reach the disk), then the folder.
fn sync_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{KnownStatus, Source, StatusEvent};

    /// Records `status` for `sid` on `store`, which must take it.
    async fn stored(store: &SledStore, sid: &str, status: &str) {
        store
            .record(event(sid, status, None), None)
            .await
            .expect("stored");
    }

    fn event(sid: &str, status: &str, error: Option<&str>) -> StatusEvent {
        let mut params = vec![
            ("MessageSid".to_owned(), sid.to_owned()),
            ("MessageStatus".to_owned(), status.to_owned()),
            ("To".to_owned(), "+15005550009".to_owned()),
        ];
        params.extend(error.map(|code| ("ErrorCode".to_owned(), code.to_owned())));
        StatusEvent::from_params(params, Source::Callback).expect("a valid event")
    }

    const A: &str = "SM000000000000000000000000000000aa";
    const B: &str = "SM000000000000000000000000000000bb";
    const C: &str = "SM000000000000000000000000000000cc";

    fn sid(raw: &str) -> MessageSid {
        MessageSid::parse(raw).expect("a sid")
    }

    #[tokio::test]
    async fn a_new_store_is_marked_account_indexed_by_open_itself() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        // Marked by `open` itself, not whenever a back-fill thread gets the CPU.
        assert_eq!(store.meta(ACCOUNTS_INDEXED).expect("read"), Some(vec![1]));
        let keys = store.trees.data.len();
        stored(&store, A, "queued").await;
        assert_eq!(store.meta(ACCOUNTS_INDEXED).expect("read"), Some(vec![1]));
        assert!(store.trees.data.len() > keys);
        store.close().await.expect("closes");
    }

    #[tokio::test]
    async fn an_export_page_shows_the_store_as_of_its_snapshot() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        for sid in [A, B] {
            stored(&store, sid, "queued").await;
        }
        let snapshot = store.watermark();
        stored(&store, A, "delivered").await;
        stored(&store, C, "queued").await;
        let page = store.export_page(snapshot, None, 10).expect("a page");
        let sids: Vec<&str> = page.iter().map(|m| m.sid.as_str()).collect();
        assert_eq!(
            sids,
            [A, B],
            "a message stored after the snapshot is left out"
        );
        assert_eq!(
            page[0].events.len(),
            1,
            "an event after the snapshot is left out"
        );
        assert_eq!(page[0].state.status, Some(KnownStatus::Queued));
        let rest = store
            .export_page(snapshot, Some(&sid(A)), 10)
            .expect("a page");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].sid.as_str(), B);
        store.close().await.expect("closes");
    }

    #[tokio::test]
    async fn a_deleted_message_leaves_the_store_as_if_it_had_never_been_stored() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        for status in ["queued", "sent"] {
            store
                .record(event(A, status, None), None)
                .await
                .expect("stored");
        }
        let failed = event(A, "undelivered", Some("30003"));
        store
            .record(failed, Some("token".into()))
            .await
            .expect("stored");
        stored(&store, B, "delivered").await;
        let deleted = store.delete(vec![sid(A), sid(C)], None).await;
        assert_eq!(deleted.expect("deleted"), 1);
        let again = store.delete(vec![sid(A)], None).await;
        assert_eq!(again.expect("deleted"), 0);
        let report = store.check().expect("consistent after a delete");
        assert_eq!((report.messages, report.events), (1, 1));
        assert_eq!(store.message(&sid(A)).expect("read"), None);
        let counts = store.counts().expect("counts");
        assert_eq!(counts.by_status, [(KnownStatus::Delivered, 1)]);
        assert!(counts.by_error.is_empty());
        assert_eq!(store.feed(0, 10).expect("feed").len(), 1);
        // A later callback starts a new message: nothing of the old one is left to merge.
        stored(&store, A, "sent").await;
        let again = store.message(&sid(A)).expect("read").expect("stored again");
        assert_eq!(again.events.len(), 1);
        store.check().expect("consistent");
        store.close().await.expect("closes");
    }

    #[tokio::test]
    async fn retention_deletes_only_what_was_last_updated_before_its_horizon() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        stored(&store, A, "sent").await;
        stored(&store, B, "sent").await;
        let horizon = Timestamp(store.watermark() + 1);
        // B moves after the horizon was chosen: it is no longer old enough.
        stored(&store, B, "delivered").await;
        stored(&store, C, "queued").await;
        assert_eq!(store.expire(horizon, 10).await.expect("deleted"), 1);
        assert_eq!(store.expire(horizon, 10).await.expect("deleted"), 0);
        assert!(store.message(&sid(A)).expect("read").is_none());
        assert!(store.message(&sid(B)).expect("read").is_some());
        let report = store.check().expect("consistent");
        assert_eq!(report.messages, 2);
        store.close().await.expect("closes");
    }

    #[tokio::test]
    async fn a_retention_pass_walks_on_where_it_left_off_and_misses_nothing() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        // A listing in progress, so that moves keep their old positions as history.
        crate::store::sled::tests::start_a_listing(&store);
        // Messages ending in four statuses, their ranges interleaved in time and full of
        // history entries (every message was queued first).
        let ends = ["sent", "delivered", "undelivered", "queued"];
        let sids: Vec<String> = (0..120).map(|i| format!("SM{i:032x}")).collect();
        for (i, sid) in sids.iter().enumerate() {
            stored(&store, sid, "queued").await;
            if ends[i % 4] != "queued" {
                stored(&store, sid, ends[i % 4]).await;
            }
        }
        let horizon = Timestamp(store.watermark() + 1);
        let mut deleted = 0;
        let mut calls = 0;
        loop {
            // Between two calls an old message of each kind moves on: it is kept.
            if calls < 4 {
                stored(&store, &sids[100 + calls], "read").await;
            }
            let batch = store.expire(horizon, 7).await.expect("deleted");
            calls += 1;
            if batch == 0 {
                break;
            }
            deleted += batch;
        }
        assert!(
            calls > 120 / 7,
            "the pass took many small batches ({calls})"
        );
        assert_eq!(deleted, 116, "every old message but the four that moved");
        for (i, raw) in sids.iter().enumerate() {
            let kept = store.message(&sid(raw)).expect("read").is_some();
            assert_eq!(kept, (100..104).contains(&i), "message {i}");
        }
        store.check().expect("consistent");
        store.close().await.expect("closes");
    }
}
