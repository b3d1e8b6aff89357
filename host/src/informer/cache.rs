//! The per-kind cache: objects by namespace and name, relist diffing and change fan-out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::api::{DynamicObject, TypeMeta};
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};

use super::selector::LabelSelector;
use crate::contract::Gvk;

/// What happened to an object.
#[derive(Debug, Clone)]
pub enum ChangeKind {
    /// The object appeared (first seen, live or in a relist).
    Added,
    /// The object's resourceVersion changed.
    Updated {
        /// The object as cached before the change.
        old: Arc<DynamicObject>,
    },
    /// The object is gone (deleted, or missing from a relist).
    Deleted,
}

/// One change to the cache of a kind.
#[derive(Debug, Clone)]
pub struct Change {
    /// The kind of the object.
    pub gvk: Gvk,
    /// What happened.
    pub kind: ChangeKind,
    /// The object: the new state, or for [`ChangeKind::Deleted`] the last known state.
    pub object: Arc<DynamicObject>,
}

/// Objects by namespace (`""` for cluster-scoped) and name.
type Objects = BTreeMap<String, BTreeMap<String, Arc<DynamicObject>>>;

#[derive(Debug, Default)]
struct Inner {
    objects: Objects,
    len: usize,
    /// Objects of a relist in progress (between `Init` and `InitDone`).
    relist: Option<Objects>,
    subscribers: Vec<mpsc::UnboundedSender<Change>>,
}

/// The shared state of one informer: written by its watcher task, read by every handle.
#[derive(Debug)]
pub(crate) struct Cache {
    gvk: Gvk,
    types: TypeMeta,
    keep_managed_fields: bool,
    inner: RwLock<Inner>,
    synced: watch::Sender<bool>,
    relists: AtomicU64,
}

fn key(object: &DynamicObject) -> Option<(String, String)> {
    let name = object.metadata.name.clone()?;
    Some((object.metadata.namespace.clone().unwrap_or_default(), name))
}

fn insert(
    objects: &mut Objects,
    ns: String,
    name: String,
    object: Arc<DynamicObject>,
) -> Option<Arc<DynamicObject>> {
    objects.entry(ns).or_default().insert(name, object)
}

fn remove(objects: &mut Objects, ns: &str, name: &str) -> Option<Arc<DynamicObject>> {
    let names = objects.get_mut(ns)?;
    let gone = names.remove(name);
    if names.is_empty() {
        objects.remove(ns);
    }
    gone
}

