//! The objects and updates a plugin asked for in its manifest's event filter: namespaces, a label
//! selector and which updates, checked and compiled once at load, and what a watcher of that
//! selection sees of each change.
//!
//! A selection behaves as a Kubernetes watch with a label selector: an object that starts
//! matching is seen as added, one that stops matching as deleted (with the state it had while it
//! matched), see [`Seen`]. The plugin's manifest is hostile input: the namespace list and the
//! selector are bounded ([`MAX_NAMESPACES`], [`MAX_SELECTOR_BYTES`]) and a selector that does not
//! parse refuses the plugin.

use std::collections::BTreeMap;

use capstan_apiserver::validation::{self, InvalidIdentifier};
use kube::api::DynamicObject;

use super::{InformerError, LabelSelector, predicate};
use crate::contract::{ChangeFilter, EventFilter};

/// The most namespaces an event filter may name.
pub const MAX_NAMESPACES: usize = 64;

/// The longest label selector an event filter may hold, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 4096;

/// Why an event filter is refused.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    /// The filter names more namespaces than [`MAX_NAMESPACES`].
    #[error("{count} namespaces, more than the {MAX_NAMESPACES} a plugin may name")]
    TooManyNamespaces {
        /// How many it names.
        count: usize,
    },
    /// A namespace is not a valid namespace name.
    #[error("namespace {namespace:?} is not a namespace name")]
    Namespace {
        /// The name, as given.
        namespace: String,
        /// What is wrong with it.
        #[source]
        source: InvalidIdentifier,
    },
    /// The selector is longer than [`MAX_SELECTOR_BYTES`].
    #[error("the label selector is {len} bytes long, more than {MAX_SELECTOR_BYTES}")]
    SelectorTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The selector does not parse (the cause names it).
    #[error("the label selector does not parse")]
    Selector(#[source] InformerError),
}

/// What a watcher of a selection sees of one change of an object, from whether the object was
/// selected before the change and is after it. An object that is created was not selected
/// before; one that is deleted is not selected after.
///
/// This is kube-apiserver's watch cache rule (`convertToWatchEvent` in
/// `staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go`, kubernetes/kubernetes at
/// 04d6b4f11d533e92dc999e981f73f7b44dacd591): an object that passes the watch's filter now and
/// did not before is sent as ADDED with its new state; one that passed before and passes no
/// more is sent as DELETED "with the previous object content, but with the event's resource
/// version"; one that passes on both sides is MODIFIED; one that passes on neither is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not selected before, nor after: the watcher sees nothing.
    Nothing,
    /// Selected now and not before (created, or it started matching): added, with its new state.
    Added,
    /// Selected before and after: updated.
    Updated,
    /// Selected before and not now (deleted, or it stopped matching): deleted, with the state it
    /// had before the change (and the change's resourceVersion).
    Deleted,
}

impl Seen {
    /// What a watcher sees of a change of an object that was selected (`before`) and is selected
    /// (`after`).
    #[must_use]
    pub fn of(before: bool, after: bool) -> Self {
        match (before, after) {
            (false, false) => Self::Nothing,
            (false, true) => Self::Added,
            (true, true) => Self::Updated,
            (true, false) => Self::Deleted,
        }
    }
}

/// A plugin's event filter, checked and compiled: which objects it sees and which of their
/// updates. The default selects every change of every object.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Sorted, without duplicates; empty for every namespace.
    namespaces: Vec<String>,
    selector: LabelSelector,
    spec_only: bool,
}

impl Selection {
    /// Check and compile `filter`.
    ///
    /// # Errors
    /// [`SelectionError`] when the filter names more than [`MAX_NAMESPACES`] namespaces or one
    /// that is not a namespace name, or its selector is longer than [`MAX_SELECTOR_BYTES`] or
    /// does not parse.
    pub fn new(filter: &EventFilter) -> Result<Self, SelectionError> {
        if filter.namespaces.len() > MAX_NAMESPACES {
            return Err(SelectionError::TooManyNamespaces {
                count: filter.namespaces.len(),
            });
        }
        for namespace in &filter.namespaces {
            validation::dns1123_label(namespace).map_err(|source| SelectionError::Namespace {
                namespace: namespace.clone(),
                source,
            })?;
        }
        let mut namespaces = filter.namespaces.clone();
        namespaces.sort();
        namespaces.dedup();
        let selector = match filter.label_selector.as_deref() {
            None => LabelSelector::default(),
            Some(text) if text.len() > MAX_SELECTOR_BYTES => {
                return Err(SelectionError::SelectorTooLong { len: text.len() });
            }
            Some(text) => LabelSelector::parse(text).map_err(SelectionError::Selector)?,
        };
        Ok(Self {
            namespaces,
            selector,
            spec_only: filter.changes == ChangeFilter::Spec,
        })
    }

    /// Whether every change of every object passes (the default filter).
    #[must_use]
    pub fn is_everything(&self) -> bool {
        self.namespaces.is_empty() && self.selector.is_empty() && !self.spec_only
    }

    /// Whether objects in `namespace` (`None`: cluster-scoped) may be selected: every namespace
    /// when the filter names none, else only those it names (never a cluster-scoped object).
    #[must_use]
    pub fn selects_namespace(&self, namespace: Option<&str>) -> bool {
        self.namespaces.is_empty()
            || namespace.is_some_and(|ns| {
                self.namespaces
                    .binary_search_by(|n| n.as_str().cmp(ns))
                    .is_ok()
            })
    }

