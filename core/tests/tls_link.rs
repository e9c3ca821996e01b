//! Links over TLS over loopback, under both drivers: many concurrent streams echo intact, a
//! 16 MiB one-way transfer arrives intact, a client with the wrong CA fails the handshake with
//! a clear error on both sides, and a key update mid-stream loses nothing.

mod link_common;
mod rt_common;
mod tls_common;

use std::net::SocketAddr;

use bytes::Bytes;
use compio::BufResult;
use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use futures_util::future::join_all;
use link_common::{exchange, payload, run_two_workers, serve};
use rand::{Rng, SeedableRng, rngs::StdRng};
use ringtun_core::error::{Classify, Fault};
use ringtun_core::link::Link;
use ringtun_core::mux::{Config, ErrorCode, Role, StreamKind};
use ringtun_core::tls::{ALPN, TlsError, TlsStream};
use tls_common::{SERVER_NAME, pki};

async fn tls_accept(
    l: std::net::TcpListener,
    cfg: std::sync::Arc<rustls::ServerConfig>,
) -> Result<TlsStream, String> {
    let l = TcpListener::from_std(l).map_err(|e| e.to_string())?;
    let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    TlsStream::accept(s, cfg)
        .await
        .map_err(|e| format!("server handshake: {e}"))
}

async fn tls_dial(
    addr: SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> Result<TlsStream, TlsError> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    TlsStream::connect(s, cfg, SERVER_NAME).await
}

const STREAMS: usize = 80;

#[test]
fn many_concurrent_streams_echo_over_tls_under_both_drivers() {
    for (driver, _) in rt_common::drivers() {
        let p = pki();
        let (server, client) = (p.server, p.client);
        let results = run_two_workers(driver, move |idx, l, addr| {
            let (server, client) = (server.clone(), client.clone());
            async move {
                if idx == 0 {
                    let tls = tls_accept(l.ok_or("no listener")?, server).await?;
                    let link = Link::spawn(tls, Role::Server, Config::default());
                    serve(link.clone()).await;
                    link.closed().await;
                    return Ok(());
                }
                let tls = tls_dial(addr, client)
                    .await
                    .map_err(|e| format!("client handshake: {e}"))?;
                if tls.alpn_protocol().as_deref() != Some(ALPN) {
                    return Err("alpn not negotiated".into());
                }
                let link = Link::spawn(tls, Role::Client, Config::default());
                let mut rng = StdRng::seed_from_u64(7);
                let sizes: Vec<usize> = (0..STREAMS)
                    .map(|i| match i % 10 {
                        0 => 0,
                        1 => rng.random_range(1..100),
                        2 => rng.random_range(500_000..1_200_000),
                        _ => rng.random_range(100..150_000),
                    })
                    .collect();
                let tasks = sizes.iter().enumerate().map(|(i, &len)| {
                    let link = link.clone();
                    async move {
                        let s = link
                            .open(StreamKind::Tcp, Bytes::from(format!("s{i}")))
                            .map_err(|e| format!("open {i}: {e}"))?;
                        let data = payload(i as u64, len);
                        let back = exchange(&s, data.clone(), i as u64)
                            .await
                            .map_err(|e| format!("stream {i}: {e}"))?;
                        if back != data {
                            return Err(format!("stream {i}: echo differs"));
                        }
                        Ok::<_, String>(len)
                    }
                });
                let total: usize = join_all(tasks)
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .sum();
                if total == 0 {
                    return Err("no data moved".into());
                }
                link.close(ErrorCode::NO_ERROR);
                link.closed().await;
                Ok(())
            }
        });
        for r in results {
            r.unwrap_or_else(|e| panic!("{driver:?}: {e}"));
        }
    }
}

const BIG: usize = 16 * 1024 * 1024;

