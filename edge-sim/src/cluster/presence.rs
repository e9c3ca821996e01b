//! Presence: this node's record and one key per live link, under one etcd lease.
//!
//! The node takes a lease (TTL `--etcd-lease-ttl`, 10 s by default) and renews it every third of
//! the TTL. Under it, it puts `nodes/{node}` (its data center and addresses) and
//! `links/{tunnel}/{node}/{connector}.{index}` for every link it holds. A node that dies loses
//! its keys when the lease expires; a node that finds its lease gone (etcd was away past the TTL,
//! or the node was stopped) takes a new one and puts its record and links again. The registry
//! sends the node's full set of links after every change ([`Presence::Links`]); this task puts
//! what is new and deletes what is gone. Every other node sees these keys through its watch on
//! the prefix (see [`super::keys::Keys::presence`]).
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions};
use tokio::sync::mpsc;

use super::keys::Keys;

/// What the registry tells the presence task.
#[derive(Debug)]
pub(crate) enum Presence {
    /// This node's record (JSON), once its listeners are bound.
    Node(String),
    /// Every link this node holds now: (tunnel, `{connector}.{index}`) → JSON value.
    Links(BTreeMap<(uuid::Uuid, String), String>),
    /// The node stops (its links drained): revoke the lease, so every other node sees this
    /// node's record and links vanish at once rather than after the TTL; answered once done
    /// (or given up, bounded by the call timeout). Presence ends there.
    Leave(std::sync::mpsc::SyncSender<()>),
}

