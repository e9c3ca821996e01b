//! Runtime configuration: worker count, pinning and the IO driver choice.

use std::fmt;

use super::RtError;

/// Name of the environment variable that selects the IO driver.
pub const DRIVER_ENV: &str = "RINGTUN_DRIVER";

/// Which IO driver the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverChoice {
    /// io_uring if the kernel allows it, else epoll with a warning. The default.
    #[default]
    Auto,
    /// io_uring only; starting fails with [`RtError::IoUringUnavailable`] if it cannot be set up.
    IoUring,
    /// The epoll (`polling`) fallback, even where io_uring works.
    Epoll,
}

impl DriverChoice {
    /// Parses the value of [`DRIVER_ENV`]. `None` (unset) and the empty string mean
    /// [`DriverChoice::Auto`]. Accepted (case-insensitive): `auto`, `io_uring`/`io-uring`/
    /// `iouring`/`uring`, `epoll`/`poll`/`polling`.
    ///
    /// This is a pure function so it can be tested without touching the process environment.
    pub fn parse_env(value: Option<&str>) -> Result<Self, RtError> {
        let Some(raw) = value else {
            return Ok(Self::Auto);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "io_uring" | "io-uring" | "iouring" | "uring" => Ok(Self::IoUring),
            "epoll" | "poll" | "polling" => Ok(Self::Epoll),
            _ => Err(RtError::InvalidDriverEnv {
                value: raw.to_owned(),
            }),
        }
    }

    /// Reads [`DRIVER_ENV`] from the process environment and parses it with
    /// [`DriverChoice::parse_env`]. A value that is not valid Unicode is an error.
    pub fn from_env() -> Result<Self, RtError> {
        match std::env::var(DRIVER_ENV) {
            Ok(v) => Self::parse_env(Some(&v)),
            Err(std::env::VarError::NotPresent) => Ok(Self::Auto),
            Err(std::env::VarError::NotUnicode(v)) => Err(RtError::InvalidDriverEnv {
                value: v.to_string_lossy().into_owned(),
            }),
        }
    }
}

/// The IO driver a worker actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// One io_uring instance per worker.
    IoUring,
    /// The epoll-based `polling` fallback.
    Epoll,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        })
    }
}

/// Default capacity of each worker's mailbox, see [`RuntimeConfig::mailbox_capacity`].
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// How to start the runtime. Build it with struct update syntax from `default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Number of worker threads; `None` means one per core this process may run on
    /// ([`std::thread::available_parallelism`]).
    pub workers: Option<usize>,
    /// Pin worker *i* to the *i*-th allowed core (modulo their count). Default `true`.
    pub pin: bool,
    /// Which IO driver to use. Default [`DriverChoice::Auto`].
    pub driver: DriverChoice,
    /// Capacity of every worker's [`crate::rt::Mailbox`]. Default
    /// [`DEFAULT_MAILBOX_CAPACITY`]; must be at least 1.
    pub mailbox_capacity: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: None,
            pin: true,
            driver: DriverChoice::Auto,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
        }
    }
}

impl RuntimeConfig {
    /// The default config with the driver taken from [`DRIVER_ENV`].
    pub fn from_env() -> Result<Self, RtError> {
        Ok(Self {
            driver: DriverChoice::from_env()?,
            ..Self::default()
        })
    }

    /// The number of workers this config starts, after defaults are applied.
    pub fn resolved_workers(&self) -> Result<usize, RtError> {
        match self.workers {
            Some(0) => Err(RtError::InvalidConfig {
                reason: "workers must be at least 1",
            }),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_env_values() {
        assert_eq!(DriverChoice::parse_env(None).ok(), Some(DriverChoice::Auto));
        assert_eq!(
            DriverChoice::parse_env(Some("")).ok(),
            Some(DriverChoice::Auto)
        );
        assert_eq!(
            DriverChoice::parse_env(Some("auto")).ok(),
            Some(DriverChoice::Auto)
        );
        assert_eq!(
            DriverChoice::parse_env(Some("epoll")).ok(),
            Some(DriverChoice::Epoll)
        );
        assert_eq!(
            DriverChoice::parse_env(Some(" EPOLL ")).ok(),
            Some(DriverChoice::Epoll)
        );
        assert_eq!(
            DriverChoice::parse_env(Some("io_uring")).ok(),
            Some(DriverChoice::IoUring)
        );
        assert_eq!(
            DriverChoice::parse_env(Some("io-uring")).ok(),
            Some(DriverChoice::IoUring)
        );
        assert!(matches!(
            DriverChoice::parse_env(Some("kqueue")),
            Err(RtError::InvalidDriverEnv { value }) if value == "kqueue"
        ));
    }

    #[test]
    fn zero_workers_rejected() {
        let cfg = RuntimeConfig {
            workers: Some(0),
            ..RuntimeConfig::default()
        };
        assert!(matches!(
            cfg.resolved_workers(),
            Err(RtError::InvalidConfig { .. })
        ));
        assert!(
            RuntimeConfig::default()
                .resolved_workers()
                .is_ok_and(|n| n >= 1)
        );
    }
}
