//! Runs the built `ringtun-edge` binary: it starts, answers `/discovery`, and exits 0 on SIGTERM.

use ringtun_test_support::edge::{self, json, request};

#[test]
fn binary_starts_serves_discovery_and_exits_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    // The parseable line: `... admin API listening admin=127.0.0.1:PORT token_file=...`.
    let mut spawned = edge::spawn_edge(
        env!("CARGO_BIN_EXE_ringtun-edge"),
        &state,
        &[
            "--data-center",
            "dfw=127.0.1.1:0",
            "--data-center",
            "mci=127.0.2.1:0",
            "--workers",
            "2",
        ],
    );
    let addr = spawned.admin;
    let before = spawned.log.lock().expect("log lock").clone();
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
    let (status, body) = request(addr, "GET", "/discovery", Some(&spawned.token), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["data_centers"][1]["name"], "mci");

    ringtun_core::signal::send(spawned.child.id(), ringtun_core::signal::Signal::Term)
        .expect("SIGTERM");
    let status = spawned.child.wait().expect("wait for the edge");
    assert!(status.success(), "exit status {status:?}");
    spawned.reader.join().expect("stderr reader");
}
