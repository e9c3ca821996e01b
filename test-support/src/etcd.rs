//! Real `etcd` members on loopback ports chosen free at run time, each with a
//! temporary data directory, killed when the [`Etcd`] is dropped.
//!
//! [`Etcd::start_tls`] starts one member that serves its clients over TLS and requires a client
//! certificate (`--client-cert-auth`), from certificates [`EtcdPki::generate`] writes; it also
//! listens on a plain loopback port that only this harness uses (its probes and key listings).
//!
//! The `etcd` binary is found on `PATH` or at `/usr/bin/etcd` (Debian's `etcd-server`); when it
//! is missing the test fails with a message naming `.ci/deps.sh`, which installs it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member may take to become healthy (generous: the machine may be busy).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The `etcd` binary, or a panic that says how to install it.
pub fn etcd_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    let debian = PathBuf::from("/usr/bin/etcd");
    on_path
        .or_else(|| debian.is_file().then_some(debian))
        .unwrap_or_else(|| {
            panic!(
                "etcd not found on PATH or at /usr/bin/etcd: run .ci/deps.sh first \
                 (it installs Debian's etcd-server)"
            )
        })
}

/// A free loopback port (bound, read, released: the member binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("probe a free loopback port")
}

struct Member {
    name: String,
    /// The plain client port (the harness's own JSON gateway calls use it).
    client: SocketAddr,
    /// The TLS client port and its certificates ([`Etcd::start_tls`]).
    tls: Option<(SocketAddr, MemberTls)>,
    peer: SocketAddr,
    data: PathBuf,
    child: Option<Child>,
}

/// One etcd cluster of 1 or 3 members.
pub struct Etcd {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers writes.
    pub fn start(n: usize) -> Etcd {
        Etcd::start_with(n, None)
    }

    /// Starts one member whose clients connect over TLS with a client certificate signed by
    /// `tls.trusted_ca` (`--client-cert-auth`); [`Etcd::tls_endpoints`] gives its URL.
    pub fn start_tls(tls: MemberTls) -> Etcd {
        Etcd::start_with(1, Some(tls))
    }

