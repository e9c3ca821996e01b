//! `origin`: a fast test origin on the project's runtime. HTTP/1.1 keep-alive with a fixed
//! body (or echo of the request body), a TCP echo, and a TCP sink for bulk transfers.
//!
//! Each worker accepts on its own `SO_REUSEPORT` socket and serves its connections itself. A
//! connection is one task that reads, answers every complete request in the buffer (so
//! pipelining works), and writes the answers in one `write_all`. An optional delay is slept
//! before each write. Bad requests get a `400` and the connection is closed.

use std::{net::SocketAddr, rc::Rc, time::Duration};

use compio::{
    BufResult,
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use ringtun_core::rt::{
    self, RuntimeConfig, WorkerCtx,
    net::{DEFAULT_BACKLOG, ListenerSet, tune_stream},
};

use crate::{
    LoadError,
    engine::tuning,
    http::{RequestParser, Step},
};

/// Origin settings.
#[derive(Debug, Clone, Default)]
pub struct OriginConfig {
    /// Serve HTTP/1.1 here.
    pub http: Option<SocketAddr>,
    /// Echo TCP here.
    pub tcp: Option<SocketAddr>,
    /// Read and discard TCP here.
    pub sink: Option<SocketAddr>,
    /// Response body size in bytes (ignored with `echo`).
    pub body_size: usize,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer HTTP requests with their own body.
    pub echo: bool,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Pin worker threads to cores.
    pub pin: bool,
}

/// What a running origin listens on.
#[derive(Debug, Clone, Copy, Default)]
pub struct OriginAddrs {
    /// The HTTP address.
    pub http: Option<SocketAddr>,
    /// The TCP echo address.
    pub tcp: Option<SocketAddr>,
    /// The TCP sink address.
    pub sink: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Http,
    Echo,
    Sink,
}

/// Binds the listeners, prints `listening <kind> <addr>` lines on stdout (so a parent process
/// can learn the ports when it asked for port 0), and serves until the runtime shuts down.
pub fn run(cfg: &OriginConfig, ready: impl FnOnce(OriginAddrs)) -> Result<(), LoadError> {
    let rt_cfg = RuntimeConfig {
        workers: cfg.threads,
        pin: cfg.pin,
        ..RuntimeConfig::from_env()?
    };
    let n = rt_cfg.resolved_workers()?;
    let bind = |a: Option<SocketAddr>| -> Result<Option<ListenerSet>, LoadError> {
        a.map(|a| ListenerSet::bind(a, n, DEFAULT_BACKLOG))
            .transpose()
            .map_err(LoadError::from)
    };
    let sets: Vec<(Kind, ListenerSet)> = [
        (Kind::Http, bind(cfg.http)?),
        (Kind::Echo, bind(cfg.tcp)?),
        (Kind::Sink, bind(cfg.sink)?),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect();
    if sets.is_empty() {
        return Err(LoadError::BadOption {
            option: "--http/--tcp/--sink",
            reason: "give at least one address to serve".to_owned(),
        });
    }
    let mut addrs = OriginAddrs::default();
    for (k, s) in &sets {
        let a = Some(s.local_addr());
        match k {
            Kind::Http => addrs.http = a,
            Kind::Echo => addrs.tcp = a,
            Kind::Sink => addrs.sink = a,
        }
    }
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            cfg.body_size
        )
        .as_bytes(),
    );
    body.extend((0..cfg.body_size).map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26]));
    let shared = std::sync::Arc::new((sets, body, cfg.clone()));
    let runtime = rt::Runtime::start(rt_cfg, move |ctx: WorkerCtx| {
        let shared = shared.clone();
        async move {
            let (sets, response, cfg) = &*shared;
            let response: Rc<[u8]> = response.clone().into();
            for (kind, set) in sets {
                match set.take(ctx.index()) {
                    Ok(l) => compio::runtime::spawn(accept_loop(
                        l,
                        *kind,
                        response.clone(),
                        cfg.delay,
                        cfg.echo,
                    ))
                    .detach(),
                    Err(e) => tracing::error!(error = %e, "cannot take listener"),
                }
            }
            ctx.shutdown().wait().await;
        }
    })?;
    tracing::info!(driver = %runtime.drivers().first().map_or("?".to_owned(), |d| d.to_string()), "origin started");
    ready(addrs);
    for r in runtime.join() {
        r?;
    }
    Ok(())
}

async fn accept_loop(l: TcpListener, kind: Kind, response: Rc<[u8]>, delay: Duration, echo: bool) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = tune_stream(&s, &tuning());
                let task = match kind {
                    Kind::Http => {
                        compio::runtime::spawn(serve_http(s, response.clone(), delay, echo))
                    }
                    Kind::Echo => compio::runtime::spawn(serve_tcp(s, true, delay)),
                    Kind::Sink => compio::runtime::spawn(serve_tcp(s, false, delay)),
                };
                task.detach();
            }
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                compio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn serve_http(mut s: TcpStream, response: Rc<[u8]>, delay: Duration, echo: bool) {
    let mut parser = RequestParser::new(echo);
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(16 * 1024);
        }
        let BufResult(res, b) = s.append(rbuf).await;
        rbuf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = false;
        loop {
            match parser.feed(&rbuf) {
                Ok(Step::NeedMore { consumed }) => {
                    rbuf.drain(..consumed);
                    break;
                }
                Ok(Step::Done { consumed }) => {
                    rbuf.drain(..consumed);
                    if echo {
                        wbuf.extend_from_slice(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                parser.body_bytes.len()
                            )
                            .as_bytes(),
                        );
                        wbuf.extend_from_slice(&parser.body_bytes);
                    } else {
                        wbuf.extend_from_slice(&response);
                    }
                    if parser.info().close {
                        close = true;
                        break;
                    }
                    if rbuf.is_empty() {
                        break;
                    }
                }
                Err(_) => {
                    wbuf.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    close = true;
                    break;
                }
            }
        }
        if !wbuf.is_empty() {
            if !delay.is_zero() {
                compio::time::sleep(delay).await;
            }
            let BufResult(res, b) = s.write_all(wbuf).await;
            wbuf = b;
            wbuf.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

async fn serve_tcp(mut s: TcpStream, echo: bool, delay: Duration) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let BufResult(res, b) = s.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if echo {
            if !delay.is_zero() {
                compio::time::sleep(delay).await;
            }
            let BufResult(res, b) = s.write_all(buf).await;
            buf = b;
            if res.is_err() {
                return;
            }
        }
    }
}
