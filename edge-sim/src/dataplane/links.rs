//! Link servers: accept a connector's TCP connection, TLS (unless `--danger-plaintext-links`),
//! the registration handshake (`core::handshake::edge_accept`) under a deadline, then
//! `Link::spawn(.., Role::Server, ..)` on this worker until the link ends.
//!
//! Each link also gets a small watcher task: the first GOAWAY the connector sends on **any**
//! of its links marks the whole connector draining (its `ConnectorLoad`, so no worker opens
//! anything new to it, and the registry's record, which the admin API shows).
//!
//! A connection whose TLS or registration does not finish within [`HANDSHAKE_TIMEOUT`] is
//! dropped, never turned into a link (the timed-out read may have consumed bytes). If the
//! registry admitted the link before the deadline fired, it is unregistered again.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use compio::io::{AsyncRead, AsyncWrite};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::handshake::{
    Accepted, HandshakeError, Register, RejectCode, Rejected, TunnelSecret, edge_accept,
};
use ringtun_core::http::tunnel_link_config;
use ringtun_core::link::{Link, Transport};
use ringtun_core::mux::Role;
use ringtun_core::rt::net::{SocketTuning, tune_stream};
use ringtun_core::tls::TlsStream;
use uuid::Uuid;

use super::ServerInfo;
use super::lb::ConnectorLoad;
use super::worker::Worker;
use crate::error::Error;
use crate::registry::{ConnectorRegistration, LinkInfo};

/// How long TLS and registration together may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts links on one edge server's socket of this worker.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener, info: ServerInfo) {
    let info = Rc::new(info);
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                compio::runtime::spawn(serve_link(Rc::clone(&w), tcp, peer, Rc::clone(&info)))
                    .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, server = %info.addr, "link accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The registry entry a successful `admit` made, to undo if the handshake fails after it.
type Admitted = Rc<Cell<Option<(Uuid, u8)>>>;

async fn register<S: AsyncRead + AsyncWrite>(
    w: &Worker,
    stream: &mut S,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
) -> Result<Register, HandshakeError> {
    let registry = &w.plane.registry;
    let lookup = |r: &Register| {
        let tunnel = Uuid::from_bytes(r.tunnel_id);
        registry
            .tunnel_secret(tunnel)
            .map(|s| TunnelSecret::new(s.0.to_vec()))
            .map_err(|_| {
                registry.metrics().connectors_rejected.inc();
                Rejected {
                    code: RejectCode::UnknownTunnel,
                    message: format!("tunnel {tunnel} does not exist on this edge"),
                }
            })
    };
    let admit = |r: &Register| {
        let connector_id = Uuid::from_bytes(r.connector_id);
        let res = registry.register_connector(
            Uuid::from_bytes(r.tunnel_id),
            ConnectorRegistration {
                connector_id,
                arch: r.arch.clone(),
                version: r.version.clone(),
                origin_ip: peer.ip(),
                label: r.label.clone(),
                weight: r.weight.max(1),
                standby: r.flags.standby(),
            },
            LinkInfo {
                index: r.link_index,
                data_center: info.data_center.clone(),
                server: info.addr,
            },
        );
        match res {
            Ok(()) => {
                admitted.set(Some((connector_id, r.link_index)));
                Ok(Accepted {
                    data_center: info.data_center.clone(),
                    server: info.addr.to_string(),
                })
            }
            Err(e) => Err(Rejected {
                code: match e {
                    Error::ConnectorLimit { .. } => RejectCode::ConnectorLimit,
                    Error::TunnelNotFound(_) => RejectCode::UnknownTunnel,
                    _ => RejectCode::Unavailable,
                },
                message: e.to_string(),
            }),
        }
    };
    edge_accept(stream, lookup, admit).await
}

async fn handshake<S: AsyncRead + AsyncWrite>(
    w: &Worker,
    mut stream: S,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
) -> Result<(S, Register), String> {
    let reg = register(w, &mut stream, peer, info, admitted)
        .await
        .map_err(|e| e.to_string())?;
    Ok((stream, reg))
}

