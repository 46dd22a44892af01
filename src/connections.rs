//! Connections: how many the service holds at once, and how long one may sit idle.
//!
//! `/twilio/status` answers anyone on the internet, so a client that opens connections and
//! sends nothing, or sends slowly, must not be able to use up the process's file
//! descriptors: when those run out, `accept` fails and every probe and every callback with
//! it. actix-web gives three bounds and this module adds what they leave open:
//!
//! - the head of a connection's *first* request must arrive within [`HEADER_DEADLINE`]
//!   (actix answers `408`), and an idle connection between requests is closed after
//!   [`KEEP_ALIVE`]; the body has its own deadline, in `routes/guard.rs`;
//! - the number of connections is capped ([`Limits`]): the soft `RLIMIT_NOFILE` is raised
//!   to the hard limit at start and the cap is sized from it, leaving descriptors for the
//!   store, the outgoing HTTP clients and the log. At the cap actix stops accepting, and new
//!   connections wait in the listen queue ([`BACKLOG`]) until one closes;
//! - actix bounds neither the head of a *later* request on a kept-alive connection (once a
//!   byte of it arrives, no timer runs) nor the rest of a chunked body it drains after an
//!   early answer. So every connection is watched: one with no request in progress for
//!   longer than [`IDLE_LIMIT`] is shut down, and once the service holds 7/8 of its cap,
//!   one idle for longer than [`IDLE_LIMIT_UNDER_PRESSURE`]. A flood of connections that
//!   send nothing therefore gives way within a second or two to the connections waiting
//!   behind it, among them Twilio's and the health probes, which send their request at once
//!   and so are never idle.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;

/// How long the head of a connection's first request may take to arrive (actix's
/// `client_request_timeout`). Twilio and any proxy send a head in one write; 5 s leaves a
/// slow mobile link room and is actix's own default.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// How long a connection may wait, idle, for its next request. Long enough for a client
/// or proxy that sends in bursts to reuse its connection, short enough that idle ones do
/// not pile up.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a connection may have no request in progress before it is shut down: the
/// keep-alive wait plus the time its next head may take.
pub const IDLE_LIMIT: Duration = Duration::from_secs(10);
/// The same, once the service holds 7/8 of its cap: a client that has not sent a request
/// within half a second of connecting, or of its last answer, makes room for the queue.
/// Twilio, a proxy or a probe sends its request with the connection's first packets.
pub const IDLE_LIMIT_UNDER_PRESSURE: Duration = Duration::from_millis(500);
/// The listen queue: connections the kernel completes while the service is at its cap.
pub const BACKLOG: i32 = 1024;
/// Descriptors kept back from the cap for everything else: the store's files and its
/// PostgreSQL pool, the Twilio and forwarding clients, the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 256;
/// The cap whatever the descriptor limit: at about 30 KiB of buffers each, 4,096 busy
/// connections cost some 120 MiB, which a 512 MiB container can afford beside the store.
const MOST_CONNECTIONS: u64 = 4_096;
/// How often idle connections are looked for.
const SWEEP: Duration = Duration::from_millis(250);

/// The connection cap and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The soft `RLIMIT_NOFILE` in force (after raising it).
    pub descriptors: u64,
    /// Connections held at once, over all workers.
    pub max_connections: usize,
    /// actix's `max_connections`, which counts per worker thread.
    pub per_worker: usize,
}

impl Limits {
    /// The cap for a process allowed `descriptors` open files, served by `workers` threads.
    pub fn new(descriptors: u64, workers: usize) -> Limits {
        let workers = workers.max(1);
        let room = descriptors
            .saturating_sub(RESERVED_DESCRIPTORS)
            .max(workers as u64);
        let per_worker = (room.min(MOST_CONNECTIONS) as usize / workers).max(1);
        Limits {
            descriptors,
            max_connections: per_worker * workers,
            per_worker,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and answers the soft limit in force
/// afterwards (unchanged if it could not be raised).
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into memory we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit from memory we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        Ok(limit.rlim_max)
    } else {
        Ok(limit.rlim_cur)
    }
}

/// Sets the listen queue of `listener` to [`BACKLOG`] (the standard library's is 128);
/// the kernel caps it at `net.core.somaxconn`.
pub fn set_backlog(listener: &std::net::TcpListener) -> std::io::Result<()> {
    // SAFETY: listen on a socket we own; calling it again only changes the queue's length.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The connections of one server: counted for the cap and `/metrics`.
pub struct Connections {
    max: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
    shed: AtomicU64,
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            max: limits.max_connections,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Connections shut down for idling.
    pub fn shed(&self) -> u64 {
        self.shed.load(Relaxed)
    }

    /// The connection metrics, in Prometheus text, appended to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP statushook_connections Connections open now.\n\
             # TYPE statushook_connections gauge\nstatushook_connections {}\n\
             # HELP statushook_connections_max Connections held at most; more wait in the listen queue.\n\
             # TYPE statushook_connections_max gauge\nstatushook_connections_max {}\n\
             # HELP statushook_connections_accepted_total Connections accepted.\n\
             # TYPE statushook_connections_accepted_total counter\nstatushook_connections_accepted_total {}\n\
             # HELP statushook_connections_shed_total Connections shut down for sending no request in time.\n\
             # TYPE statushook_connections_shed_total counter\nstatushook_connections_shed_total {}",
            self.open(),
            self.max,
            self.accepted(),
            self.shed()
        );
    }

