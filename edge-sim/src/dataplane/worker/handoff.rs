//! The hand-off of public connections between workers: a connection whose chosen connector has
//! no link on the worker that accepted it moves to a worker that has one ([`Worker::hand_off`]),
//! which takes it over from its mailbox ([`Worker::take_handoff`]).

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use compio::net::TcpStream;
use uuid::Uuid;

use super::Worker;
use crate::dataplane::WorkerMsg;
use crate::dataplane::limits::ClientSlot;
use crate::dataplane::link_server::Moving;

/// A public connection moving to another worker: a duplicate of its socket and, over TLS, its
/// session (`Send`), and the bytes already read from it.
#[derive(Debug)]
pub struct Handoff {
    /// The client socket (with its TLS session, for HTTP/1.1 over TLS).
    pub(crate) socket: Moving,
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes read but not processed (for HTTP, the request head re-encoded and what followed).
    pub buf: BytesMut,
    /// What the connection is.
    pub kind: HandoffKind,
    /// The connection's place in its client IP's count; it moves with the connection.
    pub slot: Option<ClientSlot>,
}

/// What kind of public connection a [`Handoff`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffKind {
    /// Public HTTP, moved between workers `hops` times so far (this move included).
    Http {
        /// How many times the connection has been handed off (at most `MAX_HOPS` in
        /// `dataplane/retry.rs`).
        hops: u8,
        /// The connector the sending worker's policy chose for it (and counted).
        chosen: Option<Uuid>,
    },
    /// A TCP route on this port, with the connector chosen for it (and counted).
    Tcp(u16, Option<Uuid>),
}

impl Worker {
    /// Hands a public connection, taken apart for the move (`socket`), to worker `to`. The
    /// caller drops its handles of the connection afterwards; the moved socket keeps it open.
    pub(crate) fn hand_off(
        &self,
        to: usize,
        socket: std::io::Result<Moving>,
        peer: SocketAddr,
        buf: BytesMut,
        kind: HandoffKind,
        slot: Option<ClientSlot>,
    ) -> bool {
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a public connection apart for hand-off");
                return false;
            }
        };
        let msg = WorkerMsg::Handoff(Handoff {
            socket,
            peer,
            buf,
            kind,
            slot,
        });
        match self.senders.try_send(to, msg) {
            Ok(()) => {
                self.plane.registry.metrics().handoffs.inc();
                tracing::debug!(from = self.index, to, %peer, "public connection handed off");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, to, "cannot hand a public connection off");
                false
            }
        }
    }

    pub(super) fn take_handoff(self: &Rc<Self>, h: Handoff) {
        let w = Rc::clone(self);
        match h.kind {
            HandoffKind::Http { hops, chosen } => {
                crate::dataplane::http::take_over(w, h.socket, h.peer, h.buf, hops, h.slot, chosen);
            }
            HandoffKind::Tcp(port, chosen) => {
                let Moving::Plain(socket) = h.socket else {
                    tracing::warn!("a TCP-route connection cannot arrive over TLS; closed");
                    return;
                };
                let stream = match TcpStream::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register a handed-off socket");
                        return;
                    }
                };
                let serve =
                    crate::dataplane::tcp::serve(w, stream, h.peer, port, h.slot, Some(chosen));
                compio::runtime::spawn(serve).detach();
            }
        }
    }
}
