//! What one proxied request costs the edge in heap allocations, counted on the edge's worker
//! threads (`ringtun-w*`) by a counting global allocator while a keep-alive client sends
//! requests through an in-process edge with one worker and a fake connector.
//!
//! The bounds sit a little above the figures measured when they were set (see
//! `perf/edge-request-cost` for socket operations and instructions of the whole process); a
//! change that makes the request path allocate more fails here. The link's own work (frames,
//! mux state) and the runtime's per-operation allocations run on the same worker and are
//! counted too.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use ringtun_edge_sim::Edge;
use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge;
use ringtun_test_support::fake_connector::{Client, FakeConnector, FakeOpts, Response};
use uuid::Uuid;

/// Counts allocations made on threads named `ringtun-w*` (the edge's workers).
struct Counting;

static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// 0: not decided yet; 1: a worker thread (count); 2: another thread, or deciding now.
    static KIND: Cell<u8> = const { Cell::new(0) };
}

fn count() {
    let kind = KIND.try_with(|k| {
        if k.get() == 0 {
            // Deciding may allocate (the thread handle): those allocations see 2 and pass.
            k.set(2);
            let worker = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("ringtun-w"));
            k.set(if worker { 1 } else { 2 });
        }
        k.get()
    });
    if kind == Ok(1) {
        WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged; counting touches only an
// atomic and a const-initialised thread-local without destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HOST: &str = "app.example.com";

fn start(dir: &std::path::Path) -> Edge {
    edge::start(Overrides {
        // One worker: the public connection and the link share it, no hand-off.
        workers: Some(1),
        danger_plaintext_links: true,
        ..edge::overrides(dir)
    })
}

/// Allocations per request on the edge's worker over `n` requests of `path` (after a warm-up).
fn allocs_per_request(c: &mut Client, path: &str, n: u64, check: impl Fn(&Response)) -> f64 {
    for _ in 0..20 {
        check(&c.get(HOST, path));
    }
    let before = WORKER_ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        check(&c.get(HOST, path));
    }
    let after = WORKER_ALLOCS.load(Ordering::Relaxed);
    (after - before) as f64 / n as f64
}

#[test]
fn edge_allocations_per_request_stay_bounded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = start(tmp.path());
    let (t, secret) = edge.registry().create_tunnel("web").expect("tunnel");
    edge.registry().route_dns("web", HOST).expect("route");
    let conn = FakeConnector::start(FakeOpts {
        name: "a",
        server: edge.servers()[0].addr,
        ca_pem: None,
        tunnel: t.id,
        secret: secret.expose().to_vec(),
        connector: Uuid::new_v4(),
        link_index: 0,
        refuse: false,
    });
    conn.registered.as_ref().expect("registered");
    let mut c = Client::connect(edge.public_http_addr());

    let small = allocs_per_request(&mut c, "/hello", 400, |r| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "hello from a");
    });
    let big = allocs_per_request(&mut c, "/big/65536", 100, |r| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body.len(), 65536);
    });
    eprintln!("edge worker allocations per request: small {small:.2}, 64 KiB {big:.2}");
    assert!(
        small <= SMALL_BOUND,
        "{small:.2} allocations per small request on the edge (bound {SMALL_BOUND})"
    );
    assert!(
        big <= BIG_BOUND,
        "{big:.2} allocations per 64 KiB request on the edge (bound {BIG_BOUND})"
    );
    conn.stop();
    edge.stop();
}

/// Allocations per small (`hello`) request: 26 measured when set (39 before the request path
/// was reworked), with room for noise. The link, mux and runtime allocations on the worker are
/// most of what is left; the goal for the whole path is 5, and this bound becomes 10 then.
const SMALL_BOUND: f64 = 32.0;
/// Allocations per 64 KiB request: 25 measured when set (37 before).
const BIG_BOUND: f64 = 32.0;
