//! A node reaching etcd over TLS with a client certificate (`--etcd-cacert`, `--etcd-cert`,
//! `--etcd-key`, a real member started with `--client-cert-auth`) and with etcd's user and
//! password authentication (`--etcd-user`, `--etcd-password-file`): the right material serves
//! and registers the node's presence; a missing client certificate, the wrong CA, a client
//! certificate of another CA, a bad file or a wrong password fail the start, promptly, with a
//! message naming the flag to check.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringtun_test_support::cluster::{ClusterNode as Node, node_args, unique_prefix};
use ringtun_test_support::edge::{request, spawn_edge};
use ringtun_test_support::etcd::{Etcd, EtcdPki};

/// Generous: the machine may be busy. A failing start is bounded by the node itself (three
/// times `--etcd-timeout-ms` and a second); this only stops a hung test.
const DEADLINE: Duration = Duration::from_secs(60);

const BIN: &str = env!("CARGO_BIN_EXE_ringtun-edge");

/// Runs a node that must fail to start: its exit status must be an error within
/// [`DEADLINE`]; returns its stderr and how long it took.
fn start_fails(state: &Path, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringtun-edge");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node neither served nor failed within {DEADLINE:?}: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "the node started: {stderr}");
    // The edge's own refusal, not the command line parser's (which names unknown flags too).
    assert!(
        stderr.contains("invalid edge config:"),
        "not a configuration error: {stderr}"
    );
    if let Some(error) = stderr.lines().find(|l| l.starts_with("Error:")) {
        println!("{error}");
    }
    (stderr, took)
}

