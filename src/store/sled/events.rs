//! Events in blocks: the events of one writer group share a sled key.
//!
//! sled keeps an entry in memory for every page of the tree (a few hundred bytes each, the
//! bulk of the service's resident memory on a large store), and a leaf holds at most 16
//! keys; keys appended in order, as event keys are, leave their leaves half full. One key
//! per event made the events the largest share of the pages. So the writer stores the events
//! a group records as blocks of up to [`BLOCK_EVENTS`] events (and [`BLOCK_BYTES`]), keyed by
//! the sequence number of the block's first event:
//!
//! | key               | value                                                       |
//! |-------------------|-------------------------------------------------------------|
//! | `v` seq(u64)      | `0xff`, then per event: seq − key (varint), [`EventBody`]   |
//! | `v` seq(u64)      | an [`EventBody`] alone: one event at the key's own sequence |
//!
//! The second form is the one-key-per-event layout of earlier versions, still read as a
//! block of one (a body starts with its SID's length, 34, never `0xff`).
//!
//! Blocks never overlap: every event of a block lies between its key and the next block's
//! key. The event at `seq` is therefore in the last block keyed at or before `seq`, and the
//! feed is the blocks in key order. New events are always later than every stored one (the
//! writer's clock only grows), so a group's blocks go after all others; an import or a
//! deletion edits the block that holds its sequence number, and a block left empty is
//! removed. A block's key stays when its first event goes.

use std::collections::BTreeMap;

use bincode::Options;
use sled::Batch;

use super::keys::{decode, event_key, event_seq, EventBody, EVENT};
use super::{unavailable, Trees};
use crate::store::StoreError;

/// The most events in one block, and the most bytes of their bodies (an event bigger than
/// that has a block to itself): bounds what a lookup of one event decodes, and keeps a leaf
/// of 16 blocks far below the size at which sled moves a page to a file of its own.
pub const BLOCK_EVENTS: usize = 8;
pub const BLOCK_BYTES: usize = 2 * 1024;

const BLOCK_TAG: u8 = 0xff;

/// A block's events: sequence number and encoded [`EventBody`], in sequence order.
pub(super) type Block = Vec<(u64, Vec<u8>)>;

fn options() -> impl Options {
    bincode::options()
}

/// Encodes a block stored at `key` (at or before its first event).
pub fn encode_block(key: u64, events: &Block) -> Result<Vec<u8>, StoreError> {
    let size: usize = events.iter().map(|(_, body)| body.len() + 9).sum();
    let mut value = Vec::with_capacity(1 + size);
    value.push(BLOCK_TAG);
    for (seq, body) in events {
        let delta = seq
            .checked_sub(key)
            .ok_or_else(|| StoreError::corrupt("an event lies before its block"))?;
        options()
            .serialize_into(&mut value, &delta)
            .map_err(StoreError::corrupt)?;
        value.extend_from_slice(body);
    }
    Ok(value)
}

/// Decodes the block stored at `key`, in either layout; each event's body stays encoded.
pub fn decode_block(key: u64, value: &[u8]) -> Result<Block, StoreError> {
    let Some((&BLOCK_TAG, mut rest)) = value.split_first() else {
        let _: EventBody = decode(value)?;
        return Ok(vec![(key, value.to_vec())]);
    };
    let mut events = Vec::new();
    let mut last = None;
    while !rest.is_empty() {
        let delta: u64 = options()
            .with_limit(rest.len() as u64)
            .deserialize_from(&mut rest)
            .map_err(StoreError::corrupt)?;
        let before = rest;
        let _: EventBody = options()
            .with_limit(rest.len() as u64)
            .deserialize_from(&mut rest)
            .map_err(StoreError::corrupt)?;
        let body = before[..before.len() - rest.len()].to_vec();
        let seq = key
            .checked_add(delta)
            .ok_or_else(|| StoreError::corrupt("an event block is malformed"))?;
        if last.is_some_and(|last| seq <= last) {
            return Err(StoreError::corrupt("an event block is out of order"));
        }
        last = Some(seq);
        events.push((seq, body));
    }
    Ok(events)
}

/// Where `seq` is in a block: `Ok` at its index, `Err` where it would go.
fn position(block: &Block, seq: u64) -> Result<usize, usize> {
    block.binary_search_by_key(&seq, |(at, _)| *at)
}

/// Whether `seq` goes into `block`, the last block keyed at or before it: when it lies
/// within the block's span (it must, for the blocks not to overlap); after the block's last
/// event it starts a block of its own, as joining would widen the span over times where
/// later imports would have to join it too. A block grown past its size is split when
/// written ([`put`]).
fn fits(block: &Block, seq: u64) -> bool {
    block.last().is_none_or(|(last, _)| seq <= *last)
}

