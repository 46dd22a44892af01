//! Clients that mean harm, through real sockets against the real binary: compressed bodies
//! that inflate a thousandfold, bodies that never finish, floods of connections, exports
//! that are never read. Each test measures the server process itself (`/proc/<pid>`), so
//! what it asserts is what an operator would see.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use statushook::secret::Secret;
use statushook::twilio::signature;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::raw_http::{exchange, host_port, open_sockets, read_response, rss_kib, RawResponse};
use crate::support::binary::post_to_binary;
use crate::support::database::{database_for, testing_postgres};
use crate::support::fixtures::{
    callback, encode, new_sid, with, API_TOKEN, AUTH_TOKEN, FORM, PUBLIC_URL,
};

/// The deadline for a whole request body, as the service sets it.
const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// Concurrent exports the service runs at most.
const EXPORT_CAP: usize = 4;

/// A running binary: its process, address, and the fields of its `listening` log line.
struct Server {
    child: Child,
    address: String,
    listening: Value,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id().expect("a running server")
    }
}

/// Starts the binary on a fresh store, under a descriptor limit of `nofile` when given (the
/// shell's `ulimit -n`, soft and hard), and waits for its `listening` line.
async fn start_server(data_dir: &std::path::Path, nofile: Option<u32>) -> Server {
    let binary = env!("CARGO_BIN_EXE_statushook");
    let mut command = match nofile {
        Some(limit) => {
            let mut command = Command::new("bash");
            command.args([
                "-c",
                &format!("ulimit -n {limit}; exec \"$0\" serve"),
                binary,
            ]);
            command
        }
        None => {
            let mut command = Command::new(binary);
            command.arg("serve");
            command
        }
    };
    if testing_postgres() {
        command.env("STATUSHOOK_DATABASE_URL", database_for(data_dir).await);
    }
    let mut child = command
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", data_dir)
        .env("STATUSHOOK_PUBLIC_URL", PUBLIC_URL)
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("STATUSHOOK_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,statushook::startup=info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    while let Some(line) = lines.next_line().await.expect("readable stderr") {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["message"] == "listening" {
            let port = entry["port"].as_u64().expect("a port");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Server {
                child,
                address: format!("http://127.0.0.1:{port}"),
                listening: entry,
            };
        }
    }
    panic!("the binary exited before listening");
}

/// 63 MiB of `a`, gzipped: about 64 KB on the wire, under the 64 KiB limit of a callback.
fn gzip_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![b'a'; 1024 * 1024];
        for _ in 0..63 {
            encoder.write_all(&block).expect("compressed in memory");
        }
        encoder.finish().expect("compressed in memory")
    })
}

