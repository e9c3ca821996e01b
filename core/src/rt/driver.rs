//! Driver detection: build each worker's compio runtime on io_uring, or fall back to epoll.
//!
//! We do not rely on compio's own automatic fallback (which picks a driver from an opcode probe
//! and logs through its own logger): we ask for io_uring explicitly, and if `io_uring_setup`
//! fails we build the `polling` (epoll) driver ourselves, so that we know *why* and can tell the
//! operator what to do about it.

use std::io;

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime as CompioRuntime, RuntimeBuilder};

use super::{DriverChoice, DriverKind, RtError};

/// A freshly built per-thread compio runtime and what it runs on.
pub(crate) struct BuiltRuntime {
    /// The runtime; `!Send`, so it lives and dies on the thread that built it.
    pub runtime: CompioRuntime,
    /// The driver it really uses.
    pub kind: DriverKind,
    /// When [`DriverChoice::Auto`] fell back to epoll: the io_uring setup error.
    pub fallback: Option<io::Error>,
}

fn build_with(ty: DriverType) -> io::Result<CompioRuntime> {
    let mut proactor = ProactorBuilder::new();
    proactor.driver_type(ty);
    RuntimeBuilder::new().with_proactor(proactor).build()
}

fn kind_of(rt: &CompioRuntime) -> DriverKind {
    if rt.driver_type().is_polling() {
        DriverKind::Epoll
    } else {
        DriverKind::IoUring
    }
}

/// Builds a compio runtime for the calling thread according to `choice`.
pub(crate) fn build_runtime(choice: DriverChoice) -> Result<BuiltRuntime, RtError> {
    build_runtime_using(choice, build_with)
}

/// [`build_runtime`] with the runtime constructor injected, so the fallback logic can be tested
/// on a host where io_uring works.
fn build_runtime_using(
    choice: DriverChoice,
    build_with: impl Fn(DriverType) -> io::Result<CompioRuntime>,
) -> Result<BuiltRuntime, RtError> {
    let epoll = || build_with(DriverType::Poll).map_err(|source| RtError::Driver { source });
    match choice {
        DriverChoice::Epoll => Ok(BuiltRuntime {
            runtime: epoll()?,
            kind: DriverKind::Epoll,
            fallback: None,
        }),
        DriverChoice::IoUring => {
            let runtime = build_with(DriverType::IoUring)
                .map_err(|source| RtError::IoUringUnavailable { source })?;
            let kind = kind_of(&runtime);
            Ok(BuiltRuntime {
                runtime,
                kind,
                fallback: None,
            })
        }
        DriverChoice::Auto => match build_with(DriverType::IoUring) {
            Ok(runtime) => {
                let kind = kind_of(&runtime);
                Ok(BuiltRuntime {
                    runtime,
                    kind,
                    fallback: None,
                })
            }
            Err(e) => Ok(BuiltRuntime {
                runtime: epoll()?,
                kind: DriverKind::Epoll,
                fallback: Some(e),
            }),
        },
    }
}

/// A human hint for why io_uring could not be set up, for the fallback warning.
pub(crate) fn fallback_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is blocked: check the kernel.io_uring_disabled sysctl, or a seccomp profile \
             (Docker's default blocks io_uring_setup; allow io_uring_setup/io_uring_enter/\
             io_uring_register or run with a custom profile)"
        }
        Some(libc::ENOSYS) => {
            "this kernel has no io_uring (too old, or built without CONFIG_IO_URING), or seccomp \
             returns ENOSYS for it"
        }
        Some(libc::ENOMEM) => "not enough locked memory for the ring: raise RLIMIT_MEMLOCK",
        _ => "io_uring setup failed",
    }
}

/// Probes which driver `choice` yields on this host by building (and dropping) a runtime on the
/// calling thread. [`DriverChoice::Auto`] never fails on io_uring problems; it answers
/// [`DriverKind::Epoll`] instead.
pub fn detect_driver(choice: DriverChoice) -> Result<DriverKind, RtError> {
    build_runtime(choice).map(|b| b.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_is_always_available() {
        assert_eq!(
            detect_driver(DriverChoice::Epoll).ok(),
            Some(DriverKind::Epoll)
        );
    }

    #[test]
    fn auto_never_fails() {
        assert!(detect_driver(DriverChoice::Auto).is_ok());
    }

    fn blocked_uring(ty: DriverType) -> io::Result<CompioRuntime> {
        if ty == DriverType::IoUring {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        } else {
            build_with(ty)
        }
    }

    #[test]
    fn auto_falls_back_to_epoll_when_io_uring_is_blocked() {
        let built = build_runtime_using(DriverChoice::Auto, blocked_uring);
        let Ok(built) = built else {
            panic!("auto must not fail when only io_uring is blocked");
        };
        assert_eq!(built.kind, DriverKind::Epoll);
        assert_eq!(
            built.fallback.and_then(|e| e.raw_os_error()),
            Some(libc::EPERM)
        );
    }

    #[test]
    fn forced_io_uring_fails_clearly_when_blocked() {
        let built = build_runtime_using(DriverChoice::IoUring, blocked_uring);
        let Err(e) = built else {
            panic!("forced io_uring must fail when it is blocked");
        };
        assert!(matches!(e, RtError::IoUringUnavailable { .. }));
        assert!(e.to_string().contains("RINGTUN_DRIVER"));
    }

    #[test]
    fn hints_name_the_cause() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        assert!(fallback_hint(&eperm).contains("seccomp"));
        let enosys = io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(fallback_hint(&enosys).contains("kernel"));
    }
}
