//! Watch streams: initial state, history replay from a resource version, live events, bookmarks,
//! timeouts and the 410 `Expired` error that makes clients relist.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::selector::Selector;
use crate::store::EventType;
use crate::table::{self, IncludeObject};
use crate::verbs::{Target, present};

/// The longest watch a client can ask for with `timeoutSeconds`; longer requests are cut to it.
/// kube-apiserver ends a watch that asks for no timeout after a random time between
/// `--min-request-timeout` and twice that (1800 s by default, so at most an hour); a client may
/// ask for no more here.
pub const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a watch asks for.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Resource and namespace.
    pub target: Target,
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
    /// `shardSelector` (KEP-5866).
    pub shards: crate::shard::ShardSelector,
    /// `resourceVersion`; `None` or 0 sends the current state first.
    pub resource_version: Option<u64>,
    /// `sendInitialEvents=true`: send the current state, then a bookmark marking its end.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds` (the handler caps it at [`MAX_WATCH_TIMEOUT`]; a deadline beyond what
    /// the clock can express means none).
    pub timeout: Option<Duration>,
    /// Table output, when asked for.
    pub table: Option<IncludeObject>,
}

impl WatchParams {
    fn matches(&self, object: &Value) -> bool {
        let ns_ok = match (&self.target.namespace, self.target.info.namespaced) {
            (Some(ns), true) => object["metadata"]["namespace"].as_str() == Some(ns.as_str()),
            _ => true,
        };
        ns_ok
            && self.labels.matches_labels(object)
            && self.fields.matches_fields(object)
            && self.shards.matches(object)
    }

    fn encode(&self, event_type: &str, object: &Value) -> Bytes {
        let info = &self.target.info;
        /// A watch event as the server encodes it (`metav1.WatchEvent`).
        #[derive(serde::Serialize)]
        struct Event<'a> {
            #[serde(rename = "type")]
            event_type: &'a str,
            object: Cow<'a, Value>,
        }
        let object = match self.table {
            Some(include) => {
                let rv = object["metadata"]["resourceVersion"].clone();
                Cow::Owned(table::table(
                    info,
                    &[object],
                    json!({"resourceVersion": rv}),
                    include,
                ))
            }
            None => present(info, object),
        };
        line(&Event { event_type, object })
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let info = &self.target.info;
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata}}),
        )
    }
}

