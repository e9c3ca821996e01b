//! The runtime under both drivers: start, pinning, driver, mailboxes, shutdown, panics.

mod rt_common;
use rt_common as common;

use ringtun_core::rt::{DriverChoice, DriverKind, RtError, Runtime, RuntimeConfig, detect_driver};

fn config(driver: DriverChoice, workers: usize) -> RuntimeConfig {
    RuntimeConfig {
        workers: Some(workers),
        driver,
        ..RuntimeConfig::default()
    }
}

#[derive(Debug)]
struct Seen {
    index: usize,
    workers: usize,
    thread: Option<String>,
    driver: DriverKind,
    core: Option<usize>,
    affinity: Option<Vec<usize>>,
}

#[test]
fn workers_start_pinned_on_the_driver_and_stop_on_shutdown() {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (choice, expected) in common::drivers() {
        let rt = Runtime::start(
            config(choice, n),
            |ctx: ringtun_core::rt::WorkerCtx| async move {
                let seen = Seen {
                    index: ctx.index(),
                    workers: ctx.workers(),
                    thread: std::thread::current().name().map(str::to_owned),
                    driver: ctx.driver(),
                    core: ctx.core(),
                    // core_affinity reads the calling thread's mask (sched_getaffinity(0)).
                    affinity: core_affinity::get_core_ids()
                        .map(|ids| ids.into_iter().map(|c| c.id).collect()),
                };
                ctx.shutdown().wait().await;
                assert!(ctx.shutdown().is_triggered());
                seen
            },
        );
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => panic!("start under {choice:?}: {e}"),
        };
        assert_eq!(rt.workers(), n);
        assert!(rt.drivers().iter().all(|d| *d == expected));
        rt.shutdown();
        let results = rt.join();
        assert_eq!(results.len(), n);
        for (i, r) in results.into_iter().enumerate() {
            let seen = match r {
                Ok(s) => s,
                Err(e) => panic!("worker {i} under {choice:?}: {e}"),
            };
            assert_eq!(seen.index, i);
            assert_eq!(seen.workers, n);
            assert_eq!(
                seen.thread.as_deref(),
                Some(format!("ringtun-w{i}").as_str())
            );
            assert_eq!(seen.driver, expected);
            let core = seen
                .core
                .expect("pinning to an allowed core works on this host");
            assert_eq!(
                seen.affinity,
                Some(vec![core]),
                "worker {i} pinned to core {core}"
            );
        }
    }
}

#[test]
fn unpinned_workers_report_no_core() {
    let rt = Runtime::start(
        RuntimeConfig {
            pin: false,
            ..config(DriverChoice::Epoll, 2)
        },
        |ctx: ringtun_core::rt::WorkerCtx| async move { ctx.core() },
    );
    let results = rt.map(Runtime::join).ok();
    let cores: Option<Vec<Option<usize>>> =
        results.map(|v| v.into_iter().map(|r| r.ok().flatten()).collect());
    assert_eq!(cores, Some(vec![None, None]));
}

#[test]
fn mailboxes_carry_messages_across_workers() {
    const PER_WORKER: u64 = 500;
    for (choice, _) in common::drivers() {
        let n = 3;
        let rt = Runtime::start(
            RuntimeConfig {
                mailbox_capacity: 8,
                ..config(choice, n)
            },
            |ctx: ringtun_core::rt::WorkerCtx<(usize, u64)>| async move {
                let me = ctx.index();
                let next = (me + 1) % ctx.workers();
                let prev = (me + ctx.workers() - 1) % ctx.workers();
                let senders = ctx.senders().clone();
                // Send from a separate task so a full inbox (capacity 8) applies back-pressure
                // while this worker keeps draining its own inbox.
                let sending = compio::runtime::spawn(async move {
                    for k in 0..PER_WORKER {
                        senders.send(next, (me, k)).await?;
                    }
                    Ok::<(), RtError>(())
                });
                let mut expected = 0;
                while expected < PER_WORKER {
                    let Some((from, k)) = ctx.mailbox().recv().await else {
                        return Err(format!("worker {me}: inbox closed early"));
                    };
                    if from != prev || k != expected {
                        return Err(format!(
                            "worker {me}: got ({from}, {k}), want ({prev}, {expected})"
                        ));
                    }
                    expected += 1;
                }
                match sending.await {
                    Ok(Ok(())) => Ok(expected),
                    Ok(Err(e)) => Err(format!("worker {me}: send failed: {e}")),
                    Err(e) => Err(format!("worker {me}: sender task failed: {e:?}")),
                }
            },
        );
        let results = match rt {
            Ok(rt) => rt.join(),
            Err(e) => panic!("start under {choice:?}: {e}"),
        };
        for r in results {
            match r {
                Ok(Ok(got)) => assert_eq!(got, PER_WORKER),
                Ok(Err(msg)) => panic!("{choice:?}: {msg}"),
                Err(e) => panic!("{choice:?}: {e}"),
            }
        }
    }
}

#[test]
fn a_panicking_worker_is_reported_and_stops_the_others() {
    for (choice, _) in common::drivers() {
        let rt = Runtime::start(
            config(choice, 2),
            |ctx: ringtun_core::rt::WorkerCtx| async move {
                if ctx.index() == 1 {
                    panic!("boom on purpose");
                }
                // Worker 0 only ends because worker 1's panic triggers shutdown.
                ctx.shutdown().wait().await;
                ctx.index()
            },
        );
        let results = match rt {
            Ok(rt) => rt.join(),
            Err(e) => panic!("start under {choice:?}: {e}"),
        };
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().ok(), Some(&0));
        match &results[1] {
            Err(RtError::WorkerPanicked { worker, message }) => {
                assert_eq!(*worker, 1);
                assert!(message.contains("boom on purpose"), "message: {message}");
            }
            other => panic!("expected a panic report, got {other:?}"),
        }
    }
}

#[test]
fn forced_epoll_is_honored() {
    assert_eq!(
        detect_driver(DriverChoice::Epoll).ok(),
        Some(DriverKind::Epoll)
    );
    let rt = Runtime::start(
        config(DriverChoice::Epoll, 2),
        |ctx: ringtun_core::rt::WorkerCtx| async move { ctx.driver() },
    );
    let drivers: Option<Vec<_>> = rt.ok().and_then(|rt| {
        rt.join()
            .into_iter()
            .map(|r| r.ok())
            .collect::<Option<Vec<_>>>()
    });
    assert_eq!(drivers, Some(vec![DriverKind::Epoll, DriverKind::Epoll]));
}

#[test]
fn zero_workers_is_a_config_error() {
    let rt = Runtime::start(
        config(DriverChoice::Epoll, 0),
        |_ctx: ringtun_core::rt::WorkerCtx| async {},
    );
    assert!(matches!(rt, Err(RtError::InvalidConfig { .. })));
}

#[test]
fn dropping_the_handle_shuts_down() {
    let rt = Runtime::start(
        config(DriverChoice::Epoll, 2),
        |ctx: ringtun_core::rt::WorkerCtx| async move {
            ctx.shutdown().wait().await;
        },
    );
    assert!(rt.is_ok());
    // Drop triggers shutdown and joins; the test would hang here otherwise.
    drop(rt);
}
