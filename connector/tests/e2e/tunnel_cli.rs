//! The `tunnel` management commands of the built `ringtun` binary against a real `ringtun-edge`
//! process: create, list, info, route, delete, cleanup, and the errors an operator meets first
//! (wrong token, edge not running).
//!
//! Each test starts its own edge on `127.0.0.1:0` in a temporary state directory and gives the
//! connector a temporary `HOME`. [`Edge`] kills the edge when dropped, so a failing assertion
//! leaves no process behind.
#![allow(clippy::unwrap_used)]

// The binaries (and their fallback build) come from the shared end-to-end harness.
use ringtun_test_support::e2e;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A running `ringtun-edge`; killed on drop.
struct Edge {
    child: Child,
    admin: SocketAddr,
    token: String,
    drain: Option<std::thread::JoinHandle<()>>,
    _state: tempfile::TempDir,
}

impl Edge {
    fn start() -> Edge {
        let state = tempfile::tempdir().unwrap();
        let mut child = Command::new(e2e::binaries().edge)
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
            // Port 0 on distinct loopback addresses, so parallel edges never collide.
            .args(["--data-center", "dfw=127.0.1.1:0"])
            .args(["--data-center", "mci=127.0.2.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ringtun-edge: {e}"));
        let stderr = child.stderr.take().unwrap();
        let mut edge = Edge {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            drain: None,
            _state: state,
        };
        let mut lines = BufReader::new(stderr).lines();
        // The line `... admin API listening admin=127.0.0.1:PORT token_file=...`.
        edge.admin = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("ringtun-edge exited before logging its admin address"),
            };
            if line.contains("admin API listening")
                && let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("admin="))
            {
                break addr.parse().unwrap();
            }
        };
        // Keep reading so the edge never blocks on a full pipe.
        edge.drain = Some(std::thread::spawn(move || {
            lines.map_while(Result::ok).for_each(drop)
        }));
        let token_file = edge._state.path().join("state").join("admin-token");
        edge.token = std::fs::read_to_string(token_file)
            .unwrap()
            .trim()
            .to_owned();
        edge
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }
}

/// Runs `ringtun` with a clean environment: `HOME` and the working directory are `home`.
fn ringtun_env(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringtun"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run ringtun: {e}"))
}

