//! Route and connector management against real processes: `tunnel cleanup` on live
//! connectors, `tunnel delete -f` cutting the tunnel's connectors off, `route dns` twice and
//! with `--overwrite-dns`, `route tcp` onto a port the edge cannot listen on, `route list` and
//! `route delete`, a second edge on the same addresses, `tunnel run NAME` with another tunnel's
//! credentials, SIGTERM at the most links, and the logs (fields, no migration on a new
//! database).
//!
//! Each test starts its own `ringtun-edge` on `127.0.0.1:0` ports in a temporary directory and
//! drives it with the `ringtun` binary; every wait has a generous bound ([`e2e::STEP_TIMEOUT`]).
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use e2e::{
    Connector, Edge, EdgeOptions, Origin, Proc, STEP_TIMEOUT, Service, Tunnel, binaries, free_port,
    get_when_served, ok, signal, wait_for,
};

const HOST: &str = "app.example.com";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code 1 and returns stderr.
#[track_caller]
fn fails(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// Waits up to `within` for the process to exit; panics with its last lines otherwise.
#[track_caller]
fn wait_exit(proc: &mut Proc, within: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.try_wait() {
            // Let the reader threads catch up with the last lines.
            let _ = proc.wait_line(within, None, |_| None::<()>);
            return status;
        }
        assert!(
            start.elapsed() < within,
            "{} did not exit within {within:?}; last lines:{}",
            proc.name(),
            proc.tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An edge, a tunnel `web` routed from [`HOST`], and an HTTP origin.
fn site(dir: &Path, options: EdgeOptions) -> (Edge, Tunnel, Origin) {
    let edge = Edge::start_with(dir, options);
    let tunnel = Tunnel::create(&edge, "web");
    tunnel.route_dns(&edge, HOST);
    let origin = Origin::start(dir, false);
    (edge, tunnel, origin)
}

#[test]
fn cleanup_keeps_live_connectors_says_so_and_the_limit_holds() {
    let dir = tempfile::tempdir().unwrap();
    let options = EdgeOptions {
        connector_limit: Some(1),
        ..EdgeOptions::default()
    };
    let (edge, tunnel, origin) = site(dir.path(), options);
    let a = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    edge.wait_connectors("web", 1);

    let out = ok(edge.ringtun(&["tunnel", "cleanup", "web"]));
    assert!(out.contains("Removed 0 stale connector(s)"), "{out}");
    assert!(out.contains(&format!("kept          {}", a.id)), "{out}");
    // The connector is still known and still serves.
    let info = edge.tunnel_info("web");
    assert_eq!(info["connectors"][0]["id"], a.id.as_str(), "{info:#}");
    assert_eq!(get_when_served(edge.public_http(), HOST, "/").status, 200);

    // The limit of 1 still holds: a second connector is refused and gives up.
    let mut b = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    let status = wait_exit(&mut b.proc, STEP_TIMEOUT);
    assert!(
        !status.success(),
        "a second connector ran under a limit of 1"
    );
    assert!(
        b.proc.lines().iter().any(|l| l.contains("limit of 1")),
        "{}",
        b.proc.tail(10)
    );
    assert_eq!(
        edge.tunnel_info("web")["connectors"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // --disconnect closes the live connector's links; it says so.
    let out = ok(edge.ringtun(&["tunnel", "cleanup", "--disconnect", "web"]));
    assert!(out.contains(&format!("disconnected  {}", a.id)), "{out}");
    wait_for(&edge.proc, "the edge closing the links", |l| {
        (l.contains("connector disconnected by cleanup") && l.contains(&a.id)).then_some(())
    });
}

#[test]
fn forced_delete_disconnects_the_tunnels_connectors_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, tunnel, origin) = site(dir.path(), EdgeOptions::default());
    let mut a = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    edge.wait_connectors("web", 1);
    assert_eq!(get_when_served(edge.public_http(), HOST, "/").status, 200);

    ok(edge.ringtun(&["tunnel", "delete", "-f", "web"]));
    // Its links close at once; reconnecting with the deleted tunnel's credentials is refused,
    // so the connector gives up.
    let status = wait_exit(&mut a.proc, STEP_TIMEOUT);
    assert!(!status.success());
    assert!(
        a.proc
            .lines()
            .iter()
            .any(|l| l.contains("does not exist on this edge")),
        "{}",
        a.proc.tail(10)
    );
    let metrics = edge.admin_request("GET", "/metrics").text();
    assert!(metrics.contains("ringtun_edge_connectors 0"), "{metrics}");
}

#[test]
fn route_dns_is_idempotent_overwrite_moves_it_and_routes_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let a = Tunnel::create(&edge, "a");
    let b = Tunnel::create(&edge, "b");

    let out = ok(edge.ringtun(&["tunnel", "route", "dns", "a", HOST]));
    assert!(out.contains("Added DNS route"), "{out}");
    let out = ok(edge.ringtun(&["tunnel", "route", "dns", "a", HOST]));
    assert!(out.contains("already routes to tunnel a"), "{out}");

    let err = fails(edge.ringtun(&["tunnel", "route", "dns", "b", HOST]));
    assert!(err.contains("already routed to tunnel a"), "{err}");
    assert!(err.contains("--overwrite-dns"), "{err}");
    let out = ok(edge.ringtun(&["tunnel", "route", "dns", "--overwrite-dns", "b", HOST]));
    assert!(
        out.contains(&format!("now routes to tunnel b ({})", b.id)),
        "{out}"
    );

    let port = free_port();
    a.route_tcp(&edge, port);
    let list = ok(edge.ringtun(&["tunnel", "route", "list", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["dns"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["dns"][0]["hostname"], HOST);
    assert_eq!(v["dns"][0]["tunnel_name"], "b");
    assert_eq!(v["tcp"][0]["port"], port);
    assert_eq!(v["tcp"][0]["tunnel_id"], a.id.as_str());
    let table = ok(edge.ringtun(&["tunnel", "route", "list"]));
    assert!(table.contains("TYPE") && table.contains(HOST), "{table}");

    ok(edge.ringtun(&["tunnel", "route", "delete", HOST]));
    ok(edge.ringtun(&["tunnel", "route", "delete", &port.to_string()]));
    let err = fails(edge.ringtun(&["tunnel", "route", "delete", HOST]));
    assert!(err.contains("no route for hostname"), "{err}");
    let list = ok(edge.ringtun(&["tunnel", "route", "list", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v, serde_json::json!({ "dns": [], "tcp": [] }));
    // The deleted TCP route's port stops listening.
    wait_until("the deleted route's port to refuse connections", || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

#[test]
fn route_tcp_fails_when_the_edge_cannot_listen_and_works_on_a_free_port() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "ssh");

    // The edge's own public HTTP port.
    let public = edge.public_http().port().to_string();
    let err = fails(edge.ringtun(&["tunnel", "route", "tcp", "ssh", &public]));
    assert!(err.contains("cannot listen on tcp port"), "{err}");
    assert!(err.contains("in use"), "{err}");
    // A port another program holds.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = other.local_addr().unwrap().port().to_string();
    let err = fails(edge.ringtun(&["tunnel", "route", "tcp", "ssh", &held]));
    assert!(err.contains("in use"), "{err}");
    // Neither was stored.
    let list = ok(edge.ringtun(&["tunnel", "route", "list", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["tcp"], serde_json::json!([]), "{v:#}");
    // Public HTTP still answers every request (no listener joined its port).
    for _ in 0..20 {
        let r = e2e::http_get(edge.public_http(), "nobody.example.com", "/");
        assert_eq!(r.status, 404, "{}", r.text());
    }

    // A free port listens as soon as the command returns, and twice is fine.
    let port = free_port();
    tunnel.route_tcp(&edge, port);
    TcpStream::connect(("127.0.0.1", port)).unwrap();
    let out = ok(edge.ringtun(&["tunnel", "route", "tcp", "ssh", &port.to_string()]));
    assert!(out.contains("already routes"), "{out}");
}

#[test]
fn a_second_edge_on_the_same_addresses_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let public = edge.public_http();
    let servers = edge.servers();
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();

    // Same public HTTP address.
    let (status, log) = run_edge(
        &second,
        "public",
        &[
            "--public-http",
            &public.to_string(),
            "--data-center",
            "dfw=127.0.0.1:0",
        ],
    );
    assert!(!status.success(), "a second edge started on {public}");
    assert!(
        log.contains(&public.to_string()) && log.contains("in use"),
        "{log}"
    );

    // Same link server address.
    let link = servers[0].1;
    let (status, log) = run_edge(
        &second,
        "link",
        &[
            "--public-http",
            "127.0.0.1:0",
            "--data-center",
            &format!("dfw={link}"),
        ],
    );
    assert!(!status.success(), "a second edge started on {link}");
    assert!(
        log.contains(&link.to_string()) && log.contains("in use"),
        "{log}"
    );
}

/// Runs `ringtun-edge` with its own state directory and `args`; waits for it to exit (a bounded
/// wait: an edge that starts is killed and reported).
fn run_edge(dir: &Path, name: &str, args: &[&str]) -> (ExitStatus, String) {
    let mut cmd = Command::new(binaries().edge);
    cmd.arg("--state-dir")
        .arg(dir.join(format!("state-{name}")))
        .args(["--admin", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info");
    let log = dir.join(format!("edge-{name}.log"));
    let mut proc = Proc::spawn(&format!("second edge ({name})"), cmd, &log, false).unwrap();
    let status = wait_exit(&mut proc, STEP_TIMEOUT);
    (status, proc.lines().join("\n"))
}

#[test]
fn run_with_credentials_of_another_tunnel_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let a = Tunnel::create(&edge, "a");
    let b = Tunnel::create(&edge, "b");
    let creds_a = edge.home().join(".ringtun").join(format!("{}.json", a.id));
    assert!(creds_a.exists());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "credentials-file: {}\ningress:\n  - service: http_status:404\n",
            creds_a.display()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    for name in ["b", b.id.as_str()] {
        let cmd = edge.ringtun_cmd(&["tunnel", "run", name, "--config", &config]);
        let log = dir.path().join(format!("run-{name}.log"));
        let mut proc = Proc::spawn("tunnel run", cmd, &log, false).unwrap();
        let status = wait_exit(&mut proc, STEP_TIMEOUT);
        let text = proc.lines().join("\n");
        assert!(!status.success(), "ran tunnel a for {name}: {text}");
        assert!(
            text.contains(&format!(
                "tunnel {name} does not match the credentials file"
            )) && text.contains(&a.id),
            "{text}"
        );
    }
}

#[test]
fn sigterm_exits_with_the_most_links() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, tunnel, origin) = site(dir.path(), EdgeOptions::default());
    let mut a = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(origin.url()),
        &["--ha-connections", "16"],
    );
    a.wait_links(16);
    assert_eq!(get_when_served(edge.public_http(), HOST, "/").status, 200);
    signal(&a.proc, "TERM");
    let status = wait_exit(&mut a.proc, STEP_TIMEOUT);
    assert!(status.success(), "{status:?}: {}", a.proc.tail(10));
}

#[test]
fn logs_carry_values_as_fields_and_a_new_database_logs_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, tunnel, origin) = site(dir.path(), EdgeOptions::default());
    assert!(
        !edge.proc.lines().iter().any(|l| l.contains("migrated")),
        "{}",
        edge.proc.tail(20)
    );
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {HOST}\n    service: {}\n  - service: http_status:404\n",
            origin.url()
        ),
    )
    .unwrap();
    let a = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Config(config.clone()),
        &["--log-format", "json"],
    );
    a.wait_links(1);
    signal(&a.proc, "HUP");
    let line = wait_for(&a.proc, "the reload line", |l| {
        l.contains("config reloaded").then(|| l.to_owned())
    });
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["fields"]["message"], "config reloaded", "{line}");
    assert_eq!(v["fields"]["rules"], 2, "{line}");
}

/// Waits for `cond`, bounded by [`STEP_TIMEOUT`].
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "waited {STEP_TIMEOUT:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