/// Samples the resident memory of `pid` every few milliseconds until `stop`, and answers
/// the highest seen, in KiB.
fn sample_peak_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        peak.max(rss_kib(pid))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_gzip_bombs_in_parallel_are_refused_with_415_before_they_inflate() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = start_server(data.path(), None).await;
    let bomb = gzip_bomb();
    assert!(bomb.len() < 64 * 1024, "the bomb fits the callback limit");
    // Warm up the paths the bombs take, so that the baseline includes them.
    let sid = new_sid();
    let client = reqwest::Client::new();
    let stored = post_to_binary(&client, &server.address, &callback(&sid, "sent")).await;
    assert_eq!(stored.expect("answered").status(), 200);
    let baseline = rss_kib(server.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let peak = sample_peak_rss(server.pid(), Arc::clone(&stop));
    let mut request = format!(
        "POST /twilio/status HTTP/1.1\r\nHost: hooks.example.com\r\nContent-Type: {FORM}\r\n\
         Content-Encoding: gzip\r\nX-Twilio-Signature: bm90IGEgc2lnbmF0dXJl\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    request.extend_from_slice(bomb);
    let request = Arc::new(request);
    let bombs = (0..8).map(|_| {
        let (address, request) = (server.address.clone(), Arc::clone(&request));
        tokio::spawn(async move { exchange(&address, &request, Duration::from_secs(60)).await })
    });
    let answers: Vec<Option<RawResponse>> = futures_util::future::join_all(bombs)
        .await
        .into_iter()
        .map(|joined| joined.expect("the bomb task ran"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("the sampler ran");
    eprintln!(
        "gzip bombs: RSS baseline {} MiB, peak {} MiB (+{} MiB)",
        baseline / 1024,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024
    );
    for answer in &answers {
        let answer = answer.as_ref().expect("every bomb is answered");
        assert_eq!(answer.status, 415, "{answer:?}");
        let error = answer.json().expect("a JSON body");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains("gzip")),
            "{error}"
        );
    }
    assert!(
        peak.saturating_sub(baseline) < 64 * 1024,
        "RSS went from {baseline} KiB to {peak} KiB under eight bombs"
    );
    // The service still takes callbacks.
    let after = post_to_binary(&client, &server.address, &callback(&sid, "delivered")).await;
    assert_eq!(after.expect("answered").status(), 200);
}

#[tokio::test]
async fn a_compressed_body_is_refused_on_every_route_that_takes_one_and_identity_is_accepted() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = start_server(data.path(), None).await;
    let small = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(b"{\"to\": \"+15005550009\"}")
            .expect("in memory");
        encoder.finish().expect("in memory")
    };
    for (target, content_type, encoding) in [
        ("/twilio/status", FORM, "gzip"),
        ("/twilio/status", FORM, "deflate"),
        ("/twilio/status", FORM, "br"),
        ("/twilio/status", FORM, "zstd"),
        ("/twilio/status", FORM, "x-unknown"),
        ("/v1/messages", "application/json", "gzip"),
        (
            "/v1/forwarding/replay?since=2026-01-01T00:00:00Z",
            "application/json",
            "gzip",
        ),
    ] {
        let mut request = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
             Authorization: Bearer {API_TOKEN}\r\nContent-Encoding: {encoding}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            small.len()
        )
        .into_bytes();
        request.extend_from_slice(&small);
        let answer = exchange(&server.address, &request, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{target} {encoding}: no answer"));
        assert_eq!(answer.status, 415, "{target} {encoding}: {answer:?}");
        assert!(
            answer.json().is_some_and(|body| body["error"].is_string()),
            "{target} {encoding}: {answer:?}"
        );
    }
    // `identity` means "not encoded": the callback goes on to its signature check.
    let params = callback(&new_sid(), "sent");
    let url = format!("{PUBLIC_URL}/twilio/status");
    let signed = signature::sign_sha1(&Secret::new(AUTH_TOKEN), &url, &params);
    let body = encode(&params);
    let request = format!(
        "POST /twilio/status HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
         Content-Encoding: identity\r\nX-Twilio-Signature: {signed}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&server.address, request.as_bytes(), Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// How a slow client sends its body.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// `Content-Length: 60000` to `/twilio/status`, one byte a second.
    LengthToCallback,
    /// Chunked to `/twilio/status`, a one-byte chunk a second.
    ChunkedToCallback,
    /// `Content-Length` to `POST /v1/messages` with the right token: read by actix's own
    /// extractor, under the same deadline.
    LengthToSend,
    /// Chunked to a route that answers without reading the body (`POST /healthz`, 405):
    /// the unread rest must not keep the connection.
    ChunkedToUnreadRoute,
}

impl Slow {
    const ALL: [Slow; 4] = [
        Slow::LengthToCallback,
        Slow::ChunkedToCallback,
        Slow::LengthToSend,
        Slow::ChunkedToUnreadRoute,
    ];

    fn head(self) -> String {
        let (target, framing, auth) = match self {
            Slow::LengthToCallback => ("/twilio/status", "Content-Length: 60000", ""),
            Slow::ChunkedToCallback => ("/twilio/status", "Transfer-Encoding: chunked", ""),
            Slow::LengthToSend => (
                "/v1/messages",
                "Content-Length: 60000",
                "Authorization: Bearer ",
            ),
            Slow::ChunkedToUnreadRoute => ("/healthz", "Transfer-Encoding: chunked", ""),
        };
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("{auth}{API_TOKEN}\r\n")
        };
        let content_type = if matches!(self, Slow::LengthToSend) {
            "application/json"
        } else {
            FORM
        };
        format!(
            "POST {target} HTTP/1.1\r\nHost: hooks.example.com\r\nContent-Type: {content_type}\r\n\
             X-Twilio-Signature: c2xvdw==\r\n{auth}{framing}\r\n\r\n"
        )
    }

    fn drip(self) -> &'static [u8] {
        match self {
            Slow::ChunkedToCallback | Slow::ChunkedToUnreadRoute => b"1\r\na\r\n",
            Slow::LengthToCallback | Slow::LengthToSend => b"a",
        }
    }
}

