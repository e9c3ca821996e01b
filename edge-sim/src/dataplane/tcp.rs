//! Public TCP routes: each routed port listens on `127.0.0.1:PORT` (`SO_REUSEPORT`, on every
//! worker) and carries each connection as a `StreamKind::Tcp` stream whose OPEN metadata is the
//! port in ASCII. New routes are picked up by polling the routes version once a second.
//!
//! A connection holds a place in its client IP's count (`--max-connections-per-ip`) and its
//! stream one in its tunnel's (`--tunnel-stream-limit`); over either limit it is closed at once.
//! It is closed when no byte moved either way for `--tcp-idle-timeout`, or when a write to the
//! client makes no progress for `--client-write-timeout` (see `docs/limits.md`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use bytes::{Bytes, BytesMut};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::mux::StreamKind;
use ringtun_core::rt::net::{DEFAULT_BACKLOG, reuseport_listener};

use super::limits::ClientSlot;
use super::pipe::pipe;
use super::watchdog::{Watch, watchdog};
use super::worker::{HandoffKind, Pick, Worker};

/// Binds listeners for TCP routes as they appear.
pub(crate) async fn route_watch(w: Rc<Worker>) {
    let mut tried: HashSet<u16> = HashSet::new();
    loop {
        if w.plane.is_draining() {
            return;
        }
        let table = w.routes();
        for (port, _) in table.tcp_ports() {
            if !tried.insert(port) {
                continue;
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match reuseport_listener(addr, DEFAULT_BACKLOG) {
                Ok(l) => {
                    if w.index == 0 {
                        tracing::info!(public_tcp = %addr, "public TCP listening");
                    }
                    // At the edge's drain the listener stops like the others: shutting a
                    // duplicate down makes the kernel refuse new connections and ends the loop.
                    match socket2::SockRef::from(&l).try_clone() {
                        Ok(dup) => {
                            let w = Rc::clone(&w);
                            let stop = async move {
                                w.plane.draining.wait().await;
                                let _ = dup.shutdown(std::net::Shutdown::Read);
                            };
                            compio::runtime::spawn(stop).detach();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, port, "cannot duplicate a TCP route listener; it will not stop at drain");
                        }
                    }
                    compio::runtime::spawn(accept_loop(Rc::clone(&w), l, port)).detach();
                }
                Err(e) => {
                    tracing::error!(error = %e, public_tcp = %addr, worker = w.index, "cannot listen for a TCP route");
                }
            }
        }
        compio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener, port: u16) {
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
            Err(_) if w.plane.is_draining() => return,
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
                if !w.hand_off(to, &sock, peer, BytesMut::new(), kind, slot) {
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
    pipe(
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
