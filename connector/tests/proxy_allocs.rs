//! Heap allocations the connector makes per proxied HTTP request, counted by a counting global
//! allocator on the connector's thread only.
//!
//! The connector side runs on this test's thread: a link (client role) and the proxy serving
//! every stream the link accepts, as a connector worker does (`connector/src/run/link_supervisor.rs`).
//! The edge side (a link in the server role that opens the streams) and the origin (a blocking
//! keep-alive HTTP server answering 128 bytes) run on threads of their own, so their
//! allocations are not counted. Requests go one at a time, so the count is the same on every
//! run; the connector's count is taken between the end of the warm-up and the end of the last
//! request.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringtun_connector::config::OriginRequest;
use ringtun_connector::ingress::{IngressRules, LiveRules};
use ringtun_connector::observe::{Observer, WorkerMetrics};
use ringtun_connector::proxy::{self, Pool, ProxyCtx, Resolver};
use ringtun_core::http::{BodyFraming, RequestHead};
use ringtun_core::link::Link;
use ringtun_core::mux::{Role, StreamKind};
use ringtun_core::tunnel::{
    RequestExtra, ResponseMeta, decode_response_meta, encode_request_meta, tunnel_link_config,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn counted() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only a
// thread-local `Cell` with a const initialiser and no destructor (it never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const BODY: usize = 128;
const WARMUP: u64 = 50;
const REQUESTS: u64 = 400;
/// The most allocations per request this test accepts. The goal is 5; today the connector makes
/// about 29 (36.5 before the proxy kept no sender and timer task per request, no fresh read
/// buffer and no pool key per request, and no shared metrics). The rest is mostly the link and
/// head handling (`ringtun_core`). Lower this as they go; the test fails when the count grows
/// back.
const LIMIT: f64 = 32.0;

/// A keep-alive origin answering every request head with `BODY` bytes.
fn origin() -> std::net::SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").expect("bind the origin");
    let addr = l.local_addr().expect("origin address");
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n{}",
                    "x".repeat(BODY)
                );
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if c.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// The edge side: accepts the connector's link and sends `total` requests one at a time,
/// checking each response.
fn edge(listener: StdListener, total: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = compio::runtime::Runtime::new().expect("edge runtime");
        rt.block_on(async move {
            let l = compio::net::TcpListener::from_std(listener).expect("edge listener");
            let (tcp, _) = l.accept().await.expect("accept the link");
            let link = Link::spawn(tcp, Role::Server, tunnel_link_config());
            let mut head = RequestHead::new("GET", "/");
            head.headers.append("Host", "app.test");
            let extra = RequestExtra {
                host: "app.test".to_owned(),
                client_ip: None,
                body: BodyFraming::Empty,
                trailers: false,
            };
            let meta = encode_request_meta(&head, &extra);
            for i in 0..total {
                let s = link
                    .open(StreamKind::Http, meta.clone())
                    .expect("open a stream");
                s.finish().expect("finish the request");
                let reply = s.reply_meta().await.expect("reply");
                match decode_response_meta(reply).expect("response meta") {
                    ResponseMeta::Head { head, .. } => assert_eq!(head.status, 200, "request {i}"),
                    ResponseMeta::Error(e) => panic!("request {i}: {e:?}"),
                }
                let mut got = 0;
                while let Some(chunk) = s.read().await.expect("response body") {
                    got += chunk.len();
                }
                assert_eq!(got, BODY, "request {i}");
            }
            // Keep the link until the connector side has counted.
            compio::time::sleep(Duration::from_secs(2)).await;
        });
    })
}

#[test]
fn a_proxied_request_makes_few_heap_allocations_on_the_connector() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        eprintln!("the requests did not finish within 300 s");
        std::process::exit(1);
    });
    let origin = origin();
    let listener = StdListener::bind("127.0.0.1:0").expect("bind the edge");
    let edge_addr = listener.local_addr().expect("edge address");
    let total = WARMUP + REQUESTS;
    let edge = edge(listener, total);
    let rules = IngressRules::from_url(&format!("http://{origin}"), &OriginRequest::default())
        .expect("rules");
    let observer = Arc::new(Observer::new("c1"));
    let resolver = Arc::new(Resolver::system(Duration::from_secs(60)));
    let ctx = Rc::new(ProxyCtx {
        ingress: LiveRules::new(rules).for_worker(),
        connector_id: Bytes::from_static(b"c1"),
        pool: Pool::new(),
        resolver: resolver.for_worker(),
        origin_response_timeout: Duration::from_secs(100),
        metrics: WorkerMetrics::new(observer.clone()),
    });
    let rt = compio::runtime::Runtime::new().expect("connector runtime");
    let (before, after) = rt.block_on(async move {
        let tcp = compio::net::TcpStream::connect(edge_addr)
            .await
            .expect("connect the link");
        let link = Link::spawn(tcp, Role::Client, tunnel_link_config());
        let done = Rc::new(Cell::new(0u64));
        let marks = Rc::new(Cell::new((0u64, 0u64)));
        // No timer around `accept`: it would be counted. The watchdog bounds the test.
        for _ in 0..total {
            let incoming = link.accept().await.expect("the link stays up");
            let (ctx, done, marks) = (ctx.clone(), done.clone(), marks.clone());
            // The guard is dropped when the stream's task ends: the request is done.
            proxy::spawn_serve(
                incoming,
                ctx,
                OnDrop(Some(move || {
                    done.set(done.get() + 1);
                    if done.get() == WARMUP {
                        marks.set((allocations(), 0));
                    } else if done.get() == total {
                        marks.set((marks.get().0, allocations()));
                    }
                })),
            );
        }
        while done.get() < total {
            compio::time::sleep(Duration::from_millis(10)).await;
        }
        marks.get()
    });
    edge.join().expect("edge thread");
    let per_request = (after - before) as f64 / REQUESTS as f64;
    println!("connector heap allocations per request: {per_request:.2}");
    assert!(
        per_request <= LIMIT,
        "{per_request:.2} allocations per request on the connector (limit {LIMIT})"
    );
    let text = observer.encode();
    assert!(
        text.contains(&format!(
            "ringtun_requests_total{{rule=\"1\",hostname=\"*\"}} {total}"
        )),
        "{text}"
    );
}

/// Runs its closure when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
