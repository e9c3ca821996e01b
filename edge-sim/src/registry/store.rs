//! The persistent half of the registry: tunnels and routes in SQLite.
//!
//! One migration scheme: an ordered list of steps, `PRAGMA user_version` records how many ran,
//! and each step runs in its own transaction with the version bump. A step may check the schema
//! before it changes it (step 2 adds `tunnels.lb_policy` only where an earlier edge, which added
//! the column outside the numbered steps, has not), so a database from any older edge opens.
//! Foreign keys are on, so deleting a tunnel deletes its routes.
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::types::{DnsRoute, SECRET_LEN, TcpRoute, Tunnel, TunnelSecret};
use crate::error::{Error, Result};
use crate::settings::LbPolicy;

/// The tunnel columns every tunnel query reads, in [`tunnel_from_row`]'s order.
const TUNNEL_COLUMNS: &str = "id, name, created, lb_policy";

/// One schema step; runs inside the transaction that records it.
type Migration = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Schema migrations, applied in order; never edit one that shipped, append a new one.
const MIGRATIONS: &[Migration] = &[
    // 1: tunnels and routes.
    |tx| {
        tx.execute_batch(
            "CREATE TABLE tunnels (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                secret BLOB NOT NULL,
                created TEXT NOT NULL
             );
             CREATE TABLE dns_routes (
                hostname TEXT PRIMARY KEY,
                tunnel_id TEXT NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE
             );
             CREATE TABLE tcp_routes (
                port INTEGER PRIMARY KEY,
                tunnel_id TEXT NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE
             );",
        )
    },
    // 2: a tunnel's own load-balancing policy (NULL = the edge's default).
    |tx| {
        if !has_column(tx, "tunnels", "lb_policy")? {
            tx.execute_batch("ALTER TABLE tunnels ADD COLUMN lb_policy TEXT")?;
        }
        Ok(())
    },
];

/// Tunnels and routes in a SQLite database.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
}

