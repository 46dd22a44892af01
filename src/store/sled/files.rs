//! What "durable" takes with sled: which files to fsync, when, and in what order.
//!
//! sled 0.34.7's `flush()` ends in `pwrite` and `sync_file_range` of its log: that neither
//! flushes the drive's cache nor records a grown file's size, so it promises nothing across
//! a power cut, and sled's only `fsync` of the log is in its background flusher, which runs
//! here for its segment cleaning on its own clock (`open_db`), unrelated to any group. So
//! after each group's flush the writer calls [`SledFiles::sync`], which fsyncs what sled
//! wrote and needs to recover the group, in this order:
//! - `blobs/<lsn>`: a page over a quarter of a segment goes to a file of its own that sled
//!   never fsyncs; the log only points to it. New ones are synced, then `blobs/` for their
//!   names, before the log. (With the log synced but not the blobs, the power-cut test's
//!   store did not open again: sled's recovery panicked.) The store's segments are large
//!   enough (see `open_db`) that no page of ours comes near that size, so in practice
//!   there are none, and the check costs one `read_dir` of an empty folder.
//! - `db`, the log: `fdatasync`, which also persists the size that its data needs.
//!
//! Opening writes the rest, once, and [`SledFiles::after_open`] makes it durable: `conf`
//! (written at creation, never fsynced); the names of `db`, `conf` and `blobs/`, and of the
//! data folder in its parent; and the snapshot. sled 0.34.7 writes `snap.<lsn>` only when
//! it opens, fsyncs its bytes, but neither its rename nor the removal of the previous one;
//! recovery replays the log from the newest snapshot found, and replaying from an older
//! one over segments reused since is not safe, so that rename must be durable before any
//! write is acknowledged.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The files of one open sled store that the writer syncs.
pub struct SledFiles {
    dir: PathBuf,
    log: File,
    /// The newest blob already synced: sled names blob files by their increasing LSN.
    newest_blob: Option<u64>,
}

impl SledFiles {
    /// Makes durable, right after sled opened `dir`, what opening created or renamed.
    pub fn after_open(dir: &Path) -> io::Result<SledFiles> {
        let mut files = SledFiles {
            dir: dir.to_owned(),
            log: File::open(dir.join("db"))?,
            newest_blob: None,
        };
        File::open(dir.join("conf"))?.sync_data()?;
        files.sync()?;
        sync_dir(&dir.join("blobs"))?;
        sync_dir(dir)?;
        // The data folder's own name, if sled just created it.
        match dir.parent() {
            Some(parent) if parent != Path::new("") => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
        Ok(files)
    }

    /// Makes everything sled has written so far durable: new blobs, then the log.
    pub fn sync(&mut self) -> io::Result<()> {
        let blobs = self.dir.join("blobs");
        let mut newest = self.newest_blob;
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(lsn) = name.to_str().and_then(|name| name.parse::<u64>().ok()) else {
                continue;
            };
            if Some(lsn) <= self.newest_blob {
                continue;
            }
            match File::open(entry.path()) {
                Ok(blob) => blob.sync_data()?,
                // sled removed it meanwhile: the page that pointed to it was rewritten.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            newest = newest.max(Some(lsn));
        }
        if newest != self.newest_blob {
            sync_dir(&blobs)?;
            self.newest_blob = newest;
        }
        self.log.sync_data()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
