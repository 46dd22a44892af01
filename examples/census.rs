//! What a stopped sled store holds, next to its size on disk: keys and the bytes of keys and
//! values by kind (the first byte of the key, see `store/sled/keys.rs`), per message. The
//! difference to the folder's size is sled's own: page framing, fragments not yet merged,
//! and old versions in segments not yet cleaned.
//!
//! `cargo run --release --example census -- DATA_DIR` (with the service stopped)

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: census DATA_DIR")?;
    // The segment size must be the one the store was created with (`open_db`).
    let db = sled::Config::new()
        .path(&dir)
        .segment_size(8 * 1024 * 1024)
        .open()?;
    let tree = db.open_tree("statushook")?;
    let mut kinds = BTreeMap::<u8, [u64; 3]>::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        let kind = kinds.entry(key[0]).or_default();
        kind[0] += 1;
        kind[1] += key.len() as u64;
        kind[2] += value.len() as u64;
    }
    let messages = kinds.get(&b'm').map_or(0, |kind| kind[0]).max(1) as f64;
    let mut total = [0; 3];
    for (kind, [keys, key_bytes, value_bytes]) in &kinds {
        println!(
            "{}: {keys:>10} keys, {:>6.2} a message, {:>5.0} bytes a message",
            char::from(*kind),
            *keys as f64 / messages,
            (key_bytes + value_bytes) as f64 / messages
        );
        total = [
            total[0] + keys,
            total[1] + key_bytes,
            total[2] + value_bytes,
        ];
    }
    let on_disk = db.size_on_disk()?;
    println!(
        "keys and values: {:.0} bytes a message ({} keys); sled's files: {:.0} bytes a message",
        (total[1] + total[2]) as f64 / messages,
        total[0],
        on_disk as f64 / messages
    );
    Ok(())
}
