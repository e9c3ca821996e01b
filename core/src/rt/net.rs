//! Sockets for workers: per-worker `SO_REUSEPORT` listeners and tuned TCP streams.
//!
//! # Why `SO_REUSEPORT`
//! Each worker owns its own listening socket on the same address. The kernel hashes incoming
//! connections across them, so accepts need no shared queue, no lock and no hand-off between
//! threads: a connection is served by the worker (and core) that accepted it. The cost: when a
//! worker's listener closes, connections already queued on it are reset, so close listeners only
//! on shutdown.
//!
//! # Only this process's workers share a port
//! `SO_REUSEPORT` would let any socket of the same user join the group and take a share of the
//! connections: a second edge started on the same addresses, or a listener of this process
//! meant for another purpose. [`ListenerSet::bind`] therefore first checks that nothing listens
//! on the address: a probe socket with `SO_REUSEADDR` but without `SO_REUSEPORT` binds it (and
//! is closed at once), which the kernel refuses while any socket listens there. Only then are
//! the worker sockets bound, so a port already held fails with [`RtError::PortInUse`]. What the
//! probe cannot stop is a program started *after* the set that joins with `SO_REUSEPORT`
//! without such a check; every listener of this workspace goes through [`ListenerSet`].
//!
//! # Port 0
//! Every socket must bind the *same* port. [`ListenerSet::bind`] binds the first socket (which
//! resolves `:0` to a real port) and binds the rest to that resolved address, all from the
//! calling thread, holding them so the port stays reserved. Each worker then takes its own
//! socket with [`ListenerSet::take`] and registers it with its own driver, on its own thread.
//!
//! # io_uring rules
//! - Keep one write in flight per socket and loop on short writes.
//! - Never drop an in-flight read or accept future inside `select!` or a timeout: the kernel may
//!   complete it anyway and the data or fd is lost. Give each connection a long-lived reader and
//!   writer task, and end them by closing the socket (or by checking [`super::Shutdown`] between
//!   operations).

