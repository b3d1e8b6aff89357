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
    /// The write would take the stored objects past the quota; it was not applied. etcd's words
    /// for its `--quota-backend-bytes` alarm, which kube-apiserver passes on.
    #[error("etcdserver: mvcc: database space exceeded")]
    QuotaExceeded {
        /// The quota, in bytes of the objects' JSON.
        quota: u64,
        /// What the stored objects would have taken with the write.
        would_take: u64,
    },
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

/// How many bytes of JSON the stored objects may take together: what a write that would take
/// them further is refused at (deletions and writes that shrink an object always pass), as etcd's
/// `--quota-backend-bytes` refuses writes. Lower than etcd's 2 GiB because the embedded server
/// holds every object in memory as a parsed tree, about ten times its JSON.
pub const DEFAULT_QUOTA_BYTES: u64 = 256 * 1024 * 1024;

/// How many bytes of JSON the history's objects may take together; past it the oldest changes
/// are dropped early (watches from them get 410 and relist), as a count limit drops them. Without
/// it a client rewriting a large object would keep every version for the whole window.
pub const DEFAULT_HISTORY_BYTES: u64 = 32 * 1024 * 1024;

/// The length of `value` encoded as compact JSON, not counting the escapes strings may need: what
/// the quota and the history's bound count, without encoding the object.
#[must_use]
pub fn encoded_len(value: &Value) -> u64 {
    fn digits(mut n: u64) -> u64 {
        let mut d = 1;
        while n >= 10 {
            n /= 10;
            d += 1;
        }
        d
    }
    let len = |s: &str| s.len() as u64;
    match value {
        Value::Null => 4,
        Value::Bool(b) => 4 + u64::from(!b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => digits(u),
            (None, Some(i)) => 1 + digits(i.unsigned_abs()),
            // A float's shortest form is at most 24 characters; most are far shorter.
            (None, None) => 24,
        },
        Value::String(s) => len(s) + 2,
        Value::Array(items) => {
            2 + items.iter().map(encoded_len).sum::<u64>() + (items.len() as u64).saturating_sub(1)
        }
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| len(k) + 3 + encoded_len(v))
                .sum::<u64>()
                + (map.len() as u64).saturating_sub(1)
        }
    }
}

/// The key an object is stored under: its namespace (empty for a cluster-scoped one) and name.
fn key_of(object: &Value) -> ObjectKey {
    let meta = &object["metadata"];
    let text = |field: &str| meta[field].as_str().unwrap_or_default().to_string();
    (text("namespace"), text("name"))
}