    fn start_with(n: usize, tls: Option<MemberTls>) -> Etcd {
        etcd_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: SocketAddr::from(([127, 0, 0, 1], free_port())),
                tls: None,
                peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
                data: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            initial_cluster,
            token: format!("ringtun-test-{}", uuid::Uuid::new_v4()),
            _dir: dir,
        };
        if let Some(tls) = tls {
            etcd.members[0].tls = Some((SocketAddr::from(([127, 0, 0, 1], free_port())), tls));
        }
        for i in 0..n {
            etcd.spawn(i);
        }
        etcd.wait_writable();
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster.clone();
        let token = self.token.clone();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.data.with_extension("log"))
            .expect("etcd log file");
        let mut clients = format!("http://{}", m.client);
        let mut cmd = Command::new(etcd_binary());
        if let Some((addr, tls)) = &m.tls {
            clients = format!("https://{addr},{clients}");
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&tls.trusted_ca)
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key);
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &clients])
            .args(["--advertise-client-urls", &clients])
            .args(["--listen-peer-urls", &format!("http://{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{}", m.peer),
            ])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &token])
            .args(["--initial-cluster-state", "new"])
            // Elections tolerant of a busy machine.
            .args(["--heartbeat-interval", "200", "--election-timeout", "2000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Every member's client URL, comma-separated (for `--etcd`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The TLS client URL of every member started with TLS, comma-separated (for `--etcd`).
    pub fn tls_endpoints(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| m.tls.as_ref().map(|(addr, _)| format!("https://{addr}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every killed member again on its ports and data, and waits for writes.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_writable();
    }

    /// The index of the member that leads now (asked of the live members).
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Some(status) = post(m.client, "/v3/maintenance/status", "{}") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&status).ok()?;
            let leader = v["leader"].as_str().map(str::to_owned);
            let me = v["header"]["member_id"].as_str().map(str::to_owned);
            if let (Some(leader), Some(me)) = (leader, me) {
                if leader == me {
                    return self.members.iter().position(|x| x.name == m.name);
                }
                // Ask the others which of them has this ID.
                for (j, other) in self.members.iter().enumerate() {
                    if other.child.is_none() {
                        continue;
                    }
                    let s = post(other.client, "/v3/maintenance/status", "{}")?;
                    let ov: serde_json::Value = serde_json::from_str(&s).ok()?;
                    if ov["header"]["member_id"].as_str() == Some(leader.as_str()) {
                        return Some(j);
                    }
                }
            }
        }
        None
    }

    /// Waits until a write through some live member succeeds (through the JSON gateway).
    pub fn wait_writable(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            // key "_probe" and value "1", base64.
            let ok = self.members.iter().filter(|m| m.child.is_some()).any(|m| {
                post(
                    m.client,
                    "/v3/kv/put",
                    r#"{"key":"X3Byb2Jl","value":"MQ=="}"#,
                )
                .is_some_and(|body| body.contains("revision"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not accept writes within {START_DEADLINE:?}; logs in {}",
                self.members[0].data.with_extension("log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Etcd {
    /// Every key under `prefix` (asked of the live members through the JSON gateway); `None`
    /// when none answers.
    pub fn keys(&self, prefix: &str) -> Option<Vec<String>> {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = format!(
            r#"{{"key":"{}","range_end":"{}","keys_only":true}}"#,
            b64(prefix.as_bytes()),
            b64(&end)
        );
        let answer = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .find_map(|m| post(m.client, "/v3/kv/range", &body))?;
        let v: serde_json::Value = serde_json::from_str(&answer).ok()?;
        let keys = v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| kv["key"].as_str())
                    .filter_map(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
                    .filter_map(|k| String::from_utf8(k).ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(keys)
    }
}

impl Etcd {
    /// Puts `key` = `value` (no lease) through the JSON gateway of some live member; whether
    /// one accepted it.
    pub fn put(&self, key: &str, value: &str) -> bool {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64(key.as_bytes()),
            b64(value.as_bytes())
        );
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .any(|m| post(m.client, "/v3/kv/put", &body).is_some_and(|b| b.contains("revision")))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The certificates of a TLS member ([`Etcd::start_tls`]).
#[derive(Debug, Clone)]
pub struct MemberTls {
    /// The member's certificate (PEM), for 127.0.0.1.
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) whose client certificates the member accepts.
    pub trusted_ca: PathBuf,
}

/// A test PKI in a temporary directory, every file PEM: a CA that signs the member's
/// certificate and a client certificate, and a second, unrelated CA with a client certificate
/// of its own (what the member must refuse, and what must not verify the member).
pub struct EtcdPki {
    /// The CA that signed the member's and the client's certificates.
    pub ca: PathBuf,
    /// A client certificate signed by [`EtcdPki::ca`], and its key.
    pub client_cert: PathBuf,
    /// The key of [`EtcdPki::client_cert`].
    pub client_key: PathBuf,
    /// Another CA, unrelated to the member.
    pub other_ca: PathBuf,
    /// A client certificate signed by [`EtcdPki::other_ca`].
    pub other_client_cert: PathBuf,
    /// The key of [`EtcdPki::other_client_cert`].
    pub other_client_key: PathBuf,
    /// The member's certificates.
    pub member: MemberTls,
    /// Holds the files (removed on drop).
    pub dir: tempfile::TempDir,
}

impl EtcdPki {
    /// Generates and writes every certificate and key.
    pub fn generate() -> EtcdPki {
        fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
            let key = rcgen::KeyPair::generate().expect("CA key");
            let mut params =
                rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "ringtun test etcd CA");
            rcgen::CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
        }
        fn leaf(
            ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
            names: &[&str],
            usage: rcgen::ExtendedKeyUsagePurpose,
        ) -> (String, String) {
            let key = rcgen::KeyPair::generate().expect("key");
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let mut params = rcgen::CertificateParams::new(names).expect("params");
            params.extended_key_usages = vec![usage];
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "ringtun-edge");
            let cert = params.signed_by(&key, ca).expect("sign");
            (cert.pem(), key.serialize_pem())
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let (ca, other) = (ca(), ca());
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let (member_cert, member_key) = leaf(&ca, &["127.0.0.1", "localhost"], ServerAuth);
        let (client_cert, client_key) = leaf(&ca, &[], ClientAuth);
        let (other_cert, other_key) = leaf(&other, &[], ClientAuth);
        EtcdPki {
            ca: write("ca.pem", &ca.pem()),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other.pem()),
            other_client_cert: write("other-client.pem", &other_cert),
            other_client_key: write("other-client.key", &other_key),
            member: MemberTls {
                cert: write("member.pem", &member_cert),
                key: write("member.key", &member_key),
                trusted_ca: dir.path().join("ca.pem"),
            },
            dir,
        }
    }
}

/// POSTs `body` to etcd's JSON gateway; the response body on 200, `None` otherwise.
fn post(addr: SocketAddr, path: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8(out).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    // The JSON object, whether or not the body came chunked (one chunk: its size line and the
    // final 0 lie outside the braces).
    let start = rest.find('{')?;
    let end = rest.rfind('}')?;
    Some(rest[start..=end].to_owned())
}
