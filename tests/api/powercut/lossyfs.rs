//! lossyfs: a FUSE filesystem that loses, at a power cut, everything not made durable.
//!
//! It keeps two versions of the tree in memory. The *live* one is what programs see: every
//! write, create, rename and unlink lands there at once, as in a kernel's page cache. The
//! *durable* one is what a disk would still hold after losing power, and it changes only
//! on the calls that POSIX makes responsible for durability:
//!
//! - `fsync`/`fdatasync` of a file (FUSE `FSYNC`) makes its current bytes and size durable.
//!   The two are treated alike, as `fdatasync` must persist the size that the data needs.
//! - `fsync` of a directory (FUSE `FSYNCDIR`) makes its current entries durable: the names
//!   created, renamed in or out, and removed in it since its last fsync. A rename between
//!   two directories needs both synced, as on Linux.
//! - Nothing else does. In particular `fsync` of a new file does not make its own name
//!   durable (POSIX says the directory must be synced; ext4 does it only as a side effect
//!   of its journal, and other filesystems do not), and `sync_file_range`, which is a
//!   page-cache hint rather than a durability call, never reaches a FUSE daemon at all.
//!
//! The kernel must not hide writes from the daemon: fuser asks for no writeback cache, so
//! every `write` reaches [`LossyFs::write`] before it returns (write-through), and locks
//! stay in the kernel. The daemon is a thread of the test process (fuser's background
//! session), which mounts with mount(2) itself: as root, no `fusermount3` is needed.
//! A [`Disk`] loads its backing folder at mount. [`Disk::power_cut`]
//! fails every later operation with `EIO`, and rewrites the backing folder to hold exactly
//! the durable tree, which is what the next mount, "after the reboot", finds.
//!
//! It also counts, per file, the bytes written and those of them that landed on bytes
//! already written (in this mount, or loaded from the backing folder): a log that reuses
//! its space in place overwrites, one that only appends does not ([`Disk::writes`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyWrite, Request, TimeOrNow,
};
use libc::{c_int, EEXIST, EIO, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY};

/// Pages of a file written since its last fsync are tracked at this size.
const PAGE: u64 = 4096;
/// The kernel is the only client, so it may cache what it is told for a while.
const TTL: Duration = Duration::from_secs(1);

/// A mounted lossyfs.
pub struct Disk {
    state: Arc<Mutex<State>>,
    backing: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Disk {
    /// Mounts the tree kept in `backing` (all of it durable) at `mountpoint`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Disk> {
        let owner = fs::metadata(backing)?;
        let mut state = State {
            nodes: HashMap::new(),
            next: fuser::FUSE_ROOT_ID,
            powered: true,
            owner: (owner.uid(), owner.gid()),
        };
        state.load(backing)?;
        let state = Arc::new(Mutex::new(state));
        let options = [MountOption::FSName("lossyfs".into()), MountOption::RW];
        let filesystem = LossyFs(state.clone());
        let session = fuser::spawn_mount2(filesystem, mountpoint, &options)?;
        Ok(Disk {
            state,
            backing: backing.to_owned(),
            session: Some(session),
        })
    }

    /// What has been written to the file at `path` (relative to the mount point) so far.
    pub fn writes(&self, path: &Path) -> io::Result<Writes> {
        let mut state = lock(&self.state);
        let mut ino = fuser::FUSE_ROOT_ID;
        for name in path {
            ino = state
                .child(ino, name)
                .map_err(io::Error::from_raw_os_error)?;
        }
        let node = state.node(ino).map_err(io::Error::from_raw_os_error)?;
        Ok(Writes {
            size: node.data.len() as u64,
            ..node.writes
        })
    }

    /// Cuts the power: every later operation fails with `EIO`, and the backing folder is
    /// left holding exactly what was durable. Unmounting is then a separate step (drop).
    pub fn power_cut(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.powered = false;
        for entry in fs::read_dir(&self.backing)? {
            let path = entry?.path();
            match fs::symlink_metadata(&path)?.is_dir() {
                true => fs::remove_dir_all(&path)?,
                false => fs::remove_file(&path)?,
            }
        }
        state.store(fuser::FUSE_ROOT_ID, &self.backing)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // A drop without a cut is a cut too: only the durable tree ever reaches the backing
        // folder. Then the session's drop unmounts.
        if lock(&self.state).powered {
            let _ = self.power_cut();
        }
        self.session.take();
    }
}