    /// Whether the filter has a label selector, so that selecting an object needs its labels.
    #[must_use]
    pub fn reads_labels(&self) -> bool {
        !self.selector.is_empty()
    }

    /// Whether objects with `labels` (`None`: no labels) match the label selector.
    #[must_use]
    pub fn selects_labels(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.selector.matches(labels)
    }

    /// Whether `obj` is selected: its namespace and its labels.
    #[must_use]
    pub fn selects(&self, obj: &DynamicObject) -> bool {
        self.selects_namespace(obj.metadata.namespace.as_deref())
            && self.selects_labels(obj.metadata.labels.as_ref())
    }

    /// Whether only updates that change more than the status pass (`changes: spec`).
    #[must_use]
    pub fn spec_only(&self) -> bool {
        self.spec_only
    }

    /// Whether the update from `old` to `new` of a selected object passes: every update, or with
    /// `changes: spec` those [`predicate::changed`] finds.
    #[must_use]
    pub fn passes_update(&self, old: &DynamicObject, new: &DynamicObject) -> bool {
        !self.spec_only || predicate::changed(old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(namespaces: &[&str], selector: Option<&str>, changes: ChangeFilter) -> EventFilter {
        EventFilter {
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            label_selector: selector.map(str::to_owned),
            changes,
        }
    }

    fn obj(namespace: Option<&str>, labels: &[(&str, &str)], generation: i64) -> DynamicObject {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": namespace, "labels": labels, "generation": generation},
            "spec": {"replicas": 1}
        }))
        .expect("an object")
    }

    #[test]
    fn the_default_selects_everything() {
        let s = Selection::new(&EventFilter::default()).expect("valid");
        assert!(s.is_everything());
        assert!(s.selects(&obj(None, &[], 1)));
        assert!(s.selects(&obj(Some("x"), &[("a", "b")], 1)));
        assert!(s.passes_update(&obj(Some("x"), &[], 1), &obj(Some("x"), &[], 1)));
        let blank = Selection::new(&filter(&[], Some("  "), ChangeFilter::All)).expect("valid");
        assert!(blank.is_everything(), "a blank selector selects everything");
    }

    #[test]
    fn namespaces_and_labels_select() {
        let s = Selection::new(&filter(
            &["prod", "staging", "prod"],
            Some("app=web,tier!=db"),
            ChangeFilter::All,
        ))
        .expect("valid");
        assert!(!s.is_everything());
        assert!(s.selects(&obj(Some("prod"), &[("app", "web")], 1)));
        assert!(s.selects(&obj(
            Some("staging"),
            &[("app", "web"), ("tier", "front")],
            1
        )));
        assert!(!s.selects(&obj(Some("prod"), &[("app", "web"), ("tier", "db")], 1)));
        assert!(!s.selects(&obj(Some("dev"), &[("app", "web")], 1)));
        assert!(
            !s.selects(&obj(None, &[("app", "web")], 1)),
            "cluster-scoped"
        );
        let cluster =
            Selection::new(&filter(&[], Some("app=web"), ChangeFilter::All)).expect("valid");
        assert!(cluster.selects(&obj(None, &[("app", "web")], 1)));
        assert!(cluster.selects_namespace(None));
    }

    #[test]
    fn spec_only_passes_updates_the_predicate_finds() {
        let s = Selection::new(&filter(&[], None, ChangeFilter::Spec)).expect("valid");
        assert!(!s.is_everything());
        let (old, status) = (obj(Some("d"), &[], 1), obj(Some("d"), &[], 1));
        assert!(!s.passes_update(&old, &status), "same generation");
        assert!(
            s.passes_update(&old, &obj(Some("d"), &[], 2)),
            "new generation"
        );
        assert!(
            s.passes_update(&old, &obj(Some("d"), &[("a", "b")], 1)),
            "labels"
        );
    }

    #[test]
    fn what_a_watcher_sees() {
        assert_eq!(Seen::of(false, false), Seen::Nothing);
        assert_eq!(Seen::of(false, true), Seen::Added);
        assert_eq!(Seen::of(true, true), Seen::Updated);
        assert_eq!(Seen::of(true, false), Seen::Deleted);
    }

    #[test]
    fn hostile_filters_are_refused() {
        let many: Vec<String> = (0..=MAX_NAMESPACES).map(|i| format!("ns-{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = Selection::new(&filter(&many, None, ChangeFilter::All)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "65 namespaces, more than the 64 a plugin may name"
        );
        assert!(Selection::new(&filter(&many[..MAX_NAMESPACES], None, ChangeFilter::All)).is_ok());

        let e = Selection::new(&filter(&["Prod/../x"], None, ChangeFilter::All)).unwrap_err();
        assert!(matches!(e, SelectionError::Namespace { .. }), "{e}");

        let long = format!("a in ({})", vec!["v"; 2100].join(","));
        let e = Selection::new(&filter(&[], Some(&long), ChangeFilter::All)).unwrap_err();
        assert!(
            matches!(e, SelectionError::SelectorTooLong { len } if len == long.len()),
            "{e}"
        );

        let e = Selection::new(&filter(&[], Some("app in (web"), ChangeFilter::All)).unwrap_err();
        assert_eq!(e.to_string(), "the label selector does not parse");
        let cause = std::error::Error::source(&e).expect("a cause").to_string();
        assert!(
            cause.contains("\"app in (web\""),
            "the cause names the selector: {cause}"
        );
    }
}
