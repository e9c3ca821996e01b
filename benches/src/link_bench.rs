//! `ringtun-load link`: one link over loopback against plain TCP, in the same run.
//!
//! Two pinned workers of [`ringtun_core::rt`]: worker 0 is the server side, worker 1 the
//! client side, so each side owns one core as the connector and the edge would. For 1, 16
//! and 256 concurrent streams it runs:
//!
//! - **bulk**: every stream sends 64 KiB `Bytes` chunks one way for the run's duration; the
//!   server counts what arrives and answers with the count. Reported in MB/s.
//! - **rr**: every lane repeats one exchange: open a stream, send a request, read the response
//!   to its end. Over plain TCP a lane is one keep-alive connection doing the same exchange.
//!   Reported in exchanges (streams) per second, with p50/p99 per-exchange latency.
//!
//! The same workload over plain TCP (one connection per stream or lane) runs right after
//! each link case, so the ratio compares like with like on a noisy machine. The run ends
//! with the state cost of idle open streams: the session's own accounting and the process's
//! RSS growth, per stream.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use compio::BufResult;
use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use ringtun_core::link::{Link, Stream};
use ringtun_core::mux::{Config, ErrorCode, Role, StreamKind};
use ringtun_core::rt::{Runtime, RuntimeConfig, WorkerCtx};

/// Options of the link benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// Seconds each case runs.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Concurrent streams per case.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16, 256])]
    pub streams: Vec<usize>,
    /// Request and response size of the rr workload, in bytes.
    #[arg(long, default_value_t = 128)]
    pub rr_size: usize,
    /// Idle streams opened for the state-cost measurement.
    #[arg(long, default_value_t = 10_000)]
    pub idle_streams: usize,
    /// Per-stream receive window to advertise (bytes); the protocol default when absent.
    #[arg(long)]
    pub stream_window: Option<u32>,
    /// Per-link receive window to advertise (bytes); the protocol default when absent.
    #[arg(long)]
    pub link_window: Option<u32>,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Run only the rr workload over the link (no bulk, no plain TCP, no idle cost) and print
    /// the number of exchanges: for counting instructions per exchange under callgrind.
    #[arg(long)]
    pub rr_only: bool,
}

const CHUNK: usize = 64 * 1024;
const TAG_BULK: u8 = b'B';
const TAG_RR: u8 = b'R';
const TAG_IDLE: u8 = b'I';