/// Bytes written to a file: all of them, those over bytes it already held, and its size.
#[derive(Clone, Copy, Debug, Default)]
pub struct Writes {
    pub written: u64,
    pub overwritten: u64,
    pub size: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Node {
    kind: FileType,
    perm: u16,
    /// Live and durable bytes of a file, and the pages where they may differ.
    data: Vec<u8>,
    durable_data: Vec<u8>,
    dirty: BTreeSet<u64>,
    /// Live and durable entries of a directory.
    entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
    /// The byte ranges of `data` ever written (start to end, disjoint, not touching), and
    /// the counts of [`Disk::writes`].
    extents: BTreeMap<u64, u64>,
    writes: Writes,
}

impl Node {
    fn new(kind: FileType, perm: u16) -> Node {
        Node {
            kind,
            perm,
            data: Vec::new(),
            durable_data: Vec::new(),
            dirty: BTreeSet::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            extents: BTreeMap::new(),
            writes: Writes::default(),
        }
    }

    /// Counts a write of bytes `from..to`, and how many of them were written before.
    fn count_write(&mut self, from: u64, to: u64) {
        if from == to {
            return;
        }
        let (mut start, mut end) = (from, to);
        let touching: Vec<(u64, u64)> = self
            .extents
            .range(..=to)
            .rev()
            .take_while(|&(_, &extent_end)| extent_end >= from)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (extent_start, extent_end) in touching {
            self.extents.remove(&extent_start);
            let overlap = extent_end.min(to).saturating_sub(extent_start.max(from));
            self.writes.overwritten += overlap;
            start = start.min(extent_start);
            end = end.max(extent_end);
        }
        self.extents.insert(start, end);
        self.writes.written += to - from;
    }

    /// Forgets what was written at or beyond `len` (truncation).
    fn truncate_extents(&mut self, len: u64) {
        self.extents.retain(|&start, _| start < len);
        for end in self.extents.values_mut() {
            *end = (*end).min(len);
        }
    }

    /// Marks bytes `from..to` as changed since the last fsync.
    fn touch(&mut self, from: u64, to: u64) {
        self.dirty.extend(from / PAGE..to.div_ceil(PAGE));
    }

    /// fsync: the durable bytes become the live ones.
    fn sync_data(&mut self) {
        let len = self.data.len();
        self.durable_data.resize(len, 0);
        for page in std::mem::take(&mut self.dirty) {
            let start = (page * PAGE) as usize;
            let end = (start + PAGE as usize).min(len);
            if start < end {
                self.durable_data[start..end].copy_from_slice(&self.data[start..end]);
            }
        }
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    next: u64,
    powered: bool,
    owner: (u32, u32),
}

impl State {
    /// Reads the tree under `path` as durable nodes; returns the root's inode number.
    fn load(&mut self, path: &Path) -> io::Result<u64> {
        let meta = fs::metadata(path)?;
        let perm = (meta.permissions().mode() & 0o7777) as u16;
        let ino = self.next;
        self.next += 1;
        let mut node = if meta.is_dir() {
            let mut node = Node::new(FileType::Directory, perm);
            for entry in fs::read_dir(path)? {
                let entry = entry?;
                let child = self.load(&entry.path())?;
                node.entries.insert(entry.file_name(), child);
            }
            node.durable_entries = node.entries.clone();
            node
        } else {
            let mut node = Node::new(FileType::RegularFile, perm);
            node.data = fs::read(path)?;
            node.durable_data = node.data.clone();
            if !node.data.is_empty() {
                node.extents.insert(0, node.data.len() as u64);
            }
            node
        };
        node.perm = perm;
        self.nodes.insert(ino, node);
        Ok(ino)
    }

