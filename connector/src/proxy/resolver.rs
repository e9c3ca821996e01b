//! Origin names, resolved off the workers and cached.
//!
//! Resolving a name (`getaddrinfo`) blocks: it reads `/etc/hosts`, may ask a DNS server and may
//! wait seconds for it. An io_uring worker that did so would stall every stream on it, so no
//! worker ever resolves. Instead:
//!
//! - at start, and at each reload before the new rules go live, the names of the rules'
//!   `http(s)://` and `tcp://` services are resolved on the calling thread (main, signal or
//!   config watcher) by [`Resolver::track`];
//! - a background thread (`ringtun-dns`, [`Resolver::start_refresher`]) resolves each name
//!   again every `--origin-dns-refresh-interval`, and soon (at most once per
//!   [`URGENT_REFRESH_GAP`]) after a worker reports that connecting to its address failed or
//!   that the name has no address;
//! - a worker reads the addresses from a published table ([`WorkerResolver`]): one atomic load
//!   per request, a short lock only after the table changed.
//!
//! IP literals (`http://127.0.0.1:8080`, `http://[::1]:80`) never reach the cache. A name that
//! does not resolve is answered with 502 naming the origin; a refresh that fails after an
//! earlier success keeps the last addresses (a DNS outage should not take a working origin
//! down). Names that leave the rules are dropped one interval after the reload that removed
//! them, so a stream that still holds the old rules finds them.
//!
//! The cache logic itself ([`Cache`]) does no IO and never reads the clock: it takes `now` and
//! the resolver's answers as arguments, so the tests drive it with an injected resolver and a
//! virtual clock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::ingress::{IngressRules, Service};
use crate::observe::Observer;

/// The default of `--origin-dns-refresh-interval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest `--origin-dns-refresh-interval` accepted.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a name may be resolved again after a worker asked for it (connect failure, no
/// address): requests that keep failing cannot turn into a stream of DNS queries.
pub const URGENT_REFRESH_GAP: Duration = Duration::from_secs(1);

/// Resolves one name to its addresses; blocking. Injected so tests need no DNS.
pub type ResolveFn = dyn Fn(&str) -> std::io::Result<Vec<IpAddr>> + Send + Sync;

/// The system resolver (`getaddrinfo`, through the standard library).
pub fn system_resolve(host: &str) -> std::io::Result<Vec<IpAddr>> {
    let addrs: Vec<IpAddr> = (host, 0).to_socket_addrs()?.map(|a| a.ip()).collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ));
    }
    Ok(addrs)
}

/// What is known about one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Its addresses, in the resolver's order; never empty.
    Addrs(Arc<[IpAddr]>),
    /// It never resolved; why.
    Failed(Arc<str>),
}

/// The names of the services in `rules` that need resolving (IP literals do not), each once.
pub fn origin_names(rules: &IngressRules) -> Vec<String> {
    let mut names: Vec<String> = rules
        .rules()
        .iter()
        .filter_map(|r| match &r.service {
            Service::Http(h) => Some(h.host.as_str()),
            Service::Tcp(t) => Some(t.host.as_str()),
            _ => None,
        })
        .filter(|h| h.parse::<IpAddr>().is_err())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One name in the [`Cache`].
#[derive(Debug, Clone)]
struct Entry {
    /// The latest answer (the last good addresses after a failed refresh).
    resolved: Resolved,
    /// When it was last resolved (successfully or not).
    at: Instant,
    /// The last refresh failed (logged once, not at every refresh).
    failing: bool,
    /// A worker asked for a refresh.
    urgent: bool,
    /// Since when no rule names it; dropped one interval later.
    retired: Option<Instant>,
}

/// What applying an answer changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing worth a log line.
    None,
    /// First answer, or the addresses changed.
    Addrs(Arc<[IpAddr]>),
    /// It resolves again after failing.
    Recovered(Arc<[IpAddr]>),
    /// It stopped resolving (the last addresses, if any, are kept).
    Failed(String),
}

