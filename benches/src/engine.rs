//! The load engine for request/response modes (`http`, `tcp-rr`): thread-per-core workers,
//! one task per connection, open or closed loop.
//!
//! # Shape
//! Connections are numbered globally; connection `i` lives on worker `i mod threads` and follows
//! its slot of the open-loop schedule ([`crate::schedule`]). Each worker first connects all its
//! connections, then all workers meet at a barrier and share one start instant, so the
//! schedule is one evenly spaced stream across threads.
//!
//! A connection keeps one request in flight (HTTP/1.1 keep-alive, no pipelining; with
//! `new_connection`, one request per connection, then a fresh connect). When its
//! previous response is late, the next request goes out at once and its latency still counts
//! from its intended time. `--rate 0` is closed loop: the intended time is the send time.
//!
//! # Timeouts without dropping IO futures
//! A read or write in flight is never cancelled (that loses data under io_uring). Instead a
//! per-worker watchdog looks at every connection's send time and, past `--timeout`, shuts the
//! socket down; the blocked read then returns, the connection task sees the timeout flag,
//! records the request as a timeout *with its latency*, and reconnects.
//!
//! # Recording
//! Each worker has one [`Samples`] shared by its connection tasks (single thread, so a
//! `RefCell` borrowed between awaits only). Requests whose intended time falls in the warmup
//! are not recorded. Progress is published through relaxed atomic counters that the main
//! thread prints once a second.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::{
        Arc, Barrier, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use ringtun_core::rt::{self, RuntimeConfig, WorkerCtx, net::SocketTuning};

use crate::{
    LoadError,
    hist::Samples,
    http::{MessageInfo, ResponseParser, Step},
    schedule::{ConnSchedule, wait_until},
};

/// What each request is.
#[derive(Debug, Clone)]
pub enum Workload {
    /// An HTTP/1.1 request, pre-encoded.
    Http {
        /// The request bytes.
        request: Vec<u8>,
        /// The method is HEAD (responses have no body).
        head: bool,
    },
    /// `size` bytes echoed back by the target.
    Echo {
        /// Bytes per request (and per response).
        size: usize,
    },
}

/// A load run's settings, validated.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to connect.
    pub addr: SocketAddr,
    /// What to send.
    pub workload: Workload,
    /// Worker threads (capped at the connection count).
    pub threads: usize,
    /// Connections in total.
    pub connections: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unrecorded time before the measured window.
    pub warmup: Duration,
    /// Target requests per second in total; 0 means closed loop.
    pub rate: f64,
    /// A request without a full response after this long is a timeout.
    pub timeout: Duration,
    /// Spin this long before each deadline instead of trusting the timer.
    pub spin: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Pin worker *i* to the *i*-th allowed core. Turn off (or use `taskset`) when the
    /// generator shares the machine with a pinned origin.
    pub pin: bool,
    /// Close each connection after one exchange and open a new one for the next, so the
    /// rate measured is a new-connection rate (the connect is outside the latency, inside
    /// the rate).
    pub new_connection: bool,
}

