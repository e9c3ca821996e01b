//! How a link ends, and what its peer's GOAWAY means for its connector.
//!
//! Each link also gets a small watcher task: the first GOAWAY the connector sends on **any**
//! of its links marks the whole connector draining (its `ConnectorLoad`, so no worker opens
//! anything new to it, and the registry's record, which the admin API shows).
//!
//! A link whose tunnel is deleted, or whose connector a cleanup disconnects, is closed at once
//! (the registry triggers its "revoked" signal): streams are reset and GOAWAY is sent.
//!
//! Fault injection ([`crate::dataplane::faults`]): while a server is down, its accept loop
//! closes every new connection at once, and each live link of it ends like a crash: the link
//! task waits on the server's "down" signal next to `Link::closed` and then shuts the TCP
//! socket down (through a duplicate of its descriptor taken before TLS), so the connector sees
//! the connection end with no GOAWAY.
//!
//! A link replaced by a newer one under the same index is drained: its streams finish within
//! `--grace-period`, then what is left is reset (see [`super::register`]).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use compio::net::TcpStream;
use ringtun_core::link::{Link, LinkError};
use ringtun_core::mux::ErrorCode;
use ringtun_core::rt::Shutdown;
use uuid::Uuid;

use crate::dataplane::ServerInfo;
use crate::dataplane::lb::ConnectorLoad;
use crate::dataplane::worker::Worker;

/// Ends a link like a crash when its server goes down: a duplicate of the link's TCP socket
/// (taken before TLS owns it) and the server's down signal.
pub(crate) struct KillSwitch {
    socket: socket2::Socket,
    down: crate::dataplane::faults::DownWatch,
}

impl KillSwitch {
    pub(super) fn new(w: &Worker, index: usize, tcp: &TcpStream) -> Option<KillSwitch> {
        match socket2::SockRef::from(tcp).try_clone() {
            Ok(socket) => Some(KillSwitch {
                socket,
                down: w.plane.faults.watch(index),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot duplicate a link socket; fault injection will not close this link");
                None
            }
        }
    }
}

/// Waits for the link to end. When its server goes down first, shuts its socket down (no
/// GOAWAY, no drain: the connector sees the connection end) and waits for the link's tasks.
/// When a newer link of the connector takes its index first, drains it: the streams it carries
/// finish within the grace period, then what is left is reset.
pub(super) async fn run_link(
    w: &Worker,
    (link, local): (&Link, (Uuid, u64)),
    kill: Option<KillSwitch>,
    (replaced, revoked): (&Shutdown, &Shutdown),
    info: &ServerInfo,
) -> LinkError {
    enum Ended {
        Closed(LinkError),
        Down,
        Replaced,
        Revoked,
    }
    // All are waits on wakers, not IO: dropping the losers loses nothing.
    let ended = {
        let mut closed = std::pin::pin!(link.closed());
        let mut down = std::pin::pin!(async {
            match &kill {
                Some(k) => k.down.wait().await,
                None => std::future::pending::<()>().await,
            }
        });
        let mut newer = std::pin::pin!(replaced.wait());
        let mut gone = std::pin::pin!(revoked.wait());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(why) = closed.as_mut().poll(cx) {
                return Poll::Ready(Ended::Closed(why));
            }
            if down.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Down);
            }
            if gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Revoked);
            }
            newer.as_mut().poll(cx).map(|()| Ended::Replaced)
        })
        .await
    };
    match ended {
        Ended::Closed(why) => why,
        Ended::Down => {
            w.plane.registry.metrics().fault_links_closed.inc();
            tracing::info!(server = %info.addr, "server is down (fault injection); closing its link at once");
            if let Some(k) = &kill {
                let _ = k.socket.shutdown(std::net::Shutdown::Both);
            }
            // The reader sees the end of the socket and the writer fails: the link ends.
            link.close(ErrorCode::INTERNAL_ERROR);
            link.closed().await
        }
        Ended::Revoked => {
            tracing::info!(server = %info.addr, connector = %local.0, "tunnel deleted or connector disconnected by cleanup; closing its link at once");
            // No new stream goes to it; the peer sees the link close with an error code and,
            // when its tunnel is gone, is refused as an unknown tunnel when it reconnects.
            w.remove_link(local.0, local.1);
            link.close(ErrorCode::CANCEL);
            link.closed().await
        }
        Ended::Replaced => {
            tracing::debug!(server = %info.addr, "link replaced by a newer link of the same index; draining it");
            // No new stream goes to it from here on.
            w.remove_link(local.0, local.1);
            link.drain();
            match compio::time::timeout(w.plane.grace, link.closed()).await {
                Ok(why) => why,
                Err(_) => {
                    link.close(ErrorCode::CANCEL);
                    link.closed().await
                }
            }
        }
    }
}

/// Marks the connector draining everywhere once the peer sends GOAWAY on this link. The task
/// ends with the link (then [`Link::peer_draining`] resolves `false`).
///
/// One exception: a GOAWAY on a link whose index has another live link of the same connector
/// is a link being *replaced* (a displaced link moving back to its home data center brings
/// the new link up first, then drains the old one), not the connector going away. Another:
/// while this edge is draining, a connector's GOAWAY is the connector moving its link to
/// another node (make before break, see `draining`); its other links here keep serving.
pub(super) fn watch_drain(w: &Worker, link: &Link, load: &Arc<ConnectorLoad>, index: u8) {
    let link = link.clone();
    let load = Arc::clone(load);
    let registry = Arc::clone(&w.plane.registry);
    let plane = Arc::clone(&w.plane);
    compio::runtime::spawn(async move {
        if !link.peer_draining().await || load.is_draining() {
            return;
        }
        if plane.is_draining() {
            tracing::info!(
                tunnel = %load.tunnel, connector = %load.id, index,
                "link moved off this draining node (GOAWAY); connector keeps serving"
            );
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
