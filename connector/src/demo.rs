//! `ringtun demo`: the whole system on one machine, in one command.
//!
//! It starts a `ringtun-edge`, creates a tunnel and a DNS route with this very binary, starts a
//! `ringtun-load origin` and two `ringtun tunnel run` replicas, sends a few seconds of closed-loop
//! traffic through the edge's public listener with `ringtun-load http`, prints the load summary and
//! `tunnel info`, and stops everything.
//!
//! Design choices:
//! - Every step runs the real binaries as child processes, exactly as a user would type them, so
//!   the demo exercises the same flags and log lines as the process contract
//!   (`tunnel-contract.md`, "Processes and flags") and the end-to-end tests.
//! - Everything lives in one temporary directory that is also `HOME` and the working directory of
//!   every child: the user's `~/.ringtun` and `./ringtun-edge-state` are never touched.
//! - Each child is a [`Proc`], whose `Drop` sends SIGTERM, waits a grace period and then kills.
//!   Early returns, panics and Ctrl-C (SIGINT/SIGTERM set a flag that every wait checks) all
//!   unwind through those drops, so no process is left behind.
//! - SIGTERM is sent with `ringtun_core::signal`, the one place the workspace sends signals
//!   (`kill(2)` through `rustix`, no `unsafe`).
//!
//! [`Proc`] and [`log_field`] are public because the end-to-end test harness
//! (`connector/tests/e2e/`) drives the same processes the same way.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringtun_core::signal::{self, Signal};

use crate::cli::DemoArgs;
use crate::error::{Error, Result};

/// How long a stopped child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The tunnel and hostname the demo creates.
const TUNNEL: &str = "demo";
const HOSTNAME: &str = "demo.ringtun.test";

/// How many lines of a child's output an error message quotes.
const TAIL_LINES: usize = 12;

/// The value of `key=value` in a log line, without surrounding quotes (tracing quotes `?` fields).
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| {
        w.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
            .map(|v| v.trim_matches('"'))
    })
}

/// What the reader threads of a [`Proc`] have collected so far.
#[derive(Debug, Default)]
struct Output {
    /// Every line of stdout and stderr, in arrival order.
    lines: Vec<String>,
    /// Output streams still open (2 at start).
    open: u8,
}

/// A child process whose stdout and stderr are collected line by line (and appended to a log
/// file), that can be waited on for a line, and that is stopped when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
    readers: Vec<JoinHandle<()>>,
}