/// One change, kept in the watch history.
#[derive(Debug, Clone)]
pub struct Event {
    /// Resource version of the change.
    pub rv: u64,
    /// When it happened.
    pub at: Instant,
    /// Storage key of the resource.
    pub resource: String,
    /// What happened.
    pub event_type: EventType,
    /// The object after the change (for deletions: the last state, with the deletion's version).
    pub object: Arc<Value>,
    /// The object before the change, if any.
    pub previous: Option<Arc<Value>>,
    /// [`encoded_len`] of `object`: what this change holds in the history.
    pub size: u64,
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
    /// [`encoded_len`] of the history's objects together.
    history_bytes: u64,
    history_bytes_limit: u64,
    /// [`encoded_len`] of the stored objects together.
    stored_bytes: u64,
    quota: u64,
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
            .collect::<HashMap<String, BTreeMap<ObjectKey, Arc<Value>>>>();
        let stored_bytes = objects
            .values()
            .flat_map(BTreeMap::values)
            .map(|o| encoded_len(o))
            .sum();
        Ok(Self {
            rv: loaded.rv,
            objects,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            history_window: DEFAULT_HISTORY_WINDOW,
            history_bytes: 0,
            history_bytes_limit: DEFAULT_HISTORY_BYTES,
            stored_bytes,
            quota: DEFAULT_QUOTA_BYTES,
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

    /// Sets how many bytes of JSON the history's objects may take ([`DEFAULT_HISTORY_BYTES`]).
    pub fn set_history_bytes(&mut self, bytes: u64) {
        self.history_bytes_limit = bytes;
    }

    /// Sets how many bytes of JSON the stored objects may take ([`DEFAULT_QUOTA_BYTES`]).
    pub fn set_quota(&mut self, bytes: u64) {
        self.quota = bytes;
    }

    /// [`encoded_len`] of the stored objects together, and of the history's.
    #[must_use]
    pub fn bytes(&self) -> (u64, u64) {
        (self.stored_bytes, self.history_bytes)
    }

    /// Keeps the newest `history_limit` events of the last `history_window` within
    /// `history_bytes_limit` (with `event`), then adds `event`.
    fn record(&mut self, event: Event) {
        while let Some(old) = self.history.front() {
            let full = self.history.len() >= self.history_limit
                || self.history_bytes + event.size > self.history_bytes_limit;
            if !full && event.at.duration_since(old.at) <= self.history_window {
                break;
            }
            self.compacted_rv = old.rv;
            self.history_bytes -= old.size;
            self.history.pop_front();
        }
        self.history_bytes += event.size;
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
            // The key is the object's own (every version of it has the same namespace and
            // name), read here rather than kept with each event of the history.
            let key = key_of(&event.object);
            match (&event.event_type, &event.previous) {
                (EventType::Added, _) => {
                    objects.remove(&key);
                }
                (EventType::Modified | EventType::Deleted, Some(previous)) => {
                    objects.insert(key, previous.clone());
                }
                (EventType::Modified | EventType::Deleted, None) => {}
            }
        }
        Ok(objects)
    }

    /// Creates or replaces an object, setting its resource version; durable before it returns.
    ///
    /// # Errors
    /// [`StoreError::QuotaExceeded`] when the object grows and the stored objects would take
    /// more than the quota; [`StoreError::Persist`] when persisting fails. Nothing changes then.
    pub fn put(
        &mut self,
        resource: &str,
        key: ObjectKey,
        mut object: Value,
    ) -> Result<Arc<Value>, StoreError> {
        debug_assert_eq!(
            key_of(&object),
            key,
            "an object is stored under its own key"
        );
        let rv = self.rv + 1;
        set_rv(&mut object, rv);
        let size = encoded_len(&object);
        let replaced = self.get(resource, &key).map_or(0, |o| encoded_len(o));
        let would_take = self.stored_bytes.saturating_sub(replaced) + size;
        if size > replaced && would_take > self.quota {
            return Err(StoreError::QuotaExceeded {
                quota: self.quota,
                would_take,
            });
        }
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
        self.stored_bytes = would_take;
        let object = Arc::new(object);
        let previous = self
            .objects
            .entry(resource.to_string())
            .or_default()
            .insert(key, object.clone());
        let event_type = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv,
            at: Instant::now(),
            resource: resource.to_string(),
            event_type,
            object: object.clone(),
            previous,
            size,
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
        let size = encoded_len(&last);
        self.stored_bytes = self.stored_bytes.saturating_sub(encoded_len(&previous));
        let last = Arc::new(last);
        self.record(Event {
            rv,
            at: Instant::now(),
            resource: resource.to_string(),
            event_type: EventType::Deleted,
            object: last.clone(),
            previous: Some(previous),
            size,
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

    /// The key of a cluster-scoped object: these objects name no namespace.
    fn key(name: &str) -> ObjectKey {
        (String::new(), name.into())
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
    fn encoded_len_is_the_compact_json_length() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(9),
            json!(10),
            json!(-1),
            json!(-12345),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(""),
            json!("text"),
            json!([]),
            json!([1, "a", [null], {}]),
            json!({"metadata": {"name": "a", "labels": {"k": "v"}}, "data": {"x": [1, 2, 3]}}),
        ] {
            assert_eq!(encoded_len(&v), v.to_string().len() as u64, "{v}");
        }
        // A float is counted at its longest.
        for f in [0.5, -1.25e-300, 1e300, 0.1 + 0.2] {
            assert!(encoded_len(&json!(f)) >= json!(f).to_string().len() as u64);
        }
    }

    fn big(name: &str, bytes: usize) -> Value {
        json!({"metadata": {"name": name}, "data": {"v": "x".repeat(bytes)}})
    }

    #[test]
    fn writes_past_the_quota_are_refused_and_change_nothing_until_deletions_make_room() {
        let mut store = Store::open(None, 100).unwrap();
        store.set_quota(10_000);
        store.put("configmaps", key("a"), big("a", 4_000)).unwrap();
        store.put("configmaps", key("b"), big("b", 4_000)).unwrap();
        let (stored, _) = store.bytes();
        let rv = store.resource_version();
        let refused = store
            .put("configmaps", key("c"), big("c", 4_000))
            .unwrap_err();
        let StoreError::QuotaExceeded { quota, would_take } = refused else {
            panic!("{refused:?}")
        };
        assert_eq!((quota, would_take > 10_000), (10_000, true));
        assert_eq!(
            refused.to_string(),
            "etcdserver: mvcc: database space exceeded"
        );
        // Growing an object is refused too; nothing changed, not even the version.
        assert!(store.put("configmaps", key("a"), big("a", 6_000)).is_err());
        assert_eq!(store.resource_version(), rv);
        assert_eq!(store.bytes().0, stored);
        assert!(store.get("configmaps", &key("c")).is_none());
        assert_eq!(store.events_after(rv).unwrap().count(), 0);

        // Shrinking passes, and so does a deletion, after which the create fits.
        store.put("configmaps", key("a"), big("a", 1_000)).unwrap();
        store.remove("configmaps", &key("b")).unwrap();
        store.put("configmaps", key("c"), big("c", 4_000)).unwrap();
        let counted: u64 = store
            .list("configmaps", None, None)
            .map(|(_, o)| encoded_len(o))
            .sum();
        assert_eq!(store.bytes().0, counted, "the count follows every write");
    }

    #[test]
    fn the_history_keeps_within_its_bytes_and_drops_the_oldest_first() {
        let mut store = Store::open(None, 1_000).unwrap();
        store.set_history_bytes(20_000);
        let first = store.put("configmaps", key("a"), big("a", 3_000)).unwrap();
        let first_rv = store.resource_version();
        assert_eq!(first["metadata"]["resourceVersion"], "1");
        for _ in 0..20 {
            store.put("configmaps", key("a"), big("a", 3_000)).unwrap();
            assert!(store.bytes().1 <= 20_000);
        }
        let rv = store.resource_version();
        assert!(store.events_after(first_rv).is_err(), "the oldest went");
        let kept = store.events_after(rv - 5).unwrap().count();
        assert_eq!(kept, 5, "the newest stay");
        // One object larger than the bound is still kept, alone.
        store.put("configmaps", key("a"), big("a", 30_000)).unwrap();
        assert_eq!(store.events_after(rv).unwrap().count(), 1);
        assert!(store.events_after(rv - 1).is_err());
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
