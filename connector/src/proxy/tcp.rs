//! `StreamKind::Tcp`: the edge's public TCP port carried to the first `tcp://` ingress rule.
//! One TCP service per tunnel in v1 (tunnel-contract.md); hostname and path are ignored. Once
//! the origin accepted, the stream gets an empty REPLY, then bytes flow both ways and FIN
//! half-closes; an origin that cannot be reached resets the stream.

use std::rc::Rc;

use bytes::Bytes;
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;
use ringtun_core::rt::net::{SocketTuning, connect};

use super::ProxyCtx;
use super::pipe::{socket_to_stream, stream_to_socket};
use crate::ingress::Service;
use crate::observe::{Direction, ErrorCause};

/// Pipes the stream to the first `tcp://` service, or refuses it.
pub async fn serve(meta: Bytes, stream: Rc<Stream>, ctx: &ProxyCtx) {
    let port = String::from_utf8_lossy(&meta).into_owned();
    let rules = ctx.ingress.load();
    let found = rules.rules().iter().find_map(|r| match &r.service {
        Service::Tcp(t) => Some((t.clone(), r.origin_request.connect_timeout)),
        _ => None,
    });
    let Some((svc, connect_timeout)) = found else {
        tracing::warn!(public_port = %port, "TCP stream refused: no tcp:// ingress rule");
        ctx.metrics.error(ErrorCause::NoTcpRule);
        stream.reset(ErrorCode::REFUSED_STREAM);
        return;
    };
    let addr = match ctx.resolver.addr(&svc.host, svc.port).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(origin = %svc.authority, error = %why, "TCP origin does not resolve");
            ctx.metrics.error(ErrorCause::OriginRefused);
            stream.reset(ErrorCode::CANCEL);
            return;
        }
    };
    let conn = match compio::time::timeout(connect_timeout, connect(addr, &SocketTuning::default()))
        .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            ctx.resolver.connect_failed(&svc.host);
            tracing::info!(origin = %addr, error = %e, "TCP origin connect failed");
            ctx.metrics.error(ErrorCause::OriginRefused);
            stream.reset(ErrorCode::CANCEL);
            return;
        }
        Err(_) => {
            ctx.resolver.connect_failed(&svc.host);
            tracing::info!(origin = %addr, "TCP origin connect timed out");
            ctx.metrics.error(ErrorCause::OriginTimeout);
            stream.reset(ErrorCode::CANCEL);
            return;
        }
    };
    tracing::debug!(origin = %addr, public_port = %port, "TCP stream connected");
    // The mux wants a REPLY before DATA on a stream the peer opened (protocol.md); for TCP it is
    // empty and means "connected".
    if stream.reply(Bytes::new()).is_err() {
        return;
    }
    let (mut r, mut w) = conn.into_split();
    let s2 = stream.clone();
    let sent = ctx.metrics.counter(Direction::ToOrigin);
    let up = compio::runtime::spawn(async move { stream_to_socket(&s2, &mut w, &sent).await });
    socket_to_stream(
        &mut r,
        &stream,
        Bytes::new(),
        &ctx.metrics.counter(Direction::FromOrigin),
    )
    .await;
    let _ = up.await;
}
