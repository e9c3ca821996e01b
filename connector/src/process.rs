//! Child processes under supervision: [`Proc`] starts a command, collects its stdout and stderr
//! line by line (and appends them to a log file), waits for a line a caller is looking for, and
//! stops the child (SIGTERM, a grace period, then SIGKILL) when asked or when dropped.
//! [`Binaries`] finds `ringtun-edge` and `ringtun-load` next to `ringtun`, building them with
//! cargo when they are missing.
//!
//! `ringtun demo` ([`crate::demo`]) runs the whole system with these, and the workspace's
//! test-support crate (`test-support/`) drives the same processes the same way, so both read the
//! process contract (`tunnel-contract.md`, "Processes and flags") through one implementation.
//!
//! Design choices:
//! - Reader threads own the pipes, so a child never blocks on a full pipe whether or not anyone
//!   is waiting for its output; waiters sleep on a condition variable, not in a poll loop.
//! - SIGTERM is sent with `ringtun_core::signal`, the one place the workspace sends signals
//!   (`kill(2)` through `rustix`, no `unsafe`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringtun_core::signal::{self, Signal};

use crate::error::{Error, Result};

/// How long a stopped child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

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
    fn proc_collects_lines_and_reports_exit() {
        let dir = std::env::temp_dir().join(format!("ringtun-proc-unit-{}", std::process::id()));
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
        let dir = std::env::temp_dir().join(format!("ringtun-proc-stop-{}", std::process::id()));
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
