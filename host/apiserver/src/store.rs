//! The object store: objects by resource, namespace and name, a global resource version counter and a
//! bounded history of change events for watches.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::persist::{self, Loaded, Log, PersistError, Record};

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String);

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The durable log failed; the write was not applied.
    #[error("persisting the write")]
    Persist(#[source] PersistError),
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event type string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// How long a change stays in the history at least (unless the count limit drops it first) and
/// at most: etcd's default compaction interval in kube-apiserver (`--etcd-compaction-interval`,
/// 5 min), after which watches from, lists at and continue tokens of older versions get 410.
pub const DEFAULT_HISTORY_WINDOW: Duration = Duration::from_secs(300);

/// One change, kept in the watch history.
#[derive(Debug, Clone)]
pub struct Event {
    /// Resource version of the change.
    pub rv: u64,
    /// When it happened.
    pub at: Instant,
    /// Storage key of the resource.
    pub resource: String,
    /// The object's key.
    pub key: ObjectKey,
    /// What happened.
    pub event_type: EventType,
    /// The object after the change (for deletions: the last state, with the deletion's version).
    pub object: Arc<Value>,
    /// The object before the change, if any.
    pub previous: Option<Arc<Value>>,
}

/// The requested version is older than the kept history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Oldest version from which a watch can still resume.
    pub oldest: u64,
}

/// In-memory objects, optionally backed by a durable log.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<Event>,
    history_limit: usize,
    history_window: Duration,
    compacted_rv: u64,
    log: Option<Log>,
}

fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Objects of one resource ordered by namespace then name, optionally restricted to one namespace
/// and starting after a key: what [`Store::list`] reads from the current objects, and a list at a
/// past version from [`Store::objects_at`].
pub fn range<'a>(
    objects: &'a BTreeMap<ObjectKey, Arc<Value>>,
    namespace: Option<&'a str>,
    after: Option<&ObjectKey>,
) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + use<'a> {
    use std::ops::Bound;
    let lower = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
    objects
        .range((lower, Bound::Unbounded))
        .filter(move |((ns, _), _)| namespace.is_none_or(|want| want == ns))
}

impl Store {
    /// Opens a store, loading and compacting `state_dir` when given.
    ///
    /// # Errors
    /// [`StoreError`] when the state cannot be read or compacted.
    pub fn open(state_dir: Option<&Path>, history_limit: usize) -> Result<Self, StoreError> {
        let (loaded, log) = match state_dir {
            Some(dir) => {
                let loaded = persist::load(dir).map_err(StoreError::Persist)?;
                let log = Log::compact(dir, &loaded).map_err(StoreError::Persist)?;
                (loaded, Some(log))
            }
            None => (Loaded::default(), None),
        };
        let objects = loaded
            .objects
            .into_iter()
            .map(|(resource, map)| {
                (
                    resource,
                    map.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
                )
            })
            .collect();
        Ok(Self {
            rv: loaded.rv,
            objects,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            history_window: DEFAULT_HISTORY_WINDOW,
            compacted_rv: loaded.rv,
            log,
        })
    }

    /// The current (latest) resource version.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// One object.
    #[must_use]
    pub fn get(&self, resource: &str, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.objects.get(resource)?.get(key)
    }

