//! The view: the list-then-watch loop.
//!
//! The loop lists every key under the prefix, publishes the view and then watches the prefix
//! from the list's revision + 1, applying each batch of events and publishing again. When the
//! watch ends (etcd restarted, the connection broke, the revision was compacted) it lists again
//! and watches from the new revision: a list is complete, so no update is lost whatever happened
//! in between. Until etcd answers, the last view stays in place: the data plane keeps serving.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use super::connect::retry_unsent;
use super::task::Task;

/// Longest pause between two attempts to list and watch again while etcd is away.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// At most one warning per this interval while etcd stays unreachable.
const LOG_INTERVAL: Duration = crate::limit::LOG_INTERVAL;

impl Task {
    fn publish_presence(&self, kvs: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let presence = Arc::new(self.keys.presence(kvs));
        *self.presence.write().unwrap_or_else(|p| p.into_inner()) = presence;
    }

    /// The list-then-watch loop (see the module doc); answers `ready` after the first list.
    pub(super) async fn sync(
        self: Arc<Self>,
        client: Client,
        applied: watch::Sender<i64>,
        ready: SyncSender<std::result::Result<(), String>>,
    ) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        let mut last_log: Option<Instant> = None;
        let mut failures = 0u64;
        loop {
            let listed_before = *applied.borrow();
            let reason = match self.list_and_watch(&client, &applied, &mut ready).await {
                Ok(()) => "the watch ended".to_owned(),
                Err(e) => e,
            };
            // A list got through this time: etcd is there, the next try comes soon.
            if *applied.borrow() != listed_before {
                backoff = Duration::from_millis(100);
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(reason));
                return;
            }
            failures += 1;
            if last_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
                tracing::warn!(
                    reason,
                    failures,
                    "etcd unreachable; serving from the last registry view"
                );
                last_log = Some(Instant::now());
                failures = 0;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One list and the watch after it; returns why the watch ended.
    async fn list_and_watch(
        &self,
        client: &Client,
        applied: &watch::Sender<i64>,
        ready: &mut Option<SyncSender<std::result::Result<(), String>>>,
    ) -> std::result::Result<(), String> {
        let timeout = self.settings.timeout;
        let prefix = self.keys.prefix().to_owned();
        let kv = client.kv_client();
        let list = tokio::time::timeout(
            timeout,
            retry_unsent(|| {
                let (mut kv, prefix) = (kv.clone(), prefix.clone());
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            }),
        )
        .await
        .map_err(|_| format!("list: no answer within {timeout:?}"))?
        .map_err(|e| format!("list: {e}"))?;
        let revision = list.header().map_or(0, |h| h.revision());
        let mut kvs: BTreeMap<Vec<u8>, Vec<u8>> = list
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        self.view.set(self.keys.view(&kvs));
        self.publish_presence(&kvs);
        applied.send_replace(revision);
        if let Some(ready) = ready.take() {
            tracing::info!(revision, keys = kvs.len(), "registry loaded from etcd");
            let _ = ready.send(Ok(()));
        }
        let mut watcher = client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = tokio::time::timeout(timeout, watcher.watch(prefix, Some(options)))
            .await
            .map_err(|_| format!("watch: no answer within {timeout:?}"))?
            .map_err(|e| format!("watch: {e}"))?;
        loop {
            let response = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Err("watch: stream closed".into()),
                Err(e) => return Err(format!("watch: {e}")),
            };
            if response.canceled() {
                return Err(format!(
                    "watch canceled ({}; compacted at {})",
                    response.cancel_reason(),
                    response.compact_revision()
                ));
            }
            if response.events().is_empty() {
                continue;
            }
            let (mut records, mut presence) = (false, false);
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                if self.keys.is_presence(kv.key()) {
                    presence = true;
                } else {
                    records = true;
                }
                match event.event_type() {
                    EventType::Put => {
                        kvs.insert(kv.key().to_vec(), kv.value().to_vec());
                    }
                    EventType::Delete => {
                        kvs.remove(kv.key());
                    }
                }
            }
            // Presence churn (links coming and going) does not make the workers rebuild their
            // route tables: only a change of the records does.
            if records {
                self.view.set(self.keys.view(&kvs));
            }
            if presence {
                self.publish_presence(&kvs);
            }
            if let Some(h) = response.header() {
                applied.send_replace(h.revision());
            }
        }
    }
}
