//! A fake connector for the edge's tests: one link per `docs/tunnel-contract.md`, built from
//! `core::{tls, handshake, link}`, registering with the replica fields a test chooses and serving
//! streams with canned answers. Public clients use the one HTTP client, [`Client`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use bytes::Bytes;
use compio::net::TcpStream;
use ringtun_core::handshake::{
    Accepted, HandshakeError, RegisterFlags, RegisterRequest, TunnelSecret, connector_register,
};
use ringtun_core::http::{BodyFraming, ResponseHead, origin_refused_detail, origin_timeout_detail};
use ringtun_core::link::{Incoming, Link};
use ringtun_core::mux::{Config, ErrorCode, Role, StreamKind};
use ringtun_core::rt::Shutdown;
use ringtun_core::tls::{TlsStream, client_config};
use ringtun_core::tunnel::{
    ReplyError, ReplyErrorKind, decode_request_meta, encode_reply_error, encode_response_meta,
    encode_response_meta_with,
};
use uuid::Uuid;

pub use crate::http::{Client, Response};

/// How to reach and prove to the edge.
#[derive(Clone)]
pub struct FakeOpts {
    /// A name for the answers it gives (a test tells replicas apart by it).
    pub name: &'static str,
    /// The edge server to dial.
    pub server: SocketAddr,
    /// The edge's CA, for a TLS link; `None` for a plaintext link.
    pub ca_pem: Option<String>,
    /// The tunnel it registers for.
    pub tunnel: Uuid,
    /// The tunnel secret it proves it holds.
    pub secret: Vec<u8>,
    /// Its connector ID.
    pub connector: Uuid,
    /// The link's index among the connector's links.
    pub link_index: u8,
    /// Refuse every stream (RESET REFUSED_STREAM before any reply).
    pub refuse: bool,
}

/// What the registration says about the replica beyond [`FakeOpts`].
#[derive(Clone)]
pub struct FakeReplica {
    /// The replica's label.
    pub label: String,
    /// Its weight.
    pub weight: u16,
    /// Whether it is a standby.
    pub standby: bool,
    /// The links the registration declares (`--ha-connections`).
    pub ha_connections: u8,
}

impl Default for FakeReplica {
    fn default() -> Self {
        FakeReplica {
            label: String::new(),
            weight: ringtun_core::handshake::DEFAULT_WEIGHT,
            standby: false,
            ha_connections: ringtun_core::handshake::MAX_HA_CONNECTIONS,
        }
    }
}

/// How a fake connector misbehaves, beyond [`FakeOpts::refuse`].
#[derive(Clone, Copy, Default)]
pub struct Behavior {
    /// On the first stream, shut the link's TCP socket down before replying (like a killed
    /// connector: the edge sees the connection end, no GOAWAY).
    pub crash_on_request: bool,
}

/// A running fake connector link (one link).
pub struct FakeConnector {
    /// What the edge answered to the registration.
    pub registered: Result<Accepted, HandshakeError>,
    stop: Shutdown,
    drain: Shutdown,
    ended: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeConnector {
    /// Dials, registers, and serves streams on a thread of its own until stopped.
    pub fn start(opts: FakeOpts) -> FakeConnector {
        FakeConnector::start_full(opts, FakeReplica::default(), Behavior::default())
    }

    /// [`FakeConnector::start`] with a label, weight and standby flag in the registration.
    pub fn start_replica(opts: FakeOpts, replica: FakeReplica) -> FakeConnector {
        FakeConnector::start_full(opts, replica, Behavior::default())
    }

    /// [`FakeConnector::start`] with a misbehaviour.
    pub fn start_with(opts: FakeOpts, behavior: Behavior) -> FakeConnector {
        FakeConnector::start_full(opts, FakeReplica::default(), behavior)
    }

    /// [`FakeConnector::start`] with both a replica description and a misbehaviour.
    pub fn start_full(opts: FakeOpts, replica: FakeReplica, behavior: Behavior) -> FakeConnector {
        let stop = Shutdown::new();
        let drain = Shutdown::new();
        let ended = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (stop2, drain2) = (stop.clone(), drain.clone());
        let ended2 = Arc::clone(&ended);
        let thread = std::thread::spawn(move || {
            let rt = compio::runtime::Runtime::new().expect("runtime");
            rt.block_on(run(opts, replica, behavior, tx, stop2, drain2, ended2));
        });
        let registered = rx.recv().expect("registration result");
        FakeConnector {
            registered,
            stop,
            drain,
            ended,
            thread: Some(thread),
        }
    }

    /// Starts the link's two-phase drain (GOAWAY), as a connector shutting down does.
    pub fn drain(&self) {
        self.drain.trigger();
    }

    /// Whether the link ended (closed by the edge, or never registered).
    pub fn link_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Closes the link and waits for the thread.
    pub fn stop(mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            t.join().expect("fake connector thread");
        }
    }
}

