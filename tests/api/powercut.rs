//! Durability across a power cut: every callback answered 200 is still there after the
//! machine loses power, not only after the process is killed.
//!
//! The store runs on [`lossyfs`], a FUSE filesystem that keeps only what was fsynced (file
//! data on fsync of the file, names on fsync of their directory) and forgets the rest at a
//! cut. Two controls show that the filesystem is fair: it does drop unsynced changes, and
//! SQLite with `synchronous=FULL`, a trusted engine, loses nothing on it.

mod lossyfs;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::Notify;

use crate::support::binary::{get_from_binary, post_to_binary, start_sled_binary, BINARY};
use crate::support::fixtures::{callback, new_sid, with, API_TOKEN};
use lossyfs::Disk;

/// Power cuts in a row on the same store, each after this many acknowledged callbacks.
const TRIALS: usize = 3;
const CUT_AFTER: usize = 400;
const CLIENTS: usize = 8;
/// Bytes of a parameter that one client adds to each of its callbacks.
const BIG: usize = 60 * 1024;

/// A callback answered 200: the event it must have left, told apart by its `Tag`, and the
/// length of its `Body` parameter (0: none).
#[derive(Clone)]
struct Ack {
    sid: String,
    status: &'static str,
    tag: String,
    body: usize,
}

#[tokio::test]
async fn every_callback_acknowledged_before_a_power_cut_is_there_after_it() {
    let backing = tempfile::tempdir().expect("a temporary folder");
    let mut acknowledged = Vec::new();
    let mut trials = Vec::new();
    let mut all_kept = true;
    for trial in 1..=TRIALS {
        // Power on, take callbacks from several clients, and cut the power mid-stream.
        let mountpoint = tempfile::tempdir().expect("a mount point");
        let disk = mount(backing.path(), mountpoint.path());
        let (child, address) = start_sled_binary(&mountpoint.path().join("data")).await;
        let before = acknowledged.len();
        acknowledged.extend(stream_until_cut(trial, &address, &disk, child).await);
        unmount(disk, mountpoint.path());

        let (lost, check) = reboot(backing.path(), &acknowledged).await;
        // Large callbacks put values in blob files, which sled leaves to its user to sync.
        let blobs = std::fs::read_dir(backing.path().join("data/blobs")).map_or(0, |d| d.count());
        let trial = format!(
            "cut {trial}: {} of {} callbacks acknowledged so far lost ({} in this run); \
             {blobs} blob files; check {check}",
            lost.len(),
            acknowledged.len(),
            acknowledged.len() - before,
        );
        eprintln!("{trial}");
        all_kept &= lost.is_empty() && check == "passes";
        trials.push(trial);
    }
    assert!(all_kept, "{}", trials.join("\n"));
}

/// sled's log segments (`segment_size` in `open_db`).
const SEGMENT: u64 = 8 * 1024 * 1024;
/// Rounds of churn before each stream, and the messages that each writes and then erases.
const CHURN_ROUNDS: usize = 3;
const CHURN_MESSAGES: usize = 60;
/// One churned message in this many is kept.
const KEPT: usize = 3;

/// The same power cuts, on a store whose log sled reuses in place. Before each stream,
/// messages with large parameters are written and most of them erased, so that segments
/// die or fall to at most half live; sled moves the live pages out of the latter (its
/// flusher, and one page at each consolidation), frees both, and later writes overwrite
/// them: the churn's own, then the stream's, up to the cut. The filesystem counts the bytes
/// written over older ones, so the test knows that reuse happened.
#[tokio::test]
async fn every_callback_acknowledged_while_sled_reuses_its_log_is_there_after_a_cut() {
    let backing = tempfile::tempdir().expect("a temporary folder");
    let log = Path::new("data/db");
    let mut acknowledged = Vec::new();
    let mut trials = Vec::new();
    let (mut all_kept, mut all_reused) = (true, true);
    for trial in 1..=TRIALS {
        let mountpoint = tempfile::tempdir().expect("a mount point");
        let disk = mount(backing.path(), mountpoint.path());
        let (child, address) = start_sled_binary(&mountpoint.path().join("data")).await;
        // Opening may itself overwrite (sled zeroes free segments): counted from here.
        let opened = disk.writes(log).expect("the log exists");
        acknowledged.extend(churn(trial, &address).await);
        let churned = disk.writes(log).expect("the log exists");
        let streamed = stream_until_cut(trial, &address, &disk, child).await;
        let in_stream = streamed.len();
        acknowledged.extend(streamed);
        let cut = disk.writes(log).expect("the log exists");
        unmount(disk, mountpoint.path());

        let (lost, check) = reboot(backing.path(), &acknowledged).await;
        let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
        let trial = format!(
            "cut {trial}: log of {} at the cut; churn wrote {}, {} of it over older bytes; \
             the stream wrote {}, {} over older bytes; {} of {} callbacks acknowledged so \
             far lost ({in_stream} in this stream); check {check}",
            mib(cut.size),
            mib(churned.written - opened.written),
            mib(churned.overwritten - opened.overwritten),
            mib(cut.written - churned.written),
            mib(cut.overwritten - churned.overwritten),
            lost.len(),
            acknowledged.len(),
        );
        eprintln!("{trial}");
        all_kept &= lost.is_empty() && check == "passes";
        // A whole segment reused before the stream, and reuse going on up to the cut.
        all_reused &= churned.overwritten - opened.overwritten >= SEGMENT
            && cut.overwritten > churned.overwritten;
        trials.push(trial);
    }
    let trials = trials.join("\n");
    assert!(all_kept, "{trials}");
    assert!(all_reused, "sled did not reuse its log segments:\n{trials}");
}

