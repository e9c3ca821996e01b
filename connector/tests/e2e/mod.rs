//! The end-to-end harness: real `ringtun-edge`, `ringtun` and `ringtun-load` processes on
//! loopback, driven through the flags and log lines of the process contract
//! (`tunnel-contract.md`, "Processes and flags").
//!
//! - [`Edge::start`] runs an edge with every listener on port 0, its link servers on loopback
//!   addresses of their own per test (`127.1.N.x`, `127.2.N.x`), and reads the bound addresses from
//!   its log. [`Edge::restart`] starts it again on the same state directory and addresses.
//! - [`Tunnel::create`] and [`Tunnel::route_dns`]/[`Tunnel::route_tcp`] use the `ringtun` CLI.
//! - [`Connector::run`] starts `ringtun tunnel run`; [`Edge::wait_connectors`] polls `tunnel info`.
//! - [`Origin::start`] runs `ringtun-load origin`.
//! - [`http_get`] and [`send_raw`] are plain `std::net` clients.
//! - [`RssSampler`] records the peak RSS of processes while a test runs (`/proc/PID/status`).
//! - [`Load`] is a bounded GET client (keep-alive and new-connection threads) that counts what
//!   failed and when; [`get_ok`] waits for a 200. [`Edge::admin_request`] calls the admin API
//!   directly, for what the CLI has no command for (fault injection, `/faults`).
//!
//! Every process is a [`Proc`], which stops its child (SIGTERM, then SIGKILL) when dropped, so a
//! failing assertion leaves nothing running. The child's output is in a log file in the test's
//! temporary directory and quoted by the harness's panics.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use ringtun_connector::demo::{Binaries, Proc, log_field};

/// The in-test origin shared with the fake-edge tests (`run_common/origin.rs`): keep-alive,
/// bodies both ways, a connection count and the request heads it saw.
#[path = "../run_common/origin.rs"]
pub mod origin;
#[allow(unused_imports)]
pub use origin::TestOrigin;

/// The most a process may take to start or a condition to become true. Generous: the machine
/// is shared and debug builds are slow; no test asserts on how long anything took.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serializes the fallback `cargo build` of the sibling binaries between a binary's tests.
static BUILD: Mutex<()> = Mutex::new(());

/// The built binaries: `ringtun` from cargo, `ringtun-edge` and `ringtun-load` next to it (built
/// with the same profile and target directory when `cargo test -p ringtun-connector` has not).
pub fn binaries() -> Binaries {
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    Binaries::locate(Path::new(env!("CARGO_BIN_EXE_ringtun")))
        .unwrap_or_else(|e| panic!("cannot find or build the binaries: {e}"))
}

/// A third address octet no other edge of this test binary uses (and, mixed with the process ID,
/// unlikely to be used by another test binary running at the same time).
fn next_octet() -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id();
    (n % 250 + 1) as u8
}

/// Options of [`Edge::start_with`].
#[derive(Debug, Clone, Default)]
pub struct EdgeOptions {
    /// `--danger-plaintext-links` (edge and connectors must agree).
    pub plaintext: bool,
    /// `--connector-limit`.
    pub connector_limit: Option<usize>,
    /// `--workers` (default: one per core).
    pub workers: Option<usize>,
    /// More `ringtun-edge` flags, as given.
    pub extra: Vec<String>,
}

/// The addresses an edge logged.
#[derive(Debug, Clone)]
pub struct EdgeAddrs {
    /// The admin API.
    pub admin: SocketAddr,
    /// The link servers as (data center, address), in logging order.
    pub servers: Vec<(String, SocketAddr)>,
}

/// A running `ringtun-edge`.
pub struct Edge {
    /// The process (stopped on drop).
    pub proc: Proc,
    /// The test's directory: `state/` is the edge's, `home/` the connectors' `HOME`.
    pub dir: PathBuf,
    /// The admin API address.
    pub admin: SocketAddr,
    /// The admin token.
    pub token: String,
    /// The options it was started with.
    pub options: EdgeOptions,
    /// The data centers' server addresses as given on the command line.
    dc_args: Vec<String>,
    public_http_arg: String,
    restarts: u32,
    bins: Binaries,
}

impl Edge {
    /// Starts an edge in `dir` with TLS links and default limits.
    pub fn start(dir: &Path) -> Edge {
        Edge::start_with(dir, EdgeOptions::default())
    }