use std::{
    io,
    net::{SocketAddr, TcpListener as StdTcpListener},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use compio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use super::RtError;

/// Default listen backlog per worker socket.
pub const DEFAULT_BACKLOG: i32 = 1024;

fn reuseport_std(addr: SocketAddr, backlog: i32) -> io::Result<StdTcpListener> {
    let socket = new_socket(addr)?;
    socket.set_reuse_port(true)?;
    // compio sets it too when it runs on epoll; io_uring does not care. Set it so the socket
    // behaves the same under both drivers.
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Same semantics on every host, whatever net.ipv6.bindv6only says.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Whether some socket (of any process, this one included) listens on `addr`: a bind without
/// `SO_REUSEPORT` fails then. `SO_REUSEADDR` lets the probe pass sockets in `TIME_WAIT`, so a
/// restarted process gets its port back at once. The probe never listens and is closed here.
fn port_held(addr: SocketAddr) -> io::Result<bool> {
    let probe = new_socket(addr)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(true),
        Err(e) => Err(e),
    }
}

/// `n` `SO_REUSEPORT` listening sockets on one address, one per worker, bound up front.
///
/// The set is shared (for example captured by the closure given to
/// [`super::Runtime::start`]); each worker takes its socket once, at startup. The `Mutex` here
/// guards only that one-time hand-over; it is never touched on a per-connection path.
#[derive(Debug)]
pub struct ListenerSet {
    addr: SocketAddr,
    slots: Vec<Mutex<Option<StdTcpListener>>>,
    /// Duplicates of every socket, for [`ListenerSet::shut_down`] after the workers took theirs.
    handles: Vec<Socket>,
    shut: AtomicBool,
}

impl ListenerSet {
    /// Binds `n` sockets on `addr`. If `addr` has port 0, the first socket picks the port and
    /// the others bind that same port. `n` of 0 is raised to 1. Fails with
    /// [`RtError::PortInUse`] when a socket already listens on the address, whoever holds it.
    pub fn bind(addr: SocketAddr, n: usize, backlog: i32) -> Result<Self, RtError> {
        let bind_err = |source| RtError::Bind { addr, source };
        // Port 0 asks the kernel for a port nobody uses: no probe needed.
        if addr.port() != 0 && port_held(addr).map_err(bind_err)? {
            return Err(RtError::PortInUse { addr });
        }
        let first = reuseport_std(addr, backlog).map_err(bind_err)?;
        let resolved = first.local_addr().map_err(bind_err)?;
        let mut slots = Vec::with_capacity(n.max(1));
        let mut handles = Vec::with_capacity(n.max(1));
        handles.push(Socket::from(first.try_clone().map_err(bind_err)?));
        slots.push(Mutex::new(Some(first)));
        for _ in 1..n {
            let l = reuseport_std(resolved, backlog).map_err(|source| RtError::Bind {
                addr: resolved,
                source,
            })?;
            handles.push(Socket::from(l.try_clone().map_err(bind_err)?));
            slots.push(Mutex::new(Some(l)));
        }
        Ok(Self {
            addr: resolved,
            slots,
            handles,
            shut: AtomicBool::new(false),
        })
    }

    /// Stops every socket of the set, taken or not: the kernel refuses new connections on the
    /// address at once and frees it for a new bind, and each worker's pending `accept` fails,
    /// so its accept loop can end (it checks [`ListenerSet::is_shut_down`]) and drop its socket.
    pub fn shut_down(&self) {
        self.shut.store(true, Ordering::Release);
        for h in &self.handles {
            let _ = h.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Whether [`ListenerSet::shut_down`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// The bound address, with the real port when `:0` was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of sockets in the set.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the set holds no sockets (never true for a set from [`ListenerSet::bind`]).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes socket `worker` and registers it with the calling thread's compio runtime. Call it
    /// on that worker. Fails with [`RtError::ListenerTaken`] when already taken or out of range.
    ///
    /// # Panics
    /// When called outside a compio runtime.
    pub fn take(&self, worker: usize) -> Result<TcpListener, RtError> {
        let std = self
            .slots
            .get(worker)
            .and_then(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).take())
            .ok_or(RtError::ListenerTaken { worker })?;
        TcpListener::from_std(std).map_err(|source| RtError::Register { source })
    }
}

/// Socket options for TCP streams: links between edge and connector, and origin sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketTuning {
    /// `TCP_NODELAY`: send small frames at once. Default `true`: the link batches frames itself.
    pub nodelay: bool,
    /// TCP keepalive; `None` leaves it off. Default `Some(Keepalive::default())`.
    pub keepalive: Option<Keepalive>,
    /// `TCP_NOTSENT_LOWAT` in bytes; `None` leaves the kernel default. Default 128 KiB: keeps
    /// the unsent part of the send buffer small, so a multiplexed link's urgent frames (WINDOW,
    /// PING, RESET) do not queue behind megabytes of bulk data.
    pub notsent_lowat: Option<u32>,
}

/// TCP keepalive parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`). Default 30 s.
    pub time: Duration,
    /// Time between probes (`TCP_KEEPINTVL`). Default 10 s.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`). Default 3.
    pub retries: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            retries: 3,
        }
    }
}

/// Default [`SocketTuning::notsent_lowat`].
pub const DEFAULT_NOTSENT_LOWAT: u32 = 128 * 1024;

impl Default for SocketTuning {
    fn default() -> Self {
        Self {
            nodelay: true,
            keepalive: Some(Keepalive::default()),
            notsent_lowat: Some(DEFAULT_NOTSENT_LOWAT),
        }
    }
}

/// Applies `tuning` to a connected (or accepted) stream.
pub fn tune_stream(stream: &TcpStream, tuning: &SocketTuning) -> io::Result<()> {
    let sock = SockRef::from(stream);
    sock.set_tcp_nodelay(tuning.nodelay)?;
    match &tuning.keepalive {
        Some(k) => {
            let params = TcpKeepalive::new()
                .with_time(k.time)
                .with_interval(k.interval)
                .with_retries(k.retries);
            sock.set_tcp_keepalive(&params)?;
        }
        None => sock.set_keepalive(false)?,
    }
    if let Some(lowat) = tuning.notsent_lowat {
        sock.set_tcp_notsent_lowat(lowat)?;
    }
    Ok(())
}

/// Connects to `addr` on the current worker and applies `tuning`.
pub async fn connect(addr: SocketAddr, tuning: &SocketTuning) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    tune_stream(&stream, tuning)?;
    Ok(stream)
}