impl LoadConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |option, reason: &str| {
            Err(LoadError::BadOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.connections == 0 {
            return bad("--connections", "must be at least 1");
        }
        if self.threads == 0 {
            return bad("--threads", "must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return bad("--rate", "must be a non-negative number");
        }
        if self.duration.is_zero() {
            return bad("--duration", "must be positive");
        }
        if self.timeout.is_zero() {
            return bad("--timeout", "must be positive");
        }
        if let Workload::Echo { size: 0 } = self.workload {
            return bad("--size", "must be at least 1");
        }
        Ok(())
    }

    /// Threads really used: no more than connections.
    pub fn effective_threads(&self) -> usize {
        self.threads.min(self.connections).max(1)
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// All workers' samples, merged.
    pub samples: Samples,
    /// Connections that could not be established at start.
    pub failed_initial_connections: u64,
    /// Threads used.
    pub threads: usize,
    /// The IO driver of the workers (`io_uring` or `epoll`).
    pub driver: String,
}

/// Live counters of one worker, read by the progress printer.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) responses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) done: AtomicBool,
}

struct Shared {
    cfg: LoadConfig,
    threads: usize,
    barrier: Barrier,
    start: OnceLock<Instant>,
    progress: Vec<Progress>,
    failed_initial: AtomicU64,
}

/// Socket options of load connections: no delay, no keepalive probes.
pub(crate) fn tuning() -> SocketTuning {
    SocketTuning {
        nodelay: true,
        keepalive: None,
        notsent_lowat: None,
    }
}

/// Runs a load test to completion.
pub fn run(cfg: &LoadConfig) -> Result<RunResult, LoadError> {
    cfg.validate()?;
    let threads = cfg.effective_threads();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        threads,
        barrier: Barrier::new(threads),
        start: OnceLock::new(),
        progress: (0..threads).map(|_| Progress::default()).collect(),
        failed_initial: AtomicU64::new(0),
    });
    let rt_cfg = RuntimeConfig {
        workers: Some(threads),
        pin: cfg.pin,
        ..RuntimeConfig::from_env()?
    };
    let sh = shared.clone();
    let runtime = rt::Runtime::start(rt_cfg, move |ctx: WorkerCtx| {
        let sh = sh.clone();
        async move { worker(ctx.index(), sh).await }
    })?;
    let driver = runtime
        .drivers()
        .first()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
    watch_progress(&shared.progress, cfg, &shared.start);
    let mut samples = Samples::new();
    for r in runtime.join() {
        samples.merge(&r?);
    }
    Ok(RunResult {
        samples,
        failed_initial_connections: shared.failed_initial.load(Ordering::Relaxed),
        threads,
        driver,
    })
}

/// Prints a progress line every second until every worker is done.
pub(crate) fn watch_progress(progress: &[Progress], cfg: &LoadConfig, start: &OnceLock<Instant>) {
    let began = Instant::now();
    let mut next = began + Duration::from_secs(1);
    let mut last = 0u64;
    while !progress.iter().all(|p| p.done.load(Ordering::Acquire)) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if now < next {
            continue;
        }
        next += Duration::from_secs(1);
        if !cfg.progress {
            continue;
        }
        let total: u64 = progress
            .iter()
            .map(|p| p.responses.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = progress
            .iter()
            .map(|p| p.errors.load(Ordering::Relaxed))
            .sum();
        let t = now
            .saturating_duration_since(start.get().copied().unwrap_or(began))
            .as_secs_f64();
        let phase = if t < cfg.warmup.as_secs_f64() {
            "warmup"
        } else {
            "run"
        };
        let target = if cfg.rate > 0.0 {
            format!("{:.0}", cfg.rate)
        } else {
            "closed loop".to_owned()
        };
        eprintln!(
            "[{t:6.1}s {phase}] {} req/s (target {target}), {errors} errors",
            total - last
        );
        last = total;
    }
}

/// Per-connection state the watchdog can see.
#[derive(Default)]
struct ConnState {
    sent_at: Cell<Option<Instant>>,
    timed_out: Cell<bool>,
    stream: RefCell<Option<TcpStream>>,
}

struct Times {
    start: Instant,
    measure_start: Instant,
    end: Instant,
}

