//! The built `ringtun` binary: `ingress validate`, `ingress rule`, and the declared commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs `ringtun` with a clean environment: an empty HOME so no user config is found.
fn ringtun(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringtun"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ringtun: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[test]
fn validate_ok() {
    let h = home();
    let cfg = data("cloudflared-config.yml");
    let out = ringtun(
        h.path(),
        &["ingress", "validate", "--config", &cfg.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l == "OK"), "{stdout}");
}

#[test]
fn validate_warns_about_unsupported_fields() {
    let h = home();
    let cfg = data("cloudflared-extras.yml");
    let out = ringtun(
        h.path(),
        &["ingress", "validate", "--config", &cfg.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ingress[2].originRequest.proxyType"),
        "{stderr}"
    );
    assert!(stderr.contains("warp-routing"), "{stderr}");
}

#[test]
fn validate_error() {
    let h = home();
    let cfg = data("last-rule-not-catch-all.yml");
    let out = ringtun(
        h.path(),
        &["ingress", "validate", "--config", &cfg.to_string_lossy()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the last ingress rule must match all URLs"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("OK"));
}

#[test]
fn validate_finds_config_in_home_and_env() {
    let h = home();
    let out = ringtun(h.path(), &["ingress", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no config file found"));

    // ~/.cloudflared/config.yml is picked up.
    let dir = h.path().join(".cloudflared");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(data("cloudflared-config.yml"), dir.join("config.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = ringtun(h.path(), &["ingress", "validate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(".cloudflared/config.yml"));

    // RINGTUN_CONFIG wins over the default places.
    let out = Command::new(env!("CARGO_BIN_EXE_ringtun"))
        .args(["ingress", "validate"])
        .env_clear()
        .env("HOME", h.path())
        .env("RINGTUN_CONFIG", data("last-rule-not-catch-all.yml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
}

#[test]
fn rule_prints_the_match() {
    let h = home();
    let cfg = data("cloudflared-config.yml");
    let cfg = cfg.to_string_lossy();
    let out = ringtun(
        h.path(),
        &[
            "ingress",
            "rule",
            "https://Foo.Apps.Example.com:8443/a?b=c",
            "--config",
            &cfg,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Matched rule #3\n"), "{stdout}");
    assert!(
        stdout.contains("\thostname: *.apps.example.com\n\tservice: https://127.0.0.1:8443"),
        "{stdout}"
    );

    let out = ringtun(
        h.path(),
        &[
            "ingress",
            "rule",
            "http://api.example.com/v1/x",
            "--config",
            &cfg,
        ],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Matched rule #1\n\thostname: api.example.com\n\tpath: ^/v1/\n"),
        "{stdout}"
    );

    let out = ringtun(
        h.path(),
        &["ingress", "rule", "http://nowhere.org/", "--config", &cfg],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Matched rule #7\n\tservice: http_status:404"),
        "{stdout}"
    );

    let out = ringtun(
        h.path(),
        &["ingress", "rule", "nowhere.org", "--config", &cfg],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no scheme"));
}

#[test]
fn edge_commands_without_a_token_say_where_to_get_one() {
    let h = home();
    for args in [
        &["tunnel", "create", "web"][..],
        &["tunnel", "list"],
        &["tunnel", "info", "web", "-o", "json"],
        &["tunnel", "route", "dns", "web", "app.example.com"],
        &["tunnel", "route", "tcp", "web", "2222"],
        &["tunnel", "delete", "-f", "web"],
        &["tunnel", "cleanup", "web"],
    ] {
        let out = ringtun(h.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("no admin API token"), "{args:?}: {stderr}");
        assert!(stderr.contains("--api-token"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn tunnel_run_without_credentials_says_where_it_looked() {
    let h = home();
    let id = "6ff42ae2-765d-4adf-8112-31c55c1551ef";
    let args = ["tunnel", "run", id, "--url", "http://localhost:8080"];
    let out = ringtun(h.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{id}.json")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs `ringtun ARGS` and waits up to a minute for it to exit; `None` (after killing it) when
/// it was still running, i.e. it accepted what should have been refused.
fn run_to_exit(home: &Path, args: &[&str]) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringtun"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .current_dir(home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ringtun: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// `--ha-connections` (and `ha-connections:` in the config file) must be 1 to 16: anything else
/// stops `tunnel run` with a clear error before any link is dialled.
#[test]
fn ha_connections_out_of_range_is_refused_before_connecting() {
    let h = home();
    let creds = h.path().join("creds.json");
    std::fs::write(
        &creds,
        r#"{"TunnelID":"6ff42ae2-765d-4adf-8112-31c55c1551ef","TunnelSecret":"c2VjcmV0c2VjcmV0c2VjcmV0"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A stand-in edge that counts the connections it gets.
    let edge = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    edge.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    let edge_addr = edge
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let creds_arg = creds.to_string_lossy().into_owned();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "tunnel",
            "run",
            "--credentials-file",
            &creds_arg,
            "--edge",
            &edge_addr,
            "--danger-plaintext-links",
        ];
        args.extend_from_slice(extra);
        run_to_exit(h.path(), &args)
    };

    for bad in ["0", "17", "260", "-1", "many"] {
        let flag = format!("--ha-connections={bad}");
        let out = run(&["--url", "http://127.0.0.1:9", &flag])
            .unwrap_or_else(|| panic!("--ha-connections {bad} was accepted"));
        assert!(!out.status.success(), "--ha-connections {bad}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("ha-connections must be") && stderr.contains("from 1 to 16"),
            "--ha-connections {bad}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let cfg = h.path().join("config.yml");
    for bad in ["0", "17", "260", "-3"] {
        std::fs::write(
            &cfg,
            format!("ha-connections: {bad}\ningress:\n  - service: http://127.0.0.1:9\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg_arg = cfg.to_string_lossy().into_owned();
        let out = run(&["--config", &cfg_arg])
            .unwrap_or_else(|| panic!("ha-connections: {bad} in the config was accepted"));
        assert_eq!(out.status.code(), Some(1), "ha-connections: {bad}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("config field ha-connections")
                && stderr.contains(&format!("from 1 to 16, not {bad}")),
            "ha-connections: {bad}: {stderr}"
        );
    }
    // None of the runs dialled the edge.
    assert!(
        edge.accept().is_err(),
        "a refused run connected to the edge"
    );

    // `ingress validate` checks the file the same way.
    let cfg_arg = cfg.to_string_lossy().into_owned();
    let out = ringtun(h.path(), &["ingress", "validate", "--config", &cfg_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("from 1 to 16"));
}

#[test]
fn version_and_the_tunnel_ingress_alias() {
    let h = home();
    for args in [&["version"][..], &["--version"]] {
        let out = ringtun(h.path(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    let cfg = data("cloudflared-config.yml");
    let cfg = cfg.to_string_lossy();
    let out = ringtun(
        h.path(),
        &["tunnel", "ingress", "validate", "--config", &cfg],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().any(|l| l == "OK"));
    // The alias answers exactly as `ingress rule`.
    let url = "https://app.example.com/x";
    let alias = ringtun(
        h.path(),
        &["tunnel", "ingress", "rule", url, "--config", &cfg],
    );
    let plain = ringtun(h.path(), &["ingress", "rule", url, "--config", &cfg]);
    assert!(alias.status.success(), "{}", text(&alias.stderr));
    assert_eq!(text(&alias.stdout), text(&plain.stdout));
    assert!(text(&alias.stdout).contains("Matched rule #"));
}

#[test]
fn without_a_config_the_error_names_url() {
    let h = home();
    let out = ringtun(h.path(), &["tunnel", "run", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no config file found") && stderr.contains("--url"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_token_is_a_clear_error_that_does_not_echo_it() {
    let h = home();
    let secretish = "c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw";
    for (env, args) in [
        (
            None,
            vec![
                "tunnel",
                "run",
                "--token",
                secretish,
                "--url",
                "http://127.0.0.1:9",
            ],
        ),
        (
            Some(secretish),
            vec!["tunnel", "run", "--url", "http://127.0.0.1:9"],
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringtun"));
        cmd.args(&args)
            .env_clear()
            .env("HOME", h.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(h.path());
        if let Some(t) = env {
            cmd.env("TUNNEL_TOKEN", t);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("tunnel token") && stderr.contains("malformed"),
            "{stderr}"
        );
        assert!(!stderr.contains(secretish), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn logfile_loglevel_and_ignored_cloudflared_flags() {
    let h = home();
    let log = h.path().join("ringtun.log");
    let log_arg = log.to_string_lossy().into_owned();
    let cfg = data("cloudflared-config.yml");
    let cfg = cfg.to_string_lossy();
    // `--loglevel error` hides the warning about the ignored flags; the file gets what stderr
    // gets.
    let quiet = ringtun(
        h.path(),
        &[
            "ingress",
            "validate",
            "--config",
            &cfg,
            "--no-autoupdate",
            "--protocol",
            "quic",
            "--loglevel",
            "error",
            "--logfile",
            &log_arg,
        ],
    );
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert!(!text(&quiet.stderr).contains("ignoring cloudflared"));
    let loud = ringtun(
        h.path(),
        &[
            "ingress",
            "validate",
            "--config",
            &cfg,
            "--no-autoupdate",
            "--protocol",
            "quic",
            "--logfile",
            &log_arg,
        ],
    );
    assert!(loud.status.success(), "{}", text(&loud.stderr));
    let stderr = text(&loud.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ignoring cloudflared options"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("--no-autoupdate,--protocol"),
        "{stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        logged.matches("ignoring cloudflared options").count(),
        1,
        "{logged}"
    );
    // A bad level is refused by name.
    let out = ringtun(h.path(), &["version", "--loglevel", "chatty"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--loglevel"));
}