/// Runs `ringtun` against `edge` with the right token.
fn ringtun(edge: &Edge, home: &Path, args: &[&str]) -> Output {
    let api = edge.admin.to_string();
    ringtun_env(
        home,
        &[
            ("RINGTUN_EDGE_API", &api),
            ("RINGTUN_API_TOKEN", &edge.token),
        ],
        args,
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts exit code 1 without a panic and returns stderr.
#[track_caller]
fn fails(o: Output) -> String {
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {err}",
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn tunnel_lifecycle() {
    let edge = Edge::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // create: prints the ID and writes ~/.ringtun/<ID>.json with mode 0600.
    let out = ok(ringtun(&edge, h, &["tunnel", "create", "web"]));
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("Created tunnel web with id "))
        .unwrap_or_else(|| panic!("no ID in: {out}"))
        .trim()
        .to_owned();
    assert_eq!(id.len(), 36, "{id}");
    let creds = h.join(".ringtun").join(format!("{id}.json"));
    assert!(out.contains(&creds.display().to_string()), "{out}");
    let meta = std::fs::metadata(&creds).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(json["TunnelID"], id.as_str());
    assert_eq!(json["TunnelName"], "web");
    assert!(!json["TunnelSecret"].as_str().unwrap().is_empty(), "{json}");
    assert!(
        json["EdgeCA"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE"),
        "{json}"
    );

    // The name is taken now.
    let err = fails(ringtun(&edge, h, &["tunnel", "create", "web"]));
    assert!(err.contains("web"), "{err}");

    // list
    let out = ok(ringtun(&edge, h, &["tunnel", "list"]));
    assert!(out.contains("ID") && out.contains("CONNECTIONS"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(&id) && l.contains("web")),
        "{out}"
    );

    // info, by name and by ID
    for key in ["web", id.as_str()] {
        let out = ok(ringtun(&edge, h, &["tunnel", "info", key]));
        assert!(out.contains("NAME:     web"), "{out}");
        assert!(out.contains(&format!("ID:       {id}")), "{out}");
        assert!(out.contains("CREATED:"), "{out}");
        assert!(out.contains("does not have any active connectors"), "{out}");
    }
    let out = ok(ringtun(&edge, h, &["tunnel", "info", "web", "-o", "json"]));
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["connectors"], serde_json::json!([]));
    let err = fails(ringtun(&edge, h, &["tunnel", "info", "nope"]));
    assert!(err.contains("nope"), "{err}");

    // routes, and the duplicates refused with the edge's words
    let out = ok(ringtun(
        &edge,
        h,
        &["tunnel", "route", "dns", "web", "app.example.com"],
    ));
    assert!(
        out.contains("app.example.com") && out.contains(&id),
        "{out}"
    );
    let out = ok(ringtun(
        &edge,
        h,
        &["tunnel", "route", "dns", "web", "app.example.com"],
    ));
    assert!(out.contains("app.example.com"), "{out}");
    assert!(out.contains("already"), "{out}");
    // The edge listens on the route's port as it stores it: take a free one.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let out = ok(ringtun(&edge, h, &["tunnel", "route", "tcp", "web", &port]));
    assert!(out.contains(&port), "{out}");
    let out = ok(ringtun(&edge, h, &["tunnel", "route", "tcp", "web", &port]));
    assert!(out.contains(&port) && out.contains("already"), "{out}");

    // cleanup with nothing to clean
    let out = ok(ringtun(&edge, h, &["tunnel", "cleanup", "web"]));
    assert!(out.contains("Removed 0"), "{out}");

    // delete, then the list is empty
    let out = ok(ringtun(&edge, h, &["tunnel", "delete", "web"]));
    assert!(out.contains("Deleted tunnel web"), "{out}");
    let out = ok(ringtun(&edge, h, &["tunnel", "list"]));
    assert!(!out.contains(&id), "{out}");
    assert!(out.contains("No tunnels"), "{out}");
}

#[test]
fn create_writes_to_the_given_credentials_file_and_never_overwrites() {
    let edge = Edge::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let file = h.join("creds").join("api.json");
    let f = file.to_str().unwrap();
    let out = ok(ringtun(
        &edge,
        h,
        &["tunnel", "create", "api", "--credentials-file", f],
    ));
    assert!(out.contains(f), "{out}");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);

    // An existing file is refused before any tunnel is created.
    let err = fails(ringtun(
        &edge,
        h,
        &["tunnel", "create", "api2", "--credentials-file", f],
    ));
    assert!(err.contains("already exists"), "{err}");
    let out = ok(ringtun(&edge, h, &["tunnel", "list"]));
    assert!(!out.contains("api2"), "{out}");
}

#[test]
fn wrong_token_is_refused_clearly() {
    let edge = Edge::start();
    let home = tempfile::tempdir().unwrap();
    let api = edge.admin.to_string();
    let err = fails(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api), ("RINGTUN_API_TOKEN", "wrong")],
        &["tunnel", "list"],
    ));
    assert!(err.contains("the edge refused the API token"), "{err}");
    assert!(err.contains("RINGTUN_API_TOKEN"), "{err}");
    let err = fails(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api)],
        &["--api-token", "wrong", "tunnel", "list"],
    ));
    assert!(err.contains("(from --api-token)"), "{err}");
}

#[test]
fn token_is_read_from_the_edge_state_directory() {
    let edge = Edge::start();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("ringtun-edge-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("admin-token"), format!("{}\n", edge.token)).unwrap();
    let api = edge.admin.to_string();
    let out = ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api)],
        &["tunnel", "list"],
    );
    ok(out);
}

#[test]
fn edge_down_is_reported_clearly() {
    // A port that was free a moment ago: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let home = tempfile::tempdir().unwrap();
    let err = fails(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &addr), ("RINGTUN_API_TOKEN", "t")],
        &["tunnel", "list"],
    ));
    assert!(
        err.contains(&format!("cannot reach the edge admin API at {addr}")),
        "{err}"
    );
    assert!(err.contains("is ringtun-edge running?"), "{err}");
}

/// A one-shot stand-in for the edge: answers one request with `status` and `body`, and hands back
/// the request line it received.
fn fake_edge(status: &str, body: &str) -> (SocketAddr, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        stream.write_all(response.as_bytes()).unwrap();
        String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    (addr, handle)
}

#[test]
fn delete_refused_while_connected_says_how_to_force() {
    let (addr, request) = fake_edge(
        "409 Conflict",
        r#"{"error":"tunnel web has 2 connected connector(s); stop them, run cleanup, or delete with force"}"#,
    );
    let home = tempfile::tempdir().unwrap();
    let api = addr.to_string();
    let err = fails(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api), ("RINGTUN_API_TOKEN", "t")],
        &["tunnel", "delete", "web"],
    ));
    assert!(err.contains("has 2 connected connector(s)"), "{err}");
    assert!(err.contains("ringtun tunnel delete -f web"), "{err}");
    assert_eq!(request.join().unwrap(), "DELETE /tunnels/web HTTP/1.1");
}