/// The cache's bookkeeping: which names, their answers, which are due. No IO, no clock.
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<String, Entry>,
    interval: Duration,
}

impl Cache {
    /// An empty cache that refreshes every `interval`.
    pub fn new(interval: Duration) -> Cache {
        Cache {
            entries: HashMap::new(),
            interval,
        }
    }

    /// Makes `names` the names in use: returns those not known yet (to resolve now), revives
    /// known ones, and retires the others.
    pub fn track(&mut self, names: &[String], now: Instant) -> Vec<String> {
        for (name, e) in &mut self.entries {
            if names.contains(name) {
                e.retired = None;
            } else if e.retired.is_none() {
                e.retired = Some(now);
            }
        }
        names
            .iter()
            .filter(|n| !self.entries.contains_key(*n))
            .cloned()
            .collect()
    }

    /// Records the answer for `name` at `now`.
    pub fn apply(
        &mut self,
        name: &str,
        answer: std::io::Result<Vec<IpAddr>>,
        now: Instant,
    ) -> Change {
        let previous = self.entries.get(name).cloned();
        let (resolved, failing, change) = match (answer, previous.as_ref()) {
            (Ok(addrs), _) if addrs.is_empty() => {
                return self.apply(
                    name,
                    Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no addresses",
                    )),
                    now,
                );
            }
            (Ok(addrs), prev) => {
                let addrs: Arc<[IpAddr]> = addrs.into();
                let change = match prev {
                    Some(p) if p.failing => Change::Recovered(addrs.clone()),
                    Some(Entry {
                        resolved: Resolved::Addrs(old),
                        ..
                    }) if *old == addrs => Change::None,
                    _ => Change::Addrs(addrs.clone()),
                };
                (Resolved::Addrs(addrs), false, change)
            }
            (Err(e), prev) => {
                let why = e.to_string();
                let change = match prev {
                    Some(p) if p.failing => Change::None,
                    _ => Change::Failed(why.clone()),
                };
                let resolved = match prev {
                    Some(Entry {
                        resolved: r @ Resolved::Addrs(_),
                        ..
                    }) => r.clone(),
                    _ => Resolved::Failed(why.into()),
                };
                (resolved, true, change)
            }
        };
        let retired = previous.and_then(|p| p.retired);
        self.entries.insert(
            name.to_owned(),
            Entry {
                resolved,
                at: now,
                failing,
                urgent: false,
                retired,
            },
        );
        change
    }

    /// A worker asks for `name` to be resolved again soon. Whether it is known.
    pub fn request_refresh(&mut self, name: &str) -> bool {
        match self.entries.get_mut(name) {
            Some(e) => {
                e.urgent = true;
                true
            }
            None => false,
        }
    }

    /// Drops the names retired at least one interval ago.
    pub fn prune(&mut self, now: Instant) {
        let interval = self.interval;
        self.entries.retain(|_, e| match e.retired {
            Some(since) => now.saturating_duration_since(since) < interval,
            None => true,
        });
    }

    /// When `e` is due for its next resolution.
    fn due_at(&self, e: &Entry) -> Instant {
        let gap = if e.urgent {
            URGENT_REFRESH_GAP.min(self.interval)
        } else {
            self.interval
        };
        e.at + gap
    }

    /// The names to resolve at `now`: every interval, sooner when a worker asked.
    pub fn due(&self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.retired.is_none() && self.due_at(e) <= now)
            .map(|(n, _)| n.clone())
            .collect();
        due.sort();
        due
    }

    /// When the next name falls due (or a retired one is dropped); `None` when empty.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| match e.retired {
                Some(since) => since + self.interval,
                None => self.due_at(e),
            })
            .min()
    }

    /// The table the workers read.
    pub fn table(&self) -> Table {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.resolved.clone()))
            .collect()
    }
}

/// What the workers read: each name's latest answer.
pub type Table = HashMap<String, Resolved>;

