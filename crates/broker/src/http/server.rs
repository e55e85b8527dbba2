//! The accept loop: HTTP/1.1 connections under a cap, with time limits on request headers and on
//! idle keep-alive, and room made at the cap by closing the connection idle the longest.
//!
//! Why not `axum::serve`: it has no connection cap and no header or idle timeout, so a client
//! holding half-open connections could exhaust the process's file descriptors.
//!
//! Each connection has a slot saying whether a request is in flight (`active`) and since when it
//! has been idle. A sweeper closes idle connections past their deadline: the header timeout while
//! request bytes are arriving (or before the first request), the keep-alive timeout when nothing
//! has been sent since the last response. At the cap, a new connection is accepted only after the
//! longest-idle connection has been told to close; connections with a request in flight are never
//! closed for room. When every connection is busy, new ones wait in the listen backlog.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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
    /// A request is being handled.
    active: AtomicBool,
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
            active: AtomicBool::new(false),
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

    /// Tells the connection idle the longest to close; false if every connection is busy.
    fn evict_one(&self) -> bool {
        let victim = {
            let slots = self.slots.lock();
            slots
                .values()
                .filter(|s| !s.active.load(Ordering::Acquire) && !s.closing.load(Ordering::Relaxed))
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
            .filter(|s| !s.active.load(Ordering::Acquire) && !s.closing.load(Ordering::Relaxed))
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

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then lets in-flight
/// requests finish (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
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
    'accept: loop {
        // Make room before accepting, so the cap holds; busy connections are never closed.
        while registry.live() >= limits.max_connections {
            if registry.evict_one() {
                break;
            }
            tokio::select! {
                _ = registry.freed.notified() => {}
                _ = &mut shutdown => break 'accept,
            }
        }
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: the condition passes as connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let slot = registry.insert(id);
        tokio::spawn(connection(
            stream,
            router.clone(),
            registry.clone(),
            id,
            slot,
            stop_rx.clone(),
        ));
    }
    drop(listener);
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

async fn connection(
    stream: TcpStream,
    router: Router,
    registry: Arc<Registry>,
    id: u64,
    slot: Arc<Slot>,
    mut stop: watch::Receiver<bool>,
) {
    // The peer, for the trusted-proxy rule and the access log (`http::access`).
    let peer = stream.peer_addr().ok().map(super::access::PeerAddr);
    let io = TokioIo::new(Tracked {
        inner: stream,
        slot: slot.clone(),
        epoch: registry.epoch,
    });
    let service = hyper::service::service_fn({
        let slot = slot.clone();
        let registry = registry.clone();
        move |mut req: hyper::Request<Incoming>| {
            slot.active.store(true, Ordering::Release);
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            let call = tower::ServiceExt::oneshot(router.clone(), req.map(Body::new));
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
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(registry.limits.max_header_bytes);
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
                if slot.active.load(Ordering::Acquire) {
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
    registry.remove(id, &slot);
}

/// Marks the connection idle when its request's handling ends, however it ends.
struct IdleOnDrop {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.slot
            .idle_since
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.slot.read.store(false, Ordering::Relaxed);
        self.slot.served.store(true, Ordering::Relaxed);
        self.slot.active.store(false, Ordering::Release);
    }
}

/// The socket, noting when request bytes arrive on an idle connection.
struct Tracked {
    inner: TcpStream,
    slot: Arc<Slot>,
    /// The registry's epoch, for `idle_since`.
    epoch: Instant,
}

impl AsyncRead for Tracked {
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

impl AsyncWrite for Tracked {
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
