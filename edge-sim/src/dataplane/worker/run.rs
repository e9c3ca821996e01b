//! A worker's life: it takes its listeners and serves them, its mailbox and its TCP routes;
//! at drain it stops accepting and drains its links; at shutdown it closes them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ringtun_core::mux::ErrorCode;
use ringtun_core::rt::WorkerCtx;
use ringtun_core::rt::net::ListenerSet;

use super::Worker;
use crate::dataplane::{ServerInfo, SharedState, WorkerMsg};
use crate::metrics::WorkerLabels;

/// A worker's whole life: takes its listeners, serves until shutdown, then closes its links.
pub(crate) async fn run(
    ctx: WorkerCtx<WorkerMsg>,
    plane: Arc<SharedState>,
    servers: &[(ServerInfo, ListenerSet)],
    http: &ListenerSet,
    https: Option<(Arc<ListenerSet>, Arc<rustls::ServerConfig>)>,
) {
    let index = ctx.index();
    let (mailbox, senders, shutdown) = ctx.into_parts();
    let w = Rc::new(Worker {
        index,
        plane: Arc::clone(&plane),
        senders,
        links: RefCell::new(HashMap::new()),
        next_link: Cell::new(0),
        view: RefCell::new(None),
        routes: RefCell::new(None),
        tunnel_counters: RefCell::new(HashMap::new()),
        requests: plane
            .registry
            .metrics()
            .worker_requests
            .get_or_create(&WorkerLabels {
                worker: index.to_string(),
            })
            .clone(),
        peers: plane
            .peers
            .as_ref()
            .map(|p| crate::peer::client::WorkerPeers::new(Arc::clone(p))),
    });
    // Duplicates of this worker's listening sockets: at drain, shutting them down makes the
    // kernel refuse new connections and ends the accept loops.
    let mut listening: Vec<socket2::Socket> = Vec::new();
    let mut keep = |l: &compio::net::TcpListener| match socket2::SockRef::from(l).try_clone() {
        Ok(dup) => listening.push(dup),
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate a listening socket; it will not stop at drain")
        }
    };
    for (info, set) in servers {
        match set.take(index) {
            Ok(l) => {
                keep(&l);
                compio::runtime::spawn(crate::dataplane::link_server::accept_loop(
                    Rc::clone(&w),
                    l,
                    info.clone(),
                ))
                .detach();
            }
            Err(e) => {
                tracing::error!(error = %e, server = %info.addr, "cannot take the edge server socket")
            }
        }
    }
    match http.take(index) {
        Ok(l) => {
            keep(&l);
            compio::runtime::spawn(crate::dataplane::http::accept_loop(Rc::clone(&w), l)).detach()
        }
        Err(e) => tracing::error!(error = %e, "cannot take the public HTTP socket"),
    }
    if let Some((set, config)) = https {
        match set.take(index) {
            Ok(l) => {
                keep(&l);
                compio::runtime::spawn(crate::dataplane::h2::tls::accept_loop(
                    Rc::clone(&w),
                    l,
                    config,
                ))
                .detach()
            }
            Err(e) => tracing::error!(error = %e, "cannot take the public HTTPS socket"),
        }
    }
    if let Some(peers) = &plane.peers {
        match peers.listeners.take(index) {
            Ok(l) => {
                // Not shut at drain: it closes at the end of it (see `peer::server`).
                let task = crate::peer::server::accept_loop(Rc::clone(&w), l, Arc::clone(peers));
                compio::runtime::spawn(task).detach();
            }
            Err(e) => tracing::error!(error = %e, "cannot take the peer link socket"),
        }
    }
    compio::runtime::spawn(crate::dataplane::link_server::drain_on_signal(
        Rc::clone(&w),
        listening,
    ))
    .detach();
    compio::runtime::spawn(crate::dataplane::tcp::route_watch(Rc::clone(&w))).detach();
    compio::runtime::spawn(super::mailbox::serve(Rc::clone(&w), mailbox)).detach();
    shutdown.wait().await;
    if let Some(peers) = &w.peers {
        peers.close_all();
    }
    let links = w.all_links();
    for l in &links {
        l.close(ErrorCode::NO_ERROR);
    }
    for l in &links {
        let _ = compio::time::timeout(std::time::Duration::from_secs(1), l.closed()).await;
    }
}
