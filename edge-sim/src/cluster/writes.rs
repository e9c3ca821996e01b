//! Writes: each is one transaction whose compares make it safe against other nodes (a name or a
//! route is taken by creating its key: `create_revision == 0`). It is bounded by the timeout,
//! and then waits (bounded again) until the watch has applied the write's revision, so the
//! node that wrote reads its own write.
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use super::Op;
use super::connect::retry_unsent;
use super::keys::Keys;
use super::task::Task;
use crate::error::{Error, Result};
use crate::limit::Limit;
use crate::registry::Tunnel;

impl Task {
    /// Runs one write, then waits until the view shows it.
    pub(super) async fn write(
        &self,
        client: Client,
        op: Op,
        mut applied: watch::Receiver<i64>,
    ) -> Result<()> {
        let timeout = self.settings.timeout;
        let revision = match tokio::time::timeout(timeout, self.transact(client, op)).await {
            Ok(Ok(revision)) => revision,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                self.metrics
                    .limits
                    .hit(Limit::EtcdTimeout, &self.settings.endpoints.join(","));
                return Err(Error::RegistryUnavailable(format!(
                    "etcd did not answer within {timeout:?} (unreachable, or its quorum is lost; \
                     the write may still take effect once etcd has a leader again)"
                )));
            }
        };
        let caught_up = applied.wait_for(|r| *r >= revision);
        if tokio::time::timeout(timeout, caught_up).await.is_err() {
            tracing::warn!(
                revision,
                "etcd write done, but the watch has not shown it yet"
            );
        }
        Ok(())
    }

    /// One write's transaction; returns its revision.
    async fn transact(&self, client: Client, op: Op) -> Result<i64> {
        let k = &self.keys;
        let kv = client.kv_client();
        let exists = |key: String| Compare::version(key, CompareOp::Greater, 0);
        let free = |key: String| Compare::create_revision(key, CompareOp::Equal, 0);
        let (txn, refused) = match op {
            Op::CreateTunnel(tunnel, secret) => (
                Txn::new().when([free(k.name(&tunnel.name))]).and_then([
                    TxnOp::put(k.name(&tunnel.name), tunnel.id.to_string(), None),
                    TxnOp::put(k.tunnel(tunnel.id), Keys::encode_tunnel(&tunnel)?, None),
                    TxnOp::put(k.secret(tunnel.id), Keys::encode_secret(&secret), None),
                ]),
                Error::TunnelExists(tunnel.name),
            ),
            Op::DeleteTunnel(tunnel) => return self.delete_tunnel(&kv, tunnel).await,
            Op::SetPolicy(mut tunnel, policy) => {
                tunnel.lb_policy = policy;
                (
                    Txn::new()
                        .when([exists(k.tunnel(tunnel.id))])
                        .and_then([TxnOp::put(
                            k.tunnel(tunnel.id),
                            Keys::encode_tunnel(&tunnel)?,
                            None,
                        )]),
                    Error::TunnelNotFound(tunnel.name),
                )
            }
            Op::PutDns(route, overwrite) => {
                let key = k.dns(&route.hostname);
                let mut when = vec![exists(k.tunnel(route.tunnel_id))];
                if !overwrite {
                    when.push(free(key.clone()));
                }
                let txn = Txn::new()
                    .when(when)
                    .and_then([TxnOp::put(key.clone(), route.tunnel_id.to_string(), None)])
                    .or_else([TxnOp::get(key, None)]);
                let refused = Error::DnsRouteExists {
                    hostname: route.hostname.clone(),
                    tunnel: String::new(),
                };
                return self.route_txn(&kv, txn, refused, route.tunnel_id).await;
            }
            Op::AddTcp(route) => {
                let key = k.tcp(route.port);
                let txn = Txn::new()
                    .when([exists(k.tunnel(route.tunnel_id)), free(key.clone())])
                    .and_then([TxnOp::put(key.clone(), route.tunnel_id.to_string(), None)])
                    .or_else([TxnOp::get(key, None)]);
                let refused = Error::TcpRouteExists {
                    port: route.port,
                    tunnel: String::new(),
                };
                return self.route_txn(&kv, txn, refused, route.tunnel_id).await;
            }
            Op::DeleteDns(hostname) => (
                Txn::new()
                    .when([exists(k.dns(&hostname))])
                    .and_then([TxnOp::delete(k.dns(&hostname), None)]),
                Error::RouteNotFound(format!("hostname {hostname}")),
            ),
            Op::DeleteTcp(port) => (
                Txn::new()
                    .when([exists(k.tcp(port))])
                    .and_then([TxnOp::delete(k.tcp(port), None)]),
                Error::RouteNotFound(format!("tcp port {port}")),
            ),
        };
        let response = run_txn(&kv, txn).await?;
        if !response.succeeded() {
            return Err(refused);
        }
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Deletes a tunnel, its secret, its name and every route to it, in one transaction. The
    /// routes are read first, and the transaction only applies if no route changed since that
    /// read (a route added meanwhile by another node would otherwise outlive its tunnel); if one
    /// did, it reads again.
    async fn delete_tunnel(&self, kv: &etcd_client::KvClient, tunnel: Tunnel) -> Result<i64> {
        let k = &self.keys;
        let id = tunnel.id.to_string();
        loop {
            let routes = retry_unsent(|| {
                let (mut kv, prefix) = (kv.clone(), k.routes());
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await
            .map_err(unavailable)?;
            let read_at = routes.header().map_or(0, |h| h.revision());
            let mut ops = vec![
                TxnOp::delete(k.tunnel(tunnel.id), None),
                TxnOp::delete(k.secret(tunnel.id), None),
                TxnOp::delete(k.name(&tunnel.name), None),
            ];
            for route in routes.kvs() {
                if route.value() == id.as_bytes() {
                    ops.push(TxnOp::delete(route.key().to_vec(), None));
                }
            }
            let txn = Txn::new()
                .when([
                    Compare::version(k.tunnel(tunnel.id), CompareOp::Greater, 0),
                    Compare::mod_revision(k.routes(), CompareOp::Less, read_at + 1).with_prefix(),
                ])
                .and_then(ops)
                .or_else([TxnOp::get(k.tunnel(tunnel.id), None)]);
            let response = run_txn(kv, txn).await?;
            if response.succeeded() {
                return Ok(response.header().map_or(0, |h| h.revision()));
            }
            let tunnel_there = response.op_responses().into_iter().any(|r| match r {
                TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            if !tunnel_there {
                return Err(Error::TunnelNotFound(tunnel.name));
            }
        }
    }

    /// A route's compare-and-set: on refusal, says whose the route is (or that the tunnel has
    /// gone meanwhile).
    async fn route_txn(
        &self,
        kv: &etcd_client::KvClient,
        txn: Txn,
        refused: Error,
        tunnel_id: uuid::Uuid,
    ) -> Result<i64> {
        let response = run_txn(kv, txn).await?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        let owner = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .and_then(|kv| uuid::Uuid::parse_str(kv.value_str().ok()?).ok()),
            _ => None,
        });
        let view = self.view.get();
        let Some(owner) = owner else {
            // The route is free: the compare that failed was the tunnel's.
            return Err(Error::TunnelNotFound(tunnel_id.to_string()));
        };
        let owner = crate::registry::tunnel_name(&view, owner);
        Err(match refused {
            Error::DnsRouteExists { hostname, .. } => Error::DnsRouteExists {
                hostname,
                tunnel: owner,
            },
            Error::TcpRouteExists { port, .. } => Error::TcpRouteExists {
                port,
                tunnel: owner,
            },
            other => other,
        })
    }
}

/// Runs one transaction ([`retry_unsent`]); etcd's failure is [`Error::RegistryUnavailable`].
async fn run_txn(kv: &etcd_client::KvClient, txn: Txn) -> Result<etcd_client::TxnResponse> {
    retry_unsent(|| {
        let (mut kv, txn) = (kv.clone(), txn.clone());
        async move { kv.txn(txn).await }
    })
    .await
    .map_err(unavailable)
}

/// An etcd failure, as the admin API's 503.
fn unavailable(e: etcd_client::Error) -> Error {
    Error::RegistryUnavailable(format!("etcd: {e}"))
}