fn parse_uuid(s: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn tunnel_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tunnel> {
    let id: String = row.get(0)?;
    let created: String = row.get(2)?;
    let policy: Option<String> = row.get(3)?;
    Ok(Tunnel {
        id: parse_uuid(&id)?,
        name: row.get(1)?,
        created: OffsetDateTime::parse(&created, &Rfc3339)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        lb_policy: policy.as_deref().and_then(parse_policy),
    })
}

/// A stored policy name; an unknown one (written by a newer edge) falls back to the default.
fn parse_policy(name: &str) -> Option<LbPolicy> {
    match name.parse() {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "tunnel has an unknown stored lb policy; using the edge default");
            None
        }
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    /// A write that finds the database locked by another connection waits at most
    /// `busy_timeout`, then fails with [`Error::RegistryBusy`].
    pub(crate) fn open(path: &Path, busy_timeout: std::time::Duration) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        // The database holds tunnel secrets; SQLite gives its -wal and -shm files the same mode.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Error::state("set permissions on", path, e))?;
        Store::init(conn, path)
    }

    fn init(mut conn: Connection, path: &Path) -> Result<Store> {
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(Error::CorruptState {
                path: path.to_path_buf(),
                reason: format!(
                    "schema version {version} is newer than this edge's ({}); upgrade the edge",
                    MIGRATIONS.len()
                ),
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            step(&tx)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        // A brand-new database is simply created: only an older edge's database is reported.
        if version > 0 && version < MIGRATIONS.len() {
            tracing::info!(
                from = version,
                to = MIGRATIONS.len(),
                "registry database migrated"
            );
        }
        Ok(Store { conn })
    }

    /// Sets (or with `None` clears) a tunnel's load-balancing policy.
    pub(crate) fn set_lb_policy(&self, id: Uuid, policy: Option<LbPolicy>) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE tunnels SET lb_policy = ?1 WHERE id = ?2",
            params![policy.map(LbPolicy::as_str), id.to_string()],
        )?;
        if n == 0 {
            return Err(Error::TunnelNotFound(id.to_string()));
        }
        Ok(())
    }

    pub(crate) fn create_tunnel(&self, tunnel: &Tunnel, secret: &TunnelSecret) -> Result<()> {
        let created = tunnel
            .created
            .format(&Rfc3339)
            .map_err(|e| Error::Invalid(format!("cannot format time: {e}")))?;
        let res = self.conn.execute(
            "INSERT INTO tunnels (id, name, secret, created) VALUES (?1, ?2, ?3, ?4)",
            params![tunnel.id.to_string(), tunnel.name, secret.expose(), created],
        );
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::TunnelExists(tunnel.name.clone())),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn tunnels(&self) -> Result<Vec<Tunnel>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {TUNNEL_COLUMNS} FROM tunnels ORDER BY created, name"
        ))?;
        let rows = stmt.query_map([], tunnel_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every tunnel with its secret, oldest first (what the in-memory view starts from).
    pub(crate) fn tunnels_with_secrets(&self) -> Result<Vec<(Tunnel, TunnelSecret)>> {
        let mut out = Vec::new();
        for t in self.tunnels()? {
            let secret = self.tunnel_secret(t.id)?;
            out.push((t, secret));
        }
        Ok(out)
    }

    pub(crate) fn tunnel_secret(&self, id: Uuid) -> Result<TunnelSecret> {
        let secret: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT secret FROM tunnels WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let secret = secret.ok_or_else(|| Error::TunnelNotFound(id.to_string()))?;
        if secret.len() != SECRET_LEN {
            return Err(Error::CorruptState {
                path: "registry.db".into(),
                reason: format!("tunnel {id} has a secret of the wrong length"),
            });
        }
        Ok(TunnelSecret::new(secret))
    }

    pub(crate) fn delete_tunnel(&self, id: Uuid) -> Result<()> {
        self.conn
            .execute("DELETE FROM tunnels WHERE id = ?1", [id.to_string()])?;
        Ok(())
    }

    pub(crate) fn delete_dns_route(&self, hostname: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM dns_routes WHERE hostname = ?1", [hostname])?;
        Ok(())
    }

    /// Points an existing DNS route at `tunnel` (one statement: the route is never missing).
    pub(crate) fn move_dns_route(&self, tunnel: &Tunnel, hostname: &str) -> Result<DnsRoute> {
        self.conn.execute(
            "UPDATE dns_routes SET tunnel_id = ?1 WHERE hostname = ?2",
            params![tunnel.id.to_string(), hostname],
        )?;
        Ok(DnsRoute {
            hostname: hostname.to_owned(),
            tunnel_id: tunnel.id,
            tunnel_name: tunnel.name.clone(),
        })
    }

    pub(crate) fn delete_tcp_route(&self, port: u16) -> Result<()> {
        self.conn
            .execute("DELETE FROM tcp_routes WHERE port = ?1", [port])?;
        Ok(())
    }

    pub(crate) fn add_dns_route(&self, tunnel: &Tunnel, hostname: &str) -> Result<DnsRoute> {
        let res = self.conn.execute(
            "INSERT INTO dns_routes (hostname, tunnel_id) VALUES (?1, ?2)",
            params![hostname, tunnel.id.to_string()],
        );
        match res {
            Ok(_) => Ok(DnsRoute {
                hostname: hostname.to_owned(),
                tunnel_id: tunnel.id,
                tunnel_name: tunnel.name.clone(),
            }),
            Err(e) if is_unique_violation(&e) => {
                let owner: String = self.conn.query_row(
                    "SELECT t.name FROM dns_routes r JOIN tunnels t ON t.id = r.tunnel_id
                     WHERE r.hostname = ?1",
                    [hostname],
                    |r| r.get(0),
                )?;
                Err(Error::DnsRouteExists {
                    hostname: hostname.to_owned(),
                    tunnel: owner,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn add_tcp_route(&self, tunnel: &Tunnel, port: u16) -> Result<TcpRoute> {
        let res = self.conn.execute(
            "INSERT INTO tcp_routes (port, tunnel_id) VALUES (?1, ?2)",
            params![port, tunnel.id.to_string()],
        );
        match res {
            Ok(_) => Ok(TcpRoute {
                port,
                tunnel_id: tunnel.id,
                tunnel_name: tunnel.name.clone(),
            }),
            Err(e) if is_unique_violation(&e) => {
                let owner: String = self.conn.query_row(
                    "SELECT t.name FROM tcp_routes r JOIN tunnels t ON t.id = r.tunnel_id
                     WHERE r.port = ?1",
                    [port],
                    |r| r.get(0),
                )?;
                Err(Error::TcpRouteExists {
                    port,
                    tunnel: owner,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn dns_routes(&self) -> Result<Vec<DnsRoute>> {
        let mut stmt = self.conn.prepare(
            "SELECT r.hostname, r.tunnel_id, t.name FROM dns_routes r
             JOIN tunnels t ON t.id = r.tunnel_id ORDER BY r.hostname",
        )?;
        let rows = stmt.query_map([], |r| {
            let id: String = r.get(1)?;
            Ok(DnsRoute {
                hostname: r.get(0)?,
                tunnel_id: parse_uuid(&id)?,
                tunnel_name: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub(crate) fn tcp_routes(&self) -> Result<Vec<TcpRoute>> {
        let mut stmt = self.conn.prepare(
            "SELECT r.port, r.tunnel_id, t.name FROM tcp_routes r
             JOIN tunnels t ON t.id = r.tunnel_id ORDER BY r.port",
        )?;
        let rows = stmt.query_map([], |r| {
            let id: String = r.get(1)?;
            Ok(TcpRoute {
                port: r.get(0)?,
                tunnel_id: parse_uuid(&id)?,
                tunnel_name: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// Whether `table` has a column `column`.
fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let columns = stmt
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(columns.iter().any(|c| c == column))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