/// The presence loop (see the module doc). Ends when `events` closes.
pub(super) async fn run(
    client: Client,
    keys: Keys,
    node: String,
    ttl: Duration,
    timeout: Duration,
    mut events: mpsc::UnboundedReceiver<Presence>,
) {
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
    let renew = (ttl / 3).max(Duration::from_millis(500));
    let mut record: Option<String> = None;
    // What should be in etcd (key → value), and what this lease holds.
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    let mut last_log: Option<Instant> = None;
    loop {
        let lease =
            tokio::time::timeout(timeout, client.lease_client().grant(ttl_secs, None)).await;
        let lease = match lease {
            Ok(Ok(l)) => l.id(),
            other => {
                let reason = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {timeout:?}"),
                };
                if last_log.is_none_or(|t| t.elapsed() >= crate::limit::LOG_INTERVAL) {
                    tracing::warn!(reason, "cannot take an etcd lease for presence; retrying");
                    last_log = Some(Instant::now());
                }
                // Keep up with the links meanwhile.
                let wait = tokio::time::sleep(renew);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        event = events.recv() => match event {
                            // No lease to revoke: presence ends.
                            Some(Presence::Leave(done)) => {
                                let _ = done.send(());
                                return;
                            }
                            Some(e) => apply(&keys, &node, &mut record, &mut wanted, e),
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        let held = hold(
            &client,
            &keys,
            &node,
            Lease {
                id: lease,
                ttl_secs,
                renew,
                timeout,
            },
            &mut record,
            &mut wanted,
            &mut events,
        )
        .await;
        match held {
            Ok(()) => return,
            Err(reason) => {
                tracing::warn!(
                    lease,
                    reason,
                    "presence lease lost; taking a new one and putting this node's links again"
                );
            }
        }
    }
}

/// Applies one event to what should be in etcd.
fn apply(
    keys: &Keys,
    node: &str,
    record: &mut Option<String>,
    wanted: &mut BTreeMap<String, String>,
    event: Presence,
) {
    match event {
        Presence::Node(value) => {
            *record = Some(value);
        }
        Presence::Links(links) => {
            *wanted = links
                .into_iter()
                .map(|((tunnel, link), value)| (keys.link(tunnel, node, &link), value))
                .collect();
        }
        // Handled where the lease is known.
        Presence::Leave(_) => {}
    }
}

/// One granted lease and its timings.
struct Lease {
    id: i64,
    ttl_secs: i64,
    renew: Duration,
    timeout: Duration,
}

/// Keeps the lease alive and etcd in line with `wanted`; returns `Ok` when the node leaves
/// ([`Presence::Leave`], or `events` closed: the lease is revoked), or why the lease is lost.
async fn hold(
    client: &Client,
    keys: &Keys,
    node: &str,
    lease: Lease,
    record: &mut Option<String>,
    wanted: &mut BTreeMap<String, String>,
    events: &mut mpsc::UnboundedReceiver<Presence>,
) -> Result<(), String> {
    let Lease {
        id: lease,
        ttl_secs,
        renew,
        timeout,
    } = lease;
    // What this lease holds in etcd (a new lease holds nothing yet: everything is put again).
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    let (mut keeper, mut answers) =
        tokio::time::timeout(timeout, client.lease_client().keep_alive(lease))
            .await
            .map_err(|_| format!("keep-alive: no answer within {timeout:?}"))?
            .map_err(|e| format!("keep-alive: {e}"))?;
    let mut node_put = false;
    let mut tick = tokio::time::interval(renew);
    let expires_after = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(10));
    let mut renewed = Instant::now();
    loop {
        // Put what is missing, delete what is gone (each call bounded).
        if !node_put && let Some(value) = record.clone() {
            put(client, keys.node(node), value, lease, timeout).await?;
            node_put = true;
        }
        let stale: Vec<String> = held
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            let mut kv = client.kv_client();
            tokio::time::timeout(timeout, kv.delete(key.clone(), None))
                .await
                .map_err(|_| format!("delete: no answer within {timeout:?}"))?
                .map_err(|e| format!("delete: {e}"))?;
            held.remove(&key);
        }
        let missing: Vec<(String, String)> = wanted
            .iter()
            .filter(|(k, v)| held.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in missing {
            put(client, key.clone(), value.clone(), lease, timeout).await?;
            held.insert(key, value);
        }
        tokio::select! {
            _ = tick.tick() => {
                if renewed.elapsed() >= expires_after {
                    return Err("not renewed within the TTL".into());
                }
                let renewal = async {
                    keeper.keep_alive().await?;
                    answers.message().await
                };
                match tokio::time::timeout(timeout, renewal).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => renewed = Instant::now(),
                    Ok(Ok(Some(_))) => return Err("the lease expired".into()),
                    Ok(Ok(None)) => return Err("keep-alive stream closed".into()),
                    Ok(Err(e)) => return Err(format!("keep-alive: {e}")),
                    // etcd slow or away: try again at the next tick, until the TTL runs out.
                    Err(_) => {}
                }
            }
            event = events.recv() => match event {
                Some(Presence::Leave(done)) => {
                    revoke(client, lease, timeout).await;
                    let _ = done.send(());
                    return Ok(());
                }
                Some(e) => {
                    if matches!(e, Presence::Node(_)) {
                        node_put = false;
                    }
                    apply(keys, node, record, wanted, e);
                }
                None => {
                    revoke(client, lease, timeout).await;
                    return Ok(());
                }
            },
        }
    }
}

/// Revokes the lease: etcd deletes every key under it at once. Bounded by `timeout`; a lease
/// that cannot be revoked expires after its TTL anyway.
async fn revoke(client: &Client, lease: i64, timeout: Duration) {
    let mut leases = client.lease_client();
    match tokio::time::timeout(timeout, leases.revoke(lease)).await {
        Ok(Ok(_)) => tracing::info!(lease, "presence lease revoked"),
        Ok(Err(e)) => {
            tracing::warn!(lease, error = %e, "cannot revoke the presence lease; it expires after its TTL");
        }
        Err(_) => tracing::warn!(
            lease,
            "etcd did not answer the lease revocation in time; it expires after its TTL"
        ),
    }
}

async fn put(
    client: &Client,
    key: String,
    value: String,
    lease: i64,
    timeout: Duration,
) -> Result<(), String> {
    let mut kv = client.kv_client();
    let options = PutOptions::new().with_lease(lease);
    match tokio::time::timeout(timeout, kv.put(key, value, Some(options))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("put: {e}")),
        Err(_) => Err(format!("put: no answer within {timeout:?}")),
    }
}
