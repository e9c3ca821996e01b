//! Sockets under both drivers: a `SO_REUSEPORT` echo server on every worker, stream tuning.

mod rt_common;

use std::{cell::Cell, net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use compio::{
    BufResult,
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use ringtun_core::rt::{
    DriverChoice, RtError, Runtime, RuntimeConfig, WorkerCtx,
    net::{self, Keepalive, ListenerSet, SocketTuning},
};
use socket2::SockRef;

const CLIENTS: usize = 200;
const PAYLOAD: usize = 24 * 1024;

fn payload(i: usize) -> Vec<u8> {
    (0..PAYLOAD).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Echoes until the peer half-closes. One read and one write in flight at a time.
async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let BufResult(n, b) = stream.read(buf).await;
        if n? == 0 {
            break;
        }
        let BufResult(w, mut b) = stream.write_all(b).await;
        w?;
        b.clear();
        buf = b;
    }
    stream.shutdown().await
}

/// Per worker: take its listener, accept in a long-lived task, count connections, stop on
/// shutdown. The accept in flight at shutdown is dropped with the worker's runtime, which is
/// fine there: the listener closes with it.
async fn serve(ctx: WorkerCtx, set: Arc<ListenerSet>) -> Result<usize, RtError> {
    let listener = set.take(ctx.index())?;
    let served = Rc::new(Cell::new(0usize));
    let counter = Rc::clone(&served);
    let tuning = SocketTuning::default();
    let _acceptor = compio::runtime::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                continue;
            };
            counter.set(counter.get() + 1);
            if net::tune_stream(&stream, &tuning).is_err() {
                continue;
            }
            compio::runtime::spawn(async move {
                let _ignored = echo(stream).await;
            })
            .detach();
        }
    });
    ctx.shutdown().wait().await;
    Ok(served.get())
}

async fn client(addr: SocketAddr, i: usize) -> Result<(), String> {
    let stream = net::connect(addr, &SocketTuning::default())
        .await
        .map_err(|e| format!("client {i}: connect: {e}"))?;
    let sent = payload(i);
    let (mut rd, mut wr) = stream.into_split();
    // Write and read concurrently, as a real link would (reader and writer tasks).
    let writer = compio::runtime::spawn(async move {
        let BufResult(r, _) = wr.write_all(sent).await;
        r?;
        wr.shutdown().await
    });
    let BufResult(r, got) = rd.read_to_end(Vec::with_capacity(PAYLOAD)).await;
    r.map_err(|e| format!("client {i}: read: {e}"))?;
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("client {i}: write: {e}")),
        Err(e) => return Err(format!("client {i}: writer task: {e:?}")),
    }
    if got != payload(i) {
        return Err(format!(
            "client {i}: echo differs ({} bytes back)",
            got.len()
        ));
    }
    Ok(())
}

#[test]
fn reuseport_echo_across_all_workers() {
    for (choice, _) in rt_common::drivers() {
        let workers = 2;
        let set = match ListenerSet::bind(([127, 0, 0, 1], 0).into(), workers, net::DEFAULT_BACKLOG)
        {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("bind: {e}"),
        };
        let addr = set.local_addr();
        assert_ne!(addr.port(), 0);
        let server_set = Arc::clone(&set);
        let rt = Runtime::start(
            RuntimeConfig {
                workers: Some(workers),
                driver: choice,
                ..RuntimeConfig::default()
            },
            move |ctx| serve(ctx, Arc::clone(&server_set)),
        );
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => panic!("start under {choice:?}: {e}"),
        };

        let clients = compio::runtime::Runtime::new().map(|crt| {
            crt.block_on(async {
                let tasks: Vec<_> = (0..CLIENTS)
                    .map(|i| compio::runtime::spawn(client(addr, i)))
                    .collect();
                let mut errors = Vec::new();
                for t in tasks {
                    match t.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => errors.push(e),
                        Err(e) => errors.push(format!("client task: {e:?}")),
                    }
                }
                errors
            })
        });

        rt.shutdown();
        let served: Vec<usize> = rt
            .join()
            .into_iter()
            .map(|r| match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) | Err(e) => panic!("{choice:?}: worker: {e}"),
            })
            .collect();
        match clients {
            Ok(errors) => assert!(errors.is_empty(), "{choice:?}: {errors:?}"),
            Err(e) => panic!("client runtime: {e}"),
        }
        assert_eq!(
            served.iter().sum::<usize>(),
            CLIENTS,
            "{choice:?}: {served:?}"
        );
        // The kernel hashes connections over the sockets: with 200 connections, a worker that
        // got none would mean the listeners do not share the port (odds otherwise ~2^-199).
        assert!(served.iter().all(|n| *n > 0), "{choice:?}: {served:?}");
    }
}