    /// Objects of a resource, ordered by namespace then name, optionally restricted to one namespace
    /// and starting after a key.
    pub fn list<'a>(
        &'a self,
        resource: &str,
        namespace: Option<&'a str>,
        after: Option<&'a ObjectKey>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(move |m| range(m, namespace, after))
    }

    /// Storage keys that hold objects.
    pub fn resources(&self) -> impl Iterator<Item = &String> {
        self.objects.keys()
    }

    /// Number of stored objects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Whether the store holds no objects.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets how long changes stay in the history ([`DEFAULT_HISTORY_WINDOW`]).
    pub fn set_history_window(&mut self, window: Duration) {
        self.history_window = window;
    }

    /// Keeps the newest `history_limit` events of the last `history_window`, then adds `event`.
    fn record(&mut self, event: Event) {
        while let Some(old) = self.history.front() {
            let full = self.history.len() >= self.history_limit;
            if !full && event.at.duration_since(old.at) <= self.history_window {
                break;
            }
            self.compacted_rv = old.rv;
            self.history.pop_front();
        }
        self.history.push_back(event);
    }

    /// The objects of `resource` as they were at version `rv` (`rv` ≤ the current one), rebuilt
    /// by undoing the kept changes made after it, as an etcd read at a past revision.
    ///
    /// # Errors
    /// [`Expired`] when changes after `rv` were already dropped from the history.
    pub fn objects_at(
        &self,
        resource: &str,
        rv: u64,
    ) -> Result<BTreeMap<ObjectKey, Arc<Value>>, Expired> {
        let events = self.events_after(rv)?;
        let mut objects = self.objects.get(resource).cloned().unwrap_or_default();
        let changes: Vec<&Event> = events.filter(|e| e.resource == resource).collect();
        for event in changes.into_iter().rev() {
            match (&event.event_type, &event.previous) {
                (EventType::Added, _) => {
                    objects.remove(&event.key);
                }
                (EventType::Modified | EventType::Deleted, Some(previous)) => {
                    objects.insert(event.key.clone(), previous.clone());
                }
                (EventType::Modified | EventType::Deleted, None) => {}
            }
        }
        Ok(objects)
    }

    /// Creates or replaces an object, setting its resource version; durable before it returns.
    ///
    /// # Errors
    /// [`StoreError`] when persisting fails; nothing changes then.
    pub fn put(
        &mut self,
        resource: &str,
        key: ObjectKey,
        mut object: Value,
    ) -> Result<Arc<Value>, StoreError> {
        let rv = self.rv + 1;
        set_rv(&mut object, rv);
        if let Some(log) = &mut self.log {
            let record = Record::Put {
                rv,
                resource: resource.to_string(),
                namespace: key.0.clone(),
                name: key.1.clone(),
                object,
            };
            log.append(&record).map_err(StoreError::Persist)?;
            let Record::Put { object: o, .. } = record else {
                unreachable!("constructed above")
            };
            object = o;
        }
        self.rv = rv;
        let object = Arc::new(object);
        let previous = self
            .objects
            .entry(resource.to_string())
            .or_default()
            .insert(key.clone(), object.clone());
        let event_type = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv,
            at: Instant::now(),
            resource: resource.to_string(),
            key,
            event_type,
            object: object.clone(),
            previous,
        });
        Ok(object)
    }

    /// Removes an object; durable before it returns. Returns the last state (with the deletion's
    /// resource version), or `None` if it did not exist.
    ///
    /// # Errors
    /// [`StoreError`] when persisting fails; nothing changes then.
    pub fn remove(
        &mut self,
        resource: &str,
        key: &ObjectKey,
    ) -> Result<Option<Arc<Value>>, StoreError> {
        if self.get(resource, key).is_none() {
            return Ok(None);
        }
        let rv = self.rv + 1;
        if let Some(log) = &mut self.log {
            let record = Record::Delete {
                rv,
                resource: resource.to_string(),
                namespace: key.0.clone(),
                name: key.1.clone(),
            };
            log.append(&record).map_err(StoreError::Persist)?;
        }
        self.rv = rv;
        let Some(previous) = self.objects.get_mut(resource).and_then(|m| m.remove(key)) else {
            return Ok(None);
        };
        let mut last = (*previous).clone();
        set_rv(&mut last, rv);
        let last = Arc::new(last);
        self.record(Event {
            rv,
            at: Instant::now(),
            resource: resource.to_string(),
            key: key.clone(),
            event_type: EventType::Deleted,
            object: last.clone(),
            previous: Some(previous),
        });
        Ok(Some(last))
    }

    /// History events after `rv`, or [`Expired`] when some of them were already dropped.
    ///
    /// # Errors
    /// [`Expired`] when `rv` is older than the kept history.
    pub fn events_after(&self, rv: u64) -> Result<impl Iterator<Item = &Event>, Expired> {
        if rv < self.compacted_rv {
            return Err(Expired {
                oldest: self.compacted_rv,
            });
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ("default".into(), name.into())
    }

    #[test]
    fn put_remove_and_history() {
        let mut store = Store::open(None, 2).unwrap();
        store
            .put("configmaps", key("a"), json!({"metadata": {"name": "a"}}))
            .unwrap();
        store
            .put("configmaps", key("a"), json!({"metadata": {"name": "a"}}))
            .unwrap();
        let gone = store.remove("configmaps", &key("a")).unwrap().unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "3");
        assert!(store.events_after(0).is_err());
        let events: Vec<_> = store
            .events_after(1)
            .unwrap()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(events, vec![EventType::Modified, EventType::Deleted]);
        assert_eq!(store.events_after(3).unwrap().count(), 0);
    }

    #[test]
    fn past_versions_are_rebuilt_from_the_history_until_it_is_dropped() {
        let mut store = Store::open(None, 100).unwrap();
        let cm = |name: &str, v: u32| json!({"metadata": {"name": name}, "data": {"v": v}});
        store.put("configmaps", key("a"), cm("a", 1)).unwrap(); // 1
        store.put("configmaps", key("b"), cm("b", 1)).unwrap(); // 2
        store.put("secrets", key("s"), cm("s", 1)).unwrap(); // 3
        store.put("configmaps", key("a"), cm("a", 2)).unwrap(); // 4
        store.remove("configmaps", &key("b")).unwrap(); // 5
        store.put("configmaps", key("c"), cm("c", 1)).unwrap(); // 6
        let at = |store: &Store, rv| {
            store
                .objects_at("configmaps", rv)
                .unwrap()
                .into_iter()
                .map(|((_, n), o)| (n, o["data"]["v"].as_u64().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(&store, 6), [("a".into(), 2), ("c".into(), 1)]);
        assert_eq!(at(&store, 3), [("a".into(), 1), ("b".into(), 1)]);
        assert_eq!(at(&store, 1), [("a".into(), 1)]);
        assert_eq!(at(&store, 0), []);
        assert_eq!(
            store.objects_at("configmaps", 3).unwrap()[&key("a")]["metadata"]["resourceVersion"],
            "1",
            "objects carry the version they had"
        );

        store.set_history_window(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        store.put("configmaps", key("d"), cm("d", 1)).unwrap(); // 7
        assert_eq!(store.objects_at("configmaps", 5).unwrap_err().oldest, 6);
        assert_eq!(at(&store, 6), [("a".into(), 2), ("c".into(), 1)]);
        assert!(store.events_after(6).is_ok(), "the newest change is kept");
    }

    #[test]
    fn restart_keeps_objects_and_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(Some(dir.path()), 10).unwrap();
            store
                .put("configmaps", key("a"), json!({"metadata": {"name": "a"}}))
                .unwrap();
            store
                .put("configmaps", key("b"), json!({"metadata": {"name": "b"}}))
                .unwrap();
            store.remove("configmaps", &key("a")).unwrap();
        }
        let store = Store::open(Some(dir.path()), 10).unwrap();
        assert_eq!(store.resource_version(), 3);
        assert_eq!(store.list("configmaps", None, None).count(), 1);
        assert!(store.events_after(2).is_err());
        assert!(store.events_after(3).is_ok());
    }
}