    /// Writes the durable tree of `ino` at `path` (the root onto an existing folder).
    fn store(&self, ino: u64, path: &Path) -> io::Result<()> {
        let Some(node) = self.nodes.get(&ino) else {
            return Ok(());
        };
        if node.kind == FileType::RegularFile {
            fs::write(path, &node.durable_data)?;
        } else {
            if !path.exists() {
                fs::create_dir(path)?;
            }
            for (name, child) in &node.durable_entries {
                self.store(*child, &path.join(name))?;
            }
        }
        fs::set_permissions(path, fs::Permissions::from_mode(u32::from(node.perm)))
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, c_int> {
        let node = self.nodes.get(&ino).ok_or(ENOENT)?;
        let size = node.data.len() as u64;
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: node.kind,
            perm: node.perm,
            nlink: if node.kind == FileType::Directory {
                2
            } else {
                1
            },
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn node(&mut self, ino: u64) -> Result<&mut Node, c_int> {
        self.nodes.get_mut(&ino).ok_or(ENOENT)
    }

    fn dir(&mut self, ino: u64) -> Result<&mut Node, c_int> {
        let node = self.node(ino)?;
        match node.kind {
            FileType::Directory => Ok(node),
            _ => Err(ENOTDIR),
        }
    }

    fn child(&mut self, parent: u64, name: &OsStr) -> Result<u64, c_int> {
        self.dir(parent)?.entries.get(name).copied().ok_or(ENOENT)
    }

    /// Creates a node named `name` in `parent` (live only, like every change).
    fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: FileType,
        mode: u32,
    ) -> Result<u64, c_int> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes
            .insert(ino, Node::new(kind, (mode & 0o7777) as u16));
        self.dir(parent)?.entries.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, kind: FileType) -> Result<(), c_int> {
        let ino = self.child(parent, name)?;
        let node = self.node(ino)?;
        match (kind, node.kind) {
            (FileType::Directory, FileType::Directory) if !node.entries.is_empty() => {
                return Err(ENOTEMPTY)
            }
            (FileType::Directory, FileType::Directory) => {}
            (FileType::Directory, _) => return Err(ENOTDIR),
            (_, FileType::Directory) => return Err(EISDIR),
            _ => {}
        }
        // The node itself stays: a durable entry may still name it until its dir is synced.
        self.dir(parent)?.entries.remove(name);
        Ok(())
    }

    fn rename(&mut self, from: (u64, &OsStr), to: (u64, &OsStr)) -> Result<(), c_int> {
        let ino = self.child(from.0, from.1)?;
        if let Ok(replaced) = self.child(to.0, to.1) {
            let replaced = self.node(replaced)?;
            if replaced.kind == FileType::Directory && !replaced.entries.is_empty() {
                return Err(ENOTEMPTY);
            }
        }
        self.dir(from.0)?.entries.remove(from.1);
        self.dir(to.0)?.entries.insert(to.1.to_owned(), ino);
        Ok(())
    }

    fn set_len(&mut self, ino: u64, len: u64) -> Result<(), c_int> {
        let node = self.node(ino)?;
        let old = node.data.len() as u64;
        node.data.resize(len as usize, 0);
        node.touch(old.min(len), old.max(len));
        node.truncate_extents(len);
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<u32, c_int> {
        let node = self.node(ino)?;
        let end = offset as usize + bytes.len();
        if node.data.len() < end {
            node.data.resize(end, 0);
        }
        node.data[offset as usize..end].copy_from_slice(bytes);
        node.touch(offset, end as u64);
        node.count_write(offset, end as u64);
        Ok(bytes.len() as u32)
    }
}

/// The FUSE side: each operation takes the state's lock, so a power cut falls between two.
struct LossyFs(Arc<Mutex<State>>);

impl LossyFs {
    /// The state, or `EIO` once the power is off.
    fn powered(&self) -> Result<MutexGuard<'_, State>, c_int> {
        let state = lock(&self.0);
        if state.powered {
            Ok(state)
        } else {
            Err(EIO)
        }
    }

    fn entry(&self, reply: ReplyEntry, act: impl FnOnce(&mut State) -> Result<u64, c_int>) {
        let result = self
            .powered()
            .and_then(|mut s| act(&mut s).and_then(|ino| s.attr(ino)));
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(error) => reply.error(error),
        }
    }

    fn empty(&self, reply: ReplyEmpty, act: impl FnOnce(&mut State) -> Result<(), c_int>) {
        match self.powered().and_then(|mut state| act(&mut state)) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }
}

impl Filesystem for LossyFs {
    fn lookup(&mut self, _: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, |s| s.child(parent, name));
    }