impl Cache {
    pub(crate) fn new(gvk: Gvk, keep_managed_fields: bool) -> Self {
        let types = TypeMeta {
            api_version: gvk.api_version(),
            kind: gvk.kind.clone(),
        };
        Self {
            gvk,
            types,
            keep_managed_fields,
            inner: RwLock::new(Inner::default()),
            synced: watch::Sender::new(false),
            relists: AtomicU64::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Normalizes a watched object: sets apiVersion and kind, drops managed fields unless kept.
    fn prepare(&self, mut object: DynamicObject) -> Option<(String, String, Arc<DynamicObject>)> {
        let Some((ns, name)) = key(&object) else {
            tracing::warn!(gvk = %self.gvk, "watched object without a name ignored");
            return None;
        };
        if !self.keep_managed_fields {
            object.metadata.managed_fields = None;
        }
        if object.types.is_none() {
            object.types = Some(self.types.clone());
        }
        Some((ns, name, Arc::new(object)))
    }

    /// Applies one watcher event, emitting the resulting changes.
    pub(crate) fn apply(&self, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.write().relist = Some(Objects::new()),
            watcher::Event::InitApply(object) => {
                let Some((ns, name, object)) = self.prepare(object) else {
                    return;
                };
                let mut inner = self.write();
                match inner.relist.as_mut() {
                    Some(buffer) => {
                        insert(buffer, ns, name, object);
                    }
                    None => self.upsert(&mut inner, ns, name, object),
                }
            }
            watcher::Event::InitDone => {
                let mut inner = self.write();
                let fresh = inner.relist.take().unwrap_or_default();
                self.replace(&mut inner, fresh);
                drop(inner);
                self.relists.fetch_add(1, Ordering::Relaxed);
                self.synced.send_replace(true);
            }
            watcher::Event::Apply(object) => {
                if let Some((ns, name, object)) = self.prepare(object) {
                    self.upsert(&mut self.write(), ns, name, object);
                }
            }
            watcher::Event::Delete(object) => {
                let Some((ns, name)) = key(&object) else {
                    return;
                };
                let mut inner = self.write();
                if let Some(old) = remove(&mut inner.objects, &ns, &name) {
                    inner.len -= 1;
                    // The last known state is the one in the DELETED event (it may carry a
                    // deletionTimestamp or final status the cache never saw).
                    let last = self.prepare(object).map_or(old, |(_, _, o)| o);
                    self.emit(&mut inner, ChangeKind::Deleted, &last);
                }
            }
        }
    }

    fn upsert(&self, inner: &mut Inner, ns: String, name: String, object: Arc<DynamicObject>) {
        match insert(&mut inner.objects, ns, name, object.clone()) {
            None => {
                inner.len += 1;
                self.emit(inner, ChangeKind::Added, &object);
            }
            Some(old) if old.metadata.resource_version != object.metadata.resource_version => {
                self.emit(inner, ChangeKind::Updated { old }, &object);
            }
            Some(_) => {}
        }
    }

    /// Replaces the contents with a relist's, emitting the difference.
    fn replace(&self, inner: &mut Inner, fresh: Objects) {
        let mut old = std::mem::take(&mut inner.objects);
        let mut changes = Vec::new();
        let mut len = 0;
        for (ns, names) in &fresh {
            for (name, object) in names {
                len += 1;
                match remove(&mut old, ns, name) {
                    None => changes.push((ChangeKind::Added, object.clone())),
                    Some(before)
                        if before.metadata.resource_version != object.metadata.resource_version =>
                    {
                        changes.push((ChangeKind::Updated { old: before }, object.clone()));
                    }
                    Some(_) => {}
                }
            }
        }
        for object in old.into_values().flat_map(BTreeMap::into_values) {
            changes.push((ChangeKind::Deleted, object));
        }
        inner.objects = fresh;
        inner.len = len;
        for (kind, object) in changes {
            self.emit(inner, kind, &object);
        }
    }

    fn emit(&self, inner: &mut Inner, kind: ChangeKind, object: &Arc<DynamicObject>) {
        if inner.subscribers.is_empty() {
            return;
        }
        let change = Change {
            gvk: self.gvk.clone(),
            kind,
            object: object.clone(),
        };
        inner
            .subscribers
            .retain(|tx| tx.send(change.clone()).is_ok());
    }

    /// A new subscriber: first an `Added` for every cached object, then every change.
    pub(crate) fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.write();
        for object in inner.objects.values().flat_map(BTreeMap::values) {
            let _ = tx.send(Change {
                gvk: self.gvk.clone(),
                kind: ChangeKind::Added,
                object: object.clone(),
            });
        }
        inner.subscribers.push(tx);
        rx
    }