    fn under_pressure(&self) -> bool {
        self.open() * 8 >= self.max * 7
    }

    /// The `on_connect` hook of the server: starts watching each new connection.
    pub fn on_connect(
        self: &Arc<Self>,
    ) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
        let connections = Arc::clone(self);
        move |connection, extensions| {
            let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
                return;
            };
            extensions.insert(Watched::start(stream, &connections));
        }
    }
}

/// What the sweeper knows of one connection. It lives on the connection's worker thread,
/// like the connection itself, so nothing else can close the descriptor under it.
struct Activity {
    fd: RawFd,
    peer: Option<SocketAddr>,
    /// Requests of this connection in progress (received, answer not yet sent).
    busy: Cell<u32>,
    /// When the connection last had no request in progress.
    idle_since: Cell<Instant>,
    shut: Cell<bool>,
}

impl Activity {
    /// Shuts the socket down, so that actix reads its end and drops the connection. The
    /// peer address is checked first: a descriptor number is reused once closed.
    fn shut_down(&self) -> bool {
        if self.shut.get() || peer_of(self.fd) != self.peer {
            return false;
        }
        self.shut.set(true);
        // SAFETY: shutdown on a descriptor whose peer we just checked is this connection's.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) == 0 }
    }
}

/// The peer address of socket `fd`.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;
    // SAFETY: the stream is never dropped (ManuallyDrop), so the descriptor stays open and
    // owned by its connection; only getpeername runs on it.
    let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    stream.peer_addr().ok()
}

thread_local! {
    /// The connections of this worker thread, and whether its sweeper runs.
    static WATCHED: RefCell<(Vec<Weak<Activity>>, bool)> = const { RefCell::new((Vec::new(), false)) };
}

/// Kept in the connection's data for as long as actix holds the connection.
struct Watched {
    activity: Rc<Activity>,
    connections: Arc<Connections>,
}

impl Watched {
    fn start(stream: &actix_web::rt::net::TcpStream, connections: &Arc<Connections>) -> Watched {
        let activity = Rc::new(Activity {
            fd: stream.as_raw_fd(),
            peer: stream.peer_addr().ok(),
            busy: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            shut: Cell::new(false),
        });
        connections.open.fetch_add(1, Relaxed);
        connections.accepted.fetch_add(1, Relaxed);
        let start_sweeper = WATCHED.with(|watched| {
            let mut watched = watched.borrow_mut();
            watched.0.push(Rc::downgrade(&activity));
            !std::mem::replace(&mut watched.1, true)
        });
        if start_sweeper {
            actix_web::rt::spawn(sweep(Arc::clone(connections)));
        }
        Watched {
            activity,
            connections: Arc::clone(connections),
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Relaxed);
    }
}

/// Shuts down, every [`SWEEP`], the connections of this thread that idled too long.
async fn sweep(connections: Arc<Connections>) {
    loop {
        actix_web::rt::time::sleep(SWEEP).await;
        let limit = if connections.under_pressure() {
            IDLE_LIMIT_UNDER_PRESSURE
        } else {
            IDLE_LIMIT
        };
        let now = Instant::now();
        let shed = WATCHED.with(|watched| {
            let mut shed = 0;
            watched.borrow_mut().0.retain(|weak| {
                let Some(activity) = weak.upgrade() else {
                    return false;
                };
                let idle = now.saturating_duration_since(activity.idle_since.get());
                if activity.busy.get() == 0 && idle > limit && activity.shut_down() {
                    shed += 1;
                }
                true
            });
            shed
        });
        connections.shed.fetch_add(shed, Relaxed);
    }
}

/// Middleware, outermost: marks the connection busy from the moment a request arrives
/// until its answer has been sent in full (a streamed export is busy while it streams).
pub async fn track_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let busy = request
        .conn_data::<Watched>()
        .map(|watched| Busy::begin(&watched.activity));
    let response = next.call(request).await?;
    Ok(response.map_body(|_, body| hold_until_sent(body.boxed(), busy)))
}

/// One request in progress on a watched connection.
struct Busy(Rc<Activity>);

impl Busy {
    fn begin(activity: &Rc<Activity>) -> Busy {
        activity.busy.set(activity.busy.get() + 1);
        Busy(Rc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let busy = &self.0.busy;
        busy.set(busy.get().saturating_sub(1));
        self.0.idle_since.set(Instant::now());
    }
}

/// An answer's body, with something kept alive until the body is dropped: when it has
/// been sent in full, or when the connection goes.
pub struct Held<T> {
    body: BoxBody,
    _held: T,
}

/// Keeps `held` alive until `body` has been sent.
pub fn hold_until_sent<T: Unpin + 'static>(body: BoxBody, held: T) -> Held<T> {
    Held { body, _held: held }
}

impl<T: Unpin> MessageBody for Held<T> {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_and_stays_below_the_ceiling() {
        let small = Limits::new(1_024, 2);
        assert_eq!(small.max_connections, 768);
        assert_eq!(small.per_worker, 384);
        let large = Limits::new(1_048_576, 8);
        assert_eq!(large.max_connections, 4_096);
        assert_eq!(large.per_worker, 512);
        let tiny = Limits::new(100, 4);
        assert!(tiny.max_connections >= 4, "{tiny:?}");
        assert!(tiny.per_worker >= 1);
    }

    #[test]
    fn the_descriptor_limit_is_raised_to_the_hard_limit() {
        let soft = raise_descriptor_limit().expect("getrlimit works");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_descriptor_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