/// Writes [`CHURN_MESSAGES`] messages with a large parameter in each callback and erases
/// all but one in [`KEPT`], [`CHURN_ROUNDS`] times: the segments that they filled keep
/// little live, the kept messages' pages, which sled's cleaning moves before reusing them.
/// Returns the callbacks of the messages kept.
async fn churn(trial: usize, address: &str) -> Vec<Ack> {
    let http = reqwest::Client::new();
    let mut kept = Vec::new();
    for round in 0..CHURN_ROUNDS {
        let sids: Vec<String> = (0..CHURN_MESSAGES).map(|_| new_sid()).collect();
        let posts = sids.iter().enumerate().map(|(n, sid)| {
            let http = http.clone();
            async move {
                let mut acks = Vec::new();
                for status in ["sent", "delivered", "read"] {
                    let tag = format!("t{trial}r{round}n{n}{status}");
                    let params = with(callback(sid, status), "Tag", &tag);
                    let params = with(params, "Body", &"c".repeat(BIG));
                    let response = post_to_binary(&http, address, &params).await;
                    assert_eq!(response.expect("answered").status(), 200, "churn callback");
                    let (sid, body) = (sid.clone(), BIG);
                    acks.push(Ack {
                        sid,
                        status,
                        tag,
                        body,
                    });
                }
                acks
            }
        });
        let acks: Vec<Ack> = stream::iter(posts).buffered(CLIENTS).concat().await;
        let erased = sids.iter().enumerate().filter(|(n, _)| n % KEPT != 0);
        let erasures = erased.map(|(_, sid)| {
            let http = http.clone();
            async move {
                let response = http
                    .delete(format!("{address}/v1/messages/{sid}"))
                    .bearer_auth(API_TOKEN)
                    .send()
                    .await;
                assert_eq!(response.expect("answered").status(), 204, "erasure");
            }
        });
        stream::iter(erasures)
            .for_each_concurrent(CLIENTS, |erase| erase)
            .await;
        let kept_sids: HashSet<&String> = sids.iter().step_by(KEPT).collect();
        kept.extend(acks.into_iter().filter(|ack| kept_sids.contains(&ack.sid)));
    }
    kept
}

/// Reboots on what the disk in `backing` kept: starts the service, looks up every
/// acknowledged callback, stops it, and runs the offline check. Returns the callbacks lost
/// and what the check said ("passes" or why not).
async fn reboot(backing: &Path, acknowledged: &[Ack]) -> (Vec<String>, String) {
    let mountpoint = tempfile::tempdir().expect("a mount point");
    let disk = mount(backing, mountpoint.path());
    let data = mountpoint.path().join("data");
    let (mut child, address) = start_sled_binary(&data).await;
    let lost = lost(&address, acknowledged).await;
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the child is reaped");
    let check = Command::new(BINARY)
        .arg("check")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .await
        .expect("statushook check runs");
    let check = match check.status.success() {
        true => "passes".to_owned(),
        false => format!("FAILS: {}", String::from_utf8_lossy(&check.stderr).trim()),
    };
    unmount(disk, mountpoint.path());
    (lost, check)
}

/// What the clients of one stream share.
#[derive(Default)]
struct Stream {
    acknowledged: Mutex<Vec<Ack>>,
    count: AtomicUsize,
    stop: AtomicBool,
    /// Clients that have stopped posting.
    finished: AtomicUsize,
    /// Woken at the [`CUT_AFTER`]th acknowledgement and whenever a client stops.
    wake: Notify,
}