async fn worker(index: usize, sh: Arc<Shared>) -> Samples {
    let cfg = &sh.cfg;
    let mine: Vec<u64> = (0..cfg.connections as u64)
        .filter(|i| *i as usize % sh.threads == index)
        .collect();
    let mut streams = Vec::with_capacity(mine.len());
    for _ in &mine {
        match rt::net::connect(cfg.addr, &tuning()).await {
            Ok(s) => streams.push(Some(s)),
            Err(e) => {
                tracing::debug!(error = %e, "initial connect failed");
                sh.failed_initial.fetch_add(1, Ordering::Relaxed);
                streams.push(None);
            }
        }
    }
    // Once, at start, before any task runs on this worker: blocking here stalls nothing.
    sh.barrier.wait();
    let start = *sh
        .start
        .get_or_init(|| Instant::now() + Duration::from_millis(10));
    let measure_start = start + cfg.warmup;
    let times = Rc::new(Times {
        start,
        measure_start,
        end: measure_start + cfg.duration,
    });
    let samples = Rc::new(RefCell::new(Samples::new()));
    let states: Rc<Vec<Rc<ConnState>>> =
        Rc::new(mine.iter().map(|_| Rc::new(ConnState::default())).collect());
    let finished = Rc::new(Cell::new(false));
    let dog = compio::runtime::spawn(watchdog(states.clone(), cfg.timeout, finished.clone()));
    let mut tasks = Vec::with_capacity(mine.len());
    for ((conn, stream), state) in mine.iter().zip(streams).zip(states.iter()) {
        *state.stream.borrow_mut() = stream.clone();
        tasks.push(compio::runtime::spawn(conn_task(
            *conn,
            stream,
            state.clone(),
            sh.clone(),
            index,
            samples.clone(),
            times.clone(),
        )));
    }
    for t in tasks {
        if t.await.is_err() {
            tracing::error!("a connection task panicked");
        }
    }
    finished.set(true);
    let _ = dog.await;
    sh.progress[index].done.store(true, Ordering::Release);
    samples.borrow().clone()
}