/// What became of one slow connection: the status the server answered, if any, and how
/// long after the head it answered and closed the connection (`None`: still open).
struct CutOff {
    status: Option<u16>,
    answered: Option<Duration>,
    after: Option<Duration>,
}

/// Sends a head, then one piece of body a second, until the server closes the connection
/// or `give_up` passes.
async fn drip_body(address: String, slow: Slow, give_up: Duration) -> CutOff {
    let Ok(mut stream) = TcpStream::connect(host_port(&address)).await else {
        return CutOff {
            status: None,
            answered: None,
            after: Some(Duration::ZERO),
        };
    };
    let started = Instant::now();
    let mut sent = stream.write_all(slow.head().as_bytes()).await.is_ok();
    let mut status = None;
    let mut answered = None;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < give_up {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    return CutOff { status, answered, after: Some(started.elapsed()) }
                }
                Ok(n) => {
                    answered = answered.or(Some(started.elapsed()));
                    seen.extend_from_slice(&buffer[..n]);
                    if status.is_none() {
                        status = std::str::from_utf8(&seen)
                            .ok()
                            .and_then(|text| text.split(' ').nth(1))
                            .and_then(|code| code.parse().ok());
                    }
                }
            },
            _ = tick.tick() => {
                if sent {
                    sent = stream.write_all(slow.drip()).await.is_ok();
                }
            }
        }
    }
    CutOff {
        status,
        answered,
        after: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifteen_hundred_slow_bodies_are_cut_off_at_the_deadline_while_healthz_answers() {
    const CONNECTIONS: usize = 1_500;
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = start_server(data.path(), None).await;
    let pid = server.pid();
    let give_up = BODY_DEADLINE + Duration::from_secs(6);

    let stop = Arc::new(AtomicBool::new(false));
    let slowest_health = Arc::new(AtomicU64::new(0));
    let health_failures = Arc::new(AtomicUsize::new(0));
    let prober = {
        let (address, stop) = (server.address.clone(), Arc::clone(&stop));
        let (slowest, failures) = (Arc::clone(&slowest_health), Arc::clone(&health_failures));
        tokio::spawn(async move {
            let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                match exchange(&address, request, Duration::from_secs(1)).await {
                    Some(answer) if answer.status == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                slowest.fetch_max(asked.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let held = Arc::new(AtomicUsize::new(0));
    let counter = {
        let (held, stop) = (Arc::clone(&held), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                held.fetch_max(open_sockets(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let baseline = rss_kib(pid);
    let peak = sample_peak_rss(pid, Arc::clone(&stop));

    // Connections are opened a few hundred at a time, as fast as the listen queue takes them.
    let opening = Arc::new(tokio::sync::Semaphore::new(200));
    let slow: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let kind = Slow::ALL[n % Slow::ALL.len()];
            let (address, opening) = (server.address.clone(), Arc::clone(&opening));
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.expect("open semaphore");
                drop(permit);
                (kind, drip_body(address, kind, give_up).await)
            })
        })
        .collect();
    let results: Vec<(Slow, CutOff)> = futures_util::future::join_all(slow)
        .await
        .into_iter()
        .map(|joined| joined.expect("a slow client ran"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    prober.await.expect("the prober ran");
    counter.await.expect("the counter ran");
    let peak = peak.await.expect("the sampler ran");

    let mut cut: Vec<Duration> = results.iter().filter_map(|(_, cut)| cut.after).collect();
    cut.sort();
    let mut answered: Vec<Duration> = results
        .iter()
        .filter(|(_, cut)| cut.status == Some(408))
        .filter_map(|(_, cut)| cut.answered)
        .collect();
    answered.sort();
    let still_open: Vec<Slow> = results
        .iter()
        .filter(|(_, cut)| cut.after.is_none())
        .map(|(kind, _)| *kind)
        .collect();
    let timeouts = results
        .iter()
        .filter(|(_, cut)| cut.status == Some(408))
        .count();
    eprintln!(
        "slow bodies: {} connections, {} sockets held at most; {} answered 408 after median \
         {:?}, slowest {:?}; closed after median {:?}, slowest {:?}; RSS {} -> {} MiB; \
         slowest /healthz {} ms",
        CONNECTIONS,
        held.load(Ordering::Relaxed),
        timeouts,
        answered.get(answered.len() / 2),
        answered.last(),
        cut.get(cut.len() / 2),
        cut.last(),
        baseline / 1024,
        peak / 1024,
        slowest_health.load(Ordering::Relaxed)
    );
    assert!(
        still_open.is_empty(),
        "{} connections still open after {give_up:?}: {:?}…",
        still_open.len(),
        &still_open[..still_open.len().min(8)]
    );
    // The 408 comes at the deadline; actix then reads (and drops) what the client still
    // sends for up to a second, so that the answer is not lost to a reset, and closes. The
    // margins are for 1,500 timers firing at once on a busy machine (the whole suite runs
    // beside this test), measured from the client's side.
    let answer_limit = BODY_DEADLINE + Duration::from_millis(2_500);
    assert!(
        answered
            .last()
            .is_some_and(|slowest| *slowest <= answer_limit),
        "the slowest 408 came after {:?}, more than {answer_limit:?}",
        answered.last()
    );
    let close_limit = BODY_DEADLINE + Duration::from_millis(4_000);
    assert!(
        cut.last().is_some_and(|slowest| *slowest <= close_limit),
        "the slowest was cut off after {:?}, more than {close_limit:?}",
        cut.last()
    );
    for (kind, cut) in &results {
        if matches!(kind, Slow::LengthToCallback | Slow::LengthToSend) {
            assert_eq!(
                cut.status,
                Some(408),
                "{kind:?} is answered 408 at the deadline"
            );
        }
    }
    assert_eq!(
        health_failures.load(Ordering::Relaxed),
        0,
        "/healthz failed"
    );
    assert!(
        slowest_health.load(Ordering::Relaxed) < 1_000,
        "/healthz took {} ms",
        slowest_health.load(Ordering::Relaxed)
    );
}

/// A signed callback on a connection of its own, as Twilio sends it; answers its status and
/// how long it took.
async fn timed_callback(address: &str, sid: &str) -> (Option<u16>, Duration) {
    let params = callback(sid, "delivered");
    let url = format!("{PUBLIC_URL}/twilio/status");
    let signed = signature::sign_sha1(&Secret::new(AUTH_TOKEN), &url, &params);
    let body = encode(&params);
    let request = format!(
        "POST /twilio/status HTTP/1.1\r\nHost: hooks.example.com\r\nContent-Type: {FORM}\r\n\
         X-Twilio-Signature: {signed}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let asked = Instant::now();
    let answer = exchange(address, request.as_bytes(), Duration::from_secs(20)).await;
    (answer.map(|answer| answer.status), asked.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_idle_connections_up_to_the_cap_leaves_healthz_and_signed_callbacks_answered() {
    let data = tempfile::tempdir().expect("a temporary folder");
    // A small descriptor limit, so that the cap derived from it is small too.
    let server = start_server(data.path(), Some(512)).await;
    let pid = server.pid();
    let cap = server.listening["max_connections"]
        .as_u64()
        .expect("the listening line states the connection cap") as usize;
    assert!(
        cap < 512,
        "the cap ({cap}) stays below the descriptor limit"
    );

    // The flood: more connections than the process may have files, each reopened as soon as
    // it is closed, and none of them ever sends a byte.
    let stop = Arc::new(AtomicBool::new(false));
    let most_held = Arc::new(AtomicUsize::new(0));
    let counter = {
        let (most_held, stop) = (Arc::clone(&most_held), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                most_held.fetch_max(open_sockets(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let flood: Vec<_> = (0..600)
        .map(|_| {
            let (address, stop) = (server.address.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(host_port(&address)).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let mut buffer = [0u8; 512];
                    // Wait for the server to give up on this connection.
                    while !stop.load(Ordering::Relaxed) {
                        match tokio::time::timeout(
                            Duration::from_millis(200),
                            stream.read(&mut buffer),
                        )
                        .await
                        {
                            Ok(Ok(0)) | Ok(Err(_)) => break,
                            _ => {}
                        }
                    }
                }
            })
        })
        .collect();
    let filled = Instant::now();
    while open_sockets(pid) < cap && filled.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = open_sockets(pid);
    assert!(held >= cap, "the flood filled the cap: {held} of {cap}");

    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        let sid = new_sid();
        let (status, took) = timed_callback(&server.address, &sid).await;
        assert_eq!(
            status,
            Some(200),
            "round {round}: the callback took {took:?}"
        );
        slowest = slowest.max(took);
        let asked = Instant::now();
        let health = exchange(
            &server.address,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(
            health.map(|answer| answer.status),
            Some(200),
            "round {round}"
        );
        slowest = slowest.max(asked.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.expect("a flood task ran");
    }
    counter.await.expect("the counter ran");
    let most_held = most_held.load(Ordering::Relaxed);
    eprintln!(
        "connection flood: 600 connections against a limit of 512 files: cap {cap}, \
         {held} sockets held when full, {most_held} at most; slowest answer under the flood \
         {slowest:?}"
    );
    // The listener and the store's own sockets, besides the connections.
    assert!(
        most_held <= cap + 16,
        "{most_held} sockets were open, the cap is {cap}"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "answers under the flood took up to {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exports_beyond_the_cap_are_answered_503_with_retry_after_and_their_memory_is_bounded() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = start_server(data.path(), None).await;
    let pid = server.pid();
    let client = reqwest::Client::new();
    // Large messages, so that an export does not fit in the socket buffers and a client
    // that stops reading holds it open.
    let padding = "p".repeat(60_000);
    for _ in 0..200 {
        let params = with(callback(&new_sid(), "sent"), "Padding", &padding);
        let stored = post_to_binary(&client, &server.address, &params).await;
        assert_eq!(stored.expect("answered").status(), 200);
    }
    let baseline = rss_kib(pid);
    let request = |extra: &str| {
        format!(
            "GET /v1/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n{extra}\r\n"
        )
    };
    // Exports whose readers take the head and a little of the body, then stop reading.
    let mut stalled = Vec::new();
    for _ in 0..EXPORT_CAP {
        let mut stream = TcpStream::connect(host_port(&server.address))
            .await
            .expect("a connection");
        stream
            .write_all(request("").as_bytes())
            .await
            .expect("sent");
        let mut head = [0u8; 64];
        let read = stream.read(&mut head).await.expect("a head");
        assert!(
            head[..read].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head[..read])
        );
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss_kib(pid);

    let mut stream = TcpStream::connect(host_port(&server.address))
        .await
        .expect("a connection");
    stream
        .write_all(request("Connection: close\r\n").as_bytes())
        .await
        .expect("sent");
    let refused = read_response(&mut stream).await.expect("an answer");
    eprintln!(
        "exports: RSS {} MiB before, {} MiB with {EXPORT_CAP} stalled exports (~{} KiB each)",
        baseline / 1024,
        held / 1024,
        held.saturating_sub(baseline) / EXPORT_CAP as u64
    );
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused
            .header("retry-after")
            .is_some_and(|seconds| seconds.parse::<u64>().is_ok_and(|s| s > 0)),
        "{refused:?}"
    );
    assert!(
        refused.json().is_some_and(|body| body["error"].is_string()),
        "{refused:?}"
    );
    assert!(
        held.saturating_sub(baseline) < 64 * 1024,
        "{EXPORT_CAP} stalled exports took RSS from {baseline} to {held} KiB"
    );

    // A reader that leaves frees its place.
    drop(stalled.pop());
    let mut freed = false;
    for _ in 0..50 {
        let response = client
            .get(format!("{}/v1/export", server.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("answered");
        if response.status() == 200 {
            let lines = response.text().await.expect("the export").lines().count();
            assert_eq!(lines, 200, "a whole export");
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "an export runs again once a reader has left");
}
