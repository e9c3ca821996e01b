//! The worker's mailbox: what other workers send it (a public connection handed off, a link
//! seated here, a stream to carry for another worker) and what it sends them.

use std::rc::Rc;

use ringtun_core::rt::Mailbox;

use super::Worker;
use crate::dataplane::WorkerMsg;

impl Worker {
    /// Sends `msg` to worker `to`, waiting while its mailbox is full.
    pub(crate) async fn send_to(
        &self,
        to: usize,
        msg: WorkerMsg,
    ) -> Result<(), ringtun_core::rt::RtError> {
        self.senders.send(to, msg).await
    }

    /// Sends a registered link to worker `to`, which serves it from then on (see
    /// [`crate::dataplane::placement`]). Waits while that worker's mailbox is full; when the worker is gone
    /// (shutdown), the link is closed and unregistered.
    pub(crate) async fn move_link(
        &self,
        to: usize,
        link: crate::dataplane::link_server::MovedLink,
    ) {
        let (connector, index, id) = link.registry_key();
        if let Err(e) = self.senders.send(to, WorkerMsg::Link(Box::new(link))).await {
            tracing::warn!(error = %e, to, "cannot move a link to its worker; closed (the connector reconnects)");
            // The failed send dropped the link; its registry entry is left to undo.
            self.plane.registry.unregister_link_id(connector, index, id);
        }
    }
}

/// Serves the worker's mailbox until every sender is gone.
pub(super) async fn serve(w: Rc<Worker>, mailbox: Mailbox<WorkerMsg>) {
    while let Some(msg) = mailbox.recv().await {
        match msg {
            WorkerMsg::Handoff(h) => w.take_handoff(h),
            WorkerMsg::Link(l) => {
                compio::runtime::spawn(crate::dataplane::link_server::adopt(Rc::clone(&w), *l))
                    .detach();
            }
            WorkerMsg::Bridge(r) => {
                compio::runtime::spawn(crate::dataplane::bridge::serve(Rc::clone(&w), *r)).detach();
            }
        }
    }
}
