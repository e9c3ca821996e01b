//! Fault injection: edge servers and whole data centers taken down and up through the admin API
//! (`POST /faults/servers/{ip:port}/down|up`, `POST /faults/data-centers/{name}/down|up`,
//! `GET /faults`), so operators and tests can see how connectors fail over.
//!
//! A server that is down behaves like a crashed machine: its live links end at once, without a
//! GOAWAY or a drain (the connector sees its connection end), and new link connections are closed
//! right after accept, until it is up again. Public HTTP and TCP listeners are not affected.
//!
//! # Reaching the workers
//! Links live on the data-plane workers (`Rc`, one thread each), while faults are set from the
//! admin API thread. Each server has an atomic `down` flag (read by the accept loop, one load per
//! connection) and a "went down" signal (a `core::rt::Shutdown`, which wakes waiters on any
//! worker without a lock) that every link task of that server waits on next to `Link::closed`.
//! Going up again installs a fresh signal.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ringtun_core::rt::Shutdown;
use serde::Serialize;

use super::ServerInfo;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What `GET /faults` reports: the servers and data centers taken down, as they were named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultList {
    /// Servers taken down one by one (bound addresses).
    pub servers: Vec<String>,
    /// Data centers taken down (every server of each is down).
    pub data_centers: Vec<String>,
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Take it down (crash-like).
    Down,
    /// Bring it back.
    Up,
}

impl FaultAction {
    /// `down` or `up`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Down => "down",
            FaultAction::Up => "up",
        }
    }
}

#[derive(Debug)]
struct ServerState {
    info: ServerInfo,
    down: AtomicBool,
    signal: Mutex<Shutdown>,
}

#[derive(Debug, Default)]
struct Wanted {
    servers: BTreeSet<SocketAddr>,
    data_centers: BTreeSet<String>,
}

/// The faults of every edge server; shared by the admin API and every worker.
#[derive(Debug)]
pub struct Faults {
    servers: Vec<ServerState>,
    wanted: Mutex<Wanted>,
    metrics: Arc<Metrics>,
}

/// Waits for one server to go down (see [`Faults::watch`]).
#[derive(Debug)]
pub struct DownWatch(Option<Shutdown>);

impl DownWatch {
    /// Completes when the server went down (at once if it already was). Cancel-safe: it is a
    /// channel wait, not IO. A watch of an unknown server never completes.
    pub async fn wait(&self) {
        match &self.0 {
            Some(signal) => signal.wait().await,
            None => std::future::pending::<()>().await,
        }
    }
}

impl Faults {
    /// No faults, for these servers.
    pub fn new(servers: &[ServerInfo], metrics: Arc<Metrics>) -> Faults {
        Faults {
            servers: servers
                .iter()
                .map(|info| ServerState {
                    info: info.clone(),
                    down: AtomicBool::new(false),
                    signal: Mutex::new(Shutdown::new()),
                })
                .collect(),
            wanted: Mutex::new(Wanted::default()),
            metrics,
        }
    }

    /// The index of the server bound at `addr`, for [`Faults::is_down`] and [`Faults::watch`].
    pub fn server_index(&self, addr: SocketAddr) -> Option<usize> {
        self.servers.iter().position(|s| s.info.addr == addr)
    }

    /// Whether server `index` is down now (one atomic load).
    pub fn is_down(&self, index: usize) -> bool {
        self.servers
            .get(index)
            .is_some_and(|s| s.down.load(Ordering::Acquire))
    }

    /// A watch that completes when server `index` goes down.
    pub fn watch(&self, index: usize) -> DownWatch {
        DownWatch(
            self.servers
                .get(index)
                .map(|s| s.signal.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        )
    }

    /// Takes one server down or up. `addr` is the bound address as `/discovery` reports it.
    pub fn set_server(&self, addr: &str, action: FaultAction) -> Result<FaultList> {
        let parsed: SocketAddr = addr
            .parse()
            .map_err(|_| Error::UnknownServer(addr.to_owned()))?;
        if self.server_index(parsed).is_none() {
            return Err(Error::UnknownServer(addr.to_owned()));
        }
        let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            FaultAction::Down => wanted.servers.insert(parsed),
            FaultAction::Up => wanted.servers.remove(&parsed),
        };
        self.metrics.fault("server", action.as_str());
        tracing::warn!(server = %parsed, action = action.as_str(), "fault injection: edge server");
        self.apply(&wanted);
        Ok(list(&wanted))
    }