fn lock(m: &Mutex<Output>) -> MutexGuard<'_, Output> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    /// Starts `cmd` with piped stdout and stderr, writing both to `log`. With `echo`, every
    /// line is also printed on this process's stdout as it arrives.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, echo: bool) -> std::io::Result<Proc> {
        let file = Arc::new(Mutex::new(std::fs::File::create(log)?));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let output = Arc::new((
            Mutex::new(Output {
                lines: Vec::new(),
                open: 2,
            }),
            Condvar::new(),
        ));
        let mut readers = Vec::new();
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let output = Arc::clone(&output);
            let file = Arc::clone(&file);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    if echo {
                        println!("    {line}");
                    }
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    lock(&output.0).lines.push(line);
                    output.1.notify_all();
                }
                lock(&output.0).open -= 1;
                output.1.notify_all();
            }));
        }
        Ok(Proc {
            name: name.to_owned(),
            child,
            output,
            readers,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process ID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.output.0).lines.clone()
    }

    /// The last `n` lines printed, one per line, indented, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let out = lock(&self.output.0);
        let start = out.lines.len().saturating_sub(n);
        let mut text = String::new();
        for line in &out.lines[start..] {
            text.push_str("\n    | ");
            text.push_str(line);
        }
        if text.is_empty() {
            text.push_str("\n    | (no output)");
        }
        text
    }

    /// Waits until `pick` returns `Some` for a printed line (earlier lines included) and returns
    /// it. Fails with a description when the child closes its output first, when `timeout`
    /// passes, or when `interrupt` is set.
    pub fn wait_line<T>(
        &self,
        timeout: Duration,
        interrupt: Option<&AtomicBool>,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> std::result::Result<T, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        let mut out = lock(&self.output.0);
        loop {
            while seen < out.lines.len() {
                if let Some(found) = pick(&out.lines[seen]) {
                    return Ok(found);
                }
                seen += 1;
            }
            if out.open == 0 {
                return Err(format!("{} exited", self.name));
            }
            if interrupt.is_some_and(|i| i.load(Ordering::Relaxed)) {
                return Err("interrupted".to_owned());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timed out after {timeout:?}"));
            }
            let slice = (deadline - now).min(Duration::from_millis(100));
            out = self
                .output
                .1
                .wait_timeout(out, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The exit status if the child has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM, waits up to `grace`, then kills; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.try_wait() {
            self.join_readers();
            return Some(status);
        }
        // The child may have exited since `try_wait`; then there is nothing to stop.
        let _ = signal::send(self.child.id(), Signal::Term);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                self.join_readers();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.join_readers();
        status
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// Where the sibling binaries are and how to build them when they are missing.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `ringtun` (this executable).
    pub ringtun: PathBuf,
    /// `ringtun-edge`.
    pub edge: PathBuf,
    /// `ringtun-load`.
    pub load: PathBuf,
}

impl Binaries {
    /// The binaries next to `ringtun`, built with cargo first when one is missing: from the
    /// workspace found by walking up from `ringtun` to the directory holding `Cargo.lock`, with
    /// the profile and target directory `ringtun` itself was built with.
    pub fn locate(ringtun: &Path) -> Result<Binaries> {
        let sibling =
            |name: &str| ringtun.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let bins = Binaries {
            ringtun: ringtun.to_owned(),
            edge: sibling("ringtun-edge"),
            load: sibling("ringtun-load"),
        };
        if bins.edge.exists() && bins.load.exists() {
            return Ok(bins);
        }
        let step = "build ringtun-edge and ringtun-load";
        let fail = |reason: String| Error::Demo {
            step: step.to_owned(),
            reason,
        };
        let profile_dir = ringtun
            .parent()
            .ok_or_else(|| fail(format!("{} has no parent directory", ringtun.display())))?;
        let target_dir = profile_dir.parent().unwrap_or(profile_dir);
        let root = ringtun
            .ancestors()
            .find(|d| d.join("Cargo.lock").is_file())
            .ok_or_else(|| {
                fail(format!(
                    "{} or {} is missing and no Cargo workspace encloses {}; build them \
                     (`cargo build --release`) and put them next to ringtun",
                    bins.edge.display(),
                    bins.load.display(),
                    ringtun.display()
                ))
            })?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.arg("build");
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => {
                cmd.arg("--release");
            }
            Some("debug") | None => {}
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        cmd.args([
            "--locked",
            "-p",
            "ringtun-edge-sim",
            "-p",
            "ringtun-benches",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root);
        println!(
            "==> ringtun-edge/ringtun-load not found next to {}; building them:\n    (in {}) {:?}",
            ringtun.display(),
            root.display(),
            cmd
        );
        let status = cmd
            .status()
            .map_err(|e| fail(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;
        if !status.success() {
            return Err(fail(format!("cargo build failed: {status}")));
        }
        for b in [&bins.edge, &bins.load] {
            if !b.exists() {
                return Err(fail(format!(
                    "{} is still missing after the build",
                    b.display()
                )));
            }
        }
        Ok(bins)
    }
}

/// The demo's state: its directory, the binaries, the admin API and token, and the Ctrl-C flag.
struct Demo {
    dir: PathBuf,
    bins: Binaries,
    admin: String,
    token: String,
    timeout: Duration,
    interrupt: Arc<AtomicBool>,
}

fn step_error(step: &str, reason: impl Into<String>) -> Error {
    Error::Demo {
        step: step.to_owned(),
        reason: reason.into(),
    }
}

impl Demo {
    /// A command for one of the binaries with the demo's isolated environment.
    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("RUST_LOG", "info")
            .env_remove("RINGTUN_CONFIG")
            .env_remove("RINGTUN_URL")
            .env_remove("RINGTUN_EDGE_API")
            .env_remove("RINGTUN_API_TOKEN");
        if !self.token.is_empty() {
            // In the environment rather than on the command line: `ps` shows arguments.
            cmd.env("RINGTUN_API_TOKEN", &self.token);
        }
        cmd
    }

    /// `ringtun --edge-api ADMIN ARGS...`, run to completion; returns stdout.
    fn ringtun(&self, step: &str, args: &[&str]) -> Result<String> {
        self.check_interrupt(step)?;
        let mut cmd = self.command(&self.bins.ringtun);
        cmd.args(["--edge-api", &self.admin]).args(args);
        let out = cmd
            .output()
            .map_err(|e| step_error(step, format!("cannot run ringtun: {e}")))?;
        if !out.status.success() {
            return Err(step_error(
                step,
                format!(
                    "`ringtun {}` failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn spawn(&self, step: &str, name: &str, cmd: Command, echo: bool) -> Result<Proc> {
        self.check_interrupt(step)?;
        let log = self.dir.join(format!("{name}.log"));
        Proc::spawn(name, cmd, &log, echo)
            .map_err(|e| step_error(step, format!("cannot start {name}: {e}")))
    }

    /// Waits for a line of `proc`; the error quotes the child's last lines.
    fn wait_line<T>(
        &self,
        step: &str,
        proc: &Proc,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        proc.wait_line(self.timeout, Some(&self.interrupt), pick)
            .map_err(|why| {
                if self.interrupt.load(Ordering::Relaxed) {
                    return step_error(step, "interrupted");
                }
                step_error(
                    step,
                    format!(
                        "{why}; last lines of {}:{}",
                        proc.name(),
                        proc.tail(TAIL_LINES)
                    ),
                )
            })
    }

    fn check_interrupt(&self, step: &str) -> Result<()> {
        if self.interrupt.load(Ordering::Relaxed) {
            return Err(step_error(step, "interrupted"));
        }
        Ok(())
    }
}

/// Runs the demo (see the module doc). Prints progress on stdout; any failed step is an
/// [`Error::Demo`] naming the step.
pub fn run(args: &DemoArgs) -> Result<()> {
    let interrupt = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupt))
            .map_err(|e| step_error("install the Ctrl-C handler", e.to_string()))?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| step_error("find the ringtun executable", e.to_string()))?;
    let bins = Binaries::locate(&exe)?;
    let dir = std::env::temp_dir().join(format!("ringtun-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| {
        step_error(
            "create the demo directory",
            format!("{}: {e}", dir.display()),
        )
    })?;
    let mut demo = Demo {
        dir,
        bins,
        admin: String::new(),
        token: String::new(),
        timeout: args.timeout,
        interrupt,
    };
    println!(
        "==> demo directory (HOME and state of every process): {}",
        demo.dir.display()
    );
    match run_steps(&mut demo, args) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&demo.dir);
            println!("==> done: everything stopped");
            Ok(())
        }
        Err(e) => {
            eprintln!(
                "==> the demo failed; every process was stopped; logs are kept in {}",
                demo.dir.display()
            );
            Err(e)
        }
    }
}

/// The demo's steps. Every [`Proc`] lives in this function, so any return stops them all
/// (replicas first, the edge last: locals drop in reverse order).
fn run_steps(demo: &mut Demo, args: &DemoArgs) -> Result<()> {
    // 1. The edge, every listener on port 0.
    let step = "start ringtun-edge";
    println!("==> {step}");
    let mut cmd = demo.command(&demo.bins.edge);
    cmd.arg("--state-dir")
        .arg(demo.dir.join("edge"))
        .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
        .args(["--data-center", "dfw=127.0.1.1:0,127.0.1.2:0"])
        .args(["--data-center", "mci=127.0.2.1:0,127.0.2.2:0"]);
    let edge = demo.spawn(step, "edge", cmd, false)?;
    let admin = demo.wait_line("start ringtun-edge: admin API address", &edge, |l| {
        log_field(l, "admin").map(str::to_owned)
    })?;
    let public = demo.wait_line("start ringtun-edge: public HTTP address", &edge, |l| {
        log_field(l, "public_http").map(str::to_owned)
    })?;
    let token_file = demo.dir.join("edge").join("admin-token");
    demo.token = std::fs::read_to_string(&token_file)
        .map_err(|e| step_error(step, format!("cannot read {}: {e}", token_file.display())))?
        .trim()
        .to_owned();
    demo.admin = admin;
    println!("    admin API {}, public HTTP {public}", demo.admin);

    // 2. The tunnel and its route.
    println!("==> ringtun tunnel create {TUNNEL}");
    let out = demo.ringtun("create the tunnel", &["tunnel", "create", TUNNEL])?;
    print_indented(&out);
    println!("==> ringtun tunnel route dns {TUNNEL} {HOSTNAME}");
    let out = demo.ringtun(
        "route the hostname",
        &["tunnel", "route", "dns", TUNNEL, HOSTNAME],
    )?;
    print_indented(&out);

    // 3. The origin.
    let step = "start the test origin";
    println!("==> {step} (ringtun-load origin)");
    let mut cmd = demo.command(&demo.bins.load);
    cmd.args(["origin", "--http", "127.0.0.1:0", "--threads", "1"]);
    let origin = demo.spawn(step, "origin", cmd, false)?;
    let origin_addr = demo.wait_line(step, &origin, |l| {
        l.strip_prefix("listening http ")
            .map(|a| a.trim().to_owned())
    })?;
    println!("    origin on http://{origin_addr}");

    // 4. Two replicas.
    let url = format!("http://{origin_addr}");
    let mut replicas = Vec::new();
    for i in 1..=2 {
        let step = format!("start connector replica {i}");
        println!("==> {step}: ringtun tunnel run {TUNNEL} --url {url}");
        let mut cmd = demo.command(&demo.bins.ringtun);
        cmd.args([
            "--edge-api",
            &demo.admin,
            "tunnel",
            "run",
            TUNNEL,
            "--url",
            &url,
        ]);
        let replica = demo.spawn(&step, &format!("replica-{i}"), cmd, false)?;
        let id = demo.wait_line(&step, &replica, |l| {
            l.split_once("Generated Connector ID:")
                .map(|(_, id)| id.trim().to_owned())
        })?;
        println!("    connector ID {id}");
        replicas.push(replica);
    }

    // 5. Both replicas registered with the edge.
    let step = "wait for 2 connectors in `tunnel info`";
    println!("==> {step}");
    let deadline = Instant::now() + demo.timeout;
    loop {
        let json = demo.ringtun(step, &["tunnel", "info", TUNNEL, "-o", "json"])?;
        let count = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["connectors"].as_array().map(Vec::len))
            .unwrap_or(0);
        if count >= 2 {
            break;
        }
        demo.check_interrupt(step)?;
        for r in replicas.iter_mut() {
            if let Some(status) = r.try_wait() {
                return Err(step_error(
                    step,
                    format!(
                        "{} exited ({status}); its last lines:{}",
                        r.name(),
                        r.tail(TAIL_LINES)
                    ),
                ));
            }
        }
        if Instant::now() >= deadline {
            let mut why = format!("only {count} connector(s) after {:?}", demo.timeout);
            for p in replicas.iter().chain([&edge]) {
                why.push_str(&format!(
                    "\n  last lines of {}:{}",
                    p.name(),
                    p.tail(TAIL_LINES)
                ));
            }
            return Err(step_error(step, why));
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // 6. Traffic through the public listener.
    let step = "send traffic through the tunnel";
    let duration = match args.duration.as_millis() {
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    };
    let conns = args.connections.to_string();
    let target = format!("http://{public}/");
    println!(
        "==> {step}: ringtun-load http {target} --host {HOSTNAME} -R 0 -c {conns} -d {duration}"
    );
    let mut cmd = demo.command(&demo.bins.load);
    cmd.args(["http", &target, "--host", HOSTNAME, "-R", "0", "--quiet"])
        .args(["-c", &conns, "-d", &duration, "--threads", "1"])
        // Its lifecycle logs would interleave with the summary.
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    let mut load = demo.spawn(step, "load", cmd, false)?;
    let status = loop {
        // Ctrl-C reaches the whole process group: check the flag first so the error says
        // "interrupted", not that the load generator died.
        demo.check_interrupt(step)?;
        if let Some(status) = load.try_wait() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    load.stop(STOP_GRACE);
    for line in summary(&load.lines()) {
        println!("    {line}");
    }
    if !status.success() {
        return Err(step_error(
            step,
            format!("ringtun-load exited with {status}"),
        ));
    }

    // 7. What the edge knows about the tunnel.
    println!("==> ringtun tunnel info {TUNNEL}");
    let out = demo.ringtun("show the tunnel", &["tunnel", "info", TUNNEL])?;
    print_indented(&out);

    // 8. Stop: replicas, origin, edge.
    println!("==> stopping the replicas, the origin and the edge");
    for mut r in replicas.into_iter().rev() {
        r.stop(STOP_GRACE);
    }
    drop(origin);
    drop(edge);
    Ok(())
}

/// `ringtun-load`'s report without its detailed percentile spectrum (dozens of lines that are
/// for `--hgrm` files and plots, not for a person reading the demo).
fn summary(lines: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_spectrum = false;
    for line in lines {
        if line.contains("Detailed Percentile spectrum") {
            in_spectrum = true;
        } else if in_spectrum && line.trim_start().starts_with("----") {
            in_spectrum = false;
        } else if !in_spectrum {
            out.push(line.as_str());
        }
    }
    out
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_are_found_with_or_without_quotes() {
        let line = "2026-11-26T21:00:00Z  INFO ringtun_edge_sim::edge: admin API listening \
                    admin=127.0.0.1:40000 token_file=\"/tmp/x/admin-token\"";
        assert_eq!(log_field(line, "admin"), Some("127.0.0.1:40000"));
        assert_eq!(log_field(line, "token_file"), Some("/tmp/x/admin-token"));
        assert_eq!(log_field(line, "adm"), None);
        assert_eq!(log_field(line, "public_http"), None);
    }

    #[test]
    fn the_load_summary_drops_the_percentile_spectrum() {
        let report: Vec<String> = [
            "  Latency Distribution",
            "  99.000%   1.00ms",
            "",
            "  Detailed Percentile spectrum (corrected):",
            "       Value     Percentile TotalCount 1/(1-Percentile)",
            "       1.662 0.000000000000          1           1.00",
            "#[Mean    =       12.399, StdDeviation   =       15.594]",
            "  ----------------------------------------------------------",
            "  3891 requests in 3.00s, 0.20MB read, 0.17MB written",
            "  Run: VALID",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            summary(&report),
            [
                "  Latency Distribution",
                "  99.000%   1.00ms",
                "",
                "  3891 requests in 3.00s, 0.20MB read, 0.17MB written",
                "  Run: VALID",
            ]
        );
    }

    #[test]
    fn proc_collects_lines_and_reports_exit() {
        let dir = std::env::temp_dir().join(format!("ringtun-demo-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'listening http 127.0.0.1:1'; echo oops >&2"]);
        let mut p =
            Proc::spawn("sh", cmd, &dir.join("sh.log"), false).unwrap_or_else(|e| panic!("{e}"));
        let addr = p.wait_line(Duration::from_secs(30), None, |l| {
            l.strip_prefix("listening http ").map(str::to_owned)
        });
        assert_eq!(addr.as_deref(), Ok("127.0.0.1:1"));
        let missing = p.wait_line(Duration::from_secs(30), None, |l| {
            l.strip_prefix("never").map(str::to_owned)
        });
        assert_eq!(missing, Err("sh exited".to_owned()));
        assert!(p.tail(5).contains("oops"));
        assert!(p.stop(STOP_GRACE).is_some_and(|s| s.success()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stopped_proc_is_terminated() {
        let dir = std::env::temp_dir().join(format!("ringtun-demo-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let mut p = Proc::spawn("sleep", cmd, &dir.join("sleep.log"), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let status = p.stop(STOP_GRACE);
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
        assert!(p.try_wait().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
