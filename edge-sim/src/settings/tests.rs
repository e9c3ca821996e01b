//! Unit tests of the settings: defaults, the file, the flags and their checks.

use super::*;

#[test]
fn embedded_default() {
    let s = Settings::default();
    assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(s.admin.to_string(), DEFAULT_ADMIN);
    assert_eq!(s.public_http.to_string(), DEFAULT_PUBLIC_HTTP);
    assert_eq!(s.connector_limit, 100);
    let names: Vec<_> = s.data_centers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["dfw", "mci"]);
    let addrs: Vec<_> = s.server_addrs().map(|a| a.to_string()).collect();
    assert_eq!(
        addrs,
        [
            "127.0.1.1:7844",
            "127.0.1.2:7844",
            "127.0.2.1:7844",
            "127.0.2.2:7844"
        ]
    );
}

#[test]
fn file_then_flags() {
    let file = FileConfig::parse(
        r#"
        connector-limit = 3
        admin = "127.0.0.1:9000"
        [[data-centers]]
        name = "ams"
        servers = ["127.0.3.1:7844"]
        "#,
    )
    .expect("valid toml");
    let s = Settings::from_parts(
        file,
        Overrides {
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Overrides::default()
        },
    )
    .expect("valid settings");
    assert_eq!(s.connector_limit, 3);
    assert_eq!(s.admin.port(), 0);
    assert_eq!(s.data_centers.len(), 1);
    assert_eq!(s.data_centers[0].name, "ams");

    let s = Settings::from_parts(
        FileConfig::default(),
        Overrides {
            data_centers: vec!["x=127.0.9.1:1,127.0.9.2:1".into()],
            ..Overrides::default()
        },
    )
    .expect("valid settings");
    assert_eq!(s.data_centers[0].servers.len(), 2);
}

#[test]
fn reads_a_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("edge.toml");
    std::fs::write(
        &path,
        "state-dir = \"/tmp/x\"\npublic-http = \"127.0.0.1:9080\"\n",
    )
    .expect("write");
    let s = Settings::load(Some(&path), Overrides::default()).expect("load");
    assert_eq!(s.state_dir, PathBuf::from("/tmp/x"));
    assert_eq!(s.public_http.port(), 9080);

    std::fs::write(&path, "state_dir = \"/tmp/x\"\n").expect("write");
    let err = Settings::load(Some(&path), Overrides::default()).expect_err("unknown field");
    assert!(err.to_string().contains("state_dir"), "{err}");
    let yaml = tmp.path().join("edge.yml");
    assert!(Settings::load(Some(&yaml), Overrides::default()).is_err());
    let missing = tmp.path().join("missing.toml");
    assert!(Settings::load(Some(&missing), Overrides::default()).is_err());
}

#[test]
fn rejects_bad_config() {
    assert!(FileConfig::parse("nope = 1").is_err());
    for overrides in [
        Overrides {
            connector_limit: Some(0),
            ..Overrides::default()
        },
        Overrides {
            data_centers: vec!["a=127.0.0.1:1".into(), "b=127.0.0.1:1".into()],
            ..Overrides::default()
        },
        Overrides {
            data_centers: vec!["A=127.0.0.1:1".into()],
            ..Overrides::default()
        },
        Overrides {
            data_centers: vec!["a".into()],
            ..Overrides::default()
        },
    ] {
        assert!(matches!(
            Settings::from_parts(FileConfig::default(), overrides),
            Err(Error::Config(_))
        ));
    }
}

#[test]
fn the_tcp_route_address_comes_from_the_flag_then_the_file_then_the_default() {
    assert_eq!(Settings::default().public_tcp_ip, DEFAULT_PUBLIC_TCP_IP);
    let file = || FileConfig::parse(r#"public-tcp-ip = "127.0.2.1""#).expect("valid toml");
    let s = Settings::from_parts(file(), Overrides::default()).expect("valid settings");
    assert_eq!(s.public_tcp_ip.to_string(), "127.0.2.1");
    let s = Settings::from_parts(
        file(),
        Overrides {
            public_tcp_ip: Some("0.0.0.0".parse().expect("ip")),
            ..Overrides::default()
        },
    )
    .expect("valid settings");
    assert_eq!(s.public_tcp_ip.to_string(), "0.0.0.0");
    assert!(FileConfig::parse(r#"public-tcp-ip = "127.0.2.1:80""#).is_err());
}