/// One measured case.
#[derive(Debug, Clone)]
struct CaseResult {
    bytes_per_s: f64,
    /// Exchanges completed (rr cases).
    exchanges: f64,
    exchanges_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs the whole benchmark and prints the report.
pub fn run(args: LinkArgs) -> Result<()> {
    let link_l = std::net::TcpListener::bind("127.0.0.1:0").context("bind link listener")?;
    let tcp_l = std::net::TcpListener::bind("127.0.0.1:0").context("bind tcp listener")?;
    let link_addr = link_l.local_addr()?;
    let tcp_addr = tcp_l.local_addr()?;
    let listeners = Mutex::new(Some((link_l, tcp_l)));
    let cfg = RuntimeConfig {
        workers: Some(2),
        ..RuntimeConfig::from_env()?
    };
    let args2 = args.clone();
    let rt = Runtime::start(cfg, move |ctx: WorkerCtx| {
        let taken = if ctx.index() == 0 {
            listeners.lock().ok().and_then(|mut g| g.take())
        } else {
            None
        };
        let args = args2.clone();
        async move {
            if ctx.index() == 0 {
                let (l1, l2) = taken.ok_or_else(|| anyhow!("listeners already taken"))?;
                server(l1, l2, bench_config(&args)).await?;
                ctx.shutdown().wait().await;
                Ok(String::new())
            } else {
                let driver = ctx.driver();
                let report = client(&args, link_addr, tcp_addr).await;
                ctx.shutdown().trigger();
                report.map(|r| format!("driver: {driver}\n\n{r}"))
            }
        }
    })?;
    let mut report = None;
    for r in rt.join() {
        let r = r.map_err(|e| anyhow!("worker failed: {e}"))??;
        if !r.is_empty() {
            report = Some(r);
        }
    }
    let report = report.ok_or_else(|| anyhow!("client produced no report"))?;
    println!("{report}");
    if let Some(path) = args.out {
        std::fs::write(&path, &report).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------- server

async fn server(
    link_l: std::net::TcpListener,
    tcp_l: std::net::TcpListener,
    config: Config,
) -> Result<()> {
    let link_l = TcpListener::from_std(link_l)?;
    let tcp_l = TcpListener::from_std(tcp_l)?;
    compio::runtime::spawn(async move {
        while let Ok((s, _)) = link_l.accept().await {
            let _ = s.set_nodelay(true);
            let link = Link::spawn(s, Role::Server, config.clone());
            compio::runtime::spawn(serve_link(link)).detach();
        }
    })
    .detach();
    compio::runtime::spawn(async move {
        while let Ok((s, _)) = tcp_l.accept().await {
            let _ = s.set_nodelay(true);
            compio::runtime::spawn(serve_tcp(s)).detach();
        }
    })
    .detach();
    Ok(())
}

fn bench_config(args: &LinkArgs) -> Config {
    let d = Config::default();
    let stream_window = args.stream_window.unwrap_or(d.stream_window);
    Config {
        max_concurrent_streams: 100_000,
        stream_window,
        // Let one stream keep a whole window in flight.
        stream_send_buffer: d.stream_send_buffer.max(stream_window as usize),
        link_window: args.link_window.unwrap_or(d.link_window),
        ..d
    }
}

async fn serve_link(link: Link) {
    while let Some(inc) = link.accept().await {
        let s = inc.stream;
        let tag = inc.meta.first().copied().unwrap_or(0);
        compio::runtime::spawn(async move {
            let _ = serve_link_stream(tag, s).await;
        })
        .detach();
    }
}

async fn serve_link_stream(tag: u8, s: Stream) -> Result<()> {
    s.reply(Bytes::from_static(b"ok"))?;
    match tag {
        TAG_BULK => {
            let mut n = 0u64;
            while let Some(c) = s.read().await? {
                n += c.len() as u64;
            }
            s.write(Bytes::copy_from_slice(&n.to_be_bytes())).await?;
            s.finish()?;
        }
        TAG_RR => {
            let mut n = 0usize;
            while let Some(c) = s.read().await? {
                n += c.len();
            }
            s.write(Bytes::from(vec![b'r'; n])).await?;
            s.finish()?;
        }
        _ => {
            // Idle: hold the stream open until the peer ends it.
            while s.read().await?.is_some() {}
            s.finish()?;
        }
    }
    Ok(())
}

async fn serve_tcp(mut s: TcpStream) -> Result<()> {
    let BufResult(r, hdr) = s.read_exact(vec![0u8; 9]).await;
    r?;
    let size = u64::from_be_bytes(hdr[1..9].try_into()?) as usize;
    match hdr[0] {
        TAG_BULK => {
            let mut n = 0u64;
            let mut buf = Vec::with_capacity(256 * 1024);
            loop {
                buf.clear();
                let BufResult(r, b) = s.read(buf).await;
                buf = b;
                let k = r?;
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let BufResult(r, _) = s.write_all(n.to_be_bytes().to_vec()).await;
            r?;
        }
        TAG_RR => {
            let mut req = vec![0u8; size];
            let resp = Bytes::from(vec![b'r'; size]);
            loop {
                let BufResult(r, b) = s.read_exact(req).await;
                req = b;
                if r.is_err() {
                    break; // the client closed its lane
                }
                let BufResult(r, _) = s.write_all(resp.clone()).await;
                r?;
            }
        }
        _ => {}
    }
    Ok(())
}

// ------------------------------------------------------------------------------- client

async fn client(args: &LinkArgs, link_addr: SocketAddr, tcp_addr: SocketAddr) -> Result<String> {
    let dur = Duration::from_secs_f64(args.duration);
    let mut out = String::new();
    out.push_str(&format!(
        "link benchmark: {:.1} s per case, rr size {} B, bulk chunk {} KiB\n\n",
        args.duration,
        args.rr_size,
        CHUNK / 1024
    ));
    out.push_str(
        "| workload | streams | link | plain TCP | link / TCP | link p50 / p99 | TCP p50 / p99 |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    if args.rr_only {
        for &n in &args.streams {
            let l = link_rr(args, link_addr, n, dur).await?;
            let secs = dur.as_secs_f64();
            out.push_str(&format!(
                "rr over the link, {n} streams: {:.0} exchanges in about {secs:.1} s\n",
                l.exchanges
            ));
        }
        return Ok(out);
    }
    for &n in &args.streams {
        let l = link_bulk(args, link_addr, n, dur).await?;
        let t = tcp_bulk(tcp_addr, n, dur).await?;
        out.push_str(&format!(
            "| bulk (MB/s) | {n} | {:.0} | {:.0} | {:.2} | | |\n",
            l.bytes_per_s / 1e6,
            t.bytes_per_s / 1e6,
            l.bytes_per_s / t.bytes_per_s
        ));
        eprintln!(
            "bulk {n}: link {:.0} MB/s, tcp {:.0} MB/s",
            l.bytes_per_s / 1e6,
            t.bytes_per_s / 1e6
        );
    }
    for &n in &args.streams {
        let l = link_rr(args, link_addr, n, dur).await?;
        let t = tcp_rr(tcp_addr, n, dur, args.rr_size).await?;
        out.push_str(&format!(
            "| rr (exchanges/s) | {n} | {:.0} | {:.0} | {:.2} | {:.0} / {:.0} µs | {:.0} / {:.0} µs |\n",
            l.exchanges_per_s,
            t.exchanges_per_s,
            l.exchanges_per_s / t.exchanges_per_s,
            l.p50_us,
            l.p99_us,
            t.p50_us,
            t.p99_us
        ));
        eprintln!(
            "rr {n}: link {:.0}/s, tcp {:.0}/s",
            l.exchanges_per_s, t.exchanges_per_s
        );
    }
    out.push('\n');
    out.push_str(&idle_cost(args, link_addr).await?);
    Ok(out)
}

async fn dial(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn link_bulk(
    args: &LinkArgs,
    addr: SocketAddr,
    n: usize,
    dur: Duration,
) -> Result<CaseResult> {
    let link = Link::spawn(dial(addr).await?, Role::Client, bench_config(args));
    let chunk = Bytes::from(vec![0xa5u8; CHUNK]);
    let start = Instant::now();
    let deadline = start + dur;
    let runs = (0..n).map(|_| {
        let link = link.clone();
        let chunk = chunk.clone();
        async move {
            let s = link.open(StreamKind::Tcp, Bytes::from_static(&[TAG_BULK]))?;
            while Instant::now() < deadline {
                s.write(chunk.clone()).await?;
            }
            s.finish()?;
            let mut got = Vec::new();
            while let Some(c) = s.read().await? {
                got.extend_from_slice(&c);
            }
            let n: [u8; 8] = got.as_slice().try_into().context("bulk count reply")?;
            Ok::<u64, anyhow::Error>(u64::from_be_bytes(n))
        }
    });
    let total: u64 = join_all(runs).await.into_iter().sum::<Result<u64>>()?;
    let secs = start.elapsed().as_secs_f64();
    link.close(ErrorCode::NO_ERROR);
    link.closed().await;
    Ok(CaseResult {
        bytes_per_s: total as f64 / secs,
        exchanges: 0.0,
        exchanges_per_s: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
    })
}

fn tcp_header(tag: u8, size: usize) -> Vec<u8> {
    let mut h = vec![tag];
    h.extend_from_slice(&(size as u64).to_be_bytes());
    h
}

async fn tcp_bulk(addr: SocketAddr, n: usize, dur: Duration) -> Result<CaseResult> {
    let chunk = Bytes::from(vec![0xa5u8; CHUNK]);
    let start = Instant::now();
    let deadline = start + dur;
    let runs = (0..n).map(|_| {
        let chunk = chunk.clone();
        async move {
            let mut s = dial(addr).await?;
            let BufResult(r, _) = s.write_all(tcp_header(TAG_BULK, 0)).await;
            r?;
            while Instant::now() < deadline {
                let BufResult(r, _) = s.write_all(chunk.clone()).await;
                r?;
            }
            s.shutdown().await?;
            let BufResult(r, b) = s.read_exact(vec![0u8; 8]).await;
            r?;
            Ok::<u64, anyhow::Error>(u64::from_be_bytes(b[..8].try_into()?))
        }
    });
    let total: u64 = join_all(runs).await.into_iter().sum::<Result<u64>>()?;
    let secs = start.elapsed().as_secs_f64();
    Ok(CaseResult {
        bytes_per_s: total as f64 / secs,
        exchanges: 0.0,
        exchanges_per_s: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
    })
}

fn new_hist() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn rr_result(count: u64, secs: f64, h: &Histogram<u64>) -> CaseResult {
    CaseResult {
        bytes_per_s: 0.0,
        exchanges: count as f64,
        exchanges_per_s: count as f64 / secs,
        p50_us: h.value_at_quantile(0.50) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
    }
}

async fn link_rr(args: &LinkArgs, addr: SocketAddr, n: usize, dur: Duration) -> Result<CaseResult> {
    let size = args.rr_size;
    let link = Link::spawn(dial(addr).await?, Role::Client, bench_config(args));
    let req = Bytes::from(vec![b'q'; size]);
    let hist = Rc::new(RefCell::new(new_hist()?));
    let count = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let deadline = start + dur;
    let runs = (0..n).map(|_| {
        let (link, req, hist, count) = (link.clone(), req.clone(), hist.clone(), count.clone());
        async move {
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let s = link.open(StreamKind::Http, Bytes::from_static(&[TAG_RR]))?;
                s.write(req.clone()).await?;
                s.finish()?;
                let mut got = 0;
                while let Some(c) = s.read().await? {
                    got += c.len();
                }
                if got != size {
                    return Err(anyhow!("rr response of {got} bytes, expected {size}"));
                }
                let us = t0.elapsed().as_micros() as u64;
                hist.borrow_mut().saturating_record(us.max(1));
                count.set(count.get() + 1);
            }
            Ok::<(), anyhow::Error>(())
        }
    });
    let res = rr_finish(runs, start, &hist, &count).await;
    link.close(ErrorCode::NO_ERROR);
    link.closed().await;
    res
}

async fn tcp_rr(addr: SocketAddr, n: usize, dur: Duration, size: usize) -> Result<CaseResult> {
    let hist = Rc::new(RefCell::new(new_hist()?));
    let count = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let deadline = start + dur;
    let runs = (0..n).map(|_| {
        let (hist, count) = (hist.clone(), count.clone());
        async move {
            let mut s = dial(addr).await?;
            let BufResult(r, _) = s.write_all(tcp_header(TAG_RR, size)).await;
            r?;
            let req = Bytes::from(vec![b'q'; size]);
            let mut resp = vec![0u8; size];
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let BufResult(r, _) = s.write_all(req.clone()).await;
                r?;
                let BufResult(r, b) = s.read_exact(resp).await;
                resp = b;
                r?;
                hist.borrow_mut()
                    .saturating_record((t0.elapsed().as_micros() as u64).max(1));
                count.set(count.get() + 1);
            }
            s.shutdown().await?;
            Ok::<(), anyhow::Error>(())
        }
    });
    rr_finish(runs, start, &hist, &count).await
}

/// Waits for every lane of an rr case and turns the counters into a result.
async fn rr_finish<F: std::future::Future<Output = Result<()>>>(
    runs: impl Iterator<Item = F>,
    start: Instant,
    hist: &RefCell<Histogram<u64>>,
    count: &Cell<u64>,
) -> Result<CaseResult> {
    join_all(runs)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let secs = start.elapsed().as_secs_f64();
    let h = hist.borrow();
    Ok(rr_result(count.get(), secs, &h))
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("short /proc/self/statm"))?
        .parse()?;
    Ok(pages * 4096)
}

/// Opens `n` idle streams (OPEN and REPLY exchanged, no data) and reports what they cost.
async fn idle_cost(args: &LinkArgs, addr: SocketAddr) -> Result<String> {
    let n = args.idle_streams;
    let link = Link::spawn(dial(addr).await?, Role::Client, bench_config(args));
    // Warm up: one stream round trip so the link's buffers exist before measuring.
    let s = link.open(StreamKind::Tcp, Bytes::from_static(&[TAG_IDLE]))?;
    s.reply_meta().await?;
    drop(s);
    compio::time::sleep(Duration::from_millis(50)).await;
    let est0 = link.memory_estimate();
    let rss0 = rss_bytes()?;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(link.open(StreamKind::Tcp, Bytes::from_static(&[TAG_IDLE]))?);
    }
    for s in &streams {
        s.reply_meta().await?;
    }
    compio::time::sleep(Duration::from_millis(50)).await;
    let est1 = link.memory_estimate();
    let rss1 = rss_bytes()?;
    let open = link.stats().open_streams;
    drop(streams);
    link.close(ErrorCode::NO_ERROR);
    link.closed().await;
    let per_est = (est1.saturating_sub(est0)) as f64 / n as f64;
    let per_rss = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    Ok(format!(
        "idle streams: {n} open ({open} in the client session)\n\
         - client session accounting: {per_est:.0} B per idle stream (mux state + map entry)\n\
         - process RSS growth, both ends of the link plus their tasks: {per_rss:.0} B per idle \
         stream (the server side also holds one parked task per stream)\n"
    ))
}
