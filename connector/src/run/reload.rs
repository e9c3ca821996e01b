//! Hot reload of the ingress rules (replicas-contract.md, "Signals"): SIGHUP, and with
//! `--watch-config` a change of the config file's modification time or size (polled once a
//! second), re-read the config file and replace the rules and their `originRequest` settings in
//! [`LiveRules`]. Links and open streams are untouched; streams that start afterwards use the
//! new rules. An invalid file is rejected as a whole and the old rules stay.
//!
//! The new rules' origin names are resolved before the rules go live
//! ([`Resolver::track`]), so no worker has to.
//!
//! Only the ingress rules and `originRequest` are reloaded: the tunnel, credentials and flags
//! of a running connector stay as they were started.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::error::Result;
use crate::ingress::{IngressRules, LiveRules};
use crate::proxy::Resolver;

/// How often `--watch-config` looks at the file.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new rules are live; how many there are.
    Reloaded {
        /// The number of ingress rules.
        rules: usize,
    },
    /// The file was invalid (or unreadable); the old rules stay. The reason.
    Rejected(String),
    /// Started with `--url` and no config file: nothing to reload.
    NothingToReload,
}

/// Reloads the rules from where they came from.
#[derive(Debug)]
pub struct Reloader {
    /// The config file; `None` when the connector was started with `--url` and no file.
    path: Option<PathBuf>,
    /// `--url`, which (like at start) is combined with the file's `originRequest`.
    url: Option<String>,
    live: LiveRules,
    /// Serializes reloads from the signal thread and the watcher.
    lock: Mutex<()>,
    /// Counts outcomes in `ringtun_config_reloads_total`, when set.
    observer: Option<std::sync::Arc<crate::observe::Observer>>,
    /// Resolves the new rules' origin names before they go live, when set.
    resolver: Option<std::sync::Arc<Resolver>>,
}

impl Reloader {
    /// A reloader that re-reads `path` (with `url` as at start) into `live`.
    pub fn new(path: Option<PathBuf>, url: Option<String>, live: LiveRules) -> Reloader {
        Reloader {
            path,
            url,
            live,
            lock: Mutex::new(()),
            observer: None,
            resolver: None,
        }
    }

    /// Also resolves the origin names of reloaded rules with `resolver` before they go live, on
    /// the reloading thread (never a worker).
    pub fn resolving_with(mut self, resolver: std::sync::Arc<Resolver>) -> Reloader {
        self.resolver = Some(resolver);
        self
    }

    /// Also counts each reload's outcome in `observer`'s metrics.
    pub fn observed_by(mut self, observer: std::sync::Arc<crate::observe::Observer>) -> Reloader {
        self.observer = Some(observer);
        self
    }

    /// The config file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the config file and replaces the rules when it is valid; logs the outcome.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = &self.path else {
            tracing::info!("nothing to reload: started with --url and no config file");
            return ReloadOutcome::NothingToReload;
        };
        match load_rules(path, self.url.as_deref()) {
            Ok(rules) => {
                let n = rules.rules().len();
                if let Some(r) = &self.resolver {
                    r.track(&rules);
                }
                self.live.store(rules);
                if let Some(o) = &self.observer {
                    o.config_reload(true);
                }
                tracing::info!(file = %path.display(), rules = n, "config reloaded");
                ReloadOutcome::Reloaded { rules: n }
            }
            Err(e) => {
                if let Some(o) = &self.observer {
                    o.config_reload(false);
                }
                tracing::warn!(file = %path.display(), error = %e, "config reload rejected");
                ReloadOutcome::Rejected(e.to_string())
            }
        }
    }
}

/// The rules the file at `path` gives (with `--url` as at start).
pub fn load_rules(path: &Path, url: Option<&str>) -> Result<IngressRules> {
    Config::load(path)?.ingress_for(url)
}

/// What the watcher compares: the file's modification time and size (`None` when it cannot be
/// read, e.g. while an editor replaces it).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// `--watch-config`: a thread that reloads whenever the file's stamp changes. Does nothing (but
/// say so) without a config file.
pub fn watch(reloader: std::sync::Arc<Reloader>) {
    let Some(path) = reloader.path().map(Path::to_owned) else {
        tracing::warn!("--watch-config: there is no config file to watch (started with --url)");
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("ringtun-watch-config".into())
        .spawn(move || {
            let mut last = stamp(&path);
            loop {
                std::thread::sleep(WATCH_INTERVAL);
                let now = stamp(&path);
                if now != last && now.is_some() {
                    tracing::info!(file = %path.display(), "config file changed; reloading");
                    reloader.reload();
                }
                if now.is_some() {
                    last = now;
                }
            }
        });
    match spawned {
        Ok(_) => tracing::info!("watching the config file for changes"),
        Err(e) => tracing::warn!(error = %e, "cannot start the config watcher"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> LiveRules {
        LiveRules::new(
            IngressRules::from_url("http://localhost:1", &Default::default())
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn first_service(live: &LiveRules) -> String {
        live.current().rules()[0].service.to_string()
    }

    #[test]
    fn valid_file_replaces_invalid_file_keeps() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yml");
        let write = |text: &str| std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let live = live();
        let r = Reloader::new(Some(path.clone()), None, live.clone());
        write(
            "ingress:\n  - hostname: a.com\n    service: http://localhost:2\n  - service: http_status:404\n",
        );
        assert_eq!(r.reload(), ReloadOutcome::Reloaded { rules: 2 });
        assert_eq!(first_service(&live), "http://localhost:2");
        write("ingress:\n  - hostname: a.com\n    service: http://localhost:3\n");
        match r.reload() {
            ReloadOutcome::Rejected(why) => assert!(why.contains("last ingress rule"), "{why}"),
            other => panic!("should be rejected: {other:?}"),
        }
        assert_eq!(first_service(&live), "http://localhost:2", "old rules stay");
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(r.reload(), ReloadOutcome::Rejected(_)));
        assert_eq!(live.generation(), 1);
    }

    #[test]
    fn url_without_file_has_nothing_to_reload() {
        let live = live();
        let r = Reloader::new(None, Some("http://localhost:1".into()), live.clone());
        assert_eq!(r.reload(), ReloadOutcome::NothingToReload);
        assert_eq!(live.generation(), 0);
    }

    #[test]
    fn url_with_file_reloads_origin_request() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yml");
        std::fs::write(&path, "originRequest:\n  connectTimeout: 7s\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let live = live();
        let r = Reloader::new(Some(path), Some("http://localhost:1".into()), live.clone());
        assert_eq!(r.reload(), ReloadOutcome::Reloaded { rules: 1 });
        assert_eq!(
            live.current().rules()[0].origin_request.connect_timeout,
            Duration::from_secs(7)
        );
    }
}