/// The shared resolver of one `tunnel run`: the cache, its published table and the refresher.
pub struct Resolver {
    resolve: Box<ResolveFn>,
    cache: Mutex<Cache>,
    /// Wakes the refresher (a worker asked for a refresh).
    wake: Condvar,
    published: Mutex<Arc<Table>>,
    /// Bumped (under `published`'s lock) at every publication.
    generation: AtomicU64,
    observer: Option<Arc<Observer>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver that asks the system and refreshes every `interval`.
    pub fn system(interval: Duration) -> Resolver {
        Resolver::with(interval, Box::new(system_resolve))
    }

    /// A resolver that asks `resolve` (tests inject theirs).
    pub fn with(interval: Duration, resolve: Box<ResolveFn>) -> Resolver {
        Resolver {
            resolve,
            cache: Mutex::new(Cache::new(interval)),
            wake: Condvar::new(),
            published: Mutex::new(Arc::new(Table::new())),
            generation: AtomicU64::new(0),
            observer: None,
        }
    }

    /// Also counts resolutions in `observer` (`ringtun_origin_resolutions_total{result}`).
    pub fn observed_by(mut self, observer: Arc<Observer>) -> Resolver {
        self.observer = Some(observer);
        self
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the names of `rules` the tracked ones, resolving the new ones now, on the calling
    /// thread (never a worker's), so the rules find their addresses when they go live.
    pub fn track(&self, rules: &IngressRules) {
        let names = origin_names(rules);
        let new = self.cache().track(&names, Instant::now());
        self.resolve_and_apply(&new);
    }

    /// One refresher round at `now`: drops retired names and resolves the due ones.
    pub fn refresh_due(&self, now: Instant) {
        let due = {
            let mut cache = self.cache();
            cache.prune(now);
            cache.due(now)
        };
        self.resolve_and_apply(&due);
    }

    /// Resolves `names` without holding the cache's lock (workers take it to ask for refreshes),
    /// then records the answers and publishes them.
    fn resolve_and_apply(&self, names: &[String]) {
        let answers: Vec<(&String, std::io::Result<Vec<IpAddr>>)> =
            names.iter().map(|n| (n, (self.resolve)(n))).collect();
        let now = Instant::now();
        let table = {
            let mut cache = self.cache();
            for (name, answer) in answers {
                if let Some(o) = &self.observer {
                    o.origin_resolution(answer.is_ok());
                }
                log_change(name, cache.apply(name, answer, now));
            }
            cache.table()
        };
        self.publish(table);
    }

    fn publish(&self, table: Table) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *published = Arc::new(table);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn snapshot(&self) -> (u64, Arc<Table>) {
        let published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (
            self.generation.load(Ordering::Acquire),
            Arc::clone(&published),
        )
    }

    /// The latest answer for `name`, if it is tracked.
    pub fn lookup(&self, name: &str) -> Option<Resolved> {
        self.snapshot().1.get(name).cloned()
    }

    /// Asks the refresher to resolve `name` again soon (at most once per
    /// [`URGENT_REFRESH_GAP`]). Takes a lock for a moment; never waits on DNS.
    pub fn request_refresh(&self, name: &str) {
        if self.cache().request_refresh(name) {
            self.wake.notify_one();
        }
    }

    /// Resolves a name that is not tracked (a stream of rules that were replaced long ago):
    /// blocking, for a thread that may block. Also tracks it until the next reload.
    pub fn resolve_untracked(&self, name: &str) -> Resolved {
        let answer = (self.resolve)(name);
        let now = Instant::now();
        let (resolved, table) = {
            let mut cache = self.cache();
            log_change(name, cache.apply(name, answer, now));
            let table = cache.table();
            (table.get(name).cloned(), table)
        };
        self.publish(table);
        resolved.unwrap_or_else(|| Resolved::Failed("not resolved".into()))
    }

    /// Starts the `ringtun-dns` thread, which refreshes the names until the resolver is dropped.
    pub fn start_refresher(self: &Arc<Self>) {
        let weak: Weak<Resolver> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("ringtun-dns".into())
            .spawn(move || refresher(weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the origin DNS refresher; names resolve only at start and reload");
        }
    }

    /// A per-worker reader.
    pub fn for_worker(self: &Arc<Self>) -> WorkerResolver {
        let snapshot = self.snapshot();
        WorkerResolver {
            shared: Arc::clone(self),
            cached: RefCell::new(snapshot),
        }
    }
}

/// The refresher's loop: sleep until something is due or a worker asks, then resolve.
fn refresher(weak: Weak<Resolver>) {
    // The longest sleep, so the thread notices a dropped resolver.
    const MAX_SLEEP: Duration = Duration::from_secs(5);
    loop {
        let Some(r) = weak.upgrade() else { return };
        {
            let cache = r.cache();
            let now = Instant::now();
            let sleep = cache
                .next_wakeup()
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            if !sleep.is_zero() {
                let _ = r
                    .wake
                    .wait_timeout(cache, sleep)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        r.refresh_due(Instant::now());
    }
}

/// One log line per change of a name's state, never one per refresh.
fn log_change(name: &str, change: Change) {
    match change {
        Change::None => {}
        Change::Addrs(a) => {
            tracing::debug!(origin = name, addrs = ?a, "origin name resolved");
        }
        Change::Recovered(a) => {
            tracing::info!(origin = name, addrs = ?a, "origin name resolves again");
        }
        Change::Failed(why) => {
            tracing::warn!(origin = name, error = %why, "origin name does not resolve; requests to it get 502 until it does");
        }
    }
}

/// One worker's view of the [`Resolver`] (not `Send`: it lives in the worker's proxy context).
#[derive(Debug)]
pub struct WorkerResolver {
    shared: Arc<Resolver>,
    cached: RefCell<(u64, Arc<Table>)>,
}

impl WorkerResolver {
    /// The address to connect to for `host:port`. IP literals are used as they are; names come
    /// from the cache. Never blocks the worker: a name the cache does not know is resolved on
    /// the runtime's blocking pool. The error is the reason, for a 502.
    pub async fn addr(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolved = match self.lookup(host) {
            Some(r) => r,
            None => {
                let shared = Arc::clone(&self.shared);
                let name = host.to_owned();
                compio::runtime::spawn_blocking(move || shared.resolve_untracked(&name))
                    .await
                    .unwrap_or_else(|_| Resolved::Failed("the resolver failed".into()))
            }
        };
        match resolved {
            Resolved::Addrs(a) => match a.first() {
                Some(ip) => Ok(SocketAddr::new(*ip, port)),
                None => Err("no addresses".to_owned()),
            },
            Resolved::Failed(why) => {
                self.shared.request_refresh(host);
                Err(why.to_string())
            }
        }
    }

    /// Connecting to `host`'s address failed: its addresses may have changed, resolve it again
    /// soon.
    pub fn connect_failed(&self, host: &str) {
        if host.parse::<IpAddr>().is_err() {
            self.shared.request_refresh(host);
        }
    }

    fn lookup(&self, host: &str) -> Option<Resolved> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = self.shared.snapshot();
        }
        cached.1.get(host).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn not_found() -> std::io::Result<Vec<IpAddr>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "failed to lookup address",
        ))
    }

