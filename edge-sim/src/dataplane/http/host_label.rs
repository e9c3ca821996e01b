//! The per-hostname request counter, cached per worker so that counting a request for a known
//! hostname takes no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::dataplane::worker::Worker;
use crate::metrics::WorkerCounter;

/// FNV-1a: hashing a hostname on every request costs a few instructions per byte instead of
/// SipHash's setup and rounds. The keys are hostnames this worker routed (a route exists for
/// each), and the cache is bounded by [`HOST_CACHE_MAX`], so flooding resistance is not needed.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type HostMap = HashMap<String, WorkerCounter, BuildHasherDefault<Fnv>>;

thread_local! {
    /// Per worker: the request counter of each hostname, resolved once (see `metrics`), keyed
    /// by the metrics instance it belongs to (tests run several edges in one process).
    static HOST_COUNTERS: RefCell<(usize, HostMap)> = RefCell::new((0, HostMap::default()));
}

/// Most hostnames one worker caches counters for.
const HOST_CACHE_MAX: usize = 4096;

/// Counts a request for `host` (a `Host` header: lowercased, port dropped) without a lock once
/// the hostname is known on this worker.
pub(crate) fn count_host_request(w: &Worker, host: &str) {
    let metrics = w.plane.registry.metrics();
    let name = host_label(host);
    let id = Arc::as_ptr(metrics) as usize;
    HOST_COUNTERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != id {
            *cache = (id, HostMap::default());
        }
        if let Some(c) = cache.1.get(name.as_ref()) {
            c.inc();
            return;
        }
        let c = metrics.host_requests(&name);
        c.inc();
        if cache.1.len() < HOST_CACHE_MAX {
            cache.1.insert(name.into_owned(), c);
        }
    });
}

/// `App.Example.com:8080` → `app.example.com`; `[::1]:80` → `[::1]`.
fn host_label(host: &str) -> std::borrow::Cow<'_, str> {
    let bare = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let bare = bare.trim_end_matches('.');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(bare.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(bare)
    }
}

#[cfg(test)]
mod tests {
    use super::host_label;

    #[test]
    fn labels_drop_the_port_the_trailing_dot_and_case() {
        assert_eq!(host_label("App.Example.com:8080"), "app.example.com");
        assert_eq!(host_label("app.example.com."), "app.example.com");
        assert_eq!(host_label("[::1]:80"), "[::1]");
        assert_eq!(host_label("plain"), "plain");
    }
}