async fn watchdog(states: Rc<Vec<Rc<ConnState>>>, timeout: Duration, finished: Rc<Cell<bool>>) {
    let tick = (timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(10));
    while !finished.get() {
        compio::time::sleep(tick).await;
        let now = Instant::now();
        for s in states.iter() {
            if let Some(sent) = s.sent_at.get()
                && !s.timed_out.get()
                && now.saturating_duration_since(sent) >= timeout
            {
                s.timed_out.set(true);
                if let Some(stream) = s.stream.borrow().as_ref() {
                    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Write,
    Read,
    Protocol,
}

/// Buffers and parser of one connection.
struct Io {
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    parser: ResponseParser,
}

#[allow(clippy::too_many_arguments)]
async fn conn_task(
    conn: u64,
    mut stream: Option<TcpStream>,
    state: Rc<ConnState>,
    sh: Arc<Shared>,
    worker: usize,
    samples: Rc<RefCell<Samples>>,
    times: Rc<Times>,
) {
    let cfg = &sh.cfg;
    let open = cfg.rate > 0.0;
    let mut sched = ConnSchedule::new(
        times.start,
        conn,
        cfg.connections as u64,
        if open { cfg.rate } else { 1.0 },
    );
    let (wbuf, head) = match &cfg.workload {
        Workload::Http { request, head } => (request.clone(), *head),
        Workload::Echo { size } => ((0..*size).map(|i| (i % 251) as u8).collect(), false),
    };
    let mut io = Io {
        wbuf,
        rbuf: Vec::with_capacity(64 * 1024),
        parser: ResponseParser::new(head),
    };
    let progress = &sh.progress[worker];
    if !open {
        wait_until(times.start, cfg.spin).await;
    }
    loop {
        if Instant::now() >= times.end {
            break;
        }
        let Some(s) = stream.as_mut() else {
            match rt::net::connect(cfg.addr, &tuning()).await {
                Ok(s) => {
                    *state.stream.borrow_mut() = Some(s.clone());
                    stream = Some(s);
                    io.rbuf.clear();
                    io.parser.reset();
                }
                Err(_) => {
                    if Instant::now() >= times.measure_start {
                        samples.borrow_mut().counters.connect_errors += 1;
                    }
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    compio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            continue;
        };
        let intended = if open {
            let t = sched.next_intended();
            if t >= times.end {
                break;
            }
            if t > Instant::now() {
                wait_until(t, cfg.spin).await;
                if t >= times.measure_start {
                    samples.borrow_mut().record_lag(Instant::now() - t);
                }
            }
            t
        } else {
            Instant::now()
        };
        let sent = Instant::now();
        state.timed_out.set(false);
        state.sent_at.set(Some(sent));
        let (outcome, written, read) = exchange(s, &mut io, &cfg.workload).await;
        state.sent_at.set(None);
        let done = Instant::now();
        let measured = intended >= times.measure_start;
        let timed_out = state.timed_out.get();
        let mut drop_conn = timed_out;
        {
            let mut smp = samples.borrow_mut();
            if measured {
                smp.counters.bytes_written += written;
                smp.counters.bytes_read += read;
            }
            let second =
                (intended.saturating_duration_since(times.measure_start)).as_secs() as usize;
            match (timed_out, outcome) {
                (true, _) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    if measured {
                        smp.counters.timeouts += 1;
                        smp.record(done - intended, done - sent, second);
                    }
                }
                (false, Ok(info)) => {
                    progress.responses.fetch_add(1, Ordering::Relaxed);
                    drop_conn = info.close || cfg.new_connection;
                    if measured {
                        smp.counters.responses += 1;
                        if matches!(cfg.workload, Workload::Http { .. })
                            && !(200..400).contains(&info.status)
                        {
                            smp.counters.non_2xx_3xx += 1;
                        }
                        smp.record(done - intended, done - sent, second);
                    }
                }
                (false, Err(f)) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    drop_conn = true;
                    if measured {
                        match f {
                            Fail::Write => smp.counters.write_errors += 1,
                            Fail::Read => smp.counters.read_errors += 1,
                            Fail::Protocol => smp.counters.protocol_errors += 1,
                        }
                    }
                }
            }
        }
        if drop_conn {
            state.stream.borrow_mut().take();
            stream = None;
        }
    }
    state.stream.borrow_mut().take();
}

/// Sends one request and reads its response. Returns the outcome and the bytes written and
/// read.
async fn exchange(
    s: &mut TcpStream,
    io: &mut Io,
    workload: &Workload,
) -> (Result<MessageInfo, Fail>, u64, u64) {
    let wbuf = std::mem::take(&mut io.wbuf);
    let len = wbuf.len() as u64;
    let BufResult(res, wbuf) = s.write_all(wbuf).await;
    io.wbuf = wbuf;
    if res.is_err() {
        return (Err(Fail::Write), 0, 0);
    }
    let mut read = 0u64;
    let mut echo_left = match workload {
        Workload::Echo { size } => *size,
        Workload::Http { .. } => 0,
    };
    loop {
        match workload {
            Workload::Http { .. } => match io.parser.feed(&io.rbuf) {
                Ok(Step::NeedMore { consumed }) => {
                    io.rbuf.drain(..consumed);
                }
                Ok(Step::Done { consumed }) => {
                    io.rbuf.drain(..consumed);
                    let info = io.parser.info();
                    io.parser.reset();
                    if !io.rbuf.is_empty() {
                        // Bytes nobody asked for: the peer is confused.
                        return (Err(Fail::Protocol), len, read);
                    }
                    return (Ok(info), len, read);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bad response");
                    return (Err(Fail::Protocol), len, read);
                }
            },
            Workload::Echo { .. } => {
                let got = io.rbuf.len();
                io.rbuf.clear();
                if got > echo_left {
                    return (Err(Fail::Protocol), len, read);
                }
                echo_left -= got;
                if echo_left == 0 {
                    return (Ok(MessageInfo::default()), len, read);
                }
            }
        }
        if io.rbuf.capacity() - io.rbuf.len() < 4096 {
            io.rbuf.reserve(64 * 1024);
        }
        let rbuf = std::mem::take(&mut io.rbuf);
        let BufResult(res, rbuf) = s.append(rbuf).await;
        io.rbuf = rbuf;
        match res {
            Ok(0) => {
                if let Workload::Http { .. } = workload
                    && io.parser.finish_eof().is_ok()
                {
                    let mut info = io.parser.info();
                    info.close = true;
                    io.parser.reset();
                    return (Ok(info), len, read);
                }
                return (Err(Fail::Read), len, read);
            }
            Ok(n) => read += n as u64,
            Err(_) => return (Err(Fail::Read), len, read),
        }
    }
}
