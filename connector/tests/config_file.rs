//! Loading real config files from `tests/data/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ringtun_connector::config::Config;
use ringtun_connector::ingress::Service;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(name: &str) -> Config {
    Config::load(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn cloudflared_config_loads_unchanged() {
    let c = load("cloudflared-config.yml");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.tunnel.as_deref(),
        Some("6ff42ae2-765d-4adf-8112-31c55c1551ef")
    );
    assert_eq!(
        c.credentials_file.as_deref(),
        Some(Path::new(
            "/root/.cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json"
        ))
    );
    assert_eq!(c.origin_request.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.origin_request.keep_alive_connections, 50);
    assert_eq!(c.origin_request.keep_alive_timeout, Duration::from_secs(90));
    let rules = c.ingress.as_ref().unwrap_or_else(|| panic!("rules"));
    assert_eq!(rules.rules().len(), 7);

    let m = |host: &str, path: &str| rules.match_request(host, path).number();
    assert_eq!(m("api.example.com", "/v1/users"), 1);
    assert_eq!(m("api.example.com", "/x/v1/users"), 2, "^ anchors");
    assert_eq!(m("x.y.apps.example.com:443", "/"), 3);
    assert_eq!(m("apps.example.com", "/"), 7);
    assert_eq!(m("SSH.example.com", "/"), 4);
    assert_eq!(m("static.example.com", "/img/a.jpeg"), 5);
    assert_eq!(m("static.example.com", "/index.html"), 7);
    assert_eq!(m("hello.example.com", "/"), 6);

    let apps = &rules.rules()[2];
    assert!(apps.origin_request.danger_no_tls_verify);
    assert_eq!(apps.origin_request.connect_timeout, Duration::from_secs(2));
    assert_eq!(apps.origin_request.keep_alive_connections, 50);
    assert_eq!(
        apps.origin_request.http_host_header.as_deref(),
        Some("internal.example.com")
    );
    assert!(matches!(&apps.service, Service::Http(h) if h.tls && h.port == 8443));
    assert!(matches!(&rules.rules()[3].service, Service::Tcp(t) if t.port == 22));
    assert_eq!(rules.rules()[6].service, Service::HttpStatus(404));
}

#[test]
fn unsupported_cloudflared_fields_are_named() {
    let c = load("cloudflared-extras.yml");
    let fields: Vec<&str> = c.warnings.iter().map(|w| w.field.as_str()).collect();
    // `protocol`, `loglevel` and `metrics` are flags written as keys: the command line applies
    // them (and names `--protocol` in its one warning about cloudflared-only flags).
    assert_eq!(
        fields,
        [
            "warp-routing",
            "originRequest.proxyType",
            "ingress[1].originRequest.access",
            "ingress[2].originRequest.proxyType",
        ]
    );
    let rules = c.ingress.unwrap_or_else(|| panic!("rules"));
    assert!(rules.rules()[2].origin_request.disable_chunked_encoding);
}

#[test]
fn invalid_file_is_refused() {
    let e = Config::load(&data("last-rule-not-catch-all.yml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("the last ingress rule must match all URLs"),
        "{e}"
    );
}