    /// Takes every server of a data center down or up.
    pub fn set_data_center(&self, name: &str, action: FaultAction) -> Result<FaultList> {
        if !self.servers.iter().any(|s| s.info.data_center == name) {
            return Err(Error::UnknownDataCenter(name.to_owned()));
        }
        let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            FaultAction::Down => wanted.data_centers.insert(name.to_owned()),
            FaultAction::Up => wanted.data_centers.remove(name),
        };
        self.metrics.fault("data_center", action.as_str());
        tracing::warn!(data_center = %name, action = action.as_str(), "fault injection: data center");
        self.apply(&wanted);
        Ok(list(&wanted))
    }

    /// The faults set now.
    pub fn list(&self) -> FaultList {
        list(&self.wanted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Brings every server's flag and signal in line with `wanted` (called under its lock, so
    /// changes apply in order).
    fn apply(&self, wanted: &Wanted) {
        let mut down_now = 0;
        for s in &self.servers {
            let down = wanted.servers.contains(&s.info.addr)
                || wanted.data_centers.contains(&s.info.data_center);
            down_now += usize::from(down);
            let mut signal = s.signal.lock().unwrap_or_else(|p| p.into_inner());
            let was = s.down.swap(down, Ordering::AcqRel);
            if down && !was {
                // Wakes every link task of this server, on every worker.
                signal.trigger();
            } else if !down && was {
                *signal = Shutdown::new();
            }
        }
        self.metrics
            .servers_down
            .set(i64::try_from(down_now).unwrap_or(i64::MAX));
    }
}

fn list(wanted: &Wanted) -> FaultList {
    FaultList {
        servers: wanted.servers.iter().map(|a| a.to_string()).collect(),
        data_centers: wanted.data_centers.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        let s = |dc: &str, a: &str| ServerInfo {
            data_center: dc.to_owned(),
            addr: a.parse().expect("addr"),
        };
        Faults::new(
            &[
                s("dfw", "127.0.1.1:7844"),
                s("dfw", "127.0.1.2:7844"),
                s("mci", "127.0.2.1:7844"),
            ],
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn servers_and_data_centers_go_down_and_up() {
        let f = faults();
        let l = f
            .set_server("127.0.1.2:7844", FaultAction::Down)
            .expect("known");
        assert_eq!(l.servers, ["127.0.1.2:7844"]);
        assert!(!f.is_down(0) && f.is_down(1) && !f.is_down(2));
        f.set_data_center("dfw", FaultAction::Down).expect("known");
        assert!(f.is_down(0) && f.is_down(1) && !f.is_down(2));
        // The server stays down while it is named on its own.
        f.set_data_center("dfw", FaultAction::Up).expect("known");
        assert!(!f.is_down(0) && f.is_down(1));
        f.set_server("127.0.1.2:7844", FaultAction::Up)
            .expect("known");
        assert!(!f.is_down(1));
        assert_eq!(f.list(), FaultList::default());
        assert!(matches!(
            f.set_server("127.0.9.9:1", FaultAction::Down),
            Err(Error::UnknownServer(a)) if a == "127.0.9.9:1"
        ));
        assert!(f.set_server("nope", FaultAction::Down).is_err());
        assert!(matches!(
            f.set_data_center("ams", FaultAction::Up),
            Err(Error::UnknownDataCenter(n)) if n == "ams"
        ));
    }

    #[test]
    fn a_watch_wakes_when_its_server_goes_down() {
        let f = Arc::new(faults());
        let watch = f.watch(2);
        let f2 = Arc::clone(&f);
        let t = std::thread::spawn(move || {
            let rt = compio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            rt.block_on(watch.wait());
            Ok::<bool, String>(f2.is_down(2))
        });
        f.set_data_center("mci", FaultAction::Down).expect("known");
        assert_eq!(t.join().ok().and_then(|r| r.ok()), Some(true));
        // Up again: a new watch waits again; down at once completes it.
        f.set_data_center("mci", FaultAction::Up).expect("known");
        assert!(!f.is_down(2));
    }
}
