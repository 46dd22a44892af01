//! HTTP/1.1 spoken by hand over a TCP socket, for requests no well-behaved client sends:
//! bodies that never finish, heads too large to parse, compressed bodies nobody asked for.
//! Also the resident memory and open descriptors of a server process, read from `/proc`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer as it came off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// `host:port` of an address such as `http://127.0.0.1:8080`.
pub fn host_port(address: &str) -> &str {
    address.trim_start_matches("http://").trim_end_matches('/')
}

/// Sends `request` (a whole request, head and body, as bytes) on a new connection and reads
/// the answer; `None` if the server closed the connection without one, or gave none within
/// `within`.
pub async fn exchange(address: &str, request: &[u8], within: Duration) -> Option<RawResponse> {
    exchange_from(None, address, request, within).await
}

/// As [`exchange`], from the local address `source` when given (any of 127.0.0.0/8 is this
/// host too, and the server sees it as another client).
pub async fn exchange_from(
    source: Option<std::net::IpAddr>,
    address: &str,
    request: &[u8],
    within: Duration,
) -> Option<RawResponse> {
    tokio::time::timeout(within, async {
        let server: std::net::SocketAddr = host_port(address).parse().ok()?;
        let mut stream = match source {
            Some(source) => {
                let socket = tokio::net::TcpSocket::new_v4().ok()?;
                socket.bind(std::net::SocketAddr::new(source, 0)).ok()?;
                socket.connect(server).await.ok()?
            }
            None => TcpStream::connect(server).await.ok()?,
        };
        // A server may answer and close before it has read everything (a refused body); the
        // answer is still there to read, so a failed write is not the end.
        let _ = stream.write_all(request).await;
        read_response(&mut stream).await
    })
    .await
    .ok()
    .flatten()
}

/// Reads one answer: its head, then a body of `Content-Length` bytes, or everything up to
/// the end of the connection when there is no length.
pub async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let mut body = buffer[head_end + 4..].to_vec();
    loop {
        if length.is_some_and(|length| body.len() >= length) {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    if let Some(length) = length {
        body.truncate(length);
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// The sockets process `pid` has open (the listener included).
pub fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| {
                    std::fs::read_link(entry.path())
                        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}
