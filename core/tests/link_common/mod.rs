//! Helpers shared by the link tests over plain TCP (`link_echo`) and over TLS (`tls_link`):
//! deterministic payloads, an echo server for streams, a writer-and-reader exchange, and a
//! two-worker runner that ends the server when the client (worker 1) ends.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, select};
use rand::{Rng, SeedableRng, rngs::StdRng};
use ringtun_core::link::{Incoming, Link, LinkError, Stream};
use ringtun_core::rt::{DriverChoice, Runtime, RuntimeConfig, WorkerCtx};

/// Deterministic payload for stream `i` of `len` bytes.
pub fn payload(seed: u64, len: usize) -> Bytes {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

/// Echoes a stream back until the peer finishes, then finishes.
pub async fn echo(stream: Stream) -> Result<(), LinkError> {
    while let Some(chunk) = stream.read().await? {
        stream.write(chunk).await?;
    }
    stream.finish()
}

/// Replies to a stream the peer opened with its own metadata and echoes it on a task.
pub fn spawn_echo(inc: Incoming) {
    let s = inc.stream;
    if s.reply(inc.meta).is_err() {
        return;
    }
    compio::runtime::spawn(async move {
        let _ = echo(s).await;
    })
    .detach();
}

/// Serves one link: echoes every stream the peer opens until the link ends.
pub async fn serve(link: Link) {
    while let Some(inc) = link.accept().await {
        spawn_echo(inc);
    }
}

/// Writes `data` in random-sized pieces while reading the echo; returns what came back.
pub async fn exchange(stream: &Stream, data: Bytes, seed: u64) -> Result<Bytes, LinkError> {
    let writer = async {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut rest = data.clone();
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(40_000));
            stream.write(rest.split_to(n)).await?;
        }
        stream.finish()
    };
    let reader = async {
        let mut got = Vec::with_capacity(data.len());
        while let Some(chunk) = stream.read().await? {
            got.extend_from_slice(&chunk);
        }
        Ok::<_, LinkError>(Bytes::from(got))
    };
    let (w, r) = futures_util::join!(writer, reader);
    w?;
    r
}

fn listener() -> (Mutex<Option<std::net::TcpListener>>, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    (Mutex::new(Some(l)), addr)
}

pub fn run_two_workers<F, Fut>(driver: DriverChoice, f: F) -> Vec<Result<(), String>>
where
    F: Fn(usize, Option<std::net::TcpListener>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let (l, addr) = listener();
    let cfg = RuntimeConfig {
        workers: Some(2),
        driver,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(cfg, move |ctx: WorkerCtx| {
        let idx = ctx.index();
        let taken = if idx == 0 {
            l.lock().ok().and_then(|mut g| g.take())
        } else {
            None
        };
        let fut = f(idx, taken, addr);
        let stop = ctx.shutdown().clone();
        async move {
            if idx == 1 {
                // The client's end, pass or fail, ends the test.
                let r = fut.await;
                stop.trigger();
                return r;
            }
            // A server still waiting long after the client ended is a hang: fail instead.
            let guard = async {
                stop.wait().await;
                compio::time::sleep(Duration::from_secs(20)).await;
            };
            match select(pin!(fut), pin!(guard)).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => Err("server still waiting 20 s after the client ended".into()),
            }
        }
    })
    .expect("runtime starts");
    rt.join()
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()).and_then(|x| x))
        .collect()
}
