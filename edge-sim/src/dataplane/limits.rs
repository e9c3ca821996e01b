//! Capacity owners on the public side: concurrent connections per client IP, and concurrent
//! streams per tunnel. Each is a counter shared by every worker with a guard that gives the
//! slot back when dropped, so every path that ends a connection or a stream frees it.
//!
//! The per-IP table is sharded behind short `Mutex`es taken once when a connection starts and
//! once when it ends (never per request). The per-tunnel counters are atomics; a worker keeps
//! its own map from tunnel to counter, so the shared map's lock is taken once per tunnel per
//! worker.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// How many shards the per-IP table has.
const SHARDS: usize = 64;

/// Concurrent public connections per client IP (HTTP and TCP routes together).
#[derive(Debug)]
pub struct ClientConns {
    max: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<IpAddr, usize>>>,
}

/// One client connection's place in [`ClientConns`]; dropping it frees the place.
#[derive(Debug)]
pub struct ClientSlot {
    table: Arc<ClientConns>,
    ip: IpAddr,
}

impl ClientConns {
    /// A table allowing `max` concurrent connections per IP.
    pub fn new(max: usize) -> ClientConns {
        ClientConns {
            max,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let i = self.hasher.hash_one(ip) as usize % SHARDS;
        &self.shards[i]
    }

    /// A place for one more connection from `ip`, or `None` when it has `max` already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut shard = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        let n = shard.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: Arc::clone(self),
            ip,
        })
    }

    /// Connections from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        let shard = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        shard.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut shard = self
            .table
            .shard(&self.ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = shard.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // The table holds only IPs with a live connection: its size is bounded by them.
                shard.remove(&self.ip);
            }
        }
    }
}

/// Concurrent streams per tunnel, at the edge.
#[derive(Debug)]
pub struct TunnelStreams {
    max: usize,
    counters: Mutex<HashMap<Uuid, Arc<AtomicUsize>>>,
}

/// One stream's place in a tunnel's count; dropping it frees the place.
#[derive(Debug)]
pub struct TunnelSlot(Arc<AtomicUsize>);

impl TunnelStreams {
    /// Counters allowing `max` concurrent streams per tunnel.
    pub fn new(max: usize) -> TunnelStreams {
        TunnelStreams {
            max,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The counter of `tunnel` (takes the lock: callers cache it per worker).
    pub fn counter(&self, tunnel: Uuid) -> Arc<AtomicUsize> {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(c.entry(tunnel).or_default())
    }

    /// A place for one more stream on `counter`, or `None` at the limit.
    pub fn try_acquire(&self, counter: &Arc<AtomicUsize>) -> Option<TunnelSlot> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(TunnelSlot(Arc::clone(counter)))
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_slots_are_bounded_per_ip_and_freed_on_drop() {
        let t = Arc::new(ClientConns::new(2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let s1 = t.try_acquire(a).expect("first");
        let _s2 = t.try_acquire(a).expect("second");
        assert!(t.try_acquire(a).is_none(), "third from the same IP");
        let _other = t.try_acquire(b).expect("another IP has its own count");
        drop(s1);
        assert_eq!(t.count(a), 1);
        assert!(t.try_acquire(a).is_some(), "a freed place is reusable");
    }

    #[test]
    fn the_table_forgets_ips_without_connections() {
        let t = Arc::new(ClientConns::new(1));
        for i in 0..1000u32 {
            drop(t.try_acquire(IpAddr::from(i.to_be_bytes())));
        }
        let held: usize = t
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum();
        assert_eq!(held, 0);
    }

    #[test]
    fn tunnel_slots_are_bounded_and_freed_on_drop() {
        let t = TunnelStreams::new(2);
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let cx = t.counter(x);
        let a = t.try_acquire(&cx).expect("first");
        let _b = t.try_acquire(&t.counter(x)).expect("same counter");
        assert!(t.try_acquire(&cx).is_none());
        assert!(t.try_acquire(&t.counter(y)).is_some(), "per tunnel");
        drop(a);
        assert!(t.try_acquire(&cx).is_some());
    }
}