    fn getattr(&mut self, _: &Request<'_>, ino: u64, _: Option<u64>, reply: ReplyAttr) {
        match self.powered().and_then(|s| s.attr(ino)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn setattr(
        &mut self,
        _: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _: Option<u32>,
        _: Option<u32>,
        size: Option<u64>,
        _: Option<TimeOrNow>,
        _: Option<TimeOrNow>,
        _: Option<std::time::SystemTime>,
        _: Option<u64>,
        _: Option<std::time::SystemTime>,
        _: Option<std::time::SystemTime>,
        _: Option<std::time::SystemTime>,
        _: Option<u32>,
        reply: ReplyAttr,
    ) {
        let result = self.powered().and_then(|mut s| {
            if let Some(size) = size {
                s.set_len(ino, size)?;
            }
            if let Some(mode) = mode {
                s.node(ino)?.perm = (mode & 0o7777) as u16;
            }
            s.attr(ino)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn mkdir(
        &mut self,
        _: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask;
        self.entry(reply, |s| s.create(parent, name, FileType::Directory, mode));
    }

    fn unlink(&mut self, _: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |s| s.remove(parent, name, FileType::RegularFile));
    }

    fn rmdir(&mut self, _: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |s| s.remove(parent, name, FileType::Directory));
    }

    fn rename(
        &mut self,
        _: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _: u32,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |s| s.rename((parent, name), (newparent, newname)));
    }

    fn read(
        &mut self,
        _: &Request<'_>,
        ino: u64,
        _: u64,
        offset: i64,
        size: u32,
        _: i32,
        _: Option<u64>,
        reply: ReplyData,
    ) {
        match self.powered().and_then(|mut s| {
            let data = &s.node(ino)?.data;
            let start = (offset as usize).min(data.len());
            let end = (start + size as usize).min(data.len());
            Ok(data[start..end].to_vec())
        }) {
            Ok(bytes) => reply.data(&bytes),
            Err(error) => reply.error(error),
        }
    }

    fn write(
        &mut self,
        _: &Request<'_>,
        ino: u64,
        _: u64,
        offset: i64,
        data: &[u8],
        _: u32,
        _: i32,
        _: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self
            .powered()
            .and_then(|mut s| s.write(ino, offset as u64, data))
        {
            Ok(written) => reply.written(written),
            Err(error) => reply.error(error),
        }
    }

    fn flush(&mut self, _: &Request<'_>, _: u64, _: u64, _: u64, reply: ReplyEmpty) {
        // close() makes nothing durable.
        self.empty(reply, |_| Ok(()));
    }

    fn fsync(&mut self, _: &Request<'_>, ino: u64, _: u64, _: bool, reply: ReplyEmpty) {
        self.empty(reply, |s| {
            s.node(ino)?.sync_data();
            Ok(())
        });
    }

    fn readdir(
        &mut self,
        _: &Request<'_>,
        ino: u64,
        _: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let listing = self.powered().and_then(|mut s| {
            let entries = s.dir(ino)?.entries.clone();
            let mut listing = vec![
                (ino, FileType::Directory, OsString::from(".")),
                (ino, FileType::Directory, "..".into()),
            ];
            for (name, child) in entries {
                listing.push((child, s.node(child)?.kind, name));
            }
            Ok(listing)
        });
        match listing {
            Ok(listing) => {
                for (i, (child, kind, name)) in
                    listing.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(child, i as i64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(error) => reply.error(error),
        }
    }

    fn fsyncdir(&mut self, _: &Request<'_>, ino: u64, _: u64, _: bool, reply: ReplyEmpty) {
        self.empty(reply, |s| {
            let dir = s.dir(ino)?;
            dir.durable_entries = dir.entries.clone();
            Ok(())
        });
    }

    fn create(
        &mut self,
        _: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _: i32,
        reply: ReplyCreate,
    ) {
        let mode = mode & !umask;
        let result = self.powered().and_then(|mut s| {
            let ino = s.create(parent, name, FileType::RegularFile, mode)?;
            s.attr(ino)
        });
        match result {
            Ok(attr) => reply.created(&TTL, &attr, 0, 0, 0),
            Err(error) => reply.error(error),
        }
    }
}
