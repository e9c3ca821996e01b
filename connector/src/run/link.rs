//! One link's life: connect, TLS, register, serve streams until the link ends, then reconnect
//! with exponential backoff and jitter (1 s doubling, capped at 32 s), moving to the next
//! server of the same data center after a failure.
//!
//! A refusal the connector cannot fix by retrying (bad secret, unknown tunnel, connector limit)
//! is fatal: its message is recorded and the whole runtime shuts down, so `tunnel run` exits
//! non-zero with the edge's own words.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, select};
use ringtun_core::handshake::{
    HandshakeError, RegisterFlags, RegisterRequest, RejectCode, connector_register,
};
use ringtun_core::link::Link;
use ringtun_core::mux::{Config, ErrorCode, Role};
use ringtun_core::rt::Shutdown;
use ringtun_core::rt::net::{SocketTuning, connect};
use ringtun_core::tls::TlsStream;

use super::Shared;
use crate::proxy::{self, ProxyCtx};

/// The first reconnect delay.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest reconnect delay.
const BACKOFF_CAP: Duration = Duration::from_secs(32);
/// How long connecting, TLS and registration may take together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How an attempt to set up a link failed.
enum SetupError {
    /// Retrying will not help; the edge's message.
    Fatal(String),
    /// Try again later, elsewhere.
    Retry(String),
}

/// Runs link `index` until shutdown (or a fatal refusal).
pub async fn supervise(index: usize, shared: Arc<Shared>, ctx: Rc<ProxyCtx>, shutdown: Shutdown) {
    let mut attempt = 0usize;
    let mut backoff = BACKOFF_START;
    while !shutdown.is_triggered() {
        let (dc, addr) = shared.plan.server(index, attempt);
        let dc = dc.to_owned();
        let setup = compio::time::timeout(HANDSHAKE_TIMEOUT, establish(index, addr, &shared)).await;
        let result = match setup {
            Ok(r) => r,
            Err(_) => Err(SetupError::Retry("timed out".to_owned())),
        };
        match result {
            Ok((link, data_center)) => {
                tracing::info!(
                    "link registered index={index} data_center={data_center} server={addr}"
                );
                backoff = BACKOFF_START;
                shared.observer.link_up(&data_center);
                let ended = serve(&link, &ctx, &shutdown, shared.grace).await;
                shared.observer.link_down(&data_center);
                if !ended {
                    return;
                }
                tracing::warn!(index, server = %addr, "link lost; reconnecting");
            }
            Err(SetupError::Fatal(message)) => {
                tracing::error!(index, server = %addr, %message, "the edge refused this connector");
                shared.fail(message);
                shutdown.trigger();
                return;
            }
            Err(SetupError::Retry(reason)) => {
                tracing::warn!(index, data_center = %dc, server = %addr, %reason, "link setup failed");
                attempt += 1;
            }
        }
        let delay = jitter(backoff);
        backoff = (backoff * 2).min(BACKOFF_CAP);
        let sleep = std::pin::pin!(compio::time::sleep(delay));
        let stop = std::pin::pin!(shutdown.wait());
        if let Either::Right(_) = select(sleep, stop).await {
            return;
        }
    }
}

/// A delay between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.5..=1.0);
    d.mul_f64(f)
}

/// Connects, runs TLS (unless plaintext) and registers; returns the running link and the
/// edge's data center name.
async fn establish(
    index: usize,
    addr: std::net::SocketAddr,
    shared: &Shared,
) -> Result<(Link, String), SetupError> {
    let tcp = connect(addr, &SocketTuning::default())
        .await
        .map_err(|e| SetupError::Retry(format!("connect: {e}")))?;
    let request = RegisterRequest {
        tunnel_id: shared.tunnel_id,
        connector_id: shared.connector_id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        link_index: u8::try_from(index).unwrap_or(u8::MAX),
        flags: if shared.standby {
            RegisterFlags(RegisterFlags::STANDBY)
        } else {
            RegisterFlags::default()
        },
        label: shared.label.clone(),
        weight: shared.weight,
    };
    match &shared.ca_pem {
        Some(ca) => {
            let config = ringtun_core::tls::client_config(ca.as_bytes())
                .map_err(|e| SetupError::Fatal(format!("bad edge CA: {e}")))?;
            let mut tls = TlsStream::connect(tcp, config, &addr.ip().to_string())
                .await
                .map_err(|e| SetupError::Retry(format!("tls: {e}")))?;
            let acc = register(&mut tls, &request, shared).await?;
            Ok((
                Link::spawn(tls, Role::Client, Config::default()),
                acc.data_center,
            ))
        }
        None => {
            let mut tcp = tcp;
            let acc = register(&mut tcp, &request, shared).await?;
            Ok((
                Link::spawn(tcp, Role::Client, Config::default()),
                acc.data_center,
            ))
        }
    }
}

async fn register<S: compio::io::AsyncRead + compio::io::AsyncWrite>(
    s: &mut S,
    request: &RegisterRequest,
    shared: &Shared,
) -> Result<ringtun_core::handshake::Accepted, SetupError> {
    connector_register(s, request, &shared.secret)
        .await
        .map_err(|e| match &e {
            HandshakeError::Rejected(r)
                if matches!(
                    r.code,
                    RejectCode::BadSecret | RejectCode::UnknownTunnel | RejectCode::ConnectorLimit
                ) =>
            {
                SetupError::Fatal(r.message.clone())
            }
            _ => SetupError::Retry(e.to_string()),
        })
}

/// Accepts and serves streams until the link ends (`true`) or shutdown drained it (`false`).
async fn serve(link: &Link, ctx: &Rc<ProxyCtx>, shutdown: &Shutdown, grace: Duration) -> bool {
    let acceptor = {
        let link = link.clone();
        let ctx = ctx.clone();
        compio::runtime::spawn(async move {
            while let Some(incoming) = link.accept().await {
                compio::runtime::spawn(proxy::serve(incoming, ctx.clone())).detach();
            }
        })
    };
    acceptor.detach();
    let closed = std::pin::pin!(link.closed());
    let stop = std::pin::pin!(shutdown.wait());
    match select(closed, stop).await {
        Either::Left((why, _)) => {
            tracing::debug!(reason = %why, "link closed");
            true
        }
        Either::Right(_) => {
            link.drain();
            if compio::time::timeout(grace, link.closed()).await.is_err() {
                tracing::warn!("grace period over; closing the link");
                link.close(ErrorCode::NO_ERROR);
                let _ = compio::time::timeout(Duration::from_secs(2), link.closed()).await;
            }
            false
        }
    }
}
