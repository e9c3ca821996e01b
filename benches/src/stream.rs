//! `tcp-stream`: bulk transfer one way (to a sink) over several connections; reports Gbit/s.
//!
//! Each connection writes 64 KiB (or `--chunk`) buffers back to back, one write in flight.
//! Bytes are counted when a write completes inside the measured window. A write still blocked
//! at the end is ended by shutting the socket down, not by dropping the future.

use std::{
    cell::Cell,
    net::SocketAddr,
    rc::Rc,
    sync::{
        Arc, Barrier, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use compio::{BufResult, io::AsyncWriteExt};
use ringtun_core::rt::{self, RuntimeConfig, WorkerCtx};

use crate::{LoadError, engine::tuning};

/// Settings of a bulk run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The sink.
    pub addr: SocketAddr,
    /// Worker threads.
    pub threads: usize,
    /// Connections.
    pub connections: usize,
    /// Measured window.
    pub duration: Duration,
    /// Unmeasured lead-in.
    pub warmup: Duration,
    /// Bytes per write.
    pub chunk: usize,
    /// Pin worker threads to cores.
    pub pin: bool,
}

/// What a bulk run measured.
#[derive(Debug, Clone, Copy)]
pub struct StreamResult {
    /// Bytes written in the measured window.
    pub bytes: u64,
    /// The window.
    pub duration: Duration,
    /// Connections that could not be established.
    pub failed_connections: u64,
    /// Writes that failed.
    pub write_errors: u64,
}

impl StreamResult {
    /// Throughput in Gbit/s.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.duration.as_secs_f64() / 1e9
    }
}

/// Runs a bulk transfer.
pub fn run(cfg: &StreamConfig) -> Result<StreamResult, LoadError> {
    if cfg.connections == 0 || cfg.chunk == 0 || cfg.duration.is_zero() {
        return Err(LoadError::BadOption {
            option: "--connections/--chunk/--duration",
            reason: "must be positive".to_owned(),
        });
    }
    let threads = cfg.threads.min(cfg.connections).max(1);
    let shared = Arc::new((
        cfg.clone(),
        Barrier::new(threads),
        OnceLock::<Instant>::new(),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ));
    let sh = shared.clone();
    let rt_cfg = RuntimeConfig {
        workers: Some(threads),
        pin: cfg.pin,
        ..RuntimeConfig::from_env()?
    };
    let runtime = rt::Runtime::start(rt_cfg, move |ctx: WorkerCtx| {
        let sh = sh.clone();
        async move {
            let (cfg, barrier, start, bytes, failed, werr) = &*sh;
            let n = (0..cfg.connections)
                .filter(|i| i % threads == ctx.index())
                .count();
            let mut streams = Vec::new();
            for _ in 0..n {
                match rt::net::connect(cfg.addr, &tuning()).await {
                    Ok(s) => streams.push(s),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            barrier.wait();
            let start = *start.get_or_init(|| Instant::now() + Duration::from_millis(10));
            let measure = start + cfg.warmup;
            let end = measure + cfg.duration;
            let done = Rc::new(Cell::new(false));
            // Ends writes still blocked well after the end.
            let closer = {
                let streams = streams.clone();
                let done = done.clone();
                compio::runtime::spawn(async move {
                    while !done.get() && Instant::now() < end + Duration::from_secs(2) {
                        compio::time::sleep(Duration::from_millis(50)).await;
                    }
                    for s in &streams {
                        let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Both);
                    }
                })
            };
            let mut tasks = Vec::new();
            for mut s in streams {
                let chunk = cfg.chunk;
                tasks.push(compio::runtime::spawn(async move {
                    let mut buf = vec![0x5au8; chunk];
                    let (mut sent, mut errs) = (0u64, 0u64);
                    compio::time::sleep_until(start).await;
                    while Instant::now() < end {
                        let BufResult(r, b) = s.write_all(buf).await;
                        buf = b;
                        if r.is_err() {
                            errs += 1;
                            break;
                        }
                        let now = Instant::now();
                        if now >= measure && now <= end {
                            sent += chunk as u64;
                        }
                    }
                    (sent, errs)
                }));
            }
            for t in tasks {
                if let Ok((b, e)) = t.await {
                    bytes.fetch_add(b, Ordering::Relaxed);
                    werr.fetch_add(e, Ordering::Relaxed);
                }
            }
            done.set(true);
            let _ = closer.await;
        }
    })?;
    for r in runtime.join() {
        r?;
    }
    Ok(StreamResult {
        bytes: shared.3.load(Ordering::Relaxed),
        duration: cfg.duration,
        failed_connections: shared.4.load(Ordering::Relaxed),
        write_errors: shared.5.load(Ordering::Relaxed),
    })
}
