//! [`Sqlite`]: the registry's records in one edge's SQLite database (the default store).
//!
//! Writes take the connection's `Mutex` (only the admin API writes, a few times a second at
//! most); a write to a database that another process holds locked waits at most the busy
//! timeout (`--registry-busy-timeout-ms`), then fails with [`Error::RegistryBusy`] (503 from the
//! admin API). Once a write succeeded it goes into a new copy of the view, under the same lock,
//! so the view never runs ahead of or behind the database.
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::storage::{Storage, ViewCell};
use super::store::Store;
use super::types::{DnsRoute, TcpRoute, Tunnel, TunnelSecret};
use super::view::View;
use crate::error::{Error, Result};
use crate::settings::LbPolicy;

/// Tunnels and routes in SQLite, with their in-memory view.
#[derive(Debug)]
pub(crate) struct Sqlite {
    db: Mutex<Store>,
    view: ViewCell,
}

impl Sqlite {
    /// Opens (creating and migrating if needed) the database at `path` and loads the view.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<Sqlite> {
        let store = Store::open(path, busy_timeout)?;
        let view = View::new(
            store.tunnels_with_secrets()?,
            store.dns_routes()?,
            store.tcp_routes()?,
        );
        Ok(Sqlite {
            db: Mutex::new(store),
            view: ViewCell::new(view),
        })
    }

    fn db(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves no half-done write behind (SQLite rolls an
        // unfinished statement back), so a poisoned lock is still usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for Sqlite {
    fn view(&self) -> Arc<View> {
        self.view.get()
    }

    fn version(&self) -> u64 {
        self.view.version()
    }

    fn create_tunnel(&self, tunnel: &Tunnel, secret: &TunnelSecret) -> Result<()> {
        let db = self.db();
        db.create_tunnel(tunnel, secret)?;
        self.view
            .update(|v| v.add_tunnel(tunnel.clone(), secret.clone()));
        drop(db);
        Ok(())
    }

    fn delete_tunnel(&self, tunnel: &Tunnel) -> Result<()> {
        let db = self.db();
        db.delete_tunnel(tunnel.id)?;
        self.view.update(|v| v.remove_tunnel(tunnel.id));
        drop(db);
        Ok(())
    }

    fn set_lb_policy(&self, tunnel: &Tunnel, policy: Option<LbPolicy>) -> Result<()> {
        let db = self.db();
        db.set_lb_policy(tunnel.id, policy)?;
        self.view.update(|v| v.set_policy(tunnel.id, policy));
        drop(db);
        Ok(())
    }

    fn add_dns_route(&self, route: &DnsRoute) -> Result<()> {
        let db = self.db();
        let tunnel = self.find_tunnel(route.tunnel_id)?;
        db.add_dns_route(&tunnel, &route.hostname)?;
        self.view.update(|v| v.add_dns(route.clone()));
        drop(db);
        Ok(())
    }

    fn move_dns_route(&self, route: &DnsRoute) -> Result<()> {
        let db = self.db();
        let tunnel = self.find_tunnel(route.tunnel_id)?;
        db.move_dns_route(&tunnel, &route.hostname)?;
        self.view.update(|v| v.add_dns(route.clone()));
        drop(db);
        Ok(())
    }

    fn delete_dns_route(&self, hostname: &str) -> Result<()> {
        let db = self.db();
        db.delete_dns_route(hostname)?;
        self.view.update(|v| v.remove_dns(hostname));
        drop(db);
        Ok(())
    }

    fn add_tcp_route(&self, route: &TcpRoute) -> Result<()> {
        let db = self.db();
        let tunnel = self.find_tunnel(route.tunnel_id)?;
        db.add_tcp_route(&tunnel, route.port)?;
        self.view.update(|v| v.add_tcp(route.clone()));
        drop(db);
        Ok(())
    }

    fn delete_tcp_route(&self, port: u16) -> Result<()> {
        let db = self.db();
        db.delete_tcp_route(port)?;
        self.view.update(|v| v.remove_tcp(port));
        drop(db);
        Ok(())
    }
}

impl Sqlite {
    fn find_tunnel(&self, id: uuid::Uuid) -> Result<Tunnel> {
        self.view
            .get()
            .find(&id.to_string())
            .cloned()
            .ok_or_else(|| Error::TunnelNotFound(id.to_string()))
    }
}
