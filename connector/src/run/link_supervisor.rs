//! One link's life: connect, TLS, register, serve streams until the link ends, then reconnect
//! with exponential backoff and jitter (1 s doubling, capped at 32 s). Where it connects is a
//! [`Placement`] (see [`super::edges::LinkPlan`]): the next server of the home data center
//! after a failure, another data center when all of the home's servers failed (logged as
//! `data center unreachable; link placed elsewhere`), and back home when a probe every 10 s
//! finds it answering again: the new link registers first, then the displaced one is retired.
//! A link placed again after a failure goes by node (`super::edges::choose_server`), and
//! discovery is read again for the next placement (`super::rediscover`).
//!
//! In an edge cluster (discovery names the nodes), a link whose node sends its DRAIN GOAWAY
//! (a node shutting down sends a drain notice, `docs/protocol.md` §7.1) moves make before
//! break: a replacement registers on another node of the same data center, then this side
//! drains the old link itself ([`move_off`], in `serve`).
//!
//! At shutdown the link drains (GOAWAY); when the grace period is over ([`super::Shared`]'s
//! deadline fires), what is still open is reset.
//!
//! A refusal the connector cannot fix by retrying (bad secret, unknown tunnel, connector limit,
//! link index out of range) is fatal: its message is recorded and the whole runtime shuts down,
//! so `tunnel run` exits non-zero with the edge's own words. Any other refusal (the edge is
//! unavailable or failed for a moment: `TryAgain`) and every network error is retried with the
//! backoff below.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, select};
use ringtun_core::handshake::{
    HandshakeError, RegisterFlags, RegisterRequest, RejectCode, connector_register,
};
use ringtun_core::link::Link;
use ringtun_core::mux::{ErrorCode, Role};
use ringtun_core::rt::Shutdown;
use ringtun_core::rt::net::{SocketTuning, connect};
use ringtun_core::tls::TlsStream;
use ringtun_core::tunnel::tunnel_link_config;

use super::Shared;
use super::edges::Placement;
use crate::proxy::{self, ProxyCtx};

/// The first reconnect delay.
pub(super) const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest reconnect delay.
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(32);
/// How long connecting, TLS and registration may take together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a link placed outside its home data center tries to go back.
pub const HOME_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a displaced link that was replaced may keep serving its last streams.
const RETIRE_LIMIT: Duration = Duration::from_secs(30);
/// How often a retiring link is checked for being idle.
const RETIRE_POLL: Duration = Duration::from_millis(50);
/// How long after the grace period a draining link closes by itself if the process-wide
/// deadline never fired.
const DEADLINE_BACKSTOP: Duration = Duration::from_secs(2);

/// How an attempt to set up a link failed.
enum SetupError {
    /// Retrying will not help; the edge's message.
    Fatal(String),
    /// Try again later, elsewhere.
    Retry(String),
}

