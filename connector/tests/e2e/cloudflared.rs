//! A cloudflared user's habits with real processes: a token run with nothing else on the host,
//! start-up that waits for the edge, and a `~/.cloudflared/config.yml` whose keys are
//! cloudflared flags (`metrics`, `loglevel`, `logfile`, `pidfile`, `no-autoupdate`,
//! `protocol`).
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use e2e::{
    Edge, Proc, STEP_TIMEOUT, TestOrigin, Tunnel, free_port, get_when_served, http_get, ok,
    wait_for,
};

/// `ringtun ARGS` with only `HOME` (an empty directory), `PATH`, `RUST_LOG` and `env`: no admin
/// token, no credentials, no config.
fn bare_ringtun(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    std::fs::create_dir_all(home).unwrap();
    let mut cmd = Command::new(e2e::binaries().ringtun);
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .current_dir(home)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits (up to [`STEP_TIMEOUT`]) for `proc` to exit; its status code.
fn exit_code(proc: &mut Proc) -> Option<i32> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = proc.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} still runs; last lines:{}", proc.name(), proc.tail(20));
}

#[test]
fn a_token_run_needs_nothing_else_and_waits_for_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "web");
    tunnel.route_dns(&edge, "web.ringtun.test");
    let token = ok(edge.ringtun(&["tunnel", "token", "web"]))
        .trim()
        .to_owned();
    // base64 of a small JSON: the tunnel ID, the secret, the edge's CA and its address.
    let json: serde_json::Value = serde_json::from_slice(&STANDARD.decode(&token).unwrap())
        .unwrap_or_else(|e| panic!("token JSON: {e}"));
    assert_eq!(json["t"], tunnel.id.as_str(), "{json}");
    assert!(json["s"].as_str().is_some_and(|s| !s.is_empty()), "{json}");
    assert!(
        json["c"]
            .as_str()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE")),
        "{json}"
    );
    assert_eq!(json["e"], edge.admin.to_string().as_str(), "{json}");
    let public = edge.public_http();
    let origin = TestOrigin::start();
    let url = origin.url();
    let bare = dir.path().join("bare");

    // The connector starts while the edge is down: it retries instead of exiting.
    let (edge, mut connector) = edge.restart_after(|| {
        let cmd = bare_ringtun(
            &bare,
            &[("TUNNEL_TOKEN", &token)],
            &["tunnel", "run", "--url", &url],
        );
        let proc = Proc::spawn("token-run", cmd, &dir.path().join("token-run.log"), false)
            .unwrap_or_else(|e| panic!("cannot start ringtun: {e}"));
        wait_for(&proc, "a start-up retry", |l| {
            l.contains("the edge is not reachable yet; retrying")
                .then_some(())
        });
        proc
    });
    edge.wait_connectors("web", 1);
    let r = get_when_served(public, "web.ringtun.test", "/through-a-token");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .to_ascii_lowercase()
            .starts_with("get /through-a-token "),
        "{}",
        r.text()
    );
    assert!(connector.try_wait().is_none());
    assert!(
        connector
            .lines()
            .iter()
            .any(|l| l.contains("the edge answered; starting")),
        "{}",
        connector.tail(20)
    );

    // A token the edge refuses (the right tunnel, a wrong secret) ends the run with the edge's
    // words; it is not retried.
    let mut wrong = json.clone();
    wrong["s"] = STANDARD.encode("not-the-secret-of-this-tunnel").into();
    let wrong = STANDARD.encode(wrong.to_string());
    let cmd = bare_ringtun(
        &bare,
        &[],
        &["tunnel", "run", "--token", &wrong, "--url", &url],
    );
    let mut refused = Proc::spawn("wrong-secret", cmd, &dir.path().join("wrong.log"), false)
        .unwrap_or_else(|e| panic!("cannot start ringtun: {e}"));
    assert_eq!(exit_code(&mut refused), Some(1), "{}", refused.tail(20));
    let last = refused.tail(5);
    assert!(last.contains("the edge refused this connector"), "{last}");
    assert!(!last.contains("panicked"), "{last}");
}

#[test]
fn cloudflared_config_keys_are_flags_and_the_file_found_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "web");
    tunnel.route_dns(&edge, "web.ringtun.test");
    let origin = TestOrigin::start();
    let metrics = format!("127.0.0.1:{}", free_port());
    let pidfile = dir.path().join("ringtun.pid");
    let logfile = dir.path().join("ringtun.log");
    let cf = edge.home().join(".cloudflared");
    std::fs::create_dir_all(&cf).unwrap();
    let config = cf.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "tunnel: web\nmetrics: {metrics}\nloglevel: debug\nlogfile: {}\npidfile: {}\n\
             no-autoupdate: true\nprotocol: quic\ningress:\n  - service: {}\n",
            logfile.display(),
            pidfile.display(),
            origin.url()
        ),
    )
    .unwrap();
    // No NAME, no --config: the tunnel and everything else come from ~/.cloudflared/config.yml.
    let cmd = edge.ringtun_cmd(&["tunnel", "run"]);
    let mut proc = Proc::spawn("keys-run", cmd, &dir.path().join("keys-run.log"), false)
        .unwrap_or_else(|e| panic!("cannot start ringtun: {e}"));
    edge.wait_connectors("web", 1);
    let r = get_when_served(edge.public_http(), "web.ringtun.test", "/k");
    assert_eq!(r.status, 200, "{}", r.text());

    // metrics: the /ready of the address in the file answers.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let ready = loop {
        let r = http_get(metrics.parse().unwrap(), "localhost", "/ready");
        if r.status == 200 || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ready.status, 200, "{}", ready.text());
    // pidfile: this process's ID.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(pid.trim(), proc.id().to_string());
    // logfile: the log is there too.
    let logged = std::fs::read_to_string(&logfile).unwrap();
    assert!(logged.contains("Generated Connector ID"), "{logged}");

    let lines = proc.lines();
    let stderr = lines.join("\n");
    // Which file was read.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("using config file") && l.contains(&config.display().to_string())),
        "{stderr}"
    );
    // loglevel: debug wins over RUST_LOG=info.
    assert!(stderr.contains("config keys applied as flags"), "{stderr}");
    // no-autoupdate and protocol: accepted, one warning for both, no "unsupported field".
    let ignored: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("ignoring cloudflared options"))
        .collect();
    assert_eq!(ignored.len(), 1, "{stderr}");
    assert!(
        ignored[0].contains("--no-autoupdate") && ignored[0].contains("--protocol"),
        "{stderr}"
    );
    assert!(!stderr.contains("unsupported config field"), "{stderr}");

    // At exit the pidfile goes.
    let status = proc.stop(STEP_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", proc.tail(20));
    assert!(!pidfile.exists());
}