async fn register<S: compio::io::AsyncRead + compio::io::AsyncWrite>(
    s: &mut S,
    opts: &FakeOpts,
    replica: &FakeReplica,
) -> Result<Accepted, HandshakeError> {
    let req = RegisterRequest {
        tunnel_id: *opts.tunnel.as_bytes(),
        connector_id: *opts.connector.as_bytes(),
        version: "0.1.0-test".into(),
        arch: "linux_test".into(),
        link_index: opts.link_index,
        flags: if replica.standby {
            RegisterFlags(RegisterFlags::STANDBY)
        } else {
            RegisterFlags::default()
        },
        label: replica.label.clone(),
        weight: replica.weight,
        ha_connections: replica.ha_connections,
    };
    connector_register(s, &req, &TunnelSecret::new(opts.secret.clone())).await
}

async fn run(
    opts: FakeOpts,
    replica: FakeReplica,
    behavior: Behavior,
    tx: mpsc::Sender<Result<Accepted, HandshakeError>>,
    stop: Shutdown,
    drain: Shutdown,
    ended: Arc<AtomicBool>,
) {
    let tcp = TcpStream::connect(opts.server)
        .await
        .expect("dial the edge");
    let sock = socket2::SockRef::from(&tcp)
        .try_clone()
        .expect("duplicate the link socket");
    let link = match &opts.ca_pem {
        Some(ca) => {
            let cfg = client_config(ca.as_bytes()).expect("client config");
            let mut tls = match TlsStream::connect(tcp, cfg, &opts.server.ip().to_string()).await {
                Ok(t) => t,
                Err(e) => {
                    // E.g. the server is down (fault injection) and closed the connection.
                    ended.store(true, Ordering::Release);
                    let _ = tx.send(Err(HandshakeError::Io(std::io::Error::other(
                        e.to_string(),
                    ))));
                    return;
                }
            };
            let r = register(&mut tls, &opts, &replica).await;
            let ok = r.is_ok();
            let _ = tx.send(r);
            if !ok {
                ended.store(true, Ordering::Release);
                return;
            }
            Link::spawn(tls, Role::Client, Config::default())
        }
        None => {
            let mut tcp = tcp;
            let r = register(&mut tcp, &opts, &replica).await;
            let ok = r.is_ok();
            let _ = tx.send(r);
            if !ok {
                ended.store(true, Ordering::Release);
                return;
            }
            Link::spawn(tcp, Role::Client, Config::default())
        }
    };
    let name = opts.name;
    let refuse = opts.refuse;
    {
        let link = link.clone();
        compio::runtime::spawn(async move {
            let _ = link.closed().await;
            ended.store(true, Ordering::Release);
        })
        .detach();
    }
    {
        let link = link.clone();
        compio::runtime::spawn(async move {
            while let Some(inc) = link.accept().await {
                if behavior.crash_on_request {
                    // Read nothing, reply nothing: the connection just ends.
                    let _ = sock.shutdown(std::net::Shutdown::Both);
                    drop(inc);
                    continue;
                }
                if refuse {
                    inc.stream.reset(ErrorCode::REFUSED_STREAM);
                    continue;
                }
                compio::runtime::spawn(serve(name, inc)).detach();
            }
        })
        .detach();
    }
    {
        let link = link.clone();
        compio::runtime::spawn(async move {
            drain.wait().await;
            link.drain();
        })
        .detach();
    }
    stop.wait().await;
    link.close(ErrorCode::NO_ERROR);
    link.closed().await;
}