/// Runs link `index` on worker `worker` until shutdown (or a fatal refusal). `hard` fires when
/// the grace period is over: a link still draining then is closed and its streams reset.
pub async fn supervise(
    index: usize,
    worker: usize,
    shared: Arc<Shared>,
    ctx: Rc<ProxyCtx>,
    shutdown: Shutdown,
    hard: Shutdown,
) {
    let mut place = shared.plan().placement(index);
    let mut backoff = BACKOFF_START;
    while !shutdown.is_triggered() {
        let plan = shared.plan();
        let addr = plan.target(&place, &shared.held(&plan, index, place.dc()));
        place.trying(addr);
        let dc = plan.dc_name(place.dc()).to_owned();
        match setup(index, addr, &shared).await {
            Ok((link, data_center)) => {
                tracing::info!(
                    "link registered index={index} data_center={data_center} server={addr}"
                );
                track_link(&link, data_center, &shared);
                if place.is_displaced() {
                    let home = plan.dc_name(place.home());
                    tracing::warn!(
                        "data center unreachable; link placed elsewhere index={index} home={home} placed={dc}"
                    );
                }
                place.connected();
                shared.set_live(index, Some((place.dc(), addr)));
                backoff = BACKOFF_START;
                let ended = serve(
                    (index, worker),
                    link,
                    &mut place,
                    &shared,
                    &ctx,
                    &shutdown,
                    &hard,
                )
                .await;
                shared.set_live(index, None);
                if !ended {
                    return;
                }
                // The server it was on (a probe or a move may have changed it meanwhile).
                let lost = place.at().unwrap_or(addr);
                tracing::warn!(index, server = %lost, "link lost; reconnecting");
                place.failed(&shared.plan());
                shared.rediscover();
            }
            Err(SetupError::Fatal(message)) => {
                tracing::error!(index, server = %addr, %message, "the edge refused this connector");
                shared.fail(message);
                shutdown.trigger();
                return;
            }
            Err(SetupError::Retry(reason)) => {
                tracing::warn!(index, data_center = %dc, server = %addr, %reason, "link setup failed");
                place.failed(&plan);
                shared.rediscover();
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

/// [`establish`] within [`HANDSHAKE_TIMEOUT`].
async fn setup(
    index: usize,
    addr: std::net::SocketAddr,
    shared: &Shared,
) -> Result<(Link, String), SetupError> {
    match compio::time::timeout(HANDSHAKE_TIMEOUT, establish(index, addr, shared)).await {
        Ok(r) => r,
        Err(_) => Err(SetupError::Retry("timed out".to_owned())),
    }
}

/// A delay between half and all of `d`.
pub(super) fn jitter(d: Duration) -> Duration {
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
        ha_connections: u8::try_from(shared.plan().links()).unwrap_or(u8::MAX),
    };
    match &shared.ca_pem {
        Some(ca) => {
            let config = ringtun_core::tls::client_config(ca.as_bytes())
                .map_err(|e| SetupError::Fatal(format!("bad edge CA: {e}")))?;
            let mut tls = TlsStream::connect(tcp, config, &addr.ip().to_string())
                .await
                .map_err(|e| {
                    let hint = match e {
                        ringtun_core::tls::TlsError::BadCertificate(_) => {
                            " (check --cacert or the credentials file's EdgeCA)"
                        }
                        _ => "",
                    };
                    SetupError::Retry(format!("tls: {e}{hint}"))
                })?;
            let acc = register(&mut tls, &request, shared).await?;
            Ok((
                Link::spawn(tls, Role::Client, tunnel_link_config()),
                acc.data_center,
            ))
        }
        None => {
            let mut tcp = tcp;
            let acc = register(&mut tcp, &request, shared).await?;
            Ok((
                Link::spawn(tcp, Role::Client, tunnel_link_config()),
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
        .map_err(classify)
}

/// Fatal when retrying cannot help (the edge said so: wrong secret, unknown tunnel, connector
/// limit, link index out of range); anything else, including a `TryAgain` or `Unavailable`
/// refusal and every network error, is retried with backoff.
fn classify(e: HandshakeError) -> SetupError {
    match &e {
        HandshakeError::Rejected(r)
            if matches!(
                r.code,
                RejectCode::BadSecret
                    | RejectCode::UnknownTunnel
                    | RejectCode::ConnectorLimit
                    | RejectCode::LinkLimit
            ) =>
        {
            SetupError::Fatal(r.message.clone())
        }
        _ => SetupError::Retry(e.to_string()),
    }
}

/// What woke a serving link up.
enum Wake {
    /// The link ended.
    Closed(ringtun_core::link::LinkError),
    /// Shutdown: drain.
    Shutdown,
    /// Time for a displaced link to probe its home data center.
    Probe,
    /// The edge node sent its DRAIN GOAWAY (in a cluster: a drain notice, protocol.md §7.1):
    /// move to another node before this link goes.
    Move,
}

/// Accepts and serves streams until the link ends (`true`) or shutdown drained it (`false`).
/// A displaced link probes its home data center every [`HOME_PROBE_INTERVAL`]; when a probe
/// registers, the new link takes over and the displaced one is retired ([`retire`]).
///
/// Make before break: when the edge node of the link sends its DRAIN GOAWAY and the edge is a
/// cluster whose nodes discovery named ([`super::LinkPlan::knows_nodes`]), a replacement link
/// is set up on another node of the same data center first ([`move_off`]); once it is
/// registered it takes over and this side drains the old link (two-phase, protocol.md §7), so
/// the streams the edge opened on it finish and nothing new is opened there. If no other node
/// takes the link, the old one is kept until the edge closes it, then replaced as a lost link.
async fn serve(
    (index, worker): (usize, usize),
    mut link: Link,
    place: &mut Placement,
    shared: &Arc<Shared>,
    ctx: &Rc<ProxyCtx>,
    shutdown: &Shutdown,
    hard: &Shutdown,
) -> bool {
    start_acceptor(&link, ctx, shared, worker);
    let mut probe = 0usize;
    // A move off this link's node was tried and found no other node: wait for the edge.
    let mut stay = false;
    loop {
        let wake = {
            let closed = std::pin::pin!(link.closed());
            let stop = std::pin::pin!(shutdown.wait());
            let displaced = place.is_displaced();
            let timer = std::pin::pin!(async move {
                if displaced {
                    compio::time::sleep(HOME_PROBE_INTERVAL).await;
                } else {
                    std::future::pending::<()>().await;
                }
            });
            let movable = !stay && shared.plan().knows_nodes();
            let going = std::pin::pin!(async {
                if movable && link.peer_draining().await {
                    return;
                }
                std::future::pending::<()>().await;
            });
            match select(select(closed, going), select(stop, timer)).await {
                Either::Left((Either::Left((why, _)), _)) => Wake::Closed(why),
                Either::Left((Either::Right(_), _)) => Wake::Move,
                Either::Right((Either::Left(_), _)) => Wake::Shutdown,
                Either::Right((Either::Right(_), _)) => Wake::Probe,
            }
        };
        match wake {
            Wake::Closed(why) => {
                tracing::debug!(index, reason = %why, "link closed");
                return true;
            }
            Wake::Shutdown => {
                drain(&link, shared.grace, hard).await;
                return false;
            }
            Wake::Move => {
                let moved = {
                    let attempt = std::pin::pin!(move_off(index, place, shared));
                    let stop = std::pin::pin!(shutdown.wait());
                    match select(attempt, stop).await {
                        Either::Left((r, _)) => r,
                        Either::Right(_) => {
                            drain(&link, shared.grace, hard).await;
                            return false;
                        }
                    }
                };
                let Some((new, addr, data_center)) = moved else {
                    stay = true;
                    continue;
                };
                track_link(&new, data_center, shared);
                start_acceptor(&new, ctx, shared, worker);
                shared.set_live(index, Some((place.dc(), addr)));
                let old = std::mem::replace(&mut link, new);
                let (hard, grace) = (hard.clone(), shared.grace);
                compio::runtime::spawn(async move {
                    drain(&old, grace, &hard).await;
                    tracing::info!(index, "link on the draining edge node closed");
                })
                .detach();
            }
            Wake::Probe => {
                let addr = shared.plan().home_probe(place, probe);
                probe += 1;
                // A shutdown during the probe drains at once instead of waiting for it.
                let attempt = std::pin::pin!(setup(index, addr, shared));
                let stop = std::pin::pin!(shutdown.wait());
                let result = match select(attempt, stop).await {
                    Either::Left((r, _)) => r,
                    Either::Right(_) => {
                        drain(&link, shared.grace, hard).await;
                        return false;
                    }
                };
                match result {
                    Ok((home_link, data_center)) => {
                        tracing::info!(
                            "link registered index={index} data_center={data_center} server={addr}"
                        );
                        track_link(&home_link, data_center, shared);
                        tracing::info!(
                            index,
                            home = %shared.plan().dc_name(place.home()),
                            "home data center answers again; link moved back"
                        );
                        place.moved_home(probe - 1, addr);
                        shared.set_live(index, Some((place.dc(), addr)));
                        start_acceptor(&home_link, ctx, shared, worker);
                        let old = std::mem::replace(&mut link, home_link);
                        let (shutdown, hard, grace) =
                            (shutdown.clone(), hard.clone(), shared.grace);
                        compio::runtime::spawn(async move {
                            retire(index, old, grace, &shutdown, &hard).await
                        })
                        .detach();
                    }
                    Err(SetupError::Fatal(message) | SetupError::Retry(message)) => {
                        tracing::debug!(index, server = %addr, %message, "home data center still unreachable");
                    }
                }
            }
        }
    }
}

/// Sets up a replacement for link `index` on another node of its data center, its current
/// node being about to go ([`Placement::leave`], then the choice by node of
/// [`super::edges::choose_server`]), trying each other node once. `None` when no other node
/// took it (the placement then still names the old server). Discovery is read again meanwhile,
/// for the next placement.
async fn move_off(
    index: usize,
    place: &mut Placement,
    shared: &Arc<Shared>,
) -> Option<(Link, std::net::SocketAddr, String)> {
    let old = place.at();
    shared.rediscover();
    let plan = shared.plan();
    let leaving = place.leave(&plan);
    let tries = plan.data_center(place.dc()).servers.len();
    for _ in 0..tries {
        let addr = plan.target(place, &shared.held(&plan, index, place.dc()));
        if plan.data_center(place.dc()).node_of(addr) == leaving {
            break;
        }
        place.trying(addr);
        match setup(index, addr, shared).await {
            Ok((link, data_center)) => {
                tracing::info!(
                    "link registered index={index} data_center={data_center} server={addr}"
                );
                tracing::info!(index, from = ?old, to = %addr, "edge node draining; link moved to another node");
                place.connected();
                return Some((link, addr, data_center));
            }
            Err(SetupError::Fatal(message) | SetupError::Retry(message)) => {
                tracing::warn!(index, server = %addr, %message, "cannot move a link off a draining edge node here");
                place.leave(&plan);
            }
        }
    }
    tracing::warn!(index, node = %leaving, "no other edge node took the link; it stays until its node closes it");
    if let Some(a) = old {
        place.trying(a);
    }
    None
}

/// Counts the registered link in `ringtun_links{data_center}` (and `/ready`) until it closes.
fn track_link(link: &Link, data_center: String, shared: &Arc<Shared>) {
    let link = link.clone();
    let observer = shared.observer.clone();
    observer.link_up(&data_center);
    compio::runtime::spawn(async move {
        let _ = link.closed().await;
        observer.link_down(&data_center);
    })
    .detach();
}

/// Spawns the task that hands the link's incoming streams to the proxy, counting them.
fn start_acceptor(link: &Link, ctx: &Rc<ProxyCtx>, shared: &Arc<Shared>, worker: usize) {
    let link = link.clone();
    let ctx = ctx.clone();
    // Cloned per stream: an `Rc`, so counting touches nothing shared with other cores.
    let counter = Rc::new(StreamCounter(shared.clone(), worker));
    let served = shared.observer.worker_streams(worker);
    compio::runtime::spawn(async move {
        while let Some(incoming) = link.accept().await {
            served.inc();
            let open = OpenStream::new(&counter);
            proxy::spawn_serve(incoming, ctx.clone(), open);
        }
    })
    .detach();
}

/// Where a worker counts its open streams.
struct StreamCounter(Arc<Shared>, usize);

/// Counts a stream as open (in its worker's counter) while it lives.
struct OpenStream(Rc<StreamCounter>);

impl OpenStream {
    fn new(counter: &Rc<StreamCounter>) -> OpenStream {
        counter.0.stream_opened(counter.1);
        OpenStream(counter.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.0.stream_closed(self.0.1);
    }
}

/// Graceful drain at shutdown: GOAWAY, streams finish; when `hard` fires (the grace period is
/// over) the link is closed with CANCEL, resetting what is still open. A timer of its own
/// (grace plus [`DEADLINE_BACKSTOP`]) covers shutdowns that started no grace clock, like a
/// fatal refusal from the edge.
async fn drain(link: &Link, grace: Duration, hard: &Shutdown) {
    link.drain();
    let closed = std::pin::pin!(link.closed());
    let deadline = std::pin::pin!(async {
        let backstop = std::pin::pin!(compio::time::sleep(grace + DEADLINE_BACKSTOP));
        let _ = select(std::pin::pin!(hard.wait()), backstop).await;
    });
    if let Either::Right(_) = select(closed, deadline).await {
        link.close(ErrorCode::CANCEL);
        let _ = compio::time::timeout(Duration::from_secs(2), link.closed()).await;
    }
}

/// Retires a displaced link once its replacement is up: it is closed as soon as it holds no
/// stream (a final GOAWAY, which tells the edge that anything it opened meanwhile was refused
/// and may be retried), without the drain's GOAWAY, which the edge reads as "this connector is
/// draining". If it never empties within [`RETIRE_LIMIT`], its streams are reset. The edge
/// drains a link whose index a newer link took, so it may also end from the edge's side first.
async fn retire(index: usize, link: Link, grace: Duration, shutdown: &Shutdown, hard: &Shutdown) {
    let deadline = std::time::Instant::now() + RETIRE_LIMIT;
    loop {
        if link.is_closed() {
            // The edge closed it first: it drains a link whose index a newer link took.
            break;
        }
        if shutdown.is_triggered() {
            drain(&link, grace, hard).await;
            return;
        }
        let open = link.stats().open_streams;
        if open == 0 {
            link.close(ErrorCode::NO_ERROR);
            break;
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                streams = open,
                "displaced link still busy; closing it and resetting its streams"
            );
            link.close(ErrorCode::CANCEL);
            break;
        }
        compio::time::sleep(RETIRE_POLL).await;
    }
    let _ = compio::time::timeout(Duration::from_secs(5), link.closed()).await;
    tracing::info!(index, "displaced link closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtun_core::error::Classify;
    use ringtun_core::handshake::Rejected;

    fn refused(code: RejectCode) -> HandshakeError {
        HandshakeError::Rejected(Rejected {
            code,
            message: "m".into(),
        })
    }

    #[test]
    fn a_transient_edge_failure_is_retried_and_an_unknown_tunnel_is_fatal() {
        for code in [
            RejectCode::TryAgain,
            RejectCode::Unavailable,
            RejectCode::Other(99),
        ] {
            assert!(
                matches!(classify(refused(code)), SetupError::Retry(_)),
                "{code:?}"
            );
            assert!(refused(code).is_retry_safe() || code == RejectCode::Other(99));
        }
        for code in [
            RejectCode::UnknownTunnel,
            RejectCode::BadSecret,
            RejectCode::ConnectorLimit,
            RejectCode::LinkLimit,
        ] {
            assert!(
                matches!(classify(refused(code)), SetupError::Fatal(_)),
                "{code:?}"
            );
            assert!(!refused(code).is_retry_safe());
        }
        assert!(matches!(
            classify(HandshakeError::Closed),
            SetupError::Retry(_)
        ));
    }
}