async fn serve_link(w: Rc<Worker>, tcp: TcpStream, peer: SocketAddr, info: Rc<ServerInfo>) {
    if let Err(e) = tune_stream(&tcp, &SocketTuning::default()) {
        tracing::debug!(error = %e, "cannot tune a link socket");
    }
    let admitted: Admitted = Rc::new(Cell::new(None));
    match w.plane.tls.clone() {
        Some(cfg) => {
            let fut = async {
                let tls = TlsStream::accept(tcp, cfg)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                handshake(&w, tls, peer, &info, &admitted).await
            };
            let res = compio::time::timeout(HANDSHAKE_TIMEOUT, fut).await;
            finish(&w, res, peer, &info, &admitted).await;
        }
        None => {
            let fut = handshake(&w, tcp, peer, &info, &admitted);
            let res = compio::time::timeout(HANDSHAKE_TIMEOUT, fut).await;
            finish(&w, res, peer, &info, &admitted).await;
        }
    }
}

async fn finish<S: Transport, E>(
    w: &Worker,
    res: Result<Result<(S, Register), String>, E>,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
) {
    let registry = &w.plane.registry;
    let (stream, reg) = match res {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => {
            tracing::info!(%peer, server = %info.addr, error = %e, "link refused");
            if let Some((c, i)) = admitted.take() {
                registry.unregister_link_at(c, i, info.addr);
            }
            return;
        }
        Err(_) => {
            tracing::info!(%peer, server = %info.addr, "link handshake timed out; connection dropped");
            if let Some((c, i)) = admitted.take() {
                registry.unregister_link_at(c, i, info.addr);
            }
            return;
        }
    };
    let tunnel = Uuid::from_bytes(reg.tunnel_id);
    let connector = Uuid::from_bytes(reg.connector_id);
    let link = Link::spawn(stream, Role::Server, tunnel_link_config());
    let load = w
        .plane
        .connector_load(tunnel, connector, reg.weight, reg.flags.standby());
    let home = info.data_center == w.plane.public_dc;
    let id = w.add_link(connector, link.clone(), home);
    load.link_up(w.index, home);
    load.index_up(reg.link_index);
    watch_drain(w, &link, &load, reg.link_index);
    registry.metrics().link_up(&info.data_center);
    tracing::info!(
        %tunnel, %connector, index = reg.link_index, data_center = %info.data_center,
        server = %info.addr, origin_ip = %peer.ip(), version = %reg.version, arch = %reg.arch,
        worker = w.index, "link registered"
    );
    let why = link.closed().await;
    w.remove_link(connector, id);
    load.link_down(w.index, home);
    load.index_down(reg.link_index);
    w.plane.connector_link_gone(&load);
    registry.metrics().link_down(&info.data_center);
    let gone = registry.unregister_link_at(connector, reg.link_index, info.addr);
    tracing::info!(
        %tunnel, %connector, index = reg.link_index, data_center = %info.data_center,
        reason = %why, connector_gone = gone, "link unregistered"
    );
}

/// Marks the connector draining everywhere once the peer sends GOAWAY on this link. The task
/// ends with the link (then [`Link::peer_draining`] resolves `false`).
///
/// One exception: a GOAWAY on a link whose index has another live link of the same connector
/// is a link being *replaced* (a displaced link moving back to its home data center brings
/// the new link up first, then drains the old one), not the connector going away.
fn watch_drain(w: &Worker, link: &Link, load: &Arc<ConnectorLoad>, index: u8) {
    let link = link.clone();
    let load = Arc::clone(load);
    let registry = Arc::clone(&w.plane.registry);
    compio::runtime::spawn(async move {
        if !link.peer_draining().await || load.is_draining() {
            return;
        }
        if load.links_with_index(index) > 1 {
            tracing::info!(
                tunnel = %load.tunnel, connector = %load.id, index,
                "link replaced (GOAWAY with a newer link under the same index); connector keeps serving"
            );
            return;
        }
        load.set_draining();
        registry.set_draining(load.id);
        tracing::info!(
            tunnel = %load.tunnel, connector = %load.id, index,
            "connector draining (GOAWAY); no new streams to it on any link"
        );
    })
    .detach();
}