/// The encoded body of the event at `seq` in `block`, if it is there.
pub(super) fn find(block: &Block, seq: u64) -> Option<&[u8]> {
    let at = position(block, seq).ok()?;
    Some(&block[at].1)
}

impl Trees {
    /// The key and value of the last block keyed at or before `seq`.
    fn last_block_at(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let found = self
            .data
            .range(event_key(0)..=event_key(seq))
            .next_back()
            .transpose()
            .map_err(unavailable)?;
        match found {
            Some((key, value)) => Ok(Some((event_seq(&key)?, value))),
            None => Ok(None),
        }
    }

    /// The stored block that would hold `seq`: the last one keyed at or before it.
    pub(super) fn block_at(&self, seq: u64) -> Result<Option<(u64, Block)>, StoreError> {
        match self.last_block_at(seq)? {
            Some((key, value)) => Ok(Some((key, decode_block(key, &value)?))),
            None => Ok(None),
        }
    }

    /// Calls `visit` with every event after `after` up to `upto`, in sequence order, until
    /// it returns `false`.
    pub(super) fn each_event(
        &self,
        after: u64,
        upto: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(first) = after.checked_add(1).filter(|first| *first <= upto) else {
            return Ok(());
        };
        // The block holding `first` may start before it.
        let start = self.last_block_at(first)?.map_or(first, |(key, _)| key);
        for entry in self.data.range(event_key(start)..=event_key(upto)) {
            let (key, value) = entry.map_err(unavailable)?;
            for (seq, body) in decode_block(event_seq(&key)?, &value)? {
                if seq > upto {
                    return Ok(());
                }
                if seq >= first && !visit(seq, &body)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The event changes of one writer group: what it records, and the stored blocks it edits.
#[derive(Default)]
pub(super) struct EventWrites {
    /// Events recorded by the group, in sequence order, all after every stored event.
    appended: Block,
    /// Stored blocks the group changes (and blocks of one imported event), by key; an empty
    /// one is removed.
    edited: BTreeMap<u64, Block>,
}

impl EventWrites {
    /// Adds an event at a sequence number after every stored and appended one.
    pub(super) fn append(&mut self, seq: u64, body: Vec<u8>) {
        debug_assert!(self.appended.last().is_none_or(|(last, _)| *last < seq));
        self.appended.push((seq, body));
    }

    /// Whether `seq` falls among the events the group appends (after every stored one).
    fn among_appended(&self, seq: u64) -> bool {
        self.appended
            .first()
            .is_some_and(|(first, _)| *first <= seq)
    }

    /// Reads the block that holds (or would hold) `seq`, if this group has not yet: the
    /// only part of an edit that can fail, so that a command does every read before it
    /// changes anything.
    pub(super) fn load(&mut self, trees: &Trees, seq: u64) -> Result<(), StoreError> {
        if self.among_appended(seq) {
            return Ok(());
        }
        let edited = self.edited.range(..=seq).next_back().map(|(key, _)| *key);
        if let Some((stored, block)) = trees.block_at(seq)? {
            if edited.is_none_or(|edited| edited < stored) {
                self.edited.insert(stored, block);
            }
        }
        Ok(())
    }

    /// Whether an event is stored (or written by this group) at `seq`; loads its block.
    pub(super) fn contains(&mut self, trees: &Trees, seq: u64) -> Result<bool, StoreError> {
        self.load(trees, seq)?;
        if self.among_appended(seq) {
            return Ok(position(&self.appended, seq).is_ok());
        }
        Ok(self
            .edited
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, block)| position(block, seq).is_ok()))
    }

    /// Adds an event at a free sequence number (an import's), whose block was loaded:
    /// into the block whose span holds `seq`, else into a block of its own.
    pub(super) fn insert(&mut self, seq: u64, body: Vec<u8>) {
        if self.among_appended(seq) {
            let at = position(&self.appended, seq).unwrap_or_else(|at| at);
            self.appended.insert(at, (seq, body));
            return;
        }
        match self.edited.range_mut(..=seq).next_back() {
            Some((_, block)) if fits(block, seq) => match position(block, seq) {
                Ok(at) => block[at] = (seq, body),
                Err(at) => block.insert(at, (seq, body)),
            },
            _ => {
                self.edited.insert(seq, vec![(seq, body)]);
            }
        }
    }

    /// Removes the event at `seq`, if there is one; its block was loaded.
    pub(super) fn remove(&mut self, seq: u64) {
        if let Ok(at) = position(&self.appended, seq) {
            self.appended.remove(at);
            return;
        }
        if let Some((_, block)) = self.edited.range_mut(..=seq).next_back() {
            if let Ok(at) = position(block, seq) {
                block.remove(at);
            }
        }
    }

    /// Puts the group's event changes into its batch.
    pub(super) fn write(self, batch: &mut Batch) -> Result<(), StoreError> {
        for (key, block) in self.edited {
            if block.is_empty() {
                batch.remove(&event_key(key)[..]);
            } else {
                put(batch, key, block)?;
            }
        }
        if let Some((first, _)) = self.appended.first() {
            put(batch, *first, self.appended)?;
        }
        Ok(())
    }
}

/// Writes `events` as the block keyed `key`, split into blocks of at most [`BLOCK_EVENTS`]
/// events and [`BLOCK_BYTES`] (one event may be larger): the first keeps `key`, each other
/// is keyed by its first event. None of those keys can be another block's, as they all lie
/// within the span of this one.
fn put(batch: &mut Batch, key: u64, events: Block) -> Result<(), StoreError> {
    let mut block: Block = Vec::new();
    let mut block_key = key;
    let mut bytes = 0;
    for (seq, body) in events {
        if !block.is_empty() && (block.len() == BLOCK_EVENTS || bytes + body.len() > BLOCK_BYTES) {
            batch.insert(&event_key(block_key)[..], encode_block(block_key, &block)?);
            block.clear();
            block_key = seq;
            bytes = 0;
        }
        bytes += body.len();
        block.push((seq, body));
    }
    batch.insert(&event_key(block_key)[..], encode_block(block_key, &block)?);
    Ok(())
}

/// Every block key and its events, for `check`: the blocks in key order, each at or before
/// its first event and none overlapping the next.
pub(super) fn all_events(trees: &Trees) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    for entry in trees.data.scan_prefix([EVENT]) {
        let (key, value) = entry.map_err(unavailable)?;
        let key = event_seq(&key)?;
        if seqs.last().is_some_and(|last| *last >= key) {
            return Err(StoreError::corrupt(format!(
                "event block {key} overlaps the one before"
            )));
        }
        let block = decode_block(key, &value)?;
        if block.is_empty() {
            return Err(StoreError::corrupt(format!("event block {key} is empty")));
        }
        seqs.extend(block.into_iter().map(|(seq, _)| seq));
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::keys::encode;
    use crate::store::sled::params;

    fn trees() -> (tempfile::TempDir, Trees) {
        let dir = tempfile::tempdir().expect("a folder");
        let db = sled::Config::new().path(dir.path()).open().expect("opens");
        let data = db.open_tree("t").expect("a tree");
        (dir, Trees { db, data })
    }

    fn body(seq: u64) -> Vec<u8> {
        let cx = params::Context {
            sid: "SM00000000000000000000000000000001",
            status: "sent",
            parties: &Default::default(),
        };
        let params = vec![("Extra".to_owned(), format!("event {seq}"))];
        let body = EventBody {
            sid: cx.sid.to_owned(),
            params: params::pack(params, &cx),
        };
        encode(&body).expect("encodes")
    }

    fn apply(trees: &Trees, writes: EventWrites) {
        let mut batch = Batch::default();
        writes.write(&mut batch).expect("writes");
        trees.data.apply_batch(batch).expect("applies");
    }

    /// Every event as the feed reads it, and each one found by its own sequence number.
    fn read_all(trees: &Trees) -> Vec<u64> {
        let mut seqs = Vec::new();
        trees
            .each_event(0, u64::MAX, |seq, found| {
                assert_eq!(found, body(seq), "the feed's event {seq}");
                seqs.push(seq);
                Ok(true)
            })
            .expect("reads");
        for seq in &seqs {
            let (_, block) = trees.block_at(*seq).expect("reads").expect("a block");
            let at = position(&block, *seq).expect("the event is in its block");
            assert_eq!(block[at].1, body(*seq));
        }
        assert_eq!(all_events(trees).expect("consistent"), seqs);
        seqs
    }

    #[test]
    fn a_group_s_events_go_into_blocks_and_read_back_in_order() {
        let (_dir, trees) = trees();
        let mut writes = EventWrites::default();
        let seqs: Vec<u64> = (0..70).map(|n| 1000 + 3 * n).collect();
        for seq in &seqs {
            writes.append(*seq, body(*seq));
        }
        apply(&trees, writes);
        assert_eq!(trees.data.len(), 9, "70 events in blocks of 8");
        assert_eq!(read_all(&trees), seqs);

        let mut from = Vec::new();
        trees
            .each_event(1003, 1100, |seq, _| {
                from.push(seq);
                Ok(from.len() < 5)
            })
            .expect("reads");
        assert_eq!(from, [1006, 1009, 1012, 1015, 1018], "after 1003, five");
    }

    #[test]
    fn an_event_of_the_earlier_layout_reads_as_a_block_of_one_and_can_be_edited() {
        let (_dir, trees) = trees();
        for seq in [10, 20] {
            trees
                .data
                .insert(event_key(seq), body(seq))
                .expect("inserts");
        }
        assert_eq!(read_all(&trees), [10, 20]);

        let mut writes = EventWrites::default();
        for seq in [10, 15] {
            writes.load(&trees, seq).expect("reads");
        }
        writes.remove(10);
        writes.insert(15, body(15));
        writes.append(30, body(30));
        apply(&trees, writes);
        assert_eq!(read_all(&trees), [15, 20, 30]);
    }

    #[test]
    fn an_imported_event_goes_into_the_block_whose_first_event_was_deleted() {
        let (_dir, trees) = trees();
        let mut writes = EventWrites::default();
        for seq in [100, 110, 120, 130] {
            writes.append(seq, body(seq));
        }
        writes.append(200, body(200));
        apply(&trees, writes);

        // The block keeps its key (100) when its first event goes; an event imported at
        // 105, before the block's new first (110), must join that block: a block of its
        // own at 105 would become the one lookups of 110..130 find.
        let mut writes = EventWrites::default();
        writes.load(&trees, 100).expect("reads");
        writes.remove(100);
        apply(&trees, writes);
        let mut writes = EventWrites::default();
        assert!(!writes.contains(&trees, 105).expect("reads"));
        assert!(writes.contains(&trees, 110).expect("reads"));
        for seq in [105, 150, 50] {
            assert!(!writes.contains(&trees, seq).expect("reads"));
            writes.insert(seq, body(seq));
        }
        apply(&trees, writes);
        assert_eq!(read_all(&trees), [50, 105, 110, 120, 130, 150, 200]);

        // Emptied blocks are removed; the others stay readable. (150 went into the block
        // keyed 100, which also holds 200.)
        let mut writes = EventWrites::default();
        for seq in [105, 110, 120, 130, 50] {
            writes.load(&trees, seq).expect("reads");
            writes.remove(seq);
        }
        apply(&trees, writes);
        assert_eq!(read_all(&trees), [150, 200]);
        assert_eq!(trees.data.len(), 1, "the block of 50 is gone");
    }

    #[test]
    fn imported_events_join_the_block_whose_span_holds_them_and_big_blocks_split() {
        let (_dir, trees) = trees();
        let mut writes = EventWrites::default();
        for seq in [100, 200] {
            writes.append(seq, body(seq));
        }
        apply(&trees, writes);
        // Twenty imported events inside the span 100..200 join that block, which is then
        // written as blocks of eight; one after it gets a block of its own.
        let mut writes = EventWrites::default();
        let inside: Vec<u64> = (0..20).map(|n| 101 + 4 * n).collect();
        for seq in inside.iter().chain([&300]) {
            assert!(!writes.contains(&trees, *seq).expect("reads"));
            writes.insert(*seq, body(*seq));
        }
        apply(&trees, writes);
        assert_eq!(
            trees.data.len(),
            4,
            "22 events in blocks of 8, 8, 6 and the one after"
        );
        let mut expected = vec![100];
        expected.extend(&inside);
        expected.extend([200, 300]);
        assert_eq!(read_all(&trees), expected);
    }

    #[test]
    fn a_group_can_delete_an_event_it_appended() {
        let (_dir, trees) = trees();
        let mut writes = EventWrites::default();
        for seq in [1, 2, 3] {
            writes.append(seq, body(seq));
        }
        writes.load(&trees, 2).expect("reads");
        writes.remove(2);
        assert!(!writes.contains(&trees, 2).expect("reads"));
        apply(&trees, writes);
        assert_eq!(read_all(&trees), [1, 3]);
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let mut value = encode_block(5, &vec![(5, body(5)), (9, body(9))]).expect("encodes");
        assert_eq!(decode_block(5, &value).expect("decodes").len(), 2);
        let out_of_order = encode_block(5, &vec![(9, body(9)), (5, body(5))]).expect("encodes");
        assert!(decode_block(5, &out_of_order).is_err());
        assert!(
            encode_block(6, &vec![(5, body(5))]).is_err(),
            "an event before its key"
        );
        value.truncate(value.len() - 1);
        assert!(decode_block(5, &value).is_err(), "a cut block");
        assert!(
            decode_block(5, b"\x22not a body").is_err(),
            "a malformed single event"
        );
    }
}
