//! A TCP route across edge nodes, with real processes: one etcd member, two `ringtun-edge`
//! nodes on one host, each listening for TCP routes on its own loopback address
//! (`--public-tcp-ip`), and a fake connector linked only to node 1. A raw TCP client on node
//! 2's route listener is carried over the peer link to node 1's link: a large echo comes back
//! byte for byte, and the client's half-close reaches the connector (the echo ends with EOF
//! after the last byte).

use ringtun_test_support::etcd;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ringtun_test_support::cluster::{ClusterNode as Node, unique_prefix};
use uuid::Uuid;

/// Generous: the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(60);

/// Bytes echoed through the route (several mux windows' worth).
const ECHO_BYTES: usize = 4 << 20;

/// A node whose edge server and TCP routes are on `ip`.
fn start(dir: &Path, name: &str, endpoints: &str, prefix: &str, ip: Ipv4Addr) -> Node {
    let server = format!("dfw={ip}:0");
    let tcp_ip = ip.to_string();
    let args = ["--data-center", &server, "--public-tcp-ip", &tcp_ip];
    let bin = env!("CARGO_BIN_EXE_ringtun-edge");
    Node::start(bin, dir, name, endpoints, prefix, &args)
}

/// A port free on every one of `ips` now (the route binds it on each node's address).
fn free_port_on(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let probe = TcpListener::bind((ips[0], 0)).expect("bind a probe");
        let port = probe.local_addr().expect("probe address").port();
        let others_free = ips[1..]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok());
        if others_free {
            return port;
        }
    }
    panic!("no port free on every one of {ips:?}");
}

/// Sends `data` on a fresh connection to `addr`, half-closes, and reads until EOF; returns
/// what came back. The writer runs on its own thread so the echo never waits on the client.
fn echo_through(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let mut writer = stream.try_clone()?;
    let to_send = data.to_vec();
    let sent = std::thread::spawn(move || -> std::io::Result<()> {
        for chunk in to_send.chunks(64 * 1024) {
            writer.write_all(chunk)?;
        }
        // The half-close: the echo must still come back in full after it.
        writer.shutdown(Shutdown::Write)
    });
    let mut got = Vec::with_capacity(data.len());
    stream.read_to_end(&mut got)?;
    sent.join().expect("writer thread")?;
    Ok(got)
}

#[test]
fn a_tcp_route_on_a_node_without_a_link_is_carried_to_the_node_with_one() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let ips = [Ipv4Addr::new(127, 0, 1, 1), Ipv4Addr::new(127, 0, 2, 1)];
    let n1 = start(dir.path(), "n1", &etcd.endpoints(), &prefix, ips[0]);
    let _n2 = start(dir.path(), "n2", &etcd.endpoints(), &prefix, ips[1]);

    let (tunnel, secret) = n1.create_tunnel("tcp");
    let port = free_port_on(&ips);
    let (status, body) = n1.admin(
        "POST",
        "/routes/tcp",
        Some(&format!(r#"{{"tunnel":"tcp","port":{port}}}"#)),
    );
    assert_eq!(status, 201, "{body}");

    // The connector's one link is on node 1.
    let _connector = n1.link("c1", tunnel, &secret, Uuid::new_v4(), 0);

    // Node 2 listens on its own address once its route watch has seen the route, and
    // forwards once its presence view shows node 1's link: a short echo until both hold.
    let on_n2 = SocketAddr::from((ips[1], port));
    let deadline = Instant::now() + DEADLINE;
    loop {
        match echo_through(on_n2, b"ping") {
            Ok(got) if got == b"ping" => break,
            other => assert!(
                Instant::now() < deadline,
                "node 2's route listener never echoed: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let served = r#"ringtun_edge_peer_streams_total{reason="served"} "#;
    let before = n1.metric(served);
    // Not a repeating pattern of any power-of-two period: a chunk lost, doubled or swapped
    // shows.
    let data: Vec<u8> = (0..ECHO_BYTES).map(|i| (i % 251) as u8).collect();
    let got = echo_through(on_n2, &data).expect("echo through node 2");
    assert_eq!(got.len(), data.len(), "bytes echoed");
    assert!(got == data, "the echo differs from what was sent");
    assert_eq!(
        n1.metric(served) - before,
        1.0,
        "node 1 served the connection from node 2 over the peer link"
    );
    // Node 1's own listener serves it too, from its own link.
    let got = echo_through(SocketAddr::from((ips[0], port)), b"local").expect("echo on node 1");
    assert_eq!(got, b"local");
}
