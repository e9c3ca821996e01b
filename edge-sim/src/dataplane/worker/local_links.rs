//! The worker's own live links, per connector: added when a link is served here, removed when it
//! ends; [`Worker::pick`] chooses among them.

use ringtun_core::link::Link;
use uuid::Uuid;

use super::{LocalLink, Worker};

impl Worker {
    /// Every link this worker serves, of every connector (taken out of the borrow, so the
    /// caller may await on them).
    pub(crate) fn all_links(&self) -> Vec<Link> {
        self.links
            .borrow()
            .values()
            .flatten()
            .map(|l| l.link.clone())
            .collect()
    }

    /// Adds a live link (`home`: in the public data center); returns its local ID for
    /// [`Worker::remove_link`].
    pub(crate) fn add_link(&self, connector: Uuid, link: Link, home: bool) -> u64 {
        let id = self.next_link.get();
        self.next_link.set(id + 1);
        self.links
            .borrow_mut()
            .entry(connector)
            .or_default()
            .push(LocalLink { id, link, home });
        id
    }

    pub(crate) fn remove_link(&self, connector: Uuid, id: u64) {
        let mut links = self.links.borrow_mut();
        if let Some(ls) = links.get_mut(&connector) {
            ls.retain(|l| l.id != id);
            if ls.is_empty() {
                links.remove(&connector);
            }
        }
    }
}
