//! Sending a signal to a process: how the demo's supervisor and the tests stop, pause, resume
//! and reload the `ringtun`, `ringtun-edge` and `ringtun-load` processes they start.
//!
//! One call, `kill(2)` through `rustix` (already in the dependency tree through the runtime),
//! instead of running the `kill` program: no fork and exec per signal, and an error is the
//! syscall's own (`ESRCH` for a process that is gone). Catching signals is `signal-hook`'s job
//! in the binaries, not this module's.
use std::io;

/// The signals ringtun's processes act on, and the two that pause and resume one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: drain and stop.
    Term,
    /// SIGINT: the same as SIGTERM (Ctrl-C).
    Int,
    /// SIGHUP: reload the configuration (the connector).
    Hup,
    /// SIGKILL: stop at once, with no drain.
    Kill,
    /// SIGSTOP: pause the process.
    Stop,
    /// SIGCONT: resume a paused process.
    Cont,
}

impl Signal {
    /// The signal named `name`, with or without the `SIG` prefix (`TERM`, `SIGHUP`), as the
    /// `kill` program takes it; `None` for any other name.
    pub fn from_name(name: &str) -> Option<Signal> {
        let name = name.strip_prefix("SIG").unwrap_or(name);
        Some(match name {
            "TERM" => Signal::Term,
            "INT" => Signal::Int,
            "HUP" => Signal::Hup,
            "KILL" => Signal::Kill,
            "STOP" => Signal::Stop,
            "CONT" => Signal::Cont,
            _ => return None,
        })
    }

    fn raw(self) -> rustix::process::Signal {
        use rustix::process::Signal as S;
        match self {
            Signal::Term => S::TERM,
            Signal::Int => S::INT,
            Signal::Hup => S::HUP,
            Signal::Kill => S::KILL,
            Signal::Stop => S::STOP,
            Signal::Cont => S::CONT,
        }
    }
}

/// Sends `signal` to process `pid` (as [`std::process::Child::id`] gives it). A process that
/// has exited and not been waited for yet still takes it; one that is gone is an error.
pub fn send(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no process {pid}")))?;
    rustix::process::kill_process(pid, signal.raw()).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_with_and_without_the_prefix() {
        assert_eq!(Signal::from_name("TERM"), Some(Signal::Term));
        assert_eq!(Signal::from_name("SIGHUP"), Some(Signal::Hup));
        assert_eq!(Signal::from_name("CONT"), Some(Signal::Cont));
        assert_eq!(Signal::from_name("term"), None);
        assert_eq!(Signal::from_name("USR1"), None);
    }

    #[test]
    fn stops_a_child_and_reports_a_missing_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sleep: {e}"));
        send(child.id(), Signal::Term).unwrap_or_else(|e| panic!("{e}"));
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        // Reaped: the PID is free now (reuse within this test is practically impossible).
        assert!(send(child.id(), Signal::Term).is_err());
        assert!(send(0, Signal::Term).is_err(), "0 is not a process");
        assert!(send(u32::MAX, Signal::Term).is_err());
    }
}