#[test]
fn listener_set_shares_one_port_and_hands_each_socket_out_once() {
    let set = match ListenerSet::bind(([127, 0, 0, 1], 0).into(), 3, 16) {
        Ok(s) => s,
        Err(e) => panic!("bind: {e}"),
    };
    assert_eq!(set.len(), 3);
    let rt = compio::runtime::Runtime::builder()
        .with_proactor({
            let mut p = compio::driver::ProactorBuilder::new();
            p.driver_type(compio::driver::DriverType::Poll);
            p
        })
        .build();
    let Ok(rt) = rt else {
        panic!("epoll runtime");
    };
    rt.block_on(async {
        for i in 0..3 {
            let l = set.take(i).map_err(|e| e.to_string());
            let local = l.and_then(|l| l.local_addr().map_err(|e| e.to_string()));
            assert_eq!(local, Ok(set.local_addr()));
        }
        assert!(matches!(
            set.take(0),
            Err(RtError::ListenerTaken { worker: 0 })
        ));
        assert!(matches!(
            set.take(3),
            Err(RtError::ListenerTaken { worker: 3 })
        ));
    });
}

#[test]
fn a_second_socket_on_a_taken_port_without_reuseport_fails() {
    // The port held by a ListenerSet is not open to a plain (non-reuseport) bind.
    let set = match ListenerSet::bind(([127, 0, 0, 1], 0).into(), 1, 16) {
        Ok(s) => s,
        Err(e) => panic!("bind: {e}"),
    };
    assert!(std::net::TcpListener::bind(set.local_addr()).is_err());
}

#[test]
fn connect_applies_the_tuning() {
    for (choice, _) in rt_common::drivers() {
        let tuning = SocketTuning {
            nodelay: true,
            keepalive: Some(Keepalive {
                time: Duration::from_secs(42),
                interval: Duration::from_secs(7),
                retries: 5,
            }),
            notsent_lowat: Some(64 * 1024),
        };
        let set = match ListenerSet::bind(([127, 0, 0, 1], 0).into(), 1, 16) {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("bind: {e}"),
        };
        let addr = set.local_addr();
        let want = tuning.clone();
        let rt = Runtime::start(
            RuntimeConfig {
                workers: Some(1),
                driver: choice,
                ..RuntimeConfig::default()
            },
            move |ctx: WorkerCtx| {
                let set = Arc::clone(&set);
                let tuning = tuning.clone();
                async move {
                    let listener = set.take(ctx.index()).map_err(|e| e.to_string())?;
                    let stream = net::connect(addr, &tuning)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (_accepted, _) = listener.accept().await.map_err(|e| e.to_string())?;
                    let s = SockRef::from(&stream);
                    let read = || -> std::io::Result<_> {
                        Ok((
                            s.tcp_nodelay()?,
                            s.keepalive()?,
                            s.tcp_keepalive_time()?,
                            s.tcp_keepalive_interval()?,
                            s.tcp_keepalive_retries()?,
                            s.tcp_notsent_lowat()?,
                        ))
                    };
                    read().map_err(|e| e.to_string())
                }
            },
        );
        let results = match rt {
            Ok(rt) => rt.join(),
            Err(e) => panic!("start under {choice:?}: {e}"),
        };
        let got = results.into_iter().next().and_then(|r| r.ok());
        assert_eq!(
            got,
            Some(Ok((
                true,
                true,
                Duration::from_secs(42),
                Duration::from_secs(7),
                5,
                64 * 1024
            ))),
            "{choice:?}, wanted {want:?}"
        );
    }
}

#[test]
fn default_tuning_is_latency_oriented() {
    let t = SocketTuning::default();
    assert!(t.nodelay);
    assert_eq!(t.notsent_lowat, Some(net::DEFAULT_NOTSENT_LOWAT));
    assert!(t.keepalive.is_some());
    let _ = DriverChoice::default();
}

#[test]
fn a_port_held_by_another_listener_set_or_program_is_refused() {
    // Another set on the same address (a second process doing the same, or a listener of this
    // process meant for something else) must not join the first one's SO_REUSEPORT group.
    let first = match ListenerSet::bind(([127, 0, 0, 1], 0).into(), 2, 16) {
        Ok(s) => s,
        Err(e) => panic!("bind: {e}"),
    };
    match ListenerSet::bind(first.local_addr(), 2, 16) {
        Err(RtError::PortInUse { addr }) => assert_eq!(addr, first.local_addr()),
        other => panic!("a second set on a held port: {other:?}"),
    }
    // A program that holds the port without SO_REUSEPORT.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let held = plain.local_addr().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        ListenerSet::bind(held, 1, 16),
        Err(RtError::PortInUse { .. })
    ));
    // A program that holds it WITH SO_REUSEPORT (as a second edge would).
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap_or_else(|e| panic!("{e}"));
    other.set_reuse_port(true).unwrap_or_else(|e| panic!("{e}"));
    other
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap_or_else(|e| panic!("{e}"));
    other.listen(16).unwrap_or_else(|e| panic!("{e}"));
    let held = other
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or_else(|| panic!("no address"));
    assert!(matches!(
        ListenerSet::bind(held, 1, 16),
        Err(RtError::PortInUse { .. })
    ));
}

#[test]
fn a_shut_down_set_frees_its_port() {
    let set = match ListenerSet::bind(([127, 0, 0, 1], 0).into(), 2, 16) {
        Ok(s) => s,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = set.local_addr();
    assert!(!set.is_shut_down());
    set.shut_down();
    assert!(set.is_shut_down());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
    // A new set binds the port while the old one still exists (its sockets are not listening).
    let again = ListenerSet::bind(addr, 2, 16).unwrap_or_else(|e| panic!("rebind: {e}"));
    assert_eq!(again.local_addr(), addr);
}
