//! Runs the built `ringtun-edge` binary: it starts, answers `/discovery`, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use ringtun_test_support::edge::{json, request};

#[test]
fn binary_starts_serves_discovery_and_exits_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringtun-edge"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
        .args([
            "--data-center",
            "dfw=127.0.1.1:0",
            "--data-center",
            "mci=127.0.2.1:0",
        ])
        .args(["--workers", "2"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringtun-edge");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // The parseable line: `... admin API listening admin=127.0.0.1:PORT token_file=...`.
    let mut before = Vec::new();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the edge logs its admin address before exiting")
            .expect("read stderr");
        before.push(line.clone());
        if line.contains("admin API listening") {
            let field = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("admin="))
                .expect("admin= field");
            break field.parse().expect("a socket address");
        }
    };
    // One parseable line per listener (the data plane logs before the admin API).
    let has =
        |what: &str, field: &str| before.iter().any(|l| l.contains(what) && l.contains(field));
    assert!(
        has("public HTTP listening", "public_http=127.0.0.1:"),
        "{before:#?}"
    );
    assert!(
        has("edge server listening", "data_center=dfw server=127.0.1.1:"),
        "{before:#?}"
    );
    assert!(
        has("edge server listening", "data_center=mci server=127.0.2.1:"),
        "{before:#?}"
    );
    // Keep draining stderr so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.count());

    let token = std::fs::read_to_string(state.join("admin-token")).expect("token file");
    let (status, body) = request(addr, "GET", "/discovery", Some(token.trim()), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["data_centers"][1]["name"], "mci");

    ringtun_core::signal::send(child.id(), ringtun_core::signal::Signal::Term).expect("SIGTERM");
    let status = child.wait().expect("wait for the edge");
    assert!(status.success(), "exit status {status:?}");
    drain.join().expect("drain thread");
}
