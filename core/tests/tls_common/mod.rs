//! Helpers shared by the `tls_*` and `handshake_*` integration tests: a throwaway CA and
//! server certificate, and two-worker runs over loopback.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ringtun_core::rt::{DriverChoice, Runtime, RuntimeConfig, WorkerCtx};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ServerConfig};

/// The name the test server certificate is issued for.
pub const SERVER_NAME: &str = "edge.ringtun.test";

/// A CA (PEM) and a server configuration whose certificate it signed.
pub struct Pki {
    pub ca_pem: String,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// Makes a fresh CA and a server certificate for [`SERVER_NAME`] and `127.0.0.1`.
pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = ringtun_core::tls::server_config(chain, key).expect("server config");
    let ca_pem = ca.pem();
    let client = ringtun_core::tls::client_config(ca_pem.as_bytes()).expect("client config");
    Pki {
        ca_pem,
        server,
        client,
    }
}

/// Runs `f` on two workers under `driver`; worker 0 gets a bound loopback listener.
pub fn run_two_workers<F, Fut>(driver: DriverChoice, f: F) -> Vec<Result<(), String>>
where
    F: Fn(usize, Option<std::net::TcpListener>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    let l = Mutex::new(Some(l));
    let cfg = RuntimeConfig {
        workers: Some(2),
        driver,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(cfg, move |ctx: WorkerCtx| {
        let taken = if ctx.index() == 0 {
            l.lock().ok().and_then(|mut g| g.take())
        } else {
            None
        };
        f(ctx.index(), taken, addr)
    })
    .expect("runtime starts");
    rt.join()
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()).and_then(|x| x))
        .collect()
}