/// Posts callbacks from [`CLIENTS`] clients, each message `sent`, `delivered` then `read`,
/// each callback with a distinct `Tag`; once [`CUT_AFTER`] are acknowledged, cuts the
/// power and kills the service. Returns every callback answered 200.
async fn stream_until_cut(
    trial: usize,
    address: &str,
    disk: &Disk,
    mut child: tokio::process::Child,
) -> Vec<Ack> {
    let stream = Arc::new(Stream::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (stream, address) = (stream.clone(), address.to_owned());
            tokio::spawn(async move {
                post_until_refused(&stream, &address, trial, client).await;
                stream.finished.fetch_add(1, Ordering::Relaxed);
                stream.wake.notify_one();
            })
        })
        .collect();
    while stream.count.load(Ordering::Relaxed) < CUT_AFTER {
        assert!(
            stream.finished.load(Ordering::Relaxed) < CLIENTS,
            "the service refused callbacks before the cut, after {} acknowledged",
            stream.count.load(Ordering::Relaxed)
        );
        stream.wake.notified().await;
    }
    disk.power_cut().expect("the power is cut");
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the child is reaped");
    stream.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client finishes");
    }
    let acknowledged = stream.acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= CUT_AFTER);
    acknowledged
}

/// One client: posts until told to stop or until a callback is not answered 200.
async fn post_until_refused(stream: &Stream, address: &str, trial: usize, client: usize) {
    let http = reqwest::Client::new();
    for n in 0.. {
        let sid = new_sid();
        for status in ["sent", "delivered", "read"] {
            if stream.stop.load(Ordering::Relaxed) {
                return;
            }
            let tag = format!("t{trial}c{client}n{n}{status}");
            let mut params = with(callback(&sid, status), "Tag", &tag);
            let body = if client == 0 { BIG } else { 0 };
            if body > 0 {
                // Three of these make a value that sled keeps in a blob file.
                params = with(params, "Body", &"b".repeat(body));
            }
            match post_to_binary(&http, address, &params).await {
                Ok(response) if response.status() == 200 => {
                    let sid = sid.clone();
                    let ack = Ack {
                        sid,
                        status,
                        tag,
                        body,
                    };
                    stream.acknowledged.lock().expect("lock").push(ack);
                    if stream.count.fetch_add(1, Ordering::Relaxed) + 1 == CUT_AFTER {
                        stream.wake.notify_one();
                    }
                }
                // After the cut: refused (503) or the process is gone.
                _ => return,
            }
        }
    }
}

/// The acknowledged callbacks whose event, with its `Tag`, the service does not return.
async fn lost(address: &str, acknowledged: &[Ack]) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut by_message: HashMap<&str, Vec<&Ack>> = HashMap::new();
    for ack in acknowledged {
        by_message.entry(&ack.sid).or_default().push(ack);
    }
    let lookups = by_message.into_iter().map(|(sid, acks)| {
        let http = http.clone();
        async move {
            let response = get_from_binary(&http, address, sid).await;
            let events = match response.status().as_u16() {
                200 => {
                    let message: serde_json::Value = response.json().await.expect("a message");
                    message["events"].as_array().cloned().unwrap_or_default()
                }
                404 => Vec::new(),
                other => panic!("unexpected status {other} looking up {sid}"),
            };
            acks.into_iter()
                .filter(|ack| {
                    !events.iter().any(|event| {
                        let params = &event["params"];
                        let body = params["Body"].as_str().map_or(0, str::len);
                        event["status"] == ack.status
                            && params["Tag"] == ack.tag.as_str()
                            && body == ack.body
                    })
                })
                .map(|ack| ack.tag.clone())
                .collect::<Vec<_>>()
        }
    });
    stream::iter(lookups)
        .buffer_unordered(CLIENTS)
        .concat()
        .await
}

#[tokio::test]
async fn the_lossy_filesystem_keeps_exactly_what_was_fsynced() {
    let backing = tempfile::tempdir().expect("a temporary folder");
    let mountpoint = tempfile::tempdir().expect("a mount point");
    let disk = mount(backing.path(), mountpoint.path());
    let at = |name: &str| mountpoint.path().join(name);
    let write = |name: &str, bytes: &[u8]| std::fs::write(at(name), bytes).expect("written");
    let sync = |path: &Path| {
        let file = std::fs::File::open(path).expect("opened");
        file.sync_all().expect("fsynced");
    };
    // A file's data fsynced, and its name by the fsync of the folder; then more bytes
    // that are never fsynced.
    write("synced", b"kept");
    sync(&at("synced"));
    write("named-only", b"data never fsynced");
    sync(mountpoint.path());
    // Data fsynced, but the folder not since the file was created.
    write("unnamed", b"fsynced, but not its name");
    sync(&at("unnamed"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(at("synced"))
        .and_then(|mut file| std::io::Write::write_all(&mut file, b" but not this"))
        .expect("appended");
    write("never", b"neither");
    assert_eq!(
        std::fs::read(at("synced")).expect("read"),
        b"kept but not this"
    );
    // It counts the bytes written, and those written over older ones.
    let written = disk.writes(Path::new("synced")).expect("counted");
    assert_eq!(
        (written.written, written.overwritten, written.size),
        (17, 0, 17)
    );
    write("never", b"forgotten");
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::File::options()
            .write(true)
            .open(at("never"))
            .expect("opened"),
        b"GOT",
        7,
    )
    .expect("written");
    let written = disk.writes(Path::new("never")).expect("counted");
    assert_eq!(
        (written.written, written.overwritten, written.size),
        (19, 2, 10)
    );
    disk.power_cut().expect("the power is cut");
    unmount(disk, mountpoint.path());

    let mountpoint = tempfile::tempdir().expect("a mount point");
    let disk = mount(backing.path(), mountpoint.path());
    let mut names: Vec<String> = std::fs::read_dir(mountpoint.path())
        .expect("listed")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["named-only", "synced"]);
    let read = |name: &str| std::fs::read(mountpoint.path().join(name)).expect("read");
    assert_eq!(read("synced"), b"kept");
    // Its name was made durable while it was empty, its data never.
    assert_eq!(read("named-only"), b"");
    unmount(disk, mountpoint.path());
}