    #[test]
    fn cache_refreshes_every_interval_and_soon_when_asked() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(60));
        assert_eq!(c.track(&names(&["a.test"]), t0), names(&["a.test"]));
        assert_eq!(
            c.apply("a.test", Ok(vec![ip("10.0.0.1")]), t0),
            Change::Addrs(vec![ip("10.0.0.1")].into())
        );
        // Known names are not resolved again by a new track.
        assert!(c.track(&names(&["a.test"]), t0).is_empty());
        assert!(c.due(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(c.due(t0 + Duration::from_secs(60)), names(&["a.test"]));
        assert_eq!(c.next_wakeup(), Some(t0 + Duration::from_secs(60)));
        // A connect failure makes it due after the urgent gap, not before.
        assert!(c.request_refresh("a.test"));
        assert!(!c.request_refresh("unknown.test"));
        assert!(c.due(t0).is_empty());
        assert_eq!(c.due(t0 + URGENT_REFRESH_GAP), names(&["a.test"]));
        // The same answer again changes nothing and clears the request.
        let t1 = t0 + URGENT_REFRESH_GAP;
        assert_eq!(
            c.apply("a.test", Ok(vec![ip("10.0.0.1")]), t1),
            Change::None
        );
        assert!(c.due(t1 + URGENT_REFRESH_GAP).is_empty());
        // A new address is taken.
        assert_eq!(
            c.apply("a.test", Ok(vec![ip("10.0.0.2")]), t1),
            Change::Addrs(vec![ip("10.0.0.2")].into())
        );
        assert_eq!(
            c.table().get("a.test"),
            Some(&Resolved::Addrs(vec![ip("10.0.0.2")].into()))
        );
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_addresses_and_logs_once() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(60));
        c.track(&names(&["a.test", "b.test"]), t0);
        c.apply("a.test", Ok(vec![ip("10.0.0.1")]), t0);
        assert!(matches!(
            c.apply("b.test", not_found(), t0),
            Change::Failed(_)
        ));
        // b never resolved: its entry is the error, which names the cause.
        match c.table().get("b.test") {
            Some(Resolved::Failed(why)) => assert!(why.contains("lookup"), "{why}"),
            other => panic!("b.test should have failed: {other:?}"),
        }
        // a fails later: the addresses stay; the second failure in a row is not news.
        assert!(matches!(
            c.apply("a.test", not_found(), t0),
            Change::Failed(_)
        ));
        assert_eq!(c.apply("a.test", not_found(), t0), Change::None);
        assert_eq!(
            c.table().get("a.test"),
            Some(&Resolved::Addrs(vec![ip("10.0.0.1")].into()))
        );
        assert_eq!(
            c.apply("a.test", Ok(vec![ip("10.0.0.1")]), t0),
            Change::Recovered(vec![ip("10.0.0.1")].into())
        );
        // An empty answer is a failure, not an entry without addresses.
        assert!(matches!(
            c.apply("c.test", Ok(vec![]), t0),
            Change::Failed(_)
        ));
    }

    #[test]
    fn names_that_leave_the_rules_are_dropped_one_interval_later() {
        let t0 = Instant::now();
        let i = Duration::from_secs(60);
        let mut c = Cache::new(i);
        c.track(&names(&["old.test"]), t0);
        c.apply("old.test", Ok(vec![ip("10.0.0.1")]), t0);
        assert_eq!(c.track(&names(&["new.test"]), t0), names(&["new.test"]));
        c.apply("new.test", Ok(vec![ip("10.0.0.2")]), t0);
        // Retired: still readable, never refreshed, gone after an interval.
        assert_eq!(c.due(t0 + i), names(&["new.test"]));
        c.prune(t0 + i - Duration::from_secs(1));
        assert!(c.table().contains_key("old.test"));
        c.prune(t0 + i);
        assert!(!c.table().contains_key("old.test"));
        assert!(c.table().contains_key("new.test"));
        // A name that comes back before being dropped is revived, not resolved again.
        c.track(&names(&["x.test"]), t0);
        assert!(c.track(&names(&["new.test"]), t0).is_empty());
        c.prune(t0 + 2 * i);
        assert!(c.table().contains_key("new.test"));
    }

    /// A resolver whose answers the test sets, counting its calls.
    fn injected(
        answers: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
        calls: Arc<AtomicUsize>,
    ) -> Resolver {
        Resolver::with(
            Duration::from_secs(60),
            Box::new(move |name: &str| {
                calls.fetch_add(1, Ordering::Relaxed);
                match answers.lock().ok().and_then(|a| a.get(name).cloned()) {
                    Some(a) => Ok(a),
                    None => not_found(),
                }
            }),
        )
    }

    fn rules(yaml: &str) -> IngressRules {
        crate::config::Config::from_yaml_str(yaml)
            .and_then(|c| c.ingress_for(None))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn resolver_tracks_rules_refreshes_and_workers_see_it() {
        let answers = Arc::new(Mutex::new(HashMap::from([(
            "app.internal".to_owned(),
            vec![ip("10.1.1.1")],
        )])));
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Arc::new(injected(answers.clone(), calls.clone()));
        r.track(&rules(
            "ingress:\n  - hostname: a.com\n    service: http://app.internal:8080\n  \
             - hostname: b.com\n    service: http://127.0.0.1:9\n  \
             - hostname: c.com\n    service: tcp://down.internal:22\n  \
             - service: http_status:404\n",
        ));
        // Only the two names were resolved; the IP literal was not.
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let w = r.for_worker();
        let addr = |host: &str, port| {
            compio::runtime::Runtime::new()
                .unwrap_or_else(|e| panic!("{e}"))
                .block_on(w.addr(host, port))
        };
        assert_eq!(
            addr("app.internal", 8080),
            Ok("10.1.1.1:8080".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        assert_eq!(
            addr("127.0.0.1", 9),
            Ok("127.0.0.1:9".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        assert_eq!(
            addr("::1", 9),
            Ok("[::1]:9".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        let err = addr("down.internal", 22).err().unwrap_or_default();
        assert!(err.contains("lookup"), "{err}");
        // Lookups cost no resolution.
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        // The failed name was asked for again; a round after the urgent gap resolves it, and
        // the workers see the new answer.
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert("down.internal".into(), vec![ip("10.2.2.2")]);
        r.refresh_due(Instant::now());
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "not before the urgent gap"
        );
        r.refresh_due(Instant::now() + URGENT_REFRESH_GAP);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(
            addr("down.internal", 22),
            Ok("10.2.2.2:22".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        // A connect failure asks for the name again; the refresh brings the new address.
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert("app.internal".into(), vec![ip("10.1.1.9")]);
        w.connect_failed("app.internal");
        r.refresh_due(Instant::now() + URGENT_REFRESH_GAP);
        assert_eq!(
            addr("app.internal", 80),
            Ok("10.1.1.9:80".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        // The interval refreshes everything.
        let before = calls.load(Ordering::Relaxed);
        r.refresh_due(Instant::now() + Duration::from_secs(61));
        assert_eq!(calls.load(Ordering::Relaxed), before + 2);
        // A name no rule names is resolved off the worker, then cached.
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert("other.internal".into(), vec![ip("10.3.3.3")]);
        assert_eq!(
            addr("other.internal", 1),
            Ok("10.3.3.3:1".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        assert_eq!(
            addr("other.internal", 1),
            Ok("10.3.3.3:1".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        assert_eq!(calls.load(Ordering::Relaxed), before + 3);
    }

    #[test]
    fn the_refresher_thread_answers_a_request() {
        let answers = Arc::new(Mutex::new(HashMap::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Arc::new(injected(answers.clone(), calls.clone()));
        r.track(&rules("ingress:\n  - service: http://late.internal:80\n"));
        assert!(matches!(
            r.lookup("late.internal"),
            Some(Resolved::Failed(_))
        ));
        r.start_refresher();
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert("late.internal".into(), vec![ip("10.4.4.4")]);
        r.request_refresh("late.internal");
        // Waits for the condition, with a generous bound for a busy machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        while r.lookup("late.internal") != Some(Resolved::Addrs(vec![ip("10.4.4.4")].into())) {
            assert!(
                Instant::now() < deadline,
                "the refresher never resolved the name"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn system_resolver_knows_localhost() {
        let addrs = system_resolve("localhost").unwrap_or_else(|e| panic!("{e}"));
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
    }
}
