//! The load client of the lifecycle and fault tests: [`Load`] runs GET threads (keep-alive or
//! one connection per request) against the edge's public listener and counts what failed and
//! when; [`get_ok`] waits for a 200. Responses are read with the one client ([`crate::http`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::http::Client;

/// Threads of [`Load::start`]: the most requests in flight at once.
pub const LOAD_CONCURRENCY: usize = 4;
/// Pause between two requests of one load thread.
pub const LOAD_PAUSE: Duration = Duration::from_millis(20);

/// How one request ended badly (read through `Debug` in failure messages).
#[derive(Debug, Clone)]
pub enum Failure {
    /// Could not connect to the edge, or the edge closed the connection without an answer.
    Connection(String),
    /// An answer other than 200.
    Status(u16),
}

/// One failed request: when it started, relative to the load's start, and how it failed.
#[derive(Debug, Clone)]
pub struct Failed {
    /// When it started, relative to [`Load`]'s start.
    pub started: Duration,
    /// How it failed.
    pub failure: Failure,
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub struct Totals {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests that failed.
    pub failed: Vec<Failed>,
    /// Body sizes seen in 200 answers, with counts.
    pub bodies: std::collections::BTreeMap<usize, u64>,
}

impl Totals {
    /// How many failures were connection errors (no answer at all).
    pub fn connection_errors(&self) -> usize {
        self.failed
            .iter()
            .filter(|f| matches!(f.failure, Failure::Connection(_)))
            .count()
    }

    /// Failures of requests that started in `[from, to)` (times relative to the load's start).
    pub fn failed_between(&self, from: Duration, to: Duration) -> Vec<&Failed> {
        self.failed
            .iter()
            .filter(|f| f.started >= from && f.started < to)
            .collect()
    }
}

/// Load threads doing `GET /` with `Host: HOST` to the edge's public listener, each with a
/// [`LOAD_PAUSE`] between requests, until [`Load::finish`]. A keep-alive thread reuses its
/// connection (a new one after an error or `Connection: close`); a new-connection thread opens
/// one per request.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    start: Instant,
    threads: Vec<std::thread::JoinHandle<Totals>>,
}

impl Load {
    /// [`LOAD_CONCURRENCY`] keep-alive threads.
    pub fn start(public: SocketAddr, host: &str) -> Load {
        Load::start_mixed(public, host, LOAD_CONCURRENCY, 0)
    }

    /// `keepalive` keep-alive threads and `fresh` new-connection threads.
    pub fn start_mixed(public: SocketAddr, host: &str, keepalive: usize, fresh: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let start = Instant::now();
        let threads = (0..keepalive + fresh)
            .map(|i| {
                let stop = stop.clone();
                let host = host.to_owned();
                let reuse = i < keepalive;
                std::thread::spawn(move || load_thread(public, &host, reuse, &stop, start))
            })
            .collect();
        Load {
            stop,
            start,
            threads,
        }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops the threads and adds up what they saw.
    pub fn finish(self) -> Totals {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Totals::default();
        for t in self.threads {
            let t = t.join().unwrap();
            all.ok += t.ok;
            all.failed.extend(t.failed);
            for (size, n) in t.bodies {
                *all.bodies.entry(size).or_default() += n;
            }
        }
        all.failed.sort_by_key(|f| f.started);
        all
    }
}

fn load_thread(
    public: SocketAddr,
    host: &str,
    reuse: bool,
    stop: &std::sync::atomic::AtomicBool,
    start: Instant,
) -> Totals {
    let mut totals = Totals::default();
    let mut conn: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = start.elapsed();
        match keepalive_get(&mut conn, public, host, "/") {
            Ok((200, body)) => {
                totals.ok += 1;
                *totals.bodies.entry(body.len()).or_default() += 1;
            }
            Ok((status, _)) => totals.failed.push(Failed {
                started,
                failure: Failure::Status(status),
            }),
            Err(e) => {
                conn = None;
                totals.failed.push(Failed {
                    started,
                    failure: Failure::Connection(e),
                });
            }
        }
        if !reuse {
            conn = None;
        }
        std::thread::sleep(LOAD_PAUSE);
    }
    totals
}

/// One `GET path` with `Host: host` on the keep-alive connection in `conn` (opened when
/// `None`, dropped after an error or `Connection: close`); the status and body.
pub fn keepalive_get(
    conn: &mut Option<Client>,
    public: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Client::try_connect(public)?),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    std::io::Write::write_all(&mut c.stream, req.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let response = match c.try_response(false) {
        Ok(r) => r,
        Err(e) => {
            *conn = None;
            return Err(e);
        }
    };
    let until_close = response.header("content-length").is_none()
        && response.header("transfer-encoding").is_none();
    if response.closes() || until_close {
        *conn = None;
    }
    Ok((response.status, response.body))
}

/// GETs `/` with `Host: host` until the answer is 200 (a fresh or restarted edge answers 503
/// until a connector has registered); returns the body size.
#[track_caller]
pub fn get_ok(public: SocketAddr, host: &str, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut last;
    loop {
        let mut conn = None;
        match keepalive_get(&mut conn, public, host, "/") {
            Ok((200, body)) => return body.len(),
            Ok((status, _)) => last = format!("status {status}"),
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "no 200 from {public} within {within:?}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