fn line(value: &impl serde::Serialize) -> Bytes {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn expired_line(requested: u64, oldest: u64) -> Bytes {
    line(&json!({"type": "ERROR", "object": ApiError::Expired { requested, oldest }.to_status()}))
}

/// Collects the encoded events after `last` that the watch sees; advances `last`.
fn pending(
    cluster: &Cluster,
    params: &WatchParams,
    last: &mut u64,
) -> Result<Vec<Bytes>, (u64, u64)> {
    let inner = cluster.lock();
    let gr = params.target.info.storage_resource();
    let events = inner
        .store
        .events_after(*last)
        .map_err(|e| (*last, e.oldest))?;
    let mut out = Vec::new();
    let mut newest = *last;
    for event in events {
        newest = event.rv;
        if event.resource != gr {
            continue;
        }
        let now = params.matches(&event.object);
        let before = event.previous.as_ref().is_some_and(|p| params.matches(p));
        let kind = match event.event_type {
            EventType::Added if now => Some("ADDED"),
            EventType::Modified if now && before => Some("MODIFIED"),
            EventType::Modified if now => Some("ADDED"),
            EventType::Modified if before => Some("DELETED"),
            EventType::Deleted if before || now => Some("DELETED"),
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(params.encode(kind, &event.object));
        }
    }
    *last = newest.max(*last);
    Ok(out)
}

/// Starts a watch and returns its newline-delimited JSON body.
pub fn stream(
    cluster: Arc<Cluster>,
    params: WatchParams,
    mut shutdown: watch::Receiver<bool>,
    bookmark_interval: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let mut version = cluster.subscribe();
    tokio::spawn(async move {
        let deadline = params.timeout.and_then(|t| Instant::now().checked_add(t));
        version.borrow_and_update();
        let mut last = match params.resource_version {
            Some(rv) if rv > 0 && !params.send_initial_events => rv,
            _ => {
                let (initial, rv) = {
                    let inner = cluster.lock();
                    let gr = params.target.info.storage_resource();
                    let ns = if params.target.info.namespaced {
                        params.target.namespace.as_deref()
                    } else {
                        None
                    };
                    let objects: Vec<Bytes> = inner
                        .store
                        .list(&gr, ns, None)
                        .filter(|(_, o)| params.matches(o))
                        .map(|(_, o)| params.encode("ADDED", o))
                        .collect();
                    (objects, inner.store.resource_version())
                };
                for event in initial {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                if params.send_initial_events && tx.send(params.bookmark(rv, true)).await.is_err() {
                    return;
                }
                rv
            }
        };
        let mut ticker =
            tokio::time::interval_at(Instant::now() + bookmark_interval, bookmark_interval);
        loop {
            version.borrow_and_update();
            match pending(&cluster, &params, &mut last) {
                Ok(events) => {
                    for event in events {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Err((requested, oldest)) => {
                    let _ = tx.send(expired_line(requested, oldest)).await;
                    return;
                }
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = version.changed() => if changed.is_err() { return },
                () = timeout => return,
                _ = ticker.tick(), if params.bookmarks => {
                    if tx.send(params.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
                () = tx.closed() => return,
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::WriteOptions;
    use futures::StreamExt;

    fn params(cluster: &Cluster, rv: Option<u64>) -> WatchParams {
        let info = cluster
            .lock()
            .registry
            .lookup("", "v1", "configmaps")
            .unwrap();
        WatchParams {
            target: Target {
                info,
                namespace: Some("default".into()),
                name: None,
                subresource: None,
            },
            labels: Selector::default(),
            fields: Selector::default(),
            shards: crate::shard::ShardSelector::default(),
            resource_version: rv,
            send_initial_events: false,
            bookmarks: false,
            timeout: Some(Duration::from_millis(300)),
            table: None,
        }
    }

    #[tokio::test]
    async fn bookmarks_and_initial_events_end() {
        let cluster = Arc::new(Cluster::open(None, 100).unwrap());
        let mut p = params(&cluster, None);
        p.bookmarks = true;
        p.send_initial_events = true;
        let (_tx, rx) = watch::channel(false);
        let s = stream(cluster.clone(), p, rx, Duration::from_millis(50));
        let events: Vec<Value> = s
            .map(|b| serde_json::from_slice::<Value>(&b.unwrap()).unwrap())
            .collect()
            .await;
        assert_eq!(events[0]["type"], "BOOKMARK");
        assert_eq!(
            events[0]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        assert!(events.len() >= 3, "periodic bookmarks follow: {events:?}");
    }

    async fn events(cluster: &Arc<Cluster>, rv: Option<u64>) -> Vec<Value> {
        let (_tx, rx) = watch::channel(false);
        let s = stream(
            cluster.clone(),
            params(cluster, rv),
            rx,
            Duration::from_secs(60),
        );
        s.map(|b| serde_json::from_slice::<Value>(&b.unwrap()).unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn initial_replay_and_expired() {
        let cluster = Arc::new(Cluster::open(None, 3).unwrap());
        let start = cluster.lock().store.resource_version();
        let p = params(&cluster, None);
        for name in ["a", "b", "c"] {
            cluster
                .create(
                    &p.target,
                    json!({"metadata": {"name": name}}),
                    &WriteOptions::default(),
                )
                .unwrap();
        }
        let initial = events(&cluster, None).await;
        assert_eq!(initial.len(), 3);
        assert!(initial.iter().all(|e| e["type"] == "ADDED"));
        let replay = events(&cluster, Some(start + 1)).await;
        assert_eq!(replay.len(), 2);
        let expired = events(&cluster, Some(1)).await;
        assert_eq!(expired[0]["type"], "ERROR");
        assert_eq!(expired[0]["object"]["code"], 410);
        assert_eq!(expired[0]["object"]["reason"], "Expired");
    }
}
