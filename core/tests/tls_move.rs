//! A TLS stream moves between worker threads (`TlsStream::into_parts`, `from_parts`) with
//! nothing lost, under both drivers: the client sends a first message and, without waiting,
//! a large body; the server reads the first message on worker 0, moves the stream to worker 2
//! and reads the rest there, then answers from worker 2.

mod rt_common;
mod tls_common;

use std::net::SocketAddr;
use std::time::Duration;

use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::rt::{DriverChoice, Runtime, RuntimeConfig, WorkerCtx};
use ringtun_core::tls::{TlsParts, TlsStream};
use tls_common::{SERVER_NAME, pki};

const FIRST: &[u8] = b"register";
const BODY: usize = 300_000;
/// Generous: the machine may be busy; a healthy run takes well under a second.
const STEP: Duration = Duration::from_secs(30);

fn body() -> Vec<u8> {
    (0..BODY).map(|i| (i % 251) as u8).collect()
}

fn run(driver: DriverChoice) -> Vec<Result<(), String>> {
    let p = pki();
    let (server, client) = (p.server, p.client);
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let addr: SocketAddr = l.local_addr().expect("addr");
    let l = std::sync::Mutex::new(Some(l));
    let cfg = RuntimeConfig {
        workers: Some(3),
        pin: false,
        driver,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(cfg, move |ctx: WorkerCtx<TlsParts>| {
        let idx = ctx.index();
        let listener = if idx == 0 {
            l.lock().ok().and_then(|mut g| g.take())
        } else {
            None
        };
        let (server, client) = (server.clone(), client.clone());
        let (mailbox, senders, shutdown) = ctx.into_parts();
        async move {
            let res: Result<(), String> = async {
                match idx {
                    0 => {
                        let l = TcpListener::from_std(listener.ok_or("no listener")?)
                            .map_err(|e| e.to_string())?;
                        let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
                        let mut tls = TlsStream::accept(s, server)
                            .await
                            .map_err(|e| e.to_string())?;
                        let BufResult(res, first) = tls.read_exact(vec![0u8; FIRST.len()]).await;
                        res.map_err(|e| e.to_string())?;
                        if first != FIRST {
                            return Err(format!("first message {first:?}"));
                        }
                        let parts = tls.into_parts().map_err(|e| e.to_string())?;
                        senders.send(2, parts).await.map_err(|e| e.to_string())?;
                        Ok(())
                    }
                    2 => {
                        let parts = mailbox.recv().await.ok_or("no stream arrived")?;
                        let mut tls = TlsStream::from_parts(parts).map_err(|e| e.to_string())?;
                        // A lost byte would leave this read waiting: fail instead (the test
                        // ends either way, so dropping the read loses nothing that matters).
                        let BufResult(res, got) =
                            compio::time::timeout(STEP, tls.read_exact(vec![0u8; BODY]))
                                .await
                                .map_err(|_| "the body never arrived whole after the move")?;
                        res.map_err(|e| e.to_string())?;
                        if got != body() {
                            return Err("the body arrived changed".into());
                        }
                        let BufResult(res, _) = tls.write_all(b"moved and read".to_vec()).await;
                        res.map_err(|e| e.to_string())?;
                        tls.shutdown().await.map_err(|e| e.to_string())?;
                        Ok(())
                    }
                    _ => {
                        let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                        let mut tls = TlsStream::connect(s, client, SERVER_NAME)
                            .await
                            .map_err(|e| e.to_string())?;
                        let mut all = FIRST.to_vec();
                        all.extend(body());
                        let BufResult(res, _) = tls.write_all(all).await;
                        res.map_err(|e| e.to_string())?;
                        let BufResult(res, answer) =
                            compio::time::timeout(STEP, tls.read_to_end(Vec::new()))
                                .await
                                .map_err(|_| "no answer")?;
                        res.map_err(|e| e.to_string())?;
                        if answer != b"moved and read" {
                            return Err(format!("answer {answer:?}"));
                        }
                        Ok(())
                    }
                }
            }
            .await;
            if idx == 1 {
                shutdown.trigger();
            } else if res.is_ok() {
                // Stay up until the client has its answer (worker 0 must not end the test).
                let _ = compio::time::timeout(Duration::from_secs(60), shutdown.wait()).await;
            } else {
                shutdown.trigger();
            }
            res
        }
    })
    .expect("runtime starts");
    rt.join()
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()).and_then(|r| r))
        .collect()
}

#[test]
fn a_tls_stream_moves_to_another_worker_without_losing_bytes() {
    for (driver, kind) in rt_common::drivers() {
        for (i, r) in run(driver).into_iter().enumerate() {
            assert!(r.is_ok(), "{kind:?}, worker {i}: {r:?}");
        }
    }
}
