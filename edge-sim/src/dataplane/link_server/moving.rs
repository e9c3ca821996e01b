//! A registered link moving to the worker it was seated on (see `placement.rs`):
//! its transport (the socket, and the TLS session unless `--danger-plaintext-links`) is taken
//! apart between operations, sent through the worker's mailbox, and put together again there.
//! A public connection handed to another worker moves the same way ([`Moving`], see
//! `worker.rs`).

use std::rc::Rc;

use compio::net::TcpStream;
use ringtun_core::link::Transport;
use ringtun_core::tls::{TlsParts, TlsStream};
use uuid::Uuid;

use super::Registered;
use crate::dataplane::worker::Worker;

/// A link's (or a public connection's) transport on its way to another worker (`Send`).
#[derive(Debug)]
pub(crate) enum Moving {
    /// `--danger-plaintext-links`: the socket.
    Plain(std::net::TcpStream),
    /// The socket and the TLS session.
    Tls(Box<TlsParts>),
}

impl Moving {
    /// A plaintext socket's move: a duplicate of it (this worker's handles close on their own;
    /// the duplicate keeps the connection).
    pub(crate) fn plain(s: &TcpStream) -> std::io::Result<Moving> {
        let socket = socket2::SockRef::from(s).try_clone()?;
        Ok(Moving::Plain(socket.into()))
    }
}

/// A link transport that can move to another worker.
pub(crate) trait Movable: Transport + Sized {
    /// Takes the transport apart for the move (only between operations).
    fn into_moving(self) -> std::io::Result<Moving>;
}

impl Movable for TcpStream {
    fn into_moving(self) -> std::io::Result<Moving> {
        Moving::plain(&self)
    }
}

impl Movable for TlsStream {
    fn into_moving(self) -> std::io::Result<Moving> {
        self.into_parts().map(|p| Moving::Tls(Box::new(p)))
    }
}

/// A registered link moving to the worker it was seated on (see `placement.rs`).
pub struct MovedLink {
    pub(super) transport: Moving,
    pub(super) registered: Registered,
}

impl std::fmt::Debug for MovedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovedLink")
            .field(
                "connector",
                &Uuid::from_bytes(self.registered.reg.connector_id),
            )
            .field("worker", &self.registered.seat.worker())
            .finish_non_exhaustive()
    }
}

impl MovedLink {
    /// Its registry entry: connector, link index, link ID.
    pub(crate) fn registry_key(&self) -> (Uuid, u8, u64) {
        let reg = &self.registered.reg;
        (
            Uuid::from_bytes(reg.connector_id),
            reg.link_index,
            self.registered.link_id,
        )
    }
}

/// Serves a link that moved here from the worker that accepted it.
pub(crate) async fn adopt(w: Rc<Worker>, moved: MovedLink) {
    let MovedLink {
        transport,
        registered,
    } = moved;
    match transport {
        Moving::Plain(socket) => match TcpStream::from_std(socket) {
            Ok(tcp) => super::serve_registered(&w, tcp, registered).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a moved link's socket; closed (the connector reconnects)");
                registered.abandon(&w.plane.registry);
            }
        },
        Moving::Tls(parts) => match TlsStream::from_parts(*parts) {
            Ok(tls) => super::serve_registered(&w, tls, registered).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a moved link's socket; closed (the connector reconnects)");
                registered.abandon(&w.plane.registry);
            }
        },
    }
}
