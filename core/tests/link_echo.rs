//! Links over real loopback sockets, under both drivers: many concurrent streams echo data of
//! random sizes intact and in order, and a drain under load loses nothing.

mod link_common;
mod rt_common;

use std::net::SocketAddr;

use bytes::Bytes;
use compio::net::{TcpListener, TcpStream};
use futures_util::future::join_all;
use link_common::{exchange, payload, run_two_workers, serve, spawn_echo};
use rand::{Rng, SeedableRng, rngs::StdRng};
use ringtun_core::error::Classify;
use ringtun_core::link::Link;
use ringtun_core::mux::{Config, ErrorCode, Role, StreamKind};

async fn accept_link(l: std::net::TcpListener, role: Role) -> Result<Link, String> {
    let l = TcpListener::from_std(l).map_err(|e| e.to_string())?;
    let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(Link::spawn(s, role, Config::default()))
}

async fn dial_link(addr: SocketAddr) -> Result<Link, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(Link::spawn(s, Role::Client, Config::default()))
}

const STREAMS: usize = 150;

#[test]
fn many_concurrent_streams_echo_intact_under_both_drivers() {
    for (driver, _) in rt_common::drivers() {
        let results = run_two_workers(driver, |idx, l, addr| async move {
            if idx == 0 {
                let link = accept_link(l.ok_or("no listener")?, Role::Server).await?;
                serve(link.clone()).await;
                link.closed().await;
                return Ok(());
            }
            let link = dial_link(addr).await?;
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
                    let meta = Bytes::from(format!("stream-{i}"));
                    let s = link
                        .open(StreamKind::Tcp, meta.clone())
                        .map_err(|e| format!("open {i}: {e}"))?;
                    let data = payload(i as u64, len);
                    let back = exchange(&s, data.clone(), i as u64)
                        .await
                        .map_err(|e| format!("stream {i}: {e}"))?;
                    let reply = s
                        .reply_meta()
                        .await
                        .map_err(|e| format!("reply {i}: {e}"))?;
                    if reply != meta {
                        return Err(format!("stream {i}: reply metadata differs"));
                    }
                    if back != data {
                        return Err(format!(
                            "stream {i}: {} bytes sent, {} back, content differs",
                            data.len(),
                            back.len()
                        ));
                    }
                    Ok::<_, String>(len)
                }
            });
            let done = join_all(tasks).await;
            let total: usize = done
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .sum();
            if total == 0 {
                return Err("no data moved".into());
            }
            if link.stats().open_streams != 0 {
                return Err(format!("{} streams left open", link.stats().open_streams));
            }
            link.close(ErrorCode::NO_ERROR);
            link.closed().await;
            Ok(())
        });
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        assert!(errors.is_empty(), "{driver:?}: {}", errors.join("; "));
    }
}

const DRAIN_STREAMS: usize = 240;

#[test]
fn drain_under_load_loses_nothing_under_both_drivers() {
    for (driver, _) in rt_common::drivers() {
        let results = run_two_workers(driver, |idx, l, addr| async move {
            if idx == 0 {
                // The edge side of this test: the first link drains after 60 streams, the
                // second serves to the end.
                let l =
                    TcpListener::from_std(l.ok_or("no listener")?).map_err(|e| e.to_string())?;
                let mut links = Vec::new();
                for round in 0..2 {
                    let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
                    let link = Link::spawn(s, Role::Server, Config::default());
                    links.push(link.clone());
                    compio::runtime::spawn(async move {
                        let mut n = 0;
                        while let Some(inc) = link.accept().await {
                            n += 1;
                            if round == 0 && n == 60 {
                                link.drain();
                            }
                            spawn_echo(inc);
                        }
                    })
                    .detach();
                }
                let first = links[0].closed().await;
                if !links[0].is_drained() {
                    return Err(format!("first link did not drain: {first}"));
                }
                links[1].closed().await;
                return Ok(());
            }
            let first = dial_link(addr).await?;
            let mut second: Option<Link> = None;
            let mut refused = 0usize;
            let mut completed = 0usize;
            // Waves of 40 concurrent streams; refused ones are retried on the second link.
            let mut pending: Vec<usize> = (0..DRAIN_STREAMS).collect();
            while !pending.is_empty() {
                let wave: Vec<usize> = pending.drain(..pending.len().min(40)).collect();
                let link = match (&second, first.can_open()) {
                    (_, true) => first.clone(),
                    (Some(l), false) => l.clone(),
                    (None, false) => {
                        let l = dial_link(addr).await?;
                        second = Some(l.clone());
                        l
                    }
                };
                let runs = wave.iter().map(|&i| {
                    let link = link.clone();
                    async move {
                        let data = payload(1000 + i as u64, 20_000 + i * 97);
                        let s = match link.open(StreamKind::Http, Bytes::from_static(b"req")) {
                            Ok(s) => s,
                            Err(e) if e.is_retry_safe() => return Ok(Err(i)),
                            Err(e) => return Err(format!("open {i}: {e}")),
                        };
                        match exchange(&s, data.clone(), i as u64).await {
                            Ok(back) if back == data => Ok(Ok(i)),
                            Ok(_) => Err(format!("stream {i}: echo differs")),
                            Err(e) if e.is_retry_safe() => Ok(Err(i)),
                            Err(e) => Err(format!("stream {i}: {e} (not retry-safe)")),
                        }
                    }
                });
                for r in join_all(runs).await {
                    match r? {
                        Ok(_) => completed += 1,
                        Err(i) => {
                            refused += 1;
                            pending.push(i);
                        }
                    }
                }
            }
            if completed != DRAIN_STREAMS {
                return Err(format!("{completed} of {DRAIN_STREAMS} completed"));
            }
            if second.is_none() {
                return Err("the drain never moved traffic to a second link".into());
            }
            eprintln!("drain test: {completed} completed, {refused} refused and retried");
            let closed = first.closed().await;
            eprintln!("first link closed: {closed}");
            if let Some(l) = second {
                l.close(ErrorCode::NO_ERROR);
                l.closed().await;
            }
            Ok(())
        });
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        assert!(errors.is_empty(), "{driver:?}: {}", errors.join("; "));
    }
}