    /// Starts an edge in `dir`: admin and public HTTP on `127.0.0.1:0`, data centers `dfw` and
    /// `mci` with two servers each on this test's own loopback addresses, port 0.
    pub fn start_with(dir: &Path, options: EdgeOptions) -> Edge {
        let n = next_octet();
        let dc_args = vec![
            format!("dfw=127.1.{n}.1:0,127.1.{n}.2:0"),
            format!("mci=127.2.{n}.1:0,127.2.{n}.2:0"),
        ];
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Edge::spawn(
            dir,
            options,
            "127.0.0.1:0".to_owned(),
            "127.0.0.1:0".to_owned(),
            dc_args,
            0,
            binaries(),
        )
    }

    fn spawn(
        dir: &Path,
        options: EdgeOptions,
        admin_arg: String,
        public_http_arg: String,
        dc_args: Vec<String>,
        restarts: u32,
        bins: Binaries,
    ) -> Edge {
        let mut cmd = Command::new(&bins.edge);
        cmd.arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--admin", &admin_arg, "--public-http", &public_http_arg])
            .env("RUST_LOG", "info")
            .current_dir(dir);
        for dc in &dc_args {
            cmd.args(["--data-center", dc]);
        }
        if options.plaintext {
            cmd.arg("--danger-plaintext-links");
        }
        if let Some(limit) = options.connector_limit {
            cmd.args(["--connector-limit", &limit.to_string()]);
        }
        if let Some(workers) = options.workers {
            cmd.args(["--workers", &workers.to_string()]);
        }
        cmd.args(&options.extra);
        let log = dir.join(format!("edge-{restarts}.log"));
        let proc = Proc::spawn("ringtun-edge", cmd, &log, false)
            .unwrap_or_else(|e| panic!("cannot start ringtun-edge: {e}"));
        let admin: SocketAddr = wait_for(&proc, "the edge's admin address", |l| {
            if l.contains("admin API listening") {
                log_field(l, "admin")?.parse().ok()
            } else {
                None
            }
        });
        let token = std::fs::read_to_string(dir.join("state").join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        Edge {
            proc,
            dir: dir.to_owned(),
            admin,
            token,
            options,
            dc_args,
            public_http_arg,
            restarts,
            bins,
        }
    }

    /// The connectors' `HOME` (credentials land in `HOME/.ringtun`).
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// The public HTTP listener, from the `public_http=` log line.
    pub fn public_http(&self) -> SocketAddr {
        wait_for(&self.proc, "the edge's public HTTP address", |l| {
            log_field(l, "public_http")?.parse().ok()
        })
    }

    /// The link servers, from the `edge server listening data_center=.. server=..` lines: waits
    /// until every configured server has been logged.
    pub fn servers(&self) -> Vec<(String, SocketAddr)> {
        let expected: usize = self.dc_args.iter().map(|dc| dc.split(',').count()).sum();
        let mut found = Vec::new();
        wait_for(&self.proc, "every edge server address", |l| {
            if l.contains("edge server listening")
                && let (Some(dc), Some(addr)) =
                    (log_field(l, "data_center"), log_field(l, "server"))
                && let Ok(addr) = addr.parse::<SocketAddr>()
            {
                found.push((dc.to_owned(), addr));
            }
            (found.len() >= expected).then_some(())
        });
        found
    }

    /// Stops the edge (SIGTERM, then SIGKILL) and starts it again with the same state directory,
    /// on the addresses the first run bound, so connectors find it where it was.
    pub fn restart(self) -> Edge {
        self.restart_after(|| ()).0
    }

    /// [`Edge::restart`] that runs `between` while the edge is down, and returns its result.
    pub fn restart_after<T>(self, between: impl FnOnce() -> T) -> (Edge, T) {
        let admin_arg = self.admin.to_string();
        let public_arg = self.public_http().to_string();
        let servers = self.servers();
        let dc_args: Vec<String> = ["dfw", "mci"]
            .iter()
            .map(|dc| {
                let addrs: Vec<String> = servers
                    .iter()
                    .filter(|(d, _)| d == dc)
                    .map(|(_, a)| a.to_string())
                    .collect();
                format!("{dc}={}", addrs.join(","))
            })
            .collect();
        let Edge {
            mut proc,
            dir,
            options,
            restarts,
            bins,
            ..
        } = self;
        proc.stop(ringtun_connector::demo::STOP_GRACE);
        drop(proc);
        let between = between();
        let edge = Edge::spawn(
            &dir,
            options,
            admin_arg,
            public_arg,
            dc_args,
            restarts + 1,
            bins,
        );
        (edge, between)
    }

    /// `ringtun --edge-api ADMIN ARGS...` with `HOME` = [`Edge::home`] and the admin token.
    pub fn ringtun(&self, args: &[&str]) -> Output {
        self.ringtun_cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ringtun: {e}"))
    }

    /// The command [`Edge::ringtun`] runs, for callers that spawn it instead.
    pub fn ringtun_cmd(&self, args: &[&str]) -> Command {
        let home = self.home();
        let mut cmd = Command::new(&self.bins.ringtun);
        cmd.env_clear()
            .env("HOME", &home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("RINGTUN_API_TOKEN", &self.token)
            .current_dir(&home)
            .args(["--edge-api", &self.admin.to_string()])
            .args(args);
        cmd
    }

    /// `tunnel info TUNNEL -o json`.
    pub fn tunnel_info(&self, tunnel: &str) -> serde_json::Value {
        let out = ok(self.ringtun(&["tunnel", "info", tunnel, "-o", "json"]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tunnel info JSON: {e}\n{out}"))
    }

    /// `METHOD PATH` on the admin API with the bearer token and no body (`Connection: close`),
    /// like `POST /faults/data-centers/dfw/down`; the parsed response, whatever its status.
    pub fn admin_request(&self, method: &str, path: &str) -> Response {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.admin, self.token
        );
        let raw = send_raw(self.admin, req.as_bytes());
        parse_response(&raw).unwrap_or_else(|e| {
            panic!(
                "bad admin API response to {method} {path}: {e}\n{}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// Waits until `tunnel info` lists exactly `n` connectors of `tunnel` (each with at least one
    /// link when `n > 0`); returns the info.
    pub fn wait_connectors(&self, tunnel: &str, n: usize) -> serde_json::Value {
        self.wait_connectors_within(tunnel, n, STEP_TIMEOUT)
    }

    /// [`Edge::wait_connectors`] with its own bound, for tests that start many connectors.
    pub fn wait_connectors_within(
        &self,
        tunnel: &str,
        n: usize,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.tunnel_info(tunnel);
            let connectors = info["connectors"].as_array().cloned().unwrap_or_default();
            let linked = connectors
                .iter()
                .filter(|c| c["links"].as_array().is_some_and(|l| !l.is_empty()))
                .count();
            if connectors.len() == n && linked == n {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {n} connectors of {tunnel}; last info: {info:#}\n\
                 edge log:{}",
                self.proc.tail(20)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits for a line of `proc` that `pick` accepts; panics with the child's last lines otherwise.
#[track_caller]
pub fn wait_for<T>(proc: &Proc, what: &str, pick: impl FnMut(&str) -> Option<T>) -> T {
    proc.wait_line(STEP_TIMEOUT, None, pick)
        .unwrap_or_else(|why| panic!("waiting for {what}: {why}; last lines:{}", proc.tail(30)))
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tunnel created through the CLI.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// Its name.
    pub name: String,
    /// Its ID.
    pub id: String,
}

impl Tunnel {
    /// `ringtun tunnel create NAME`.
    pub fn create(edge: &Edge, name: &str) -> Tunnel {
        let out = ok(edge.ringtun(&["tunnel", "create", name]));
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("Created tunnel {name} with id ")))
            .unwrap_or_else(|| panic!("no tunnel ID in: {out}"))
            .trim()
            .to_owned();
        Tunnel {
            name: name.to_owned(),
            id,
        }
    }

    /// `ringtun tunnel route dns NAME HOSTNAME`.
    pub fn route_dns(&self, edge: &Edge, hostname: &str) {
        ok(edge.ringtun(&["tunnel", "route", "dns", &self.name, hostname]));
    }

    /// `ringtun tunnel route tcp NAME PORT`.
    pub fn route_tcp(&self, edge: &Edge, port: u16) {
        ok(edge.ringtun(&["tunnel", "route", "tcp", &self.name, &port.to_string()]));
    }
}

/// What a connector serves.
#[derive(Debug, Clone)]
pub enum Service {
    /// `--url URL`.
    Url(String),
    /// `--config FILE`.
    Config(PathBuf),
}

/// A running `ringtun tunnel run`.
pub struct Connector {
    /// The process (stopped on drop).
    pub proc: Proc,
    /// The connector ID it logged.
    pub id: String,
}

impl Connector {
    /// Starts `ringtun tunnel run TUNNEL --url URL | --config FILE` against `edge` and waits for
    /// its `Generated Connector ID:` line.
    pub fn run(edge: &Edge, tunnel: &Tunnel, service: &Service) -> Connector {
        Connector::run_args(edge, tunnel, service, &[])
    }

    /// [`Connector::run`] with extra `tunnel run` flags (like `--ha-connections 4`).
    pub fn run_args(edge: &Edge, tunnel: &Tunnel, service: &Service, extra: &[&str]) -> Connector {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut cmd = edge.ringtun_cmd(&["tunnel", "run", &tunnel.name]);
        match service {
            Service::Url(url) => cmd.args(["--url", url]),
            Service::Config(file) => cmd.arg("--config").arg(file),
        };
        if edge.options.plaintext {
            cmd.arg("--danger-plaintext-links");
        }
        cmd.args(extra);
        let log = edge.dir.join(format!("connector-{n}.log"));
        let proc = Proc::spawn(&format!("connector-{n}"), cmd, &log, false)
            .unwrap_or_else(|e| panic!("cannot start ringtun tunnel run: {e}"));
        let id = wait_for(&proc, "the connector ID", |l| {
            l.split_once("Generated Connector ID:")
                .map(|(_, id)| id.trim().to_owned())
        });
        Connector { proc, id }
    }

    /// Waits until the connector has logged `n` `link registered` lines in total.
    pub fn wait_links(&self, n: usize) {
        let mut seen = 0;
        wait_for(&self.proc, "registered links", |l| {
            if l.contains("link registered") {
                seen += 1;
            }
            (seen >= n).then_some(())
        });
    }
}

/// A running `ringtun-load origin`.
pub struct Origin {
    /// The process (stopped on drop).
    pub proc: Proc,
    /// The HTTP address, when started with HTTP.
    pub http: Option<SocketAddr>,
    /// The TCP echo address, when started with `--tcp`.
    pub tcp: Option<SocketAddr>,
}

impl Origin {
    /// Starts an HTTP origin (`--echo` answers with the request body) on `127.0.0.1:0`.
    pub fn start(dir: &Path, echo: bool) -> Origin {
        let mut args = vec!["--http", "127.0.0.1:0"];
        if echo {
            args.push("--echo");
        }
        Origin::start_args(dir, &args)
    }

    /// Starts a TCP echo origin on `127.0.0.1:0`.
    pub fn start_tcp_echo(dir: &Path) -> Origin {
        Origin::start_args(dir, &["--tcp", "127.0.0.1:0"])
    }

    /// Starts `ringtun-load origin ARGS...` and waits for the addresses of the listeners it names.
    pub fn start_args(dir: &Path, args: &[&str]) -> Origin {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(binaries().load);
        cmd.arg("origin")
            .args(args)
            .args(["--threads", "1", "--no-pin"]);
        let log = dir.join(format!("origin-{n}.log"));
        let proc = Proc::spawn("ringtun-load origin", cmd, &log, false)
            .unwrap_or_else(|e| panic!("cannot start ringtun-load origin: {e}"));
        let want = |kind: &str| args.contains(&format!("--{kind}").as_str());
        let addr = |kind: &str| {
            let prefix = format!("listening {kind} ");
            wait_for(&proc, &format!("the origin's {kind} address"), |l| {
                l.strip_prefix(&prefix)?.trim().parse::<SocketAddr>().ok()
            })
        };
        let http = want("http").then(|| addr("http"));
        let tcp = want("tcp").then(|| addr("tcp"));
        Origin { proc, http, tcp }
    }

    /// `http://ADDR` of the HTTP listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.http.expect("started with --http"))
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies decoded).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects to `addr`, writes `request` as is, half-closes nothing, and reads until the peer
/// closes (send `Connection: close`) or 30 s of silence.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// `GET PATH` with `Host: HOST` and `Connection: close`, parsed.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Response {
    http_get_with(addr, host, path, &[])
}

/// [`http_get`] with extra headers.
pub fn http_get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = send_raw(addr, req.as_bytes());
    parse_response(&raw).unwrap_or_else(|e| {
        panic!(
            "bad response from {addr}: {e}\n{}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Parses one complete response (head, then a Content-Length, chunked or until-close body).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty head")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        rest.get(..len)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("no chunk size line")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("short chunk")?);
        rest = rest.get(size + 2..).ok_or("no chunk end")?;
    }
}

/// An in-test origin on `127.0.0.1:0` that answers every request with its own head as the body
/// (so a test sees the headers the connector sent), keeps connections alive, and answers an
/// `Upgrade: websocket` request with `101` and then echoes raw bytes until the peer closes.
/// Its threads end when the test process does.
pub struct HeadEchoOrigin {
    /// The listening address.
    pub addr: SocketAddr,
}

impl HeadEchoOrigin {
    /// Binds and starts accepting.
    pub fn start() -> HeadEchoOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || serve_head_echo(conn));
            }
        });
        HeadEchoOrigin { addr }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One connection of [`HeadEchoOrigin`]: requests without bodies are all it expects.
fn serve_head_echo(mut conn: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if text.contains("\r\nupgrade: websocket") {
            let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if conn.write_all(reply).is_err() || conn.write_all(&buf).is_err() {
                return;
            }
            loop {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            head.len()
        )
        .into_bytes();
        reply.extend_from_slice(&head);
        if conn.write_all(&reply).is_err() {
            return;
        }
    }
}

/// GETs `host/path` through the edge's public listener until a non-503 answer arrives (a fresh
/// or restarted edge answers 503 until a connector has registered), bounded by [`STEP_TIMEOUT`].
pub fn get_when_served(public: SocketAddr, host: &str, path: &str) -> Response {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let r = http_get(public, host, path);
        if r.status != 503 || Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads a response head byte by byte (so no bytes after it, upgraded ones say, are consumed).
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)
            .unwrap_or_else(|e| panic!("reading a response head: {e}; got {head:?}"));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    origin::closed_port().port()
}

/// One edge, one tunnel with DNS routes and one connector serving it, ready: the fixture most
/// request-path tests start from.
pub struct Site {
    /// The edge.
    pub edge: Edge,
    /// The tunnel.
    pub tunnel: Tunnel,
    /// Its connector.
    pub connector: Connector,
    /// The edge's public HTTP listener.
    pub public: SocketAddr,
}

impl Site {
    /// Starts an edge in `dir`, creates tunnel `name` routed from every host of `hosts`, runs a
    /// connector for `service` with `extra` flags, and waits until the edge serves the first
    /// host (a `GET /` that is not 503).
    pub fn start(
        dir: &Path,
        name: &str,
        hosts: &[&str],
        service: &Service,
        extra: &[&str],
    ) -> Site {
        let edge = Edge::start(dir);
        let tunnel = Tunnel::create(&edge, name);
        for host in hosts {
            tunnel.route_dns(&edge, host);
        }
        let connector = Connector::run_args(&edge, &tunnel, service, extra);
        edge.wait_connectors(name, 1);
        let public = edge.public_http();
        if let Some(host) = hosts.first() {
            let r = get_when_served(public, host, "/");
            assert_ne!(
                r.status,
                503,
                "{host} is not served: {}\nedge log:{}\nconnector log:{}",
                r.text(),
                edge.proc.tail(20),
                connector.proc.tail(20)
            );
        }
        Site {
            edge,
            tunnel,
            connector,
            public,
        }
    }
}

/// A keep-alive HTTP/1.1 client on one connection: requests go out as given, responses are read
/// one at a time by their framing (Content-Length, chunked, none for HEAD, 1xx, 204 and 304,
/// else until close), so a stray byte between responses shows up as a bad next response.
pub struct Client {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` (reads time out after [`STEP_TIMEOUT`]).
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("sending {} bytes: {e}", bytes.len()));
    }

    /// Sends `request` (head and body) and reads one response to it (not for HEAD).
    pub fn request(&mut self, request: &[u8]) -> Response {
        self.send(request);
        self.response(false)
    }

    /// Reads the next response; `to_head`: it answers a HEAD request (no body).
    pub fn response(&mut self, to_head: bool) -> Response {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if self.fill() == 0 {
                panic!(
                    "the connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let (status, headers) = parse_head(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        let field = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
            Vec::new()
        } else if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            self.chunked_body()
        } else if let Some(len) = field("content-length") {
            let len = len
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length in {text:?}"));
            self.take(len)
        } else {
            while self.fill() > 0 {}
            std::mem::take(&mut self.buf)
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// Whether the server has closed the connection (a read returns end of file; any byte or a
    /// read timeout means it has not).
    pub fn closed_by_peer(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.stream.read(&mut [0u8; 1]), Ok(0))
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("reading a response: {e}"));
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill() == 0 {
                panic!("the connection closed {} bytes short", n - self.buf.len());
            }
        }
        self.buf.drain(..n).collect()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..eol + 2).collect();
                return String::from_utf8_lossy(&line[..eol]).into_owned();
            }
            if self.fill() == 0 {
                panic!("the connection closed inside a chunked body");
            }
        }
    }

    fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.line();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // Trailer fields, then the empty line.
                while !self.line().is_empty() {}
                return body;
            }
            body.extend(self.take(size));
            assert_eq!(self.take(2), b"\r\n", "chunk data not followed by CRLF");
        }
    }
}

/// The status and fields (names lowercased) of a response head without its final empty line.
fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty head")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// The resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`), or `None`
/// once it has exited.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Samples the RSS of some processes every `every` on a thread of its own until
/// [`RssSampler::finish`], keeping each one's peak.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    /// Starts sampling `pids` (one sample right away, then one per `every`).
    pub fn start(pids: Vec<u32>, every: Duration) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peaks = vec![0u64; pids.len()];
            loop {
                for (peak, pid) in peaks.iter_mut().zip(&pids) {
                    *peak = (*peak).max(rss_bytes(*pid).unwrap_or(0));
                }
                if flag.load(Ordering::Relaxed) {
                    return peaks;
                }
                std::thread::sleep(every);
            }
        });
        RssSampler { stop, thread }
    }

    /// Takes a last sample and returns each process's peak RSS in bytes, in `pids` order.
    pub fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Sends `sig` (a name like `TERM`) to the process, as an operator's `kill -TERM` would.
