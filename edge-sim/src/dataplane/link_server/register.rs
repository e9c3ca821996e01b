//! A link's registration: the handshake's tunnel-secret lookup and its admission by the
//! registry.
//!
//! Links per connector: a registration declares the connector's `ha_connections`, and the
//! registry refuses an index outside it (`RejectCode::LinkLimit`, see
//! [`crate::registry::Registry::register_link`]). A registration under an index that already
//! has a live link **replaces** it: the registry triggers the old link's "replaced" signal and
//! its link server drains it (the two-phase DRAIN GOAWAY of `docs/protocol.md` §9), so its
//! streams finish within `--grace-period` and the peer opens nothing new on it; what is still
//! open after that is reset. A connector can therefore hold at most `ha_connections` links
//! that take new streams, however often it registers.
//!
//! Tunnel secrets come from the registry's in-memory view: registration never waits on the
//! database. An unknown tunnel is refused as `UnknownTunnel` (the connector gives up); any
//! other registry failure as `TryAgain` (the connector retries with backoff).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use compio::io::{AsyncRead, AsyncWrite};
use ringtun_core::handshake::{
    Accepted, HandshakeError, Register, RejectCode, Rejected, edge_accept,
};
use ringtun_core::rt::Shutdown;
use uuid::Uuid;

use crate::dataplane::ServerInfo;
use crate::dataplane::worker::Worker;
use crate::error::Error;
use crate::registry::{ConnectorRegistration, LinkInfo, LinkSlot};

/// The registry entry a successful `admit` made (connector, index, link ID), to undo if the
/// handshake fails after it.
pub(super) type Admitted = Rc<Cell<Option<(Uuid, u8, u64)>>>;

async fn register<S: AsyncRead + AsyncWrite>(
    w: &Worker,
    stream: &mut S,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
    (replaced, revoked): (&Shutdown, &Shutdown),
) -> Result<Register, HandshakeError> {
    let registry = &w.plane.registry;
    let lookup = |r: &Register| {
        let tunnel = Uuid::from_bytes(r.tunnel_id);
        registry.tunnel_secret(tunnel).map_err(|e| {
            registry.metrics().connectors_rejected.inc();
            match e {
                Error::TunnelNotFound(_) => Rejected {
                    code: RejectCode::UnknownTunnel,
                    message: format!("tunnel {tunnel} does not exist on this edge"),
                },
                e => Rejected {
                    code: RejectCode::TryAgain,
                    message: format!("the edge cannot check the registration now: {e}"),
                },
            }
        })
    };
    let admit = |r: &Register| {
        let connector_id = Uuid::from_bytes(r.connector_id);
        let res = registry.register_link(
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
            LinkSlot {
                ha_connections: r.ha_connections,
                replaced: replaced.clone(),
                revoked: revoked.clone(),
            },
        );
        match res {
            Ok(id) => {
                admitted.set(Some((connector_id, r.link_index, id)));
                Ok(Accepted {
                    data_center: info.data_center.clone(),
                    server: info.addr.to_string(),
                })
            }
            Err(e) => Err(Rejected {
                code: match e {
                    Error::ConnectorLimit { .. } => RejectCode::ConnectorLimit,
                    Error::TunnelNotFound(_) => RejectCode::UnknownTunnel,
                    Error::LinkLimit { .. } => RejectCode::LinkLimit,
                    Error::ConnectorConflict(_) => RejectCode::Unavailable,
                    _ => RejectCode::TryAgain,
                },
                message: e.to_string(),
            }),
        }
    };
    edge_accept(stream, lookup, admit).await
}

pub(super) async fn handshake<S: AsyncRead + AsyncWrite>(
    w: &Worker,
    mut stream: S,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
    signals: (&Shutdown, &Shutdown),
) -> Result<(S, Register), String> {
    let reg = register(w, &mut stream, peer, info, admitted, signals)
        .await
        .map_err(|e| e.to_string())?;
    Ok((stream, reg))
}
