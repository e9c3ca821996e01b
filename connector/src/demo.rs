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
//! - Each child is a [`Proc`] ([`crate::process`]), whose `Drop` sends SIGTERM, waits a grace
//!   period and then kills. Early returns, panics and Ctrl-C (SIGINT/SIGTERM set a flag that every
//!   wait checks) all unwind through those drops, so no process is left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::DemoArgs;
use crate::error::{Error, Result};
use crate::process::{Binaries, Proc, STOP_GRACE, log_field};

/// The tunnel and hostname the demo creates.
const TUNNEL: &str = "demo";
const HOSTNAME: &str = "demo.ringtun.test";

/// How many lines of a child's output an error message quotes.
const TAIL_LINES: usize = 12;

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
}
