//! The replica-operations commands with real processes: `tunnel ready` exit codes against a
//! running connector's metrics server, `--weight` validation, the `tunnel info` LABEL column
//! and `tunnel lb`.
//!
//! The edge reports the replicas-contract fields (`label`, `weight`, `standby`, `state` on
//! connectors, `lb_policy` on tunnels); the checks hold it to them exactly.
//! `cargo test -p ringtun-connector --test e2e cli_ops::`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::time::{Duration, Instant};

use e2e::{Connector, Edge, Origin, STEP_TIMEOUT, Service, Tunnel, log_field, ok, wait_for};

/// The metrics address a connector logged.
fn metrics_addr(c: &Connector) -> SocketAddr {
    wait_for(&c.proc, "the metrics server address", |l| {
        if l.contains("metrics server listening") {
            log_field(l, "metrics")?.parse().ok()
        } else {
            None
        }
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An address nothing listens on.
fn closed_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn tunnel_ready_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "readyz");
    let origin = Origin::start(dir.path(), false);

    // Nobody listening: exit 1, and it says so.
    let nobody = closed_addr().to_string();
    let o = edge.ringtun(&["tunnel", "ready", "--metrics", &nobody]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the connector's metrics server"),
        "{}",
        stderr(&o)
    );

    // A connector whose links cannot register (its only edge server is closed): 503, exit 1.
    let stuck = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(origin.url()),
        &[
            "--metrics",
            "127.0.0.1:0",
            "--edge",
            &closed_addr().to_string(),
        ],
    );
    let stuck_metrics = metrics_addr(&stuck).to_string();
    let o = edge.ringtun(&["tunnel", "ready", "--metrics", &stuck_metrics]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not ready") && stderr(&o).contains("503"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("\"readyConnections\":0"),
        "{}",
        stderr(&o)
    );
    drop(stuck);

    // A registered connector: exit 0, also with the address from RINGTUN_METRICS.
    let c = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(origin.url()),
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&c).to_string();
    let deadline = Instant::now() + STEP_TIMEOUT;
    let o = loop {
        let o = edge.ringtun(&["tunnel", "ready", "--metrics", &metrics]);
        if o.status.success() || Instant::now() >= deadline {
            break o;
        }
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("connector {} is ready", c.id)),
        "{}",
        stdout(&o)
    );
    let o = edge
        .ringtun_cmd(&["tunnel", "ready"])
        .env("RINGTUN_METRICS", &metrics)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_weights_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let bins = e2e::binaries();
    for bad in ["0", "1001", "abc", "65536"] {
        let o = std::process::Command::new(&bins.ringtun)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .args(["tunnel", "run", "web", "--url", "http://127.0.0.1:1"])
            .arg(format!("--weight={bad}"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "--weight {bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("weight must be") && stderr(&o).contains("1000"),
            "--weight {bad}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn tunnel_info_shows_label_state_streams_requests() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "labelled");
    let origin = Origin::start(dir.path(), false);
    let _c = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(origin.url()),
        &["--label", "blue-1", "--weight", "3"],
    );
    let info = edge.wait_connectors(&tunnel.name, 1);
    let text = ok(edge.ringtun(&["tunnel", "info", &tunnel.name]));
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("CONNECTOR ID"))
        .unwrap_or_else(|| panic!("no table in:\n{text}"));
    let cells = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let head = cells(lines[header]);
    assert_eq!(
        head[5..],
        ["EDGE", "LABEL", "STATE", "STREAMS", "REQUESTS"],
        "{text}"
    );
    let row = cells(lines[header + 1]);
    assert_eq!(row.len(), head.len(), "{text}");
    let connector = &info["connectors"][0];
    assert_eq!(connector["label"], "blue-1", "{info:#}");
    assert_eq!(connector["weight"], 3, "{info:#}");
    assert_eq!(connector["standby"], false, "{info:#}");
    assert_eq!(connector["state"], "ready", "{info:#}");
    assert_eq!(row[6..8], ["blue-1", "ready"], "{text}");
    assert!(row[8].parse::<u64>().is_ok(), "{text}");
    assert!(row[9].parse::<u64>().is_ok(), "{text}");
}

#[test]
fn tunnel_lb_sets_and_clears_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "balanced");
    // An unknown policy never reaches the edge.
    let o = edge.ringtun(&["tunnel", "lb", &tunnel.name, "fastest"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("round-robin"), "{}", stderr(&o));

    assert!(edge.tunnel_info(&tunnel.name)["lb_policy"].is_null());
    let o = edge.ringtun(&["tunnel", "lb", &tunnel.name, "round-robin"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("round-robin"), "{}", stdout(&o));
    assert_eq!(edge.tunnel_info(&tunnel.name)["lb_policy"], "round-robin");
    ok(edge.ringtun(&["tunnel", "lb", &tunnel.id, "same-dc-first"]));
    assert_eq!(edge.tunnel_info(&tunnel.name)["lb_policy"], "same-dc-first");
    let out = ok(edge.ringtun(&["tunnel", "lb", &tunnel.name, "default"]));
    assert!(out.contains("default"), "{out}");
    assert!(edge.tunnel_info(&tunnel.name)["lb_policy"].is_null());
    let o = edge.ringtun(&["tunnel", "lb", "no-such-tunnel", "p2c"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