/// Waits until etcd shows a `nodes/` record under `prefix` (asked over its plain port).
fn wait_for_presence(etcd: &Etcd, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let nodes = etcd.keys(&format!("{prefix}nodes/")).unwrap_or_default();
        if !nodes.is_empty() {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "the node never registered its presence"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--etcd-cacert CA --etcd-cert CERT --etcd-key KEY`.
fn tls_flags<'a>(ca: &'a Path, cert: &'a Path, key: &'a Path) -> [&'a str; 6] {
    let (ca, cert, key) = (path(ca), path(cert), path(key));
    ["--etcd-cacert", ca, "--etcd-cert", cert, "--etcd-key", key]
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn a_node_with_the_right_certificates_serves_and_registers_its_presence() {
    let pki = EtcdPki::generate();
    let etcd = Etcd::start_tls(pki.member.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let (endpoints, prefix) = (etcd.tls_endpoints(), unique_prefix());
    let tls = tls_flags(&pki.ca, &pki.client_cert, &pki.client_key);
    let node = Node(spawn_edge(
        BIN,
        &dir.path().join("a"),
        &node_args(&endpoints, &prefix, &tls),
    ));
    // A write goes to etcd over TLS and shows in the node's view.
    let (status, body) = request(
        node.0.admin,
        "POST",
        "/tunnels",
        Some(&node.0.token),
        Some(r#"{"name":"web"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let tunnels = etcd
        .keys(&format!("{prefix}tunnels/"))
        .expect("etcd answers");
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    assert_eq!(wait_for_presence(&etcd, &prefix).len(), 1);
}

#[test]
fn without_a_client_certificate_or_with_another_cas_the_start_fails_naming_the_flags() {
    let pki = EtcdPki::generate();
    let etcd = Etcd::start_tls(pki.member.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let (endpoints, prefix) = (etcd.tls_endpoints(), unique_prefix());
    let (stderr, took) = start_fails(
        &dir.path().join("a"),
        &node_args(&endpoints, &prefix, &["--etcd-cacert", path(&pki.ca)]),
    );
    println!("no client certificate: failed after {took:?}");
    assert!(stderr.contains("--etcd-cert"), "{stderr}");
    let other = tls_flags(&pki.ca, &pki.other_client_cert, &pki.other_client_key);
    let (stderr, took) = start_fails(
        &dir.path().join("b"),
        &node_args(&endpoints, &prefix, &other),
    );
    println!("a client certificate of another CA: failed after {took:?}");
    assert!(stderr.contains("--etcd-cert"), "{stderr}");
    assert!(
        etcd.keys(&format!("{prefix}nodes/"))
            .expect("etcd answers")
            .is_empty(),
        "a refused node registered"
    );
}

#[test]
fn trusting_the_wrong_ca_fails_the_start_naming_the_flag() {
    let pki = EtcdPki::generate();
    let etcd = Etcd::start_tls(pki.member.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let (endpoints, prefix) = (etcd.tls_endpoints(), unique_prefix());
    let wrong = tls_flags(&pki.other_ca, &pki.client_cert, &pki.client_key);
    let (stderr, took) = start_fails(
        &dir.path().join("a"),
        &node_args(&endpoints, &prefix, &wrong),
    );
    println!("the wrong CA: failed after {took:?}");
    assert!(stderr.contains("--etcd-cacert"), "{stderr}");
}

#[test]
fn a_missing_or_malformed_file_fails_the_start_naming_its_flag() {
    let pki = EtcdPki::generate();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    // Nothing listens there: every file is checked before anything connects.
    let https = "https://127.0.0.1:9";
    let prefix = unique_prefix();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--etcd-cacert", path(&missing)], "--etcd-cacert"),
        (vec!["--etcd-cacert", path(&not_pem)], "--etcd-cacert"),
        (
            vec![
                "--etcd-cacert",
                path(&pki.ca),
                "--etcd-cert",
                path(&missing),
                "--etcd-key",
                path(&pki.client_key),
            ],
            "--etcd-cert",
        ),
        (
            vec![
                "--etcd-cacert",
                path(&pki.ca),
                "--etcd-cert",
                path(&pki.client_cert),
                "--etcd-key",
                path(&not_pem),
            ],
            "--etcd-key",
        ),
        // The key of another certificate.
        (
            vec![
                "--etcd-cacert",
                path(&pki.ca),
                "--etcd-cert",
                path(&pki.client_cert),
                "--etcd-key",
                path(&pki.other_client_key),
            ],
            "--etcd-key",
        ),
        (
            vec![
                "--etcd-cacert",
                path(&pki.ca),
                "--etcd-cert",
                path(&pki.client_cert),
            ],
            "--etcd-key",
        ),
        // https:// without a CA, a CA with http://.
        (vec![], "--etcd-cacert"),
        (
            vec![
                "--etcd-user",
                "root",
                "--etcd-password-file",
                path(&missing),
            ],
            "--etcd-password-file",
        ),
        (
            vec!["--etcd-user", "root", "--etcd-password-file", path(&empty)],
            "--etcd-password-file",
        ),
        (vec!["--etcd-user", "root"], "--etcd-password-file"),
        // Not a file of a sane size: refused, not read to the end.
        (
            vec!["--etcd-user", "root", "--etcd-password-file", "/dev/zero"],
            "--etcd-password-file",
        ),
    ];
    for (i, (extra, flag)) in cases.iter().enumerate() {
        let mut extra = extra.clone();
        if extra.first() == Some(&"--etcd-user") {
            extra.extend(["--etcd-cacert", path(&pki.ca)]);
        }
        let (stderr, _) = start_fails(
            &dir.path().join(format!("n{i}")),
            &node_args(https, &prefix, &extra),
        );
        assert!(stderr.contains(flag), "case {i} {extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "case {i}: {stderr}");
    }
    let (stderr, _) = start_fails(
        &dir.path().join("http"),
        &node_args(
            "http://127.0.0.1:9",
            &prefix,
            &["--etcd-cacert", path(&pki.ca)],
        ),
    );
    assert!(stderr.contains("https://"), "{stderr}");
}

/// Turns etcd's authentication on with a `root` user (password `secret`) and a `ringtun` user
/// whose role may read and write only `prefix`.
fn enable_auth(etcd: &Etcd, prefix: &str) {
    use etcd_client::{Client, Permission};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let endpoint = etcd.endpoints();
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect to etcd");
        client.user_add("root", "secret", None).await.expect("root");
        client
            .user_grant_role("root", "root")
            .await
            .expect("root role");
        client.role_add("ringtun").await.expect("role");
        client
            .role_grant_permission("ringtun", Permission::read_write(prefix).with_prefix())
            .await
            .expect("permission");
        client
            .user_add("ringtun", "edge-password", None)
            .await
            .expect("user");
        client
            .user_grant_role("ringtun", "ringtun")
            .await
            .expect("grant");
        client.auth_enable().await.expect("auth enable");
    });
}

#[test]
fn with_etcd_authentication_the_right_password_serves_and_a_wrong_one_fails_naming_the_flags() {
    let etcd = Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (endpoints, prefix) = (etcd.endpoints(), unique_prefix());
    enable_auth(&etcd, &prefix);
    let good = dir.path().join("password");
    std::fs::write(&good, "edge-password\n").expect("write");
    let bad = dir.path().join("wrong");
    std::fs::write(&bad, "guess\n").expect("write");

    let (stderr, took) = start_fails(
        &dir.path().join("a"),
        &node_args(
            &endpoints,
            &prefix,
            &["--etcd-user", "ringtun", "--etcd-password-file", path(&bad)],
        ),
    );
    println!("a wrong password: failed after {took:?}");
    assert!(stderr.contains("--etcd-password-file"), "{stderr}");

    let (stderr, took) = start_fails(&dir.path().join("b"), &node_args(&endpoints, &prefix, &[]));
    println!("no user: failed after {took:?}");
    assert!(stderr.contains("--etcd-user"), "{stderr}");

    let node = Node(spawn_edge(
        BIN,
        &dir.path().join("c"),
        &node_args(
            &endpoints,
            &prefix,
            &[
                "--etcd-user",
                "ringtun",
                "--etcd-password-file",
                path(&good),
            ],
        ),
    ));
    let (status, body) = request(
        node.0.admin,
        "POST",
        "/tunnels",
        Some(&node.0.token),
        Some(r#"{"name":"web"}"#),
    );
    assert_eq!(status, 201, "{body}");
    // The harness's own listing goes through the gateway without a token: ask as root instead.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let nodes = runtime.block_on(async {
            let options = etcd_client::ConnectOptions::new().with_user("root", "secret");
            let mut client = etcd_client::Client::connect([endpoints.as_str()], Some(options))
                .await
                .expect("connect as root");
            let key = format!("{prefix}nodes/");
            client
                .get(key, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .expect("list nodes")
                .kvs()
                .len()
        });
        if nodes == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never registered its presence"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_wrong_scheme_for_a_member_fails_the_start_naming_it() {
    let pki = EtcdPki::generate();
    let etcd = Etcd::start_tls(pki.member.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    // Plain HTTP/2 to the member's TLS port.
    let plain_to_tls = etcd.tls_endpoints().replace("https://", "http://");
    let (stderr, took) = start_fails(
        &dir.path().join("a"),
        &node_args(&plain_to_tls, &prefix, &[]),
    );
    println!("http:// to a TLS port: failed after {took:?}");
    assert!(stderr.contains("https://"), "{stderr}");
    // TLS to the member's plain port.
    let tls_to_plain = etcd.endpoints().replace("http://", "https://");
    let tls = tls_flags(&pki.ca, &pki.client_cert, &pki.client_key);
    let (stderr, took) = start_fails(
        &dir.path().join("b"),
        &node_args(&tls_to_plain, &prefix, &tls),
    );
    println!("https:// to a plain port: failed after {took:?}");
    assert!(stderr.contains("http://"), "{stderr}");
}