#[test]
fn sixteen_mib_one_way_over_tls_arrives_intact_under_both_drivers() {
    for (driver, _) in rt_common::drivers() {
        let p = pki();
        let (server, client) = (p.server, p.client);
        let results = run_two_workers(driver, move |idx, l, addr| {
            let (server, client) = (server.clone(), client.clone());
            async move {
                let data = payload(16, BIG);
                if idx == 0 {
                    let tls = tls_accept(l.ok_or("no listener")?, server).await?;
                    let link = Link::spawn(tls, Role::Server, Config::default());
                    let inc = link.accept().await.ok_or("no stream")?;
                    let s = inc.stream;
                    s.reply(Bytes::new()).map_err(|e| e.to_string())?;
                    let mut got = Vec::with_capacity(BIG);
                    while let Some(c) = s.read().await.map_err(|e| e.to_string())? {
                        got.extend_from_slice(&c);
                    }
                    let verdict = if got == data[..] { "ok" } else { "differs" };
                    s.write(Bytes::from(verdict))
                        .await
                        .map_err(|e| e.to_string())?;
                    s.finish().map_err(|e| e.to_string())?;
                    link.closed().await;
                    return Ok(());
                }
                let tls = tls_dial(addr, client)
                    .await
                    .map_err(|e| format!("client handshake: {e}"))?;
                let link = Link::spawn(tls, Role::Client, Config::default());
                let s = link
                    .open(StreamKind::Tcp, Bytes::new())
                    .map_err(|e| e.to_string())?;
                let mut rest = data.clone();
                while !rest.is_empty() {
                    let n = rest.len().min(256 * 1024);
                    s.write(rest.split_to(n)).await.map_err(|e| e.to_string())?;
                }
                s.finish().map_err(|e| e.to_string())?;
                let mut verdict = Vec::new();
                while let Some(c) = s.read().await.map_err(|e| e.to_string())? {
                    verdict.extend_from_slice(&c);
                }
                if verdict != b"ok" {
                    return Err(format!(
                        "server says: {}",
                        String::from_utf8_lossy(&verdict)
                    ));
                }
                link.close(ErrorCode::NO_ERROR);
                link.closed().await;
                Ok(())
            }
        });
        for r in results {
            r.unwrap_or_else(|e| panic!("{driver:?}: {e}"));
        }
    }
}

#[test]
fn wrong_ca_fails_the_handshake_clearly_on_both_sides() {
    for (driver, _) in rt_common::drivers() {
        let server = pki().server;
        let other_ca = pki().client;
        let results = run_two_workers(driver, move |idx, l, addr| {
            let (server, client) = (server.clone(), other_ca.clone());
            async move {
                if idx == 0 {
                    let l = TcpListener::from_std(l.ok_or("no listener")?)
                        .map_err(|e| e.to_string())?;
                    let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
                    return match TlsStream::accept(s, server).await {
                        Ok(_) => {
                            Err("server: handshake succeeded with an untrusting client".into())
                        }
                        Err(e @ TlsError::PeerAlert(_)) if e.fault() == Fault::Peer => {
                            eprintln!("server sees: {e}");
                            Ok(())
                        }
                        Err(e) => Err(format!("server: unexpected error: {e:?}")),
                    };
                }
                match tls_dial(addr, client).await {
                    Ok(_) => Err("client: handshake succeeded with the wrong ca".into()),
                    Err(e @ TlsError::BadCertificate(_)) => {
                        let msg = e.to_string();
                        eprintln!("client sees: {msg}");
                        if !msg.contains("certificate") || e.is_retry_safe() {
                            return Err(format!("client: unclear error: {msg}"));
                        }
                        Ok(())
                    }
                    Err(e) => Err(format!("client: unexpected error: {e:?}")),
                }
            }
        });
        for r in results {
            r.unwrap_or_else(|e| panic!("{driver:?}: {e}"));
        }
    }
}