    pub(crate) fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        self.read()
            .objects
            .get(namespace.unwrap_or_default())?
            .get(name)
            .cloned()
    }

    pub(crate) fn list(
        &self,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Arc<DynamicObject>> {
        let inner = self.read();
        let matching = |o: &&Arc<DynamicObject>| selector.matches(o.metadata.labels.as_ref());
        match namespace {
            Some(ns) => inner
                .objects
                .get(ns)
                .into_iter()
                .flat_map(BTreeMap::values)
                .filter(matching)
                .cloned()
                .collect(),
            None => inner
                .objects
                .values()
                .flat_map(BTreeMap::values)
                .filter(matching)
                .cloned()
                .collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len
    }

    pub(crate) fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub(crate) async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as `self`, so this only returns once synced.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    pub(crate) fn relists(&self) -> u64 {
        self.relists.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ns: &str, name: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "resourceVersion": rv,
                "managedFields": [{"manager": "x"}]},
            "data": {"k": rv},
        }))
        .unwrap()
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Change>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            let kind = match c.kind {
                ChangeKind::Added => "added".to_owned(),
                ChangeKind::Updated { old } => format!(
                    "updated from {}",
                    old.metadata.resource_version.as_deref().unwrap()
                ),
                ChangeKind::Deleted => "deleted".to_owned(),
            };
            out.push((c.object.metadata.name.clone().unwrap(), kind));
        }
        out
    }

    fn relist(cache: &Cache, objects: Vec<DynamicObject>) {
        cache.apply(watcher::Event::Init);
        for o in objects {
            cache.apply(watcher::Event::InitApply(o));
        }
        cache.apply(watcher::Event::InitDone);
    }

    #[test]
    fn relist_emits_the_difference() {
        let cache = Cache::new(Gvk::new("", "v1", "ConfigMap"), false);
        let mut rx = cache.subscribe();
        relist(
            &cache,
            vec![
                object("a", "x", "1"),
                object("a", "y", "2"),
                object("b", "z", "3"),
            ],
        );
        assert_eq!(drain(&mut rx).len(), 3);
        assert!(cache.is_synced());
        assert_eq!(cache.len(), 3);
        // A relist: x unchanged, y updated, z gone, w new.
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(object("a", "x", "1")));
        cache.apply(watcher::Event::InitApply(object("a", "y", "5")));
        // Reads during a relist still see the previous state.
        assert_eq!(cache.len(), 3);
        cache.apply(watcher::Event::InitApply(object("c", "w", "6")));
        cache.apply(watcher::Event::InitDone);
        let mut changes = drain(&mut rx);
        changes.sort();
        assert_eq!(
            changes,
            vec![
                ("w".into(), "added".into()),
                ("y".into(), "updated from 2".into()),
                ("z".into(), "deleted".into())
            ]
        );
        assert_eq!(cache.len(), 3);
        assert!(cache.get(Some("b"), "z").is_none());
        assert_eq!(cache.relists(), 2);
        let y = cache.get(Some("a"), "y").unwrap();
        assert!(y.metadata.managed_fields.is_none());
        assert_eq!(y.types.as_ref().unwrap().kind, "ConfigMap");
    }

    #[test]
    fn live_events_skip_unchanged_versions() {
        let cache = Cache::new(Gvk::new("", "v1", "ConfigMap"), true);
        relist(&cache, vec![]);
        let mut rx = cache.subscribe();
        cache.apply(watcher::Event::Apply(object("a", "x", "1")));
        cache.apply(watcher::Event::Apply(object("a", "x", "1")));
        cache.apply(watcher::Event::Apply(object("a", "x", "2")));
        cache.apply(watcher::Event::Delete(object("a", "x", "3")));
        cache.apply(watcher::Event::Delete(object("a", "x", "3")));
        assert_eq!(
            drain(&mut rx),
            vec![
                ("x".into(), "added".into()),
                ("x".into(), "updated from 1".into()),
                ("x".into(), "deleted".into())
            ]
        );
        assert_eq!(cache.len(), 0);
        assert!(
            cache.read().objects.is_empty(),
            "empty namespaces are dropped"
        );
    }

    #[test]
    fn late_subscribers_get_the_current_state_and_dead_ones_are_dropped() {
        let cache = Cache::new(Gvk::new("", "v1", "ConfigMap"), false);
        relist(&cache, vec![object("a", "x", "1")]);
        let dropped = cache.subscribe();
        drop(dropped);
        let mut rx = cache.subscribe();
        assert_eq!(drain(&mut rx), vec![("x".into(), "added".into())]);
        cache.apply(watcher::Event::Apply(object("a", "y", "2")));
        assert_eq!(drain(&mut rx), vec![("y".into(), "added".into())]);
        assert_eq!(cache.read().subscribers.len(), 1);
    }
}
