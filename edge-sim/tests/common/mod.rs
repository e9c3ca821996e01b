//! A tiny blocking HTTP/1.1 client for the tests (one request per connection).
#![allow(dead_code, missing_docs)]
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Sends one request and returns the status code and body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin API");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(head.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("invalid JSON {body:?}: {e}"))
}

/// A `ringtun-edge` process started by [`spawn_edge`], with the addresses it logged.
pub struct Spawned {
    pub child: std::process::Child,
    pub admin: SocketAddr,
    pub public: SocketAddr,
    /// The first edge server's address (when a `--data-center` was given).
    pub server: Option<SocketAddr>,
    /// The `--metrics` server's address (when one was asked for).
    pub metrics: Option<SocketAddr>,
    pub token: String,
    /// Every line the edge printed on stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts the edge binary `bin` with its state in `state`, its admin API and public HTTP on port
/// 0, and `args`; waits until it has logged every address those ask for, then keeps reading its
/// stderr (so it never blocks on a full pipe) into [`Spawned::log`].
pub fn spawn_edge(bin: &str, state: &std::path::Path, args: &[&str]) -> Spawned {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .arg("--state-dir")
        .arg(state)
        .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringtun-edge");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let field = |line: &str, name: &str| -> Option<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    let want_server = args.contains(&"--data-center");
    let want_metrics = args.contains(&"--metrics");
    let (mut admin, mut public, mut server, mut metrics) = (None, None, None, None);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    while admin.is_none()
        || public.is_none()
        || (want_server && server.is_none())
        || (want_metrics && metrics.is_none())
    {
        let line = lines
            .next()
            .expect("the edge logs its addresses before exiting")
            .expect("read stderr");
        admin = admin.or_else(|| field(&line, "admin"));
        public = public.or_else(|| field(&line, "public_http"));
        server = server.or_else(|| field(&line, "server"));
        metrics = metrics.or_else(|| field(&line, "metrics"));
        log.lock().expect("log lock").push(line);
    }
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().expect("log lock").push(line);
        }
    });
    let token = std::fs::read_to_string(state.join("admin-token")).expect("token file");
    Spawned {
        child,
        admin: admin.expect("admin address"),
        public: public.expect("public HTTP address"),
        server,
        metrics,
        token: token.trim().to_owned(),
        log,
    }
}