#[test]
fn delete_force_and_cleanup_connector_reach_the_edge() {
    let home = tempfile::tempdir().unwrap();
    let (addr, request) = fake_edge("200 OK", r#"{"id":"x","name":"web","deleted":true}"#);
    let api = addr.to_string();
    ok(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api), ("RINGTUN_API_TOKEN", "t")],
        &["tunnel", "delete", "-f", "web"],
    ));
    assert_eq!(
        request.join().unwrap(),
        "DELETE /tunnels/web?force=true HTTP/1.1"
    );

    let (addr, request) = fake_edge(
        "200 OK",
        r#"{"id":"x","name":"web","removed_connectors":["c1"],"kept_connectors":[]}"#,
    );
    let api = addr.to_string();
    let out = ok(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api), ("RINGTUN_API_TOKEN", "t")],
        &["tunnel", "cleanup", "web", "--connector-id", "c1"],
    ));
    assert!(out.contains("Removed 1 stale connector(s)"), "{out}");
    assert!(out.contains("removed       c1"), "{out}");
    assert_eq!(
        request.join().unwrap(),
        "POST /tunnels/web/cleanup?connector_id=c1 HTTP/1.1"
    );
}

#[test]
fn edge_failure_is_reported_as_the_edge_s() {
    let (addr, request) = fake_edge("500 Internal Server Error", r#"{"error":"disk full"}"#);
    let home = tempfile::tempdir().unwrap();
    let api = addr.to_string();
    let err = fails(ringtun_env(
        home.path(),
        &[("RINGTUN_EDGE_API", &api), ("RINGTUN_API_TOKEN", "t")],
        &["tunnel", "list"],
    ));
    assert!(
        err.contains("the edge failed (HTTP 500): disk full"),
        "{err}"
    );
    assert_eq!(request.join().unwrap(), "GET /tunnels HTTP/1.1");
}

#[test]
fn list_and_info_print_json_and_yaml() {
    let edge = Edge::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(ringtun(&edge, h, &["tunnel", "create", "web"]));

    let json: serde_json::Value =
        serde_json::from_str(&ok(ringtun(&edge, h, &["tunnel", "list", "-o", "json"]))).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 1, "{json}");
    assert_eq!(list[0]["name"], "web");
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ok(ringtun(
        &edge,
        h,
        &["tunnel", "list", "--output", "yaml"],
    )))
    .unwrap();
    assert_eq!(yaml[0]["id"].as_str(), Some(id.as_str()), "{yaml:?}");

    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ok(ringtun(
        &edge,
        h,
        &["tunnel", "info", "web", "-o", "yaml"],
    )))
    .unwrap();
    assert_eq!(yaml["id"].as_str(), Some(id.as_str()), "{yaml:?}");
    assert_eq!(yaml["name"].as_str(), Some("web"));
    assert!(yaml["connectors"].as_sequence().is_some(), "{yaml:?}");
    let json: serde_json::Value = serde_json::from_str(&ok(ringtun(
        &edge,
        h,
        &["tunnel", "info", &id, "-o", "json"],
    )))
    .unwrap();
    assert_eq!(json["name"], "web");

    let err = stderr(&ringtun(&edge, h, &["tunnel", "list", "-o", "xml"]));
    assert!(err.contains("xml"), "{err}");
}

#[test]
fn token_reads_the_secret_from_the_tunnels_credentials() {
    let edge = Edge::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(ringtun(&edge, h, &["tunnel", "create", "web"]));
    ok(ringtun(&edge, h, &["tunnel", "create", "api"]));
    let token = ok(ringtun(&edge, h, &["tunnel", "token", "web"]));
    use base64::Engine;
    let json: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .unwrap(),
    )
    .unwrap();
    let creds_dir = h.join(".ringtun");
    let web: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(creds_dir.join(format!("{}.json", json["t"].as_str().unwrap())))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["s"], web["TunnelSecret"]);
    assert_eq!(json["c"], web["EdgeCA"]);

    // Another tunnel's credentials file is refused by name.
    let api_file = std::fs::read_dir(&creds_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.to_string_lossy().contains(json["t"].as_str().unwrap()))
        .unwrap();
    let api_arg = api_file.to_string_lossy().into_owned();
    let err = fails(ringtun(
        &edge,
        h,
        &["tunnel", "token", "web", "--credentials-file", &api_arg],
    ));
    assert!(
        err.contains("is for tunnel") && err.contains(&api_arg),
        "{err}"
    );
    // An unknown tunnel is the edge's 404.
    let err = fails(ringtun(&edge, h, &["tunnel", "token", "nope"]));
    assert!(err.contains("nope"), "{err}");
}
