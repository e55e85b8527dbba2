//! The accept loop: HTTP/1.1 and (over TLS, by ALPN) HTTP/2 connections on one or more
//! listeners under one cap, with time limits on request headers and on idle keep-alive, and room
//! made at the cap by closing the connection idle the longest.
//!
//! Why not `axum::serve`: it has no connection cap and no header or idle timeout, so a client
//! holding half-open connections could exhaust the process's file descriptors.
//!
//! Each connection has a slot counting its requests in flight (several at once on HTTP/2) and
//! saying since when it has been idle. A sweeper closes idle connections past their deadline: the
//! header timeout while request bytes are arriving (or before the first request), the keep-alive
//! timeout when nothing has been sent since the last response. At the cap, a new connection is
//! served only after the longest-idle connection has been told to close (when the new one
//! arrives, not before); connections with a request in flight are never closed for room. When
//! every connection is busy, new ones wait in the listen backlog.
//!
//! With TLS the handshake runs inside the connection's slot, before its first request: it counts
//! against the header timeout, so a client that connects and never finishes (or never starts) a
//! handshake is closed like one that never sends a request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// How long a shutdown waits for in-flight requests before dropping what is left.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// File descriptors kept free for SQLite, IMS connections, JWKS fetches and logs when the
/// connection cap is fitted to the open-files limit.
const RESERVED_FDS: u64 = 128;
/// Concurrent requests on one HTTP/2 connection.
const MAX_H2_STREAMS: u32 = 100;

/// The connection limits `serve` enforces (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_bytes: usize,
}