#[test]
fn key_update_mid_stream_loses_nothing_under_both_drivers() {
    for (driver, _) in rt_common::drivers() {
        let p = pki();
        let (server, client) = (p.server, p.client);
        let results = run_two_workers(driver, move |idx, l, addr| {
            let (server, client) = (server.clone(), client.clone());
            async move {
                if idx == 0 {
                    // Echo raw TLS until end of stream, then close cleanly.
                    let mut tls = tls_accept(l.ok_or("no listener")?, server).await?;
                    loop {
                        let BufResult(r, b) = tls.read(Vec::with_capacity(8192)).await;
                        match r.map_err(|e| format!("server read: {e}"))? {
                            0 => break,
                            _ => {
                                let BufResult(w, _) = tls.write_all(b).await;
                                w.map_err(|e| format!("server write: {e}"))?;
                            }
                        }
                    }
                    tls.shutdown().await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                let mut tls = tls_dial(addr, client).await.map_err(|e| e.to_string())?;
                for round in 0..4u64 {
                    if round % 2 == 1 {
                        tls.refresh_traffic_keys().map_err(|e| e.to_string())?;
                    }
                    let data = payload(round, 20_000).to_vec();
                    let BufResult(w, _) = tls.write_all(data.clone()).await;
                    w.map_err(|e| format!("client write: {e}"))?;
                    let BufResult(r, back) = tls.read_exact(vec![0u8; data.len()]).await;
                    r.map_err(|e| format!("client read: {e}"))?;
                    if back != data {
                        return Err(format!("round {round}: echo differs"));
                    }
                }
                tls.shutdown().await.map_err(|e| e.to_string())?;
                let BufResult(r, _) = tls.read(Vec::with_capacity(16)).await;
                match r {
                    Ok(0) => Ok(()),
                    other => Err(format!("expected a clean end of stream, got {other:?}")),
                }
            }
        });
        for r in results {
            r.unwrap_or_else(|e| panic!("{driver:?}: {e}"));
        }
    }
}

/// One stream's bulk transfer over one link, plaintext then TLS, under both drivers: the server
/// counts what arrives and answers with the count, which must be every byte sent. The same
/// transfer's throughput is measured by `perf/compare` (the `bulk` workload, `ringtun-plain` and
/// `ringtun-tls`), not here.
#[test]
fn bulk_transfer_counts_every_byte_plain_and_tls() {
    const TOTAL: usize = 16 * 1024 * 1024;
    for ((driver, _), tls) in rt_common::drivers()
        .into_iter()
        .flat_map(|d| [(d, false), (d, true)])
    {
        let p = pki();
        let (server, client) = (p.server, p.client);
        let results = run_two_workers(driver, move |idx, l, addr| {
            let (server, client) = (server.clone(), client.clone());
            async move {
                if idx == 0 {
                    let l = TcpListener::from_std(l.ok_or("no listener")?)
                        .map_err(|e| e.to_string())?;
                    let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    let link = if tls {
                        let t = TlsStream::accept(s, server)
                            .await
                            .map_err(|e| e.to_string())?;
                        Link::spawn(t, Role::Server, Config::default())
                    } else {
                        Link::spawn(s, Role::Server, Config::default())
                    };
                    let inc = link.accept().await.ok_or("no stream")?;
                    inc.stream.reply(Bytes::new()).map_err(|e| e.to_string())?;
                    let mut n = 0usize;
                    while let Some(c) = inc.stream.read().await.map_err(|e| e.to_string())? {
                        n += c.len();
                    }
                    inc.stream
                        .write(Bytes::from(n.to_string()))
                        .await
                        .map_err(|e| e.to_string())?;
                    inc.stream.finish().map_err(|e| e.to_string())?;
                    link.closed().await;
                    return Ok(());
                }
                let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                let link = if tls {
                    let t = TlsStream::connect(s, client, SERVER_NAME)
                        .await
                        .map_err(|e| e.to_string())?;
                    Link::spawn(t, Role::Client, Config::default())
                } else {
                    Link::spawn(s, Role::Client, Config::default())
                };
                let chunk = payload(1, 256 * 1024);
                let st = link
                    .open(StreamKind::Tcp, Bytes::new())
                    .map_err(|e| e.to_string())?;
                for _ in 0..TOTAL / chunk.len() {
                    st.write(chunk.clone()).await.map_err(|e| e.to_string())?;
                }
                st.finish().map_err(|e| e.to_string())?;
                let mut count = Vec::new();
                while let Some(c) = st.read().await.map_err(|e| e.to_string())? {
                    count.extend_from_slice(&c);
                }
                let count = String::from_utf8_lossy(&count);
                if count != TOTAL.to_string() {
                    return Err(format!(
                        "tls={tls}: the server counted {count} of {TOTAL} bytes"
                    ));
                }
                link.close(ErrorCode::NO_ERROR);
                link.closed().await;
                Ok(())
            }
        });
        for r in results {
            r.unwrap_or_else(|e| panic!("{driver:?}, tls={tls}: {e}"));
        }
    }
}
