//! Traffic steering with real processes: a real `ringtun-edge`, real `ringtun tunnel run`
//! replicas with `--standby` / `--weight`, and test origins that record what reached them.
//! `cargo test -p ringtun-connector --test e2e steering::`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::time::{Duration, Instant};

use e2e::{Connector, Edge, EdgeOptions, Service, TestOrigin, Tunnel, http_get};

/// Sends `GET /{tag}-{i}` for `i` in `range` and returns, per request, which origin saw it
/// (index into `origins`).
fn send(
    edge: &Edge,
    host: &str,
    tag: &str,
    range: std::ops::Range<usize>,
    origins: &[&TestOrigin],
) -> Vec<usize> {
    range
        .map(|i| {
            let path = format!("/{tag}-{i}");
            let r = http_get(edge.public_http(), host, &path);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            origins
                .iter()
                .position(|o| o.head_of(&format!("{path} ")).is_some())
                .unwrap_or_else(|| panic!("{path} reached no origin"))
        })
        .collect()
}

#[test]
fn a_standby_replica_gets_traffic_only_when_no_active_one_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "standby");
    tunnel.route_dns(&edge, "standby.test");
    let (active_origin, standby_origin) = (TestOrigin::start(), TestOrigin::start());
    let standby = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(standby_origin.url()),
        &["--standby", "--label", "spare"],
    );
    standby.wait_links(4);
    let active = Connector::run_args(&edge, &tunnel, &Service::Url(active_origin.url()), &[]);
    active.wait_links(4);
    let info = edge.wait_connectors(&tunnel.name, 2);
    let spare = info["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == standby.id.as_str())
        .unwrap_or_else(|| panic!("standby not listed: {info:#}"));
    assert_eq!(spare["standby"], true, "{info:#}");
    assert_eq!(spare["label"], "spare", "{info:#}");

    let origins = [&active_origin, &standby_origin];
    let hits = send(&edge, "standby.test", "up", 0..30, &origins);
    assert!(
        hits.iter().all(|&o| o == 0),
        "standby served while active was up: {hits:?}"
    );

    // The active replica drains away (SIGTERM); from then on only the standby is left.
    e2e::signal(&active.proc, "TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while edge.tunnel_info(&tunnel.name)["connectors"]
        .as_array()
        .is_some_and(|c| c.len() != 1)
    {
        assert!(Instant::now() < deadline, "the active replica never left");
        std::thread::sleep(Duration::from_millis(100));
    }
    let hits = send(&edge, "standby.test", "down", 0..30, &origins);
    assert!(hits.iter().all(|&o| o == 1), "active gone, yet: {hits:?}");
}

#[test]
fn weights_split_traffic_in_proportion_under_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    // More edge workers than each replica has links (4): on any machine, some workers hold no
    // link of a replica and hand its requests to one that has. A choice counted again by the
    // worker a connection was handed to skewed this split (171 of 200) against the replica
    // whose links sat on fewer workers (see `edge-sim/src/dataplane/lb/choice.rs`).
    let edge = Edge::start_with(
        dir.path(),
        EdgeOptions {
            workers: Some(8),
            ..EdgeOptions::default()
        },
    );
    let tunnel = Tunnel::create(&edge, "weighted");
    tunnel.route_dns(&edge, "weighted.test");
    let (heavy_origin, light_origin) = (TestOrigin::start(), TestOrigin::start());
    let heavy = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(heavy_origin.url()),
        &["--weight", "3"],
    );
    let light = Connector::run_args(&edge, &tunnel, &Service::Url(light_origin.url()), &[]);
    heavy.wait_links(4);
    light.wait_links(4);
    edge.wait_connectors(&tunnel.name, 2);
    e2e::ok(edge.ringtun(&["tunnel", "lb", &tunnel.name, "round-robin"]));

    let origins = [&heavy_origin, &light_origin];
    let hits = send(&edge, "weighted.test", "w", 0..200, &origins);
    let to_heavy = hits.iter().filter(|&&o| o == 0).count();
    // Round-robin by served per weight gives 3:1 exactly per cycle of 4; the edge's workers
    // share the counters, so allow a few requests either way.
    assert!(
        (140..=160).contains(&to_heavy),
        "weight 3 vs 1 got {to_heavy} of 200"
    );
}
