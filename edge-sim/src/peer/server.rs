//! The receiving side: the peer listener on every worker, the TLS handshake that admits only
//! nodes of this cluster, and serving each forwarded stream from this worker's own links.
//!
//! A stream that arrives here is never forwarded again: it is opened on a link of this node
//! ([`Worker::pick`] never looks at other nodes; a link on another worker carries it through
//! the cross-worker bridge of `dataplane/bridge`), or refused with `REFUSED_STREAM`
//! before any byte reached an origin, so the sending node tries its next candidate.
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use compio::net::{TcpListener, TcpStream};
use ringtun_core::http::RequestRoute;
use ringtun_core::link::{Incoming, Link, LinkError, Stream};
use ringtun_core::mux::{ErrorCode, Role, StreamKind};
use ringtun_core::rt::net::{SocketTuning, tune_stream};
use ringtun_core::tls::TlsStream;
use ringtun_core::tunnel::{decode_request_meta, tunnel_link_config};
use uuid::Uuid;

use super::PeerPlane;
use super::metrics::Served;
use crate::dataplane::bridge::{self, Opening, TunnelStream};
use crate::dataplane::worker::{Pick, Worker};

/// Accepts peer links on this worker's peer socket until the end of the edge's drain
/// (`peers_closing`): a draining node keeps serving forwarded streams on its links while its
/// connectors move them (see `dataplane/link_server/draining.rs`).
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener, plane: Arc<PeerPlane>) {
    match socket2::SockRef::from(&listener).try_clone() {
        Ok(dup) => {
            let w = Rc::clone(&w);
            compio::runtime::spawn(async move {
                w.plane.peers_closing.wait().await;
                // The kernel refuses new peer connections; the accept below fails and ends.
                let _ = dup.shutdown(std::net::Shutdown::Read);
            })
            .detach();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate the peer listening socket; it closes only at stop")
        }
    }
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                compio::runtime::spawn(serve_link(Rc::clone(&w), tcp, peer, Arc::clone(&plane)))
                    .detach();
            }
            Err(_) if w.plane.peers_closing.is_triggered() || plane.is_stopping() => return,
            Err(e) => {
                tracing::warn!(error = %e, "peer link accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One accepted peer link: TLS (a client certificate of the cluster CA is required), then
/// every stream the other node opens.
async fn serve_link(w: Rc<Worker>, tcp: TcpStream, peer: SocketAddr, plane: Arc<PeerPlane>) {
    if let Err(e) = tune_stream(&tcp, &SocketTuning::default()) {
        tracing::debug!(error = %e, "cannot tune a peer link socket");
    }
    let accept = TlsStream::accept(tcp, Arc::clone(&plane.tls.server));
    let tls = match compio::time::timeout(w.plane.handshake_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return plane.rejected("tls", peer, &e.to_string()),
        Err(_) => return plane.rejected("timeout", peer, "no TLS handshake in time"),
    };
    let link = Link::spawn(tls, Role::Server, tunnel_link_config());
    plane.metrics.peer.links.inc();
    tracing::debug!(%peer, "peer link accepted");
    {
        // At the end of the drain, the other node opens nothing new here (GOAWAY); its
        // streams finish.
        let (link, w) = (link.clone(), Rc::clone(&w));
        compio::runtime::spawn(async move {
            w.plane.peers_closing.wait().await;
            link.drain();
        })
        .detach();
    }
    while let Some(inc) = link.accept().await {
        compio::runtime::spawn(serve_stream(Rc::clone(&w), inc)).detach();
    }
    let why = link.closed().await;
    plane.metrics.peer.links.dec();
    tracing::debug!(%peer, reason = %why, "peer link closed");
}

/// The tunnel a forwarded stream belongs to, from its OPEN metadata and this node's routes.
fn tunnel_of(w: &Worker, kind: StreamKind, meta: &bytes::Bytes) -> Result<Option<Uuid>, ()> {
    let routes = w.routes();
    match kind {
        StreamKind::Tcp => {
            let port = std::str::from_utf8(meta)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or(())?;
            Ok(routes.tunnel_for_port(port))
        }
        StreamKind::Http | StreamKind::WebSocket => {
            let (head, _) = decode_request_meta(meta.clone()).map_err(|_| ())?;
            let route = RequestRoute::of(&head).map_err(|_| ())?;
            Ok(routes.tunnel_for_host(route.host()))
        }
    }
}

/// Serves one forwarded stream on a link of this worker, or refuses it.
async fn serve_stream(w: Rc<Worker>, inc: Incoming) {
    let Incoming { kind, meta, stream } = inc;
    let metrics = Arc::clone(w.plane.registry.metrics());
    let refuse = |result: Served, stream: &Stream| {
        metrics.peer.served(result);
        stream.reset(ErrorCode::REFUSED_STREAM);
    };
    let tunnel = match tunnel_of(&w, kind, &meta) {
        Ok(Some(t)) => t,
        Ok(None) => return refuse(Served::NoRoute, &stream),
        Err(()) => {
            metrics.peer.served(Served::BadMeta);
            return stream.reset(ErrorCode::PROTOCOL_ERROR);
        }
    };
    let Some(_slot) = w.tunnel_slot(tunnel) else {
        return refuse(Served::Refused, &stream);
    };
    // Only this node's own links: a forwarded stream is never forwarded again. A link of the
    // tunnel on another worker of this node carries it through the cross-worker bridge
    // (`dataplane/bridge`), as it carries an HTTP/2 stream.
    let (local, _guard, replied) = match w.pick(tunnel, &[], false, None) {
        Pick::Local { link, load } => match link.open(kind, meta) {
            Ok(s) => (TunnelStream::Local(s), Some(load.start_stream()), None),
            Err(e) => {
                tracing::debug!(error = %e, %tunnel, "cannot open a forwarded stream on a local link");
                return refuse(Served::Refused, &stream);
            }
        },
        Pick::Elsewhere(to, chosen) => {
            let ask = bridge::Ask {
                tunnel,
                chosen,
                exclude: Vec::new(),
                kind,
                meta,
                body: bridge::Body::Streamed,
                idempotent: false,
            };
            match bridge::open(&w, to, ask).await {
                (Opening::Streaming, Some(r)) => (TunnelStream::Bridged(r), None, None),
                (Opening::Replied(m), Some(r)) => (TunnelStream::Bridged(r), None, Some(m)),
                (outcome, _) => {
                    tracing::debug!(?outcome, %tunnel, "cannot open a forwarded stream on another worker");
                    return refuse(Served::Refused, &stream);
                }
            }
        }
        Pick::NoConnector | Pick::Unreachable(_) => return refuse(Served::NoLink, &stream),
    };
    let (peer, local) = (Rc::new(stream), Rc::new(local));
    // The request direction flows while the REPLY is awaited.
    let up = compio::runtime::spawn(copy(Rc::clone(&peer), Rc::clone(&local)));
    let reply = match replied {
        Some(m) => Ok(m),
        None => local.reply_meta().await,
    };
    match reply {
        Ok(m) => {
            metrics.peer.served(Served::Served);
            if peer.reply(m).is_err() {
                local.reset(ErrorCode::CANCEL);
                return;
            }
        }
        // Refused before processing: the sender may take it elsewhere.
        Err(LinkError::Refused) => return refuse(Served::Refused, &peer),
        Err(LinkError::Reset(code)) => {
            metrics.peer.served(Served::Served);
            return peer.reset(code);
        }
        Err(e) => {
            metrics.peer.served(Served::Served);
            tracing::debug!(error = %e, %tunnel, "forwarded stream failed at its connector");
            return peer.reset(ErrorCode::CANCEL);
        }
    }
    copy(Rc::clone(&local), Rc::clone(&peer)).await;
    let _ = up.await;
}

/// One end of a forwarded stream as [`copy`] uses it: the peer link's stream, or the stream
/// towards the connector (on this worker's link or bridged from another worker's).
trait End {
    async fn read(&self) -> Result<Option<bytes::Bytes>, LinkError>;
    async fn write(&self, data: bytes::Bytes) -> Result<(), LinkError>;
    async fn finish(&self);
    fn reset(&self, code: ErrorCode);
}

impl End for Stream {
    async fn read(&self) -> Result<Option<bytes::Bytes>, LinkError> {
        Stream::read(self).await
    }
    async fn write(&self, data: bytes::Bytes) -> Result<(), LinkError> {
        Stream::write(self, data).await
    }
    async fn finish(&self) {
        let _ = Stream::finish(self);
    }
    fn reset(&self, code: ErrorCode) {
        Stream::reset(self, code)
    }
}

impl End for TunnelStream {
    async fn read(&self) -> Result<Option<bytes::Bytes>, LinkError> {
        TunnelStream::read(self).await
    }
    async fn write(&self, data: bytes::Bytes) -> Result<(), LinkError> {
        TunnelStream::write(self, data).await
    }
    async fn finish(&self) {
        let _ = TunnelStream::finish(self).await;
    }
    fn reset(&self, code: ErrorCode) {
        TunnelStream::reset(self, code)
    }
}

/// Copies one direction of a forwarded stream: DATA as it comes (no copy of the bytes), then
/// FIN, or the reset that ended it.
async fn copy(from: Rc<impl End>, to: Rc<impl End>) {
    loop {
        match from.read().await {
            Ok(Some(data)) => {
                if to.write(data).await.is_err() {
                    from.reset(ErrorCode::CANCEL);
                    return;
                }
            }
            Ok(None) => return to.finish().await,
            Err(LinkError::Reset(code)) => return to.reset(code),
            Err(_) => return to.reset(ErrorCode::CANCEL),
        }
    }
}