/// HTTP: echoes the request body (chunked response, in pieces) or says hello (Content-Length);
/// headers tell what the connector saw. TCP: echoes bytes until FIN.
async fn serve(name: &'static str, inc: Incoming) {
    let s = Rc::new(inc.stream);
    match inc.kind {
        StreamKind::Tcp => {
            assert!(!inc.meta.is_empty(), "tcp OPEN meta carries the port");
            s.reply(Bytes::new()).expect("reply");
            while let Ok(Some(c)) = s.read().await {
                if s.write(c).await.is_err() {
                    return;
                }
            }
            let _ = s.finish();
        }
        _ => {
            let (head, extra) = decode_request_meta(inc.meta).expect("request meta");
            // `/switch`: a 101 whatever the request asked for (a misbehaving connector).
            if &head.target[..] == b"/switch" {
                let mut rh = ResponseHead::new(101);
                rh.headers.append("Upgrade", "websocket");
                rh.headers.append("Connection", "Upgrade");
                let _ = s.reply(encode_response_meta(&rh, BodyFraming::Empty));
                while let Ok(Some(c)) = s.read().await {
                    if s.write(c).await.is_err() {
                        return;
                    }
                }
                return;
            }
            // `/big/N`: N bytes of body (Content-Length), for clients that do not read.
            if let Some(n) = head.target.strip_prefix(b"/big/".as_slice()) {
                let n: usize = std::str::from_utf8(n)
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let rh = ResponseHead::new(200);
                if s.reply(encode_response_meta(&rh, BodyFraming::Length(n as u64)))
                    .is_err()
                {
                    return;
                }
                let piece = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut left = n;
                while left > 0 {
                    let k = left.min(piece.len());
                    if s.write(piece.slice(..k)).await.is_err() {
                        return;
                    }
                    left -= k;
                }
                let _ = s.finish();
                return;
            }
            if &head.target[..] == b"/ws" {
                assert_eq!(inc.kind, StreamKind::WebSocket);
                let mut rh = ResponseHead::new(101);
                rh.headers.append("Upgrade", "websocket");
                rh.headers.append("Connection", "Upgrade");
                s.reply(encode_response_meta(&rh, BodyFraming::Empty))
                    .expect("reply");
                while let Ok(Some(c)) = s.read().await {
                    if s.write(c).await.is_err() {
                        return;
                    }
                }
                let _ = s.finish();
                return;
            }
            // `/trailers`: a chunked response with the trailers flag: the request's own DATA when
            // it came with the flag (its body and trailers, chunked), else `abc` and
            // `grpc-status: 0`.
            if &head.target[..] == b"/trailers" {
                let rh = ResponseHead::new(200);
                let meta = encode_response_meta_with(&rh, BodyFraming::Chunked, true);
                if s.reply(meta).is_err() {
                    return;
                }
                if extra.trailers {
                    while let Ok(Some(c)) = s.read().await {
                        if s.write(c).await.is_err() {
                            return;
                        }
                    }
                } else {
                    while let Ok(Some(_)) = s.read().await {}
                    let wire = Bytes::from_static(b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n");
                    if s.write(wire).await.is_err() {
                        return;
                    }
                }
                let _ = s.finish();
                return;
            }
            let fail = match &head.target[..] {
                b"/refused" => Some(ReplyErrorKind::OriginRefused),
                b"/timeout" => Some(ReplyErrorKind::OriginTimeout),
                _ => None,
            };
            if let Some(kind) = fail {
                let message = match kind {
                    ReplyErrorKind::OriginTimeout => origin_timeout_detail("127.0.0.1:9"),
                    _ => origin_refused_detail("127.0.0.1:9"),
                };
                s.reply(encode_reply_error(&ReplyError { kind, message }))
                    .expect("reply");
                let _ = s.finish();
                return;
            }
            let mut body = Vec::new();
            while let Ok(Some(c)) = s.read().await {
                body.extend_from_slice(&c);
            }
            let mut rh = ResponseHead::new(200);
            rh.headers.append("X-Replica", name);
            let seen = |n: &str| {
                head.headers
                    .get(n)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            rh.headers.append("X-Seen-Xff", seen("x-forwarded-for"));
            rh.headers.append("X-Seen-Proto", seen("x-forwarded-proto"));
            rh.headers.append(
                "X-Seen-Connection",
                if head.headers.contains("connection") {
                    "yes"
                } else {
                    "no"
                },
            );
            rh.headers
                .append("X-Seen-Body-Framing", format!("{:?}", extra.body));
            if body.is_empty() {
                let hello = Bytes::from(format!("hello from {name}"));
                let meta = encode_response_meta(&rh, BodyFraming::Length(hello.len() as u64));
                s.reply(meta).expect("reply");
                let _ = s.write(hello).await;
            } else {
                // The edge may have given up on the stream (e.g. a stalled client body).
                if s.reply(encode_response_meta(&rh, BodyFraming::Chunked))
                    .is_err()
                {
                    return;
                }
                let body = Bytes::from(body);
                let third = body.len() / 3;
                for piece in [
                    body.slice(..third),
                    body.slice(third..2 * third),
                    body.slice(2 * third..),
                ] {
                    if s.write(piece).await.is_err() {
                        return;
                    }
                }
            }
            let _ = s.finish();
        }
    }
}
