//! The HTTP connection layer under the routes of [`crate::web::router`]: the descriptor budget
//! (soft `RLIMIT_NOFILE` raised to the hard limit), a cap on open connections that leaves
//! the pollers and the ledger their descriptors, a request-header timeout, and graceful
//! shutdown.
//!
//! Without these, about a thousand idle TCP connections used up every descriptor: `/metrics`
//! stopped answering and every poll failed with "too many open files".

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::daemon::self_metrics::HttpStats;
use axum::Router;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a connection may take to deliver a complete request header, counted from when
/// it opens and again from the end of each response (hyper's `header_read_timeout`, the
/// role of Go's `ReadHeaderTimeout` and nginx's `client_header_timeout`). It is the
/// keep-alive idle timeout too: a client that waits longer between requests opens a new
/// connection, as Prometheus does anyway at scrape intervals of 15 s and more. No idle or
/// trickling client holds a connection longer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most HTTP connections served at once, whatever the descriptor limit: far more than
/// Prometheus servers, dashboards and `top` sessions need.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// The fewest connections allowed, even when the descriptor limit is too low for the fleet
/// (then the pollers may fail too, and a warning says so at start).
pub(crate) const MIN_CONNECTIONS: usize = 16;

/// Descriptors kept back for everything but HTTP and the pollers: standard streams, the
/// runtime's epoll and wake-up descriptors, the listener, the ledger with its `-wal`,
/// `-shm` and lock files, name lookups, log files, with room to spare.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 64;

/// Descriptors kept back per polled miner: its keep-alive socket, and one more while a
/// reconnect or a name lookup overlaps it.
pub(crate) const DESCRIPTORS_PER_MINER: u64 = 2;

/// A response the client has not taken for this long (its socket buffer full all the
/// while) no longer protects its connection: at the cap it is closed like an idle one, so
/// clients that never read cannot hold every slot (node_exporter's write timeout).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// No write is waiting.
const NOT_BLOCKED: u64 = u64::MAX;

/// At the cap, a new connection takes the place of one that has been idle (no request in
/// progress, no response waiting to be sent) at least this long; a brand-new connection
/// whose request is still on the wire is never the one closed.
pub(crate) const EVICT_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The cap being reached is logged at most this often (with what happened since).
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Raises the soft open-file limit to the hard limit (what systemd, Docker and a login
/// shell give as the hard limit is usually far above the 1,024 soft default) and returns
/// the soft limit in force, or `None` if it cannot be read.
pub fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            let current = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
            tracing::warn!("cannot raise the open-file limit ({e}); it stays at {current:?}");
            current
        }
    }
}