impl ConnLimits {
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections,
            header_timeout: server.header_timeout,
            keepalive_timeout: server.keepalive_timeout,
            max_header_bytes: server.max_header_bytes,
        }
    }

    /// Lowers the cap to fit the process's open-files limit, so the cap, not `EMFILE`, is what a
    /// flood of connections meets. Says so in the log.
    fn fitted(mut self) -> Self {
        if let Some(soft) = open_files_limit() {
            let room = soft.saturating_sub(RESERVED_FDS).max(16) as usize;
            if room < self.max_connections {
                tracing::warn!(
                    configured = self.max_connections,
                    used = room,
                    open_files_limit = soft,
                    "server.max_connections is above what the open-files limit allows; using the lower value (raise the limit with `ulimit -n` or LimitNOFILE=)"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Why the server closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    /// Closed to make room for a new connection at the cap.
    Evicted,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::Evicted => "evicted",
        }
    }
}

/// One connection's state, shared by its task, its I/O wrapper, its service and the sweeper.
#[derive(Debug)]
struct Slot {
    /// Requests being handled (at most one on HTTP/1.1).
    in_flight: AtomicUsize,
    /// At least one request has been answered (before that, the header timeout applies).
    served: AtomicBool,
    /// Bytes arrived since the connection last went idle: a request head is being sent.
    read: AtomicBool,
    /// Milliseconds since the server's epoch when the connection last went idle.
    idle_since: AtomicU64,
    /// Set once the connection has been told to close; never chosen twice.
    closing: AtomicBool,
    close: Notify,
}

#[derive(Debug)]
struct Registry {
    epoch: Instant,
    limits: ConnLimits,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Connections not yet told to close: what the cap counts.
    live: AtomicUsize,
    /// Woken when a connection ends, so a full accept loop can go on.
    freed: Notify,
    metrics: Arc<Metrics>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn insert(&self, id: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            read: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.slots.lock().insert(id, slot.clone());
        self.live.fetch_add(1, Ordering::AcqRel);
        self.metrics.connections.inc();
        slot
    }

    fn remove(&self, id: u64, slot: &Slot) {
        if !slot.closing.swap(true, Ordering::AcqRel) {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        self.slots.lock().remove(&id);
        self.metrics.connections.dec();
        self.freed.notify_one();
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn close(&self, slot: &Slot, reason: CloseReason) {
        if !slot.closing.swap(true, Ordering::AcqRel) {
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.metrics
                .connections_closed
                .get_or_create(&crate::metrics::ReasonLabels {
                    reason: reason.as_str(),
                })
                .inc();
            slot.close.notify_one();
        }
    }

    /// Whether some connection could be closed for room (none in flight, not closing yet).
    fn has_idle(&self) -> bool {
        self.slots
            .lock()
            .values()
            .any(|s| s.in_flight.load(Ordering::Acquire) == 0 && !s.closing.load(Ordering::Relaxed))
    }

    /// Tells the connection idle the longest to close; false if every connection is busy.
    fn evict_one(&self) -> bool {
        let victim = {
            let slots = self.slots.lock();
            slots
                .values()
                .filter(|s| {
                    s.in_flight.load(Ordering::Acquire) == 0 && !s.closing.load(Ordering::Relaxed)
                })
                .min_by_key(|s| s.idle_since.load(Ordering::Relaxed))
                .cloned()
        };
        match victim {
            Some(slot) => {
                self.close(&slot, CloseReason::Evicted);
                true
            }
            None => false,
        }
    }

    /// Closes idle connections past their deadline.
    fn sweep(&self) {
        let now = self.now_ms();
        let header = self.limits.header_timeout.as_millis() as u64;
        let idle = self.limits.keepalive_timeout.as_millis() as u64;
        let expired: Vec<(Arc<Slot>, CloseReason)> = self
            .slots
            .lock()
            .values()
            .filter(|s| {
                s.in_flight.load(Ordering::Acquire) == 0 && !s.closing.load(Ordering::Relaxed)
            })
            .filter_map(|s| {
                // `read` first: its Release store follows the `idle_since` it belongs with.
                let read = s.read.load(Ordering::Acquire);
                let since = s.idle_since.load(Ordering::Relaxed);
                let (limit, reason) = if read || !s.served.load(Ordering::Relaxed) {
                    (header, CloseReason::HeaderTimeout)
                } else {
                    (idle, CloseReason::IdleTimeout)
                };
                (now.saturating_sub(since) >= limit).then(|| (s.clone(), reason))
            })
            .collect();
        for (slot, reason) in expired {
            self.close(&slot, reason);
        }
    }
}

/// Serves each listener's router, over TLS when `tls` is given, under `limits` (one connection
/// cap for all listeners) until `shutdown` resolves, then lets in-flight requests finish (up to
/// [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listeners: Vec<(TcpListener, Router)>,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = limits.fitted();
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        limits,
        slots: Mutex::new(HashMap::new()),
        live: AtomicUsize::new(0),
        freed: Notify::new(),
        metrics,
    });
    let sweeper = tokio::spawn(sweep_loop(Arc::downgrade(&registry)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut next_id = 0u64;
    // Which listener is polled first, rotated so a busy one cannot starve the others.
    let mut first = 0usize;
    'accept: loop {
        // At the cap with every connection busy, new ones wait in the listen backlog.
        while registry.live() >= limits.max_connections && !registry.has_idle() {
            tokio::select! {
                _ = registry.freed.notified() => {}
                _ = &mut shutdown => break 'accept,
            }
        }
        let accept = std::future::poll_fn(|cx| {
            let n = listeners.len();
            for k in 0..n {
                let i = (first + k) % n;
                if let Poll::Ready(r) = listeners[i].0.poll_accept(cx) {
                    first = (i + 1) % n;
                    return Poll::Ready((i, r));
                }
            }
            Poll::Pending
        });
        let (index, stream, peer) = tokio::select! {
            (i, r) = accept => match r {
                Ok((stream, peer)) => (i, stream, peer),
                Err(e) => {
                    // EMFILE and friends: the condition passes as connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Room for the new connection: the longest-idle one is told to close now that another
        // wants its place (not before, so an idle connection at the cap is not closed for
        // nothing). Busy connections are never closed; if every one turned busy meanwhile, the
        // new connection waits here until one ends, so the cap holds.
        while registry.live() >= limits.max_connections {
            if registry.evict_one() {
                break;
            }
            tokio::select! {
                _ = registry.freed.notified() => {}
                _ = &mut shutdown => break 'accept,
            }
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let slot = registry.insert(id);
        tokio::spawn(connection(
            stream,
            peer,
            listeners[index].1.clone(),
            acceptor.clone(),
            registry.clone(),
            id,
            slot,
            stop_rx.clone(),
        ));
    }
    drop(listeners);
    let _ = stop_tx.send(true);
    let drained = async {
        loop {
            let waiting = registry.freed.notified();
            if registry.slots.lock().is_empty() {
                return;
            }
            waiting.await;
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
    sweeper.abort();
    Ok(())
}

async fn sweep_loop(registry: std::sync::Weak<Registry>) {
    let period = {
        let Some(r) = registry.upgrade() else { return };
        (r.limits.header_timeout.min(r.limits.keepalive_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = registry.upgrade() else { return };
        r.sweep();
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    registry: Arc<Registry>,
    id: u64,
    slot: Arc<Slot>,
    mut stop: watch::Receiver<bool>,
) {
    match tls {
        None => serve_http(stream, false, peer, router, &registry, &slot, &mut stop).await,
        Some(acceptor) => {
            // The handshake runs under the header timeout: the sweeper closes a slot that has
            // served nothing once it is due, and eviction may pick it too.
            let handshake = tokio::select! {
                r = acceptor.accept(stream) => Some(r),
                _ = slot.close.notified() => None,
                _ = stop.changed() => None,
            };
            match handshake {
                Some(Ok(tls)) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    serve_http(tls, h2, peer, router, &registry, &slot, &mut stop).await;
                }
                Some(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                None => {}
            }
        }
    }
    registry.remove(id, &slot);
}

/// Serves HTTP on an established connection (plain or TLS) until it ends or is closed.
async fn serve_http<IO>(
    io: IO,
    h2: bool,
    peer: SocketAddr,
    router: Router,
    registry: &Arc<Registry>,
    slot: &Arc<Slot>,
    stop: &mut watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Tracked {
        inner: io,
        slot: slot.clone(),
        epoch: registry.epoch,
    });
    let service = hyper::service::service_fn({
        let slot = slot.clone();
        let registry = registry.clone();
        move |req: hyper::Request<Incoming>| {
            slot.in_flight.fetch_add(1, Ordering::AcqRel);
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            // The peer, for the trusted-proxy rule and the access log (`http::access`).
            req.extensions_mut().insert(super::access::PeerAddr(peer));
            if h2 {
                host_from_authority(&mut req);
            }
            let call = tower::ServiceExt::oneshot(router.clone(), req);
            let done = IdleOnDrop {
                slot: slot.clone(),
                registry: registry.clone(),
            };
            async move {
                let resp = call.await;
                drop(done);
                resp
            }
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The protocol is known before the first byte: ALPN over TLS, HTTP/1.1 otherwise.
    let mut builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .max_buf_size(registry.limits.max_header_bytes);
    builder
        .http2()
        .max_header_list_size(registry.limits.max_header_bytes as u32)
        .max_concurrent_streams(MAX_H2_STREAMS);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = slot.close.notified() => {
                if slot.in_flight.load(Ordering::Acquire) > 0 {
                    // A request started after the connection was chosen: let it finish.
                    conn.as_mut().graceful_shutdown();
                } else {
                    break;
                }
            }
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Marks the connection idle when its request's handling ends, however it ends.
struct IdleOnDrop {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        // Stored before the count drops, so the sweeper never sees an idle connection with a
        // stale `idle_since`. (With other HTTP/2 requests still in flight this only moves the
        // idle clock forward, which the sweeper ignores until the last one ends.)
        self.slot
            .idle_since
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.slot.read.store(false, Ordering::Relaxed);
        self.slot.served.store(true, Ordering::Relaxed);
        if self.slot.in_flight.fetch_sub(1, Ordering::Release) == 1 {
            // Now idle, so evictable: an accept waiting at the cap with every connection busy
            // may go on (it closes this one or another idle one to make room).
            self.registry.freed.notify_one();
        }
    }
}

/// HTTP/2 carries the host as the `:authority` pseudo-header, which hyper puts in the URI and
/// not in `Host`; handlers read `Host` alone (the console's same-origin check compares `Origin`
/// with it), so an HTTP/2 request without one gets it from the authority. An HTTP/1.1 request
/// always has its own.
fn host_from_authority(req: &mut axum::http::Request<Body>) {
    if req.headers().contains_key(axum::http::header::HOST) {
        return;
    }
    let value = req
        .uri()
        .authority()
        .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(v) = value {
        req.headers_mut().insert(axum::http::header::HOST, v);
    }
}

/// The connection (plain, or TLS above the socket), noting when request bytes arrive on an idle
/// connection.
struct Tracked<IO> {
    inner: IO,
    slot: Arc<Slot>,
    /// The registry's epoch, for `idle_since`.
    epoch: Instant,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && !self.slot.read.load(Ordering::Relaxed) {
            // The next request on a kept-alive connection starts now: its header timeout runs
            // from here, not from the previous response. (A new connection's runs from accept.)
            if self.slot.served.load(Ordering::Relaxed) {
                let now = self.epoch.elapsed().as_millis() as u64;
                self.slot.idle_since.store(now, Ordering::Relaxed);
            }
            self.slot.read.store(true, Ordering::Release);
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
