//! Public TCP routes: each routed port listens on `IP:PORT` (`--public-tcp-ip`, 127.0.0.1 by
//! default; one `SO_REUSEPORT` set, a socket per worker, bound when the route is created) and
//! carries each connection as a `StreamKind::Tcp` stream whose OPEN metadata is the port in
//! ASCII. New and deleted routes are picked up by polling the routes version once a second.
//!
//! A connection holds a place in its client IP's count (`--max-connections-per-ip`) and its
//! stream one in its tunnel's (`--tunnel-stream-limit`); over either limit it is closed at once.
//! It is closed when no byte moved either way for `--tcp-idle-timeout`, or when a write to the
//! client makes no progress for `--client-write-timeout` (see `docs/limits.md`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use bytes::{Bytes, BytesMut};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::error::Classify;
use ringtun_core::mux::StreamKind;
use ringtun_core::rt::net::ListenerSet;

use super::limits::ClientSlot;
use super::link_server::Moving;
use super::pipe::pipe;
use super::watchdog::{Watch, watchdog};
use super::worker::{HandoffKind, Pick, Worker};

/// Listens on TCP routes' ports as they appear, and stops when they go.
///
/// A route's listeners are normally bound when the admin API creates it (so a port held by
/// another process fails the request); routes read from the database at start are bound here.
/// A port that cannot be listened on is retried every second, logged once (by worker 0) until
/// it succeeds.
pub(crate) async fn route_watch(w: Rc<Worker>) {
    let mut active: HashMap<u16, Arc<ListenerSet>> = HashMap::new();
    let mut failing: HashSet<u16> = HashSet::new();
    loop {
        if w.plane.is_draining() {
            return;
        }
        // A deleted route's set was shut down: its accept loops end by themselves.
        active.retain(|_, set| !set.is_shut_down());
        let table = w.routes();
        for (port, _) in table.tcp_ports() {
            if active.contains_key(&port) {
                continue;
            }
            let set = match w.plane.tcp_listeners(port) {
                Ok(set) => set,
                Err(reason) => {
                    if failing.insert(port) && w.index == 0 {
                        tracing::error!(port, %reason, "cannot listen for a TCP route; retrying every second");
                    }
                    continue;
                }
            };
            failing.remove(&port);
            let listener = match set.take(w.index) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, port, worker = w.index, "no listener for a TCP route on this worker");
                    active.insert(port, set);
                    continue;
                }
            };
            if w.index == 0 {
                tracing::info!(public_tcp = %set.local_addr(), "public TCP listening");
            }
            active.insert(port, Arc::clone(&set));
            // At the edge's drain the listeners stop like the others: shutting the set down
            // makes the kernel refuse new connections and ends the accept loops.
            // (Weakly: a deleted route's set is freed with its last accept loop.)
            let stop = {
                let (w, set) = (Rc::clone(&w), Arc::downgrade(&set));
                async move {
                    w.plane.draining.wait().await;
                    if let Some(set) = set.upgrade() {
                        set.shut_down();
                    }
                }
            };
            compio::runtime::spawn(stop).detach();
            compio::runtime::spawn(accept_loop(Rc::clone(&w), listener, set, port)).detach();
        }
        compio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener, set: Arc<ListenerSet>, port: u16) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                // Over its IP's limit the connection is closed at once (dropped).
                if let Some(slot) = w.client_slot(peer) {
                    let w = Rc::clone(&w);
                    compio::runtime::spawn(serve(w, s, peer, port, Some(slot), None)).detach();
                }
            }
            // Drain, or the route was deleted: the listener closes as the loop ends.
            Err(_) if w.plane.is_draining() || set.is_shut_down() => return,
            Err(e) => {
                tracing::warn!(error = %e, port, "public TCP accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Carries one public TCP connection through the tunnel routed on `port`.
pub(crate) async fn serve(
    w: Rc<Worker>,
    sock: TcpStream,
    peer: SocketAddr,
    port: u16,
    slot: Option<ClientSlot>,
    handed_off: Option<Option<Uuid>>,
) {
    // `handed_off`: the connection came from another worker, with the connector chosen for it.
    let (handed_off, mut prefer) = (handed_off.is_some(), handed_off.flatten());
    let metrics = w.plane.registry.metrics();
    metrics.public_tcp_connections.inc();
    let Some(tunnel) = w.routes().tunnel_for_port(port) else {
        metrics.public_error("no_route");
        return;
    };
    // The stream's place in its tunnel's count; over the limit the connection is closed.
    let Some(_tunnel_slot) = w.tunnel_slot(tunnel) else {
        metrics.public_error("tunnel_streams");
        return;
    };
    let meta = Bytes::from(port.to_string());
    let mut exclude = Vec::new();
    let (stream, guard) = loop {
        match w
            .pick_or_wait(tunnel, &exclude, !handed_off, prefer.take())
            .await
        {
            Pick::Local { link, load } => match link.open(StreamKind::Tcp, meta.clone()) {
                Ok(s) => break (s, load.start_stream()),
                Err(e) if e.is_retry_safe() && exclude.len() < 2 => exclude.push(load.id),
                Err(e) => {
                    tracing::debug!(error = %e, port, "cannot open a TCP stream");
                    metrics.public_error("connector");
                    return;
                }
            },
            Pick::Elsewhere(to, chosen) if !handed_off => {
                let kind = HandoffKind::Tcp(port, chosen);
                let moving = Moving::plain(&sock);
                if !w.hand_off(to, moving, peer, BytesMut::new(), kind, slot) {
                    metrics.public_error("no_connector");
                }
                return;
            }
            _ => {
                tracing::debug!(port, %tunnel, "TCP route has no live connector");
                metrics.public_error("no_connector");
                return;
            }
        }
    };
    let metrics = Arc::clone(metrics);
    let limits = &w.plane.limits;
    let watch = Rc::new(Watch::new(limits.client_write_timeout));
    watch.set_idle(limits.tcp_idle_timeout);
    let tick = watch.shortest(&[limits.tcp_idle_timeout]) / 4;
    let dog = watchdog(
        Rc::clone(&watch),
        sock.clone(),
        tick,
        peer,
        Arc::clone(&metrics),
    );
    compio::runtime::spawn(dog).detach();
    pipe::<TcpStream>(
        sock.clone(),
        sock.clone(),
        sock,
        BytesMut::new(),
        Rc::new(stream),
        metrics,
        Rc::clone(&watch),
    )
    .await;
    watch.finish();
    drop(guard);
    drop(slot);
}
