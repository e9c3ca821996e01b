//! Serving the streams the edge opens: HTTP requests to the ingress rules' services, and raw
//! TCP to the first `tcp://` service (tunnel-contract.md, "Streams").
//!
//! Everything here runs on the worker of the link the stream arrived on, and origin sockets
//! come from that worker's [`Pool`]. Origin names are never resolved on a worker: their
//! addresses come from the [`Resolver`]'s cache, which a background thread keeps fresh. What it
//! leaves to others: links and registration ([`crate::run`]), head parsing and body codecs
//! (`ringtun_core::http`).
//!
//! HTTP origins are `http://` and `https://` over TCP, `unix:` and `unix+tls:` over a Unix
//! socket (`conn`). TLS is 1.2/1.3 with ALPN `http/1.1`, trusting the web PKI roots
//! (`webpki-roots`) plus the rule's `caPool`; `originRequest.noTLSVerify` accepts any
//! certificate (a warning is logged once per origin) and `originServerName` replaces the
//! default server name. A failed handshake is answered with an invalid-origin error (502) that
//! quotes the TLS error; one that does not finish within `tlsTimeout` with a 502 naming it.
//! Pooled connections are keyed by target (host and port, or socket path) and TLS settings
//! (`pool`). `disableChunkedEncoding` buffers a chunked request body to send it with a
//! Content-Length (`unchunk`). `http2Origin` speaks HTTP/2 instead (`h2`: ALPN `h2` over TLS,
//! h2c with prior knowledge otherwise, one multiplexed connection per origin and worker).
//! Trailer fields cross the tunnel when the stream metadata says so (`body`,
//! `docs/http-meta.md`). `docs/origins.md` lists every setting.
//!
//! An origin that accepts a request but sends no response head within
//! `--origin-response-timeout` (default 100 s, Cloudflare's proxy read timeout; cloudflared has
//! no such `originRequest` field) is answered with 504. The clock restarts while the request
//! body is still being written, so a long upload is not cut short. One sweep per worker keeps
//! every exchange's deadline (`deadline.rs`), to within a tenth of the timeout (at most 1 s).
//!
//! Every stream is counted in the worker's [`WorkerMetrics`] (crate::observe): requests and
//! latency per ingress rule, payload bytes each way, failures by cause, streams in flight.

mod body;
mod conn;
mod deadline;
mod h2;
mod http;
mod pipe;
mod pool;
pub mod resolver;
mod tcp;
mod unchunk;

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ringtun_core::link::Incoming;
use ringtun_core::mux::StreamKind;

pub use pipe::{READ_SIZE, socket_to_stream, stream_to_socket};
pub use pool::{Pool, PoolKey, Slot};
pub use resolver::{Resolver, WorkerResolver};

use crate::ingress::WorkerRules;
use crate::observe::WorkerMetrics;

/// What a worker needs to serve streams.
#[derive(Debug)]
pub struct ProxyCtx {
    /// The ingress rules, replaceable at run time (SIGHUP); a stream loads them once.
    pub ingress: WorkerRules,
    /// This connector's ID, sent to origins in `X-Ringtun-Connector-Id`.
    pub connector_id: Bytes,
    /// The worker's keep-alive pool.
    pub pool: Pool,
    /// The origins' addresses (IP literals as they are, names from the cache).
    pub resolver: WorkerResolver,
    /// How long an origin may take to send a response head once the request is on its way
    /// (`--origin-response-timeout`); then the answer is 504.
    pub origin_response_timeout: Duration,
    /// The worker's metrics (requests, bytes, errors, latency, active streams).
    pub metrics: WorkerMetrics,
}

/// Serves one stream the edge opened, to its end, on a task of its own; `guard` is dropped
/// when the stream is done.
///
/// Each kind gets a task sized for its own future: a TCP route's connection may stay open and
/// idle for hours, and must not hold the HTTP path's future (several KiB) all that time.
pub fn spawn_serve<G: 'static>(incoming: Incoming, ctx: Rc<ProxyCtx>, guard: G) {
    let Incoming { kind, meta, stream } = incoming;
    let stream = Rc::new(stream);
    let task = match kind {
        StreamKind::Http | StreamKind::WebSocket => compio::runtime::spawn(async move {
            {
                let _active = ctx.metrics.stream();
                http::serve(meta, stream, &ctx).await;
            }
            drop(guard);
        }),
        StreamKind::Tcp => compio::runtime::spawn(async move {
            {
                let _active = ctx.metrics.stream();
                tcp::serve(meta, stream, &ctx).await;
            }
            drop(guard);
        }),
    };
    task.detach();
}
