//! One host and one path, as the edge and the connector see them, through real processes: a
//! real `ringtun-edge`, a real `ringtun tunnel run --config` whose first rule answers
//! `http_status:403` for `/admin` on `raw.test`, and an in-test origin behind the catch-all rule
//! that records the request heads it gets.
//!
//! Every way of spelling the same host or path (a trailing dot, a port, letter case, absolute
//! form, duplicate slashes, dot segments, percent-encoded unreserved characters, a `Connection`
//! option naming `Host`) must reach the rule, never the origin; the shapes `docs/routing.md`
//! rejects get 400; and what does reach the origin is the normalised request it was matched on.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use e2e::{STEP_TIMEOUT, ServedTunnel, Service, TestOrigin, parse_response, send_raw};

const RAW: &str = "raw.test";
const OTHER: &str = "other.test";

/// The rule under test: `/admin` and everything below it on `raw.test`.
const ADMIN_RULE: &str = "^/admin($|/)";

/// One request shape, its raw head and the status it must get.
struct Shape {
    what: &'static str,
    request: String,
    want: u16,
}

fn shape(what: &'static str, target: &str, host: &str, extra: &str, want: u16) -> Shape {
    Shape {
        what,
        request: format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        ),
        want,
    }
}

#[test]
fn every_spelling_of_a_protected_path_reaches_the_rule_and_the_origin_sees_what_was_matched() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {RAW}\n    path: '{ADMIN_RULE}'\n    service: http_status:403\n\
             \x20 - service: {}\n",
            origin.url()
        ),
    )
    .unwrap();
    let site = ServedTunnel::start(
        dir.path(),
        "routing",
        &[RAW, OTHER],
        &Service::Config(config),
        &[],
    );
    let shapes = [
        shape("plain /admin", "/admin", RAW, "", 403),
        shape("Host with a trailing dot", "/admin", "raw.test.", "", 403),
        shape(
            "Host with a trailing dot and a port",
            "/admin",
            "raw.test.:80",
            "",
            403,
        ),
        shape("Host in upper case", "/admin", "RAW.Test", "", 403),
        shape(
            "Connection: host",
            "/admin",
            RAW,
            "Connection: host\r\n",
            403,
        ),
        shape(
            "Connection: host, content-length",
            "/admin",
            RAW,
            "Connection: Host, Content-Length\r\n",
            403,
        ),
        shape("duplicate slash", "//admin", RAW, "", 403),
        shape("absolute form", "http://raw.test/admin", RAW, "", 403),
        shape(
            "absolute form, conflicting Host (the authority wins)",
            "http://RAW.test:80/admin",
            OTHER,
            "",
            403,
        ),
        shape("dot segment", "/./admin", RAW, "", 403),
        shape("dot-dot segment", "/x/../admin", RAW, "", 403),
        shape("encoded dot-dot", "/x/%2e%2E/admin/", RAW, "", 403),
        shape("encoded unreserved letter", "/%61dmin", RAW, "", 403),
        shape("encoded letter below", "/adm%69n//panel", RAW, "", 403),
        shape("encoded slash", "/admin%2F", RAW, "", 400),
        shape("encoded slash, lower case", "/x%2fadmin", RAW, "", 400),
        shape("encoded backslash", "/%5Cadmin", RAW, "", 400),
        shape(
            "userinfo in absolute form",
            "http://u@raw.test/admin",
            RAW,
            "",
            400,
        ),
        shape("invalid Host (empty label)", "/admin", "raw..test", "", 400),
        shape("invalid Host (port)", "/admin", "raw.test:99999", "", 400),
        shape("paths are case-sensitive: /ADMIN", "/ADMIN", RAW, "", 200),
        shape("another path", "/other", RAW, "", 200),
        shape(
            "another path, normalised",
            "//other/./x/../y?q=%2F",
            RAW,
            "",
            200,
        ),
    ];

    let mut table = Vec::new();
    for s in &shapes {
        let raw = send_raw(site.public, s.request.as_bytes());
        let got = parse_response(&raw).map_or(0, |r| r.status);
        table.push((s.what, s.want, got));
    }
    let report: String = table
        .iter()
        .map(|(what, want, got)| format!("{what:<55} want {want} got {got}\n"))
        .collect();
    eprintln!("{report}");
    let wrong: Vec<_> = table.iter().filter(|(_, want, got)| want != got).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} shapes got the wrong status (timeout {STEP_TIMEOUT:?}):\n{report}\nedge log:\n{}\nconnector log:\n{}",
        wrong.len(),
        table.len(),
        site.edge.proc.tail(20),
        site.connector.proc.tail(20)
    );

    // The origin got exactly what the rules were matched on: the normalised target and host.
    let head = origin.head_of("/other ").unwrap();
    assert!(head.starts_with("get /other http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: raw.test\r\n"), "{head}");
    let head = origin.head_of("/other/y").unwrap();
    assert!(
        head.starts_with("get /other/y?q=%2f http/1.1\r\n"),
        "{head}"
    );
    let head = origin.head_of("/ADMIN").unwrap();
    assert!(head.contains("\r\nhost: raw.test\r\n"), "{head}");
    // Nothing under /admin reached it, whatever the spelling.
    let leaked: Vec<String> = origin
        .log
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter_map(|h| h.lines().next().map(str::to_owned))
        .filter(|l| {
            let t = l.split(' ').nth(1).unwrap_or("");
            t.contains("admin") && !t.starts_with("/ADMIN")
        })
        .collect();
    assert!(leaked.is_empty(), "reached the origin: {leaked:?}");
}
