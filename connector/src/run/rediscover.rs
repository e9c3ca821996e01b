//! Reading `GET /discovery` again while `tunnel run` runs, so that a link placed again knows
//! the edge's current nodes (a node added or restarted since the start), not only the answer
//! read at start.
//!
//! A refresh is asked for each time a link is placed again (its link lost, a setup failed, its
//! edge node asked it to move) and runs on a thread of its own, one at a time: the link does
//! not wait for it (the admin API asked may be the very node going away, or slow), it places
//! itself with the servers known now and the answer serves the next placement. The admin APIs
//! asked, in turn until one answers: the one `tunnel run` was given, then every node's admin
//! address from the last answer (a cluster's nodes each serve the same answer). When none
//! answers, the last known servers stay (`LinkPlan::refreshed` also keeps a data center the
//! answer leaves out).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::edges::{DataCenter, from_discovery};
use crate::admin_client::{Discovery, discover};

/// Where discovery is asked again, and whether a refresh is running.
#[derive(Debug)]
pub struct Rediscovery {
    /// The admin APIs to ask, the configured one first.
    apis: Mutex<Vec<String>>,
    running: AtomicBool,
}

impl Rediscovery {
    /// Asks `api` first, then the nodes `answer` (the answer read at start) names.
    pub fn new(api: &str, answer: &Discovery) -> Rediscovery {
        let r = Rediscovery {
            apis: Mutex::new(vec![api.to_owned()]),
            running: AtomicBool::new(false),
        };
        r.learn(answer);
        r
    }

    /// Adds the admin addresses of `answer`'s nodes to the APIs to ask.
    fn learn(&self, answer: &Discovery) {
        let mut apis = self.apis.lock().unwrap_or_else(|p| p.into_inner());
        for n in &answer.nodes {
            if !n.admin.is_empty() && !apis.contains(&n.admin) {
                apis.push(n.admin.clone());
            }
        }
    }

    /// Claims the right to run a refresh; `false` while one runs.
    pub(super) fn start(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    /// Ends the refresh [`Rediscovery::start`] claimed.
    pub(super) fn done(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// The data centers of the first admin API that answers; `None` (logged at debug) when
    /// none does. Blocking: run it off the workers.
    pub(super) fn fetch(&self) -> Option<Vec<DataCenter>> {
        let apis = self.apis.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for api in &apis {
            match discover(api) {
                Ok(answer) => {
                    self.learn(&answer);
                    let dcs = from_discovery(&answer);
                    if !dcs.is_empty() {
                        return Some(dcs);
                    }
                }
                Err(e) => {
                    tracing::debug!(api = %api, error = %e, "discovery not answered; asking the next node");
                }
            }
        }
        tracing::debug!("no admin API answered discovery; keeping the last known servers");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_admin_addresses_are_asked_after_the_configured_api() {
        let answer: Discovery = serde_json::from_str(
            r#"{"data_centers": [], "ca_pem": "x", "node": "a",
                "nodes": [{"id": "a", "admin": "127.0.0.1:1"}, {"id": "b", "admin": "127.0.0.1:2"},
                          {"id": "c", "admin": ""}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let r = Rediscovery::new("127.0.0.1:1", &answer);
        let apis = r.apis.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(apis, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert!(r.start() && !r.start(), "one refresh at a time");
        r.done();
        assert!(r.start());
    }
}
