//! The end-to-end harness: real `ringtun-edge`, `ringtun` and `ringtun-load` processes on
//! loopback, driven through the flags and log lines of the process contract
//! (`tunnel-contract.md`, "Processes and flags").
//!
//! - [`Edge::start`] runs an edge with every listener on port 0, its link servers on loopback
//!   addresses of their own per test (`127.1.N.x`, `127.2.N.x`), and reads the bound addresses from
//!   its log. [`Edge::restart`] starts it again on the same state directory and addresses.
//! - [`Tunnel::create`] and [`Tunnel::route_dns`]/[`Tunnel::route_tcp`] use the `ringtun` CLI.
//! - [`Connector::run`] starts `ringtun tunnel run`; [`Edge::wait_connectors`] polls `tunnel info`.
//! - [`ServedTunnel::start`] is the three together: an edge, a routed tunnel and a connector, served.
//! - [`Origin::start`] runs `ringtun-load origin`; the in-test origins are in [`origin`].
//! - [`http_get`], [`send_raw`] and [`Client`] are the one HTTP client ([`crate::http`]).
//! - [`RssSampler`] records the peak RSS of processes while a test runs (`/proc/PID/status`).
//! - [`Load`] is a bounded GET client ([`crate::load`]); [`get_ok`] waits for a 200.
//!   [`Edge::admin_request`] calls the admin API directly, for what the CLI has no command for
//!   (fault injection, `/faults`).
//!
//! Every process is a [`Proc`], which stops its child (SIGTERM, then SIGKILL) when dropped, so a
//! failing assertion leaves nothing running. The child's output is in a log file in the test's
//! temporary directory and quoted by the harness's panics.
//!
//! The test binary must belong to the `ringtun-connector` package, so that cargo has built
//! `ringtun` next to it; [`binaries`] builds `ringtun-edge` and `ringtun-load` when missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use ringtun_connector::process::{Binaries, Proc, STOP_GRACE, log_field};

pub use crate::http::{
    Client, Response, http_get, http_get_with, parse_response, read_head, send_raw,
};
pub use crate::load::{
    Failed, Failure, LOAD_CONCURRENCY, LOAD_PAUSE, Load, Totals, get_ok, keepalive_get,
};
pub use crate::origin::{self, HeadEchoOrigin, TestOrigin};

/// The most a process may take to start or a condition to become true. Generous: the machine
/// is shared and debug builds are slow; no test asserts on how long anything took.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serializes the fallback `cargo build` of the sibling binaries between a binary's tests.
static BUILD: Mutex<()> = Mutex::new(());

/// The built binaries: `ringtun` from cargo, `ringtun-edge` and `ringtun-load` next to it (built
/// with the same profile and target directory when `cargo test -p ringtun-connector` has not).
pub fn binaries() -> Binaries {
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    Binaries::locate(&ringtun_bin())
        .unwrap_or_else(|e| panic!("cannot find or build the binaries: {e}"))
}

/// The `ringtun` executable cargo built for this test binary: `target/PROFILE/ringtun`, beside
/// the `deps/` directory the test runs from.
pub fn ringtun_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("the test executable: {e}"));
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(format!("ringtun{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_else(|| panic!("{} is not in target/PROFILE/deps", exe.display()));
    assert!(
        bin.exists(),
        "{} is missing: run the test through cargo in the ringtun-connector package",
        bin.display()
    );
    bin
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
        proc.stop(STOP_GRACE);
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

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    crate::origin::free_port()
}

/// One edge, one tunnel with DNS routes and one connector serving it, ready: the fixture most
/// request-path tests start from.
pub struct ServedTunnel {
    /// The edge.
    pub edge: Edge,
    /// The tunnel.
    pub tunnel: Tunnel,
    /// Its connector.
    pub connector: Connector,
    /// The edge's public HTTP listener.
    pub public: SocketAddr,
}

impl ServedTunnel {
    /// Starts an edge in `dir`, creates tunnel `name` routed from every host of `hosts`, runs a
    /// connector for `service` with `extra` flags, and waits until the edge serves the first
    /// host (a `GET /` that is not 503).
    pub fn start(
        dir: &Path,
        name: &str,
        hosts: &[&str],
        service: &Service,
        extra: &[&str],
    ) -> ServedTunnel {
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
        ServedTunnel {
            edge,
            tunnel,
            connector,
            public,
        }
    }
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