pub fn signal(proc: &Proc, sig: &str) {
    use ringtun_core::signal::{Signal, send};
    let Some(s) = Signal::from_name(sig) else {
        panic!("no signal named {sig}");
    };
    let sent = send(proc.id(), s);
    assert!(sent.is_ok(), "SIG{sig} to {}: {sent:?}", proc.id());
}

// ---------------------------------------------------------------------------------------------
// The load client (shared by the lifecycle and fault tests)
// ---------------------------------------------------------------------------------------------

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
    let mut conn: Option<std::io::BufReader<TcpStream>> = None;
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
/// `None`); the status and body.
pub fn keepalive_get(
    conn: &mut Option<std::io::BufReader<TcpStream>>,
    public: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    if conn.is_none() {
        let s = TcpStream::connect(public).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        *conn = Some(std::io::BufReader::new(s));
    }
    let c = conn.as_mut().unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    c.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let (status, body, close) = read_load_response(c)?;
    if close {
        *conn = None;
    }
    Ok((status, body))
}

/// Reads one response (Content-Length or chunked body); returns status, body and whether the
/// server said `Connection: close`.
fn read_load_response(
    c: &mut std::io::BufReader<TcpStream>,
) -> Result<(u16, Vec<u8>, bool), String> {
    use std::io::BufRead;
    let mut line = String::new();
    let read_line =
        |c: &mut std::io::BufReader<TcpStream>, line: &mut String| -> Result<(), String> {
            line.clear();
            match c.read_line(line) {
                Ok(0) => Err("connection closed by the edge".to_owned()),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("read: {e}")),
            }
        };
    read_line(c, &mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        read_line(c, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            let (n, v) = (n.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match n.as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            read_line(c, &mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            let mut chunk = vec![0; size + 2];
            c.read_exact(&mut chunk)
                .map_err(|e| format!("chunk: {e}"))?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        c.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    } else {
        c.read_to_end(&mut body).map_err(|e| format!("body: {e}"))?;
        close = true;
    }
    Ok((status, body, close))
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
