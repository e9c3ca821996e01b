//! The connector limit at full size with real processes (`--connector-limit`, `docs/limits.md`): 100
//! `ringtun tunnel run` replicas of one tunnel, four links each, against one `ringtun-edge` with
//! the default limit of 100. All register, the 101st is refused with the edge's message and exits
//! non-zero, and requests through the public listener spread over the replicas.
//!
//! The time until all 100 are registered, the edge's RSS and the spread are printed, not asserted
//! on. Ignored by default because it starts 100 processes:
//! `cargo test --release -p ringtun-connector --test e2e scale:: -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::{Connector, Edge, HeadEchoOrigin, Service, Tunnel, http_get, rss_bytes};
use ringtun_core::http::CONNECTOR_ID_HEADER;

/// The edge's default per-tunnel connector limit.
const LIMIT: usize = 100;

/// Requests sent to see the spread.
const REQUESTS: usize = 2_000;

/// Flags of every replica: four links, one worker thread (the machine may have two cores), and a
/// short drain so stopping 100 of them is quick.
const FLAGS: &[&str] = &[
    "--ha-connections",
    "4",
    "--workers",
    "1",
    "--grace-period",
    "1s",
];

/// The replicas; dropping it sends SIGTERM to all of them at once before each [`Connector`]'s own
/// drop waits for (or kills) its process, so even a failing test stops 100 processes quickly.
struct Replicas(Vec<Connector>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = ringtun_core::signal::send(c.proc.id(), ringtun_core::signal::Signal::Term);
        }
    }
}

#[test]
#[ignore = "starts 100 connector processes"]
fn a_hundred_replicas_register_the_next_is_refused_and_load_spreads() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "scale");
    tunnel.route_dns(&edge, "scale.ringtun.test");
    let origin = HeadEchoOrigin::start();
    let service = Service::Url(origin.url());

    let started = Instant::now();
    let mut replicas = Replicas(Vec::with_capacity(LIMIT));
    for _ in 0..LIMIT {
        replicas
            .0
            .push(Connector::run_args(&edge, &tunnel, &service, FLAGS));
    }
    let info = edge.wait_connectors_within("scale", LIMIT, Duration::from_secs(300));
    let registered_after = started.elapsed();
    let connectors = info["connectors"].as_array().unwrap();
    assert_eq!(connectors.len(), LIMIT, "{info:#}");
    let links: usize = connectors
        .iter()
        .map(|c| c["links"].as_array().map_or(0, Vec::len))
        .sum();
    println!(
        "{LIMIT} connectors registered after {:.1} s with {links} links; edge RSS {:.1} MiB",
        registered_after.as_secs_f64(),
        rss_bytes(edge.proc.id()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );

    // The 101st: the edge's limit message, a non-zero exit, and the 100 stay registered.
    let mut extra = edge.ringtun_cmd(&["tunnel", "run", "scale", "--url", &origin.url()]);
    extra.args(FLAGS);
    let out = extra.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(!out.status.success(), "the 101st exited {:?}", out.status);
    assert!(err.contains("limit"), "{err}");
    println!(
        "the 101st exited {:?}: {}",
        out.status,
        err.lines()
            .rev()
            .find(|l| l.contains("limit"))
            .unwrap_or("")
    );
    edge.wait_connectors("scale", LIMIT);

    // Spread: which replica carried each request, as the origin saw it.
    let public = edge.public_http();
    let header = format!("{}: ", CONNECTOR_ID_HEADER.to_ascii_lowercase());
    let mut by_replica: HashMap<String, usize> = HashMap::new();
    for i in 0..REQUESTS {
        let r = http_get(public, "scale.ringtun.test", &format!("/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.text();
        let id = seen
            .lines()
            .find_map(|l| {
                let lower = l.to_ascii_lowercase();
                lower
                    .starts_with(&header)
                    .then(|| l[header.len()..].trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no connector ID header in:\n{seen}"));
        *by_replica.entry(id).or_default() += 1;
    }
    let max = by_replica.values().max().copied().unwrap_or(0);
    let min = if by_replica.len() == LIMIT {
        by_replica.values().min().copied().unwrap_or(0)
    } else {
        0
    };
    println!(
        "{REQUESTS} requests: {} distinct replicas, per replica max {max}, min {min}; edge RSS {:.1} MiB",
        by_replica.len(),
        rss_bytes(edge.proc.id()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );
    let known: Vec<&str> = replicas.0.iter().map(|c| c.id.as_str()).collect();
    for id in by_replica.keys() {
        assert!(known.contains(&id.as_str()), "unknown connector ID {id}");
    }
    // With a uniform choice over 100 replicas, 2,000 requests leave a given replica unused with
    // probability 0.99^2000 ≈ 2e-9; asking for at least half of them is far looser still.
    assert!(
        by_replica.len() >= LIMIT / 2,
        "only {} of {LIMIT} replicas carried requests",
        by_replica.len()
    );
}