/// How many HTTP connections fit in `nofile` descriptors beside `miners` pollers and the
/// reserve, between [`MIN_CONNECTIONS`] and [`MAX_CONNECTIONS`].
pub fn connection_limit(nofile: Option<u64>, miners: usize) -> usize {
    let Some(nofile) = nofile else {
        return MAX_CONNECTIONS;
    };
    let miners = u64::try_from(miners).unwrap_or(u64::MAX);
    let reserve = RESERVED_DESCRIPTORS.saturating_add(DESCRIPTORS_PER_MINER.saturating_mul(miners));
    usize::try_from(nofile.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// Whether `nofile` descriptors leave the pollers their reserve and at least
/// [`MIN_CONNECTIONS`] for HTTP.
pub fn descriptors_suffice(nofile: u64, miners: usize) -> bool {
    let miners = u64::try_from(miners).unwrap_or(u64::MAX);
    let needed = RESERVED_DESCRIPTORS
        .saturating_add(DESCRIPTORS_PER_MINER.saturating_mul(miners))
        .saturating_add(MIN_CONNECTIONS as u64);
    nofile >= needed
}

/// Marks a connection in the middle of a request.
const BUSY: u64 = u64::MAX;

/// One open connection as the cap sees it.
#[derive(Debug)]
struct Slot {
    /// When the connection last became idle, in ms since [`Connections::epoch`]; [`BUSY`]
    /// while a request is being handled.
    idle_since_ms: AtomicU64,
    /// Since when (ms since [`Connections::epoch`]) writes have found the socket full and
    /// response bytes wait for the client; [`NOT_BLOCKED`] while they do not.
    write_blocked_since_ms: AtomicU64,
    /// The registry's clock origin, to date a blocked write.
    epoch: Instant,
    /// Chosen to make room; its task has been told to close it.
    closing: AtomicBool,
    /// Tells the connection's task to close it.
    close: Notify,
}

impl Slot {
    /// Handling a request, or holding response bytes the client has not taken yet.
    fn is_busy(&self) -> bool {
        self.idle_since_ms.load(Ordering::Relaxed) == BUSY
            || self.write_blocked_since_ms.load(Ordering::Relaxed) != NOT_BLOCKED
    }

    /// Response bytes have waited for the client longer than `timeout_ms`.
    fn write_stalled(&self, now_ms: u64, timeout_ms: u64) -> bool {
        let since = self.write_blocked_since_ms.load(Ordering::Relaxed);
        since != NOT_BLOCKED && now_ms.saturating_sub(since) >= timeout_ms
    }

    fn note_write(&self, blocked: bool) {
        if blocked {
            let now = self.epoch.elapsed().as_millis() as u64;
            let _ =
                self.write_blocked_since_ms
                    .compare_exchange(NOT_BLOCKED, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.write_blocked_since_ms.store(NOT_BLOCKED, Ordering::Relaxed);
        }
    }
}

/// The open connections: a permit each (so the cap counts sockets until they are really
/// closed), and what the choice of an idle one to close needs.
#[derive(Debug)]
struct Connections {
    epoch: Instant,
    /// [`EVICT_AFTER_IDLE`] in ms (a parameter for the unit tests).
    min_idle_ms: u64,
    stats: Arc<HttpStats>,
    permits: Arc<Semaphore>,
    open: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    slots: HashMap<u64, Arc<Slot>>,
}

/// What became of a new connection at the door.
enum Admission {
    Admitted(Ticket),
    /// Admitted in place of an idle connection, once that one had closed.
    Evicted(Ticket),
    Rejected,
}

/// How long a newcomer waits for the idle connection it displaces to close.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

impl Connections {
    fn new(stats: Arc<HttpStats>, min_idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            min_idle_ms: u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX),
            permits: Arc::new(Semaphore::new(stats.limit())),
            stats,
            open: Mutex::new(Registry::default()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(BUSY - 1)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a new connection. At the cap, the longest-idle connection is told to close
    /// and the newcomer waits for its descriptor: a flood can never hold more sockets than
    /// the cap, even while the displaced ones are still closing.
    async fn admit(self: &Arc<Self>) -> Admission {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Admission::Admitted(self.register(permit));
        }
        if self.close_longest_idle() {
            self.stats.count_evicted();
            if let Ok(Ok(permit)) = tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned()).await {
                return Admission::Evicted(self.register(permit));
            }
        }
        self.stats.count_rejected();
        Admission::Rejected
    }

    /// Tells the connection idle longest (at least `min_idle_ms`) to close; false if none is.
    fn close_longest_idle(&self) -> bool {
        let now = self.now_ms();
        let registry = self.lock();
        let write_timeout_ms = WRITE_TIMEOUT.as_millis() as u64;
        let open = || {
            registry
                .slots
                .values()
                .filter(|slot| !slot.closing.load(Ordering::Relaxed))
        };
        // A client that has not read its response for WRITE_TIMEOUT goes first; then the
        // connection idle longest.
        let stalled = open()
            .filter(|slot| slot.write_stalled(now, write_timeout_ms))
            .map(|slot| (slot.write_blocked_since_ms.load(Ordering::Relaxed), slot))
            .min_by_key(|(since, _)| *since);
        let victim = stalled.or_else(|| {
            open()
                .filter(|slot| !slot.is_busy())
                .map(|slot| (slot.idle_since_ms.load(Ordering::Relaxed), slot))
                .filter(|(since, _)| now.saturating_sub(*since) >= self.min_idle_ms)
                .min_by_key(|(since, _)| *since)
        });
        let Some((_, slot)) = victim else {
            return false;
        };
        slot.closing.store(true, Ordering::Relaxed);
        // A stored permit: the task closes the connection even if it is not waiting on
        // the signal at this very moment.
        slot.close.notify_one();
        true
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Ticket {
        let slot = Arc::new(Slot {
            idle_since_ms: AtomicU64::new(self.now_ms()),
            write_blocked_since_ms: AtomicU64::new(NOT_BLOCKED),
            epoch: self.epoch,
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id = registry.next_id.wrapping_add(1);
        registry.slots.insert(id, slot.clone());
        self.stats.set_open(registry.slots.len());
        Ticket {
            id,
            slot,
            connections: self.clone(),
            _permit: permit,
        }
    }
}

/// A connection's place under the cap, given back when its task ends (after its socket
/// is closed).
struct Ticket {
    id: u64,
    slot: Arc<Slot>,
    connections: Arc<Connections>,
    /// Released after `drop` has taken the slot out of the registry.
    _permit: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut registry = self.connections.lock();
        registry.slots.remove(&self.id);
        self.connections.stats.set_open(registry.slots.len());
    }
}

/// Marks the connection busy for as long as a request is being handled.
struct Busy {
    slot: Arc<Slot>,
    connections: Arc<Connections>,
}

impl Busy {
    fn start(ticket: &Ticket) -> Self {
        ticket.slot.idle_since_ms.store(BUSY, Ordering::Relaxed);
        Self {
            slot: ticket.slot.clone(),
            connections: ticket.connections.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slot
            .idle_since_ms
            .store(self.connections.now_ms(), Ordering::Relaxed);
    }
}

/// The socket, noting whether the client is keeping response bytes waiting.
struct TrackedIo {
    io: TokioIo<TcpStream>,
    slot: Arc<Slot>,
}

impl TrackedIo {
    fn note<T>(&self, result: Poll<T>) -> Poll<T> {
        self.slot.note_write(result.is_pending());
        result
    }
}

impl Read for TrackedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for TrackedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// What the cap did since it was last logged.
#[derive(Debug, Default)]
struct CapReport {
    last_logged: Option<Instant>,
    evicted: u64,
    rejected: u64,
}

impl CapReport {
    fn note(&mut self, evicted: bool, limit: usize) {
        if evicted {
            self.evicted += 1;
        } else {
            self.rejected += 1;
        }
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < CAP_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            "HTTP connection limit ({limit}) reached: {} idle connection(s) closed to make room, \
             {} new connection(s) refused with every connection busy (logged at most once a minute; \
             see bitaxe_exporter_http_connections_*)",
            self.evicted,
            self.rejected
        );
        self.last_logged = Some(now);
        self.evicted = 0;
        self.rejected = 0;
    }
}

/// Serves `app` on `listener` until `stop` becomes true, then stops accepting and lets
/// each open connection finish its request (the caller bounds that wait; dropping this
/// future closes whatever is left).
pub async fn run(listener: TcpListener, app: Router, stats: Arc<HttpStats>, mut stop: watch::Receiver<bool>) {
    let connections = Connections::new(stats, EVICT_AFTER_IDLE);
    let limit = connections.stats.limit();
    let mut tasks = JoinSet::new();
    let mut report = CapReport::default();
    let mut accept_error_logged: Option<Instant> = None;
    let connection_stop = stop.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors despite the cap (something else holds them):
                    // wait instead of spinning on a listener that stays readable.
                    if accept_error_logged.is_none_or(|t| t.elapsed() >= CAP_LOG_INTERVAL) {
                        tracing::error!("cannot accept HTTP connections: {e}");
                        accept_error_logged = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
        };
        let ticket = match connections.admit().await {
            Admission::Admitted(ticket) => ticket,
            Admission::Evicted(ticket) => {
                report.note(true, limit);
                ticket
            }
            Admission::Rejected => {
                // Dropped at once: its descriptor is free before the next accept.
                report.note(false, limit);
                continue;
            }
        };
        tasks.spawn(serve_connection(stream, app.clone(), ticket, connection_stop.clone()));
    }
    // New connections are refused from here; open ones finish their request.
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(stream: TcpStream, app: Router, ticket: Ticket, mut stop: watch::Receiver<bool>) {
    let io = TrackedIo {
        io: TokioIo::new(stream),
        slot: ticket.slot.clone(),
    };
    let router = TowerToHyperService::new(app);
    let ticket = Arc::new(ticket);
    let marker = ticket.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::start(&marker);
        let response = router.call(request);
        async move {
            let response: Result<_, Infallible> = response.await;
            drop(busy);
            response
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("HTTP connection closed: {e}");
            }
        }
        // Chosen to make room at the cap: dropping the connection closes the socket.
        () = ticket.slot.close.notified() => {}
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            // Between requests (even halfway through a header) a connection is owed
            // nothing: dropping it closes it now. One handling a request, or with a
            // response still on its way, finishes that first (within the caller's grace).
            if ticket.slot.is_busy() {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_leaves_the_pollers_their_descriptors() {
        // 256 descriptors, 5 miners: 256 − 64 − 2·5.
        assert_eq!(connection_limit(Some(256), 5), 182);
        assert_eq!(connection_limit(Some(1024), 200), 560);
        assert_eq!(connection_limit(Some(1_048_576), 1000), MAX_CONNECTIONS);
        assert_eq!(connection_limit(Some(256), 1000), MIN_CONNECTIONS);
        assert_eq!(connection_limit(None, 10), MAX_CONNECTIONS);
        assert!(descriptors_suffice(1024, 200));
        assert!(!descriptors_suffice(256, 200));
    }

    async fn fill(connections: &Arc<Connections>) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        for _ in 0..connections.stats.limit() {
            match connections.admit().await {
                Admission::Admitted(t) => tickets.push(t),
                _ => panic!("turned away below the cap"),
            }
        }
        tickets
    }

    #[tokio::test]
    async fn at_the_cap_a_newcomer_is_refused_when_nothing_has_been_idle_long() {
        let stats = Arc::new(HttpStats::new(MIN_CONNECTIONS));
        let connections = Connections::new(stats.clone(), EVICT_AFTER_IDLE);
        let tickets = fill(&connections).await;
        assert_eq!(stats.open(), MIN_CONNECTIONS);
        assert!(matches!(connections.admit().await, Admission::Rejected));
        assert_eq!((stats.rejected(), stats.evicted()), (1, 0));
        drop(tickets);
        assert_eq!(stats.open(), 0);
        assert!(matches!(connections.admit().await, Admission::Admitted(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_its_response_loses_its_place_after_the_write_timeout() {
        let stats = Arc::new(HttpStats::new(MIN_CONNECTIONS));
        let connections = Connections::new(stats.clone(), EVICT_AFTER_IDLE);
        let mut tickets = fill(&connections).await;
        // Every connection is handling a request; one has response bytes its client never
        // takes.
        let _busy: Vec<Busy> = tickets.iter().map(Busy::start).collect();
        tickets[3].slot.note_write(true);
        tokio::time::advance(WRITE_TIMEOUT / 2).await;
        assert!(
            matches!(connections.admit().await, Admission::Rejected),
            "evicted before the write timeout"
        );
        tokio::time::advance(WRITE_TIMEOUT).await;
        let victim = tickets.remove(3);
        let closing = async move {
            victim.slot.close.notified().await;
            drop(victim);
        };
        let (admission, ()) = tokio::join!(connections.admit(), closing);
        assert!(
            matches!(admission, Admission::Evicted(_)),
            "the stalled writer kept its place"
        );
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room_before_the_newcomer_gets_in() {
        let stats = Arc::new(HttpStats::new(MIN_CONNECTIONS));
        let connections = Connections::new(stats.clone(), Duration::ZERO);
        let mut tickets = fill(&connections).await;
        for (i, ticket) in tickets.iter().enumerate() {
            ticket.slot.idle_since_ms.store(100 + i as u64, Ordering::Relaxed);
        }
        // The two oldest are not idle: one is handling a request, the other's client has
        // not read its response yet. The third oldest makes room.
        let busy = Busy::start(&tickets[0]);
        tickets[1].slot.note_write(true);
        let victim = tickets.remove(2);
        let victim_id = victim.id;
        let closing = async move {
            victim.slot.close.notified().await;
            // Still counted until its task lets go of it.
            assert_eq!(victim.connections.stats.open(), MIN_CONNECTIONS);
            drop(victim);
        };
        let (admission, ()) = tokio::join!(connections.admit(), closing);
        let Admission::Evicted(newcomer) = admission else {
            panic!("no idle connection made room");
        };
        assert_eq!(
            (stats.rejected(), stats.evicted(), stats.open()),
            (0, 1, MIN_CONNECTIONS)
        );
        let open = |id: u64| connections.lock().slots.contains_key(&id);
        assert!(open(tickets[0].id) && open(tickets[1].id) && !open(victim_id) && open(newcomer.id));

        // A finished request makes its connection idle again.
        drop(busy);
        assert_ne!(tickets[0].slot.idle_since_ms.load(Ordering::Relaxed), BUSY);
        drop(tickets);
        drop(newcomer);
        assert_eq!(stats.open(), 0);
    }
}