#[tokio::test]
async fn sqlite_loses_no_committed_row_to_a_power_cut() {
    // In rollback-journal mode a commit is the journal's unlink, which SQLite fsyncs the
    // folder for only at `synchronous=EXTRA`: at FULL, this filesystem rightly loses the
    // last commit (SQLite documents it). In WAL mode FULL is enough.
    for (journal, synchronous) in [("wal", "full"), ("delete", "extra")] {
        let backing = tempfile::tempdir().expect("a temporary folder");
        let mountpoint = tempfile::tempdir().expect("a mount point");
        let disk = mount(backing.path(), mountpoint.path());
        let db = mountpoint.path().join("rows.sqlite");
        // Inserts rows, one transaction each, and prints each id once committed.
        let mut writer = Command::new("python3")
            .args(["-c", SQLITE_WRITER])
            .arg(&db)
            .arg(journal)
            .arg(synchronous)
            .stdout(Stdio::piped())
            // Its "disk I/O error" once the power is off is expected.
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let mut lines = BufReader::new(writer.stdout.take().expect("piped")).lines();
        let mut committed = Vec::new();
        while committed.len() < CUT_AFTER {
            let line = lines.next_line().await.expect("readable").expect("a line");
            committed.push(line.parse::<u64>().expect("a row id"));
        }
        disk.power_cut().expect("the power is cut");
        writer.start_kill().expect("SIGKILL is sent");
        writer.wait().await.expect("the child is reaped");
        while let Ok(Some(line)) = lines.next_line().await {
            committed.push(line.parse::<u64>().expect("a row id"));
        }
        unmount(disk, mountpoint.path());

        let mountpoint = tempfile::tempdir().expect("a mount point");
        let disk = mount(backing.path(), mountpoint.path());
        let db = mountpoint.path().join("rows.sqlite");
        let read = Command::new("python3")
            .args(["-c", SQLITE_READER])
            .arg(&db)
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&read.stdout);
        let mut rows = stdout.lines();
        assert_eq!(rows.next(), Some("ok"), "integrity check ({journal})");
        let present: HashSet<u64> = rows.map(|row| row.parse().expect("a row id")).collect();
        let lost = committed.iter().filter(|id| !present.contains(id)).count();
        let rows = committed.len();
        eprintln!("sqlite {journal}/{synchronous}: {lost} of {rows} committed rows lost");
        assert_eq!(lost, 0, "sqlite ({journal}) lost committed rows");
        unmount(disk, mountpoint.path());
    }
}

const SQLITE_WRITER: &str = "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
assert db.execute('PRAGMA journal_mode=' + sys.argv[2]).fetchone()[0] == sys.argv[2]
db.execute('PRAGMA synchronous=' + sys.argv[3])
db.execute('CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT)')
for id in range(1, 10**9):
    db.execute('INSERT INTO rows VALUES (?, ?)', (id, 'x' * 200))
    print(id, flush=True)
";

const SQLITE_READER: &str = "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute('PRAGMA integrity_check').fetchone()[0])
for (id,) in db.execute('SELECT id FROM rows'):
    print(id)
";

/// Mounts a lossyfs; says plainly when the machine cannot (FUSE needs `/dev/fuse` and root).
fn mount(backing: &Path, mountpoint: &Path) -> Disk {
    Disk::mount(backing, mountpoint).unwrap_or_else(|error| {
        panic!("cannot mount the lossy filesystem (needs /dev/fuse and root): {error}")
    })
}

/// Unmounts, and checks that the mount is really gone before its folder is reused.
fn unmount(disk: Disk, mountpoint: &Path) {
    drop(disk);
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts are listed");
    let path = mountpoint.to_string_lossy();
    assert!(
        !mounts
            .lines()
            .any(|line| line.split(' ').nth(1) == Some(&path)),
        "{path} is still mounted"
    );
}
