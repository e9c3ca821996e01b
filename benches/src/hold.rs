//! `hold`: opens many connections, makes one exchange on each so that every hop of the path
//! in between has really set the connection up, then keeps them all open and idle.
//!
//! It exists to measure what an idle proxied connection costs a proxy or tunnel: the caller
//! reads the RSS of the processes in between before and while the connections are held.
//! Plain blocking sockets, one after the other: opening is not what is measured, and a
//! thousand sockets need no runtime.
//!
//! Protocol on stdout, for scripts: `holding N connections` once all are open (flushed),
//! then after the hold `held N connections for Ds: K still open, C closed by the peer`.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    time::{Duration, Instant},
};

use crate::{
    LoadError,
    cli::{HoldArgs, HoldProto},
    http::{RequestSpec, ResponseParser, Step, Target},
};

/// Bytes sent and expected back on each connection in `echo` mode.
const ECHO_PROBE: &[u8; 16] = b"ringtun-hold-123";

/// What to send on a new connection and how to tell the answer is complete.
enum Exchange {
    Http { request: Vec<u8> },
    Echo,
    Connect,
}

/// Runs `hold`. Returns whether every connection was opened and still open at the end.
pub fn run(a: &HoldArgs) -> Result<bool, LoadError> {
    if a.connections == 0 {
        return Err(LoadError::BadOption {
            option: "--connections",
            reason: "must be at least 1".to_owned(),
        });
    }
    let (addr, exchange) = match a.proto {
        HoldProto::Http => {
            let t = Target::parse(&a.target)?;
            let spec = RequestSpec {
                method: "GET".to_owned(),
                path: t.path.clone(),
                host: a.host.clone().unwrap_or_else(|| t.authority.clone()),
                headers: Vec::new(),
                body: Vec::new(),
            };
            (
                t.addr,
                Exchange::Http {
                    request: spec.encode(),
                },
            )
        }
        HoldProto::Echo | HoldProto::Connect => {
            let addr = crate::http::resolve(&a.target).ok_or_else(|| LoadError::BadTarget {
                target: a.target.clone(),
                reason: "expected a resolvable host:port",
            })?;
            let ex = if a.proto == HoldProto::Echo {
                Exchange::Echo
            } else {
                Exchange::Connect
            };
            (addr, ex)
        }
    };
    let began = Instant::now();
    let mut held = Vec::with_capacity(a.connections);
    let mut failed = 0usize;
    let mut first_error = None;
    for _ in 0..a.connections {
        match open_one(addr, &exchange, a.timeout) {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "holding {} connections (opened in {:.2}s){}",
            held.len(),
            began.elapsed().as_secs_f64(),
            if failed > 0 {
                format!(
                    ", {failed} failed; first error: {}",
                    first_error.unwrap_or_default()
                )
            } else {
                String::new()
            }
        );
        let _ = out.flush();
    }
    if a.duration.is_zero() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::thread::sleep(a.duration);
    let closed = held.iter().filter(|s| !still_open(s)).count();
    println!(
        "held {} connections for {:.1}s: {} still open, {closed} closed by the peer",
        held.len(),
        a.duration.as_secs_f64(),
        held.len() - closed
    );
    for s in &held {
        let _ = s.shutdown(Shutdown::Both);
    }
    Ok(failed == 0 && closed == 0)
}

/// Connects and makes the exchange; returns the connection, idle, or what went wrong.
fn open_one(
    addr: std::net::SocketAddr,
    exchange: &Exchange,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| format!("read timeout: {e}"))?;
    match exchange {
        Exchange::Connect => {}
        Exchange::Echo => {
            s.write_all(ECHO_PROBE).map_err(|e| format!("write: {e}"))?;
            let mut got = [0u8; ECHO_PROBE.len()];
            s.read_exact(&mut got).map_err(|e| format!("read: {e}"))?;
            if &got != ECHO_PROBE {
                return Err("the echo differs from what was sent".to_owned());
            }
        }
        Exchange::Http { request } => {
            s.write_all(request).map_err(|e| format!("write: {e}"))?;
            read_response(&mut s)?;
        }
    }
    Ok(s)
}

/// Reads one HTTP response; fails unless it is complete, 2xx/3xx and keeps the connection.
fn read_response(s: &mut TcpStream) -> Result<(), String> {
    let mut parser = ResponseParser::new(false);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match parser
            .feed(&buf)
            .map_err(|e| format!("bad response: {e}"))?
        {
            Step::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
            Step::Done { .. } => {
                let info = parser.info();
                if !(200..400).contains(&info.status) {
                    return Err(format!("status {}", info.status));
                }
                if info.close {
                    return Err("the response closes the connection".to_owned());
                }
                return Ok(());
            }
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response ended".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the peer has not closed the connection (nothing readable, no EOF, no error).
fn still_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
