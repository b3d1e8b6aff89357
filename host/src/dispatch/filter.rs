//! A handler plugin's event filter on its route: the [`Selection`] its manifest declares, applied
//! to the changes the dispatcher offers it, as a label-selected Kubernetes watch delivers them.
//!
//! The dispatcher runs a [`RouteFilter`] with [`crate::event::filter::apply`] on each child event
//! before the plugin's lane sees it: a change outside the selection is dropped (and its child
//! acknowledged); an update that moves an object into the selection becomes `added`, one that
//! moves it out becomes `deleted` with the state it had while it matched (see [`Seen`]); with
//! `changes: spec`, an update of a selected object that changes only its status is dropped.
//! Resyncs ask the same filter which cached objects are selected ([`RouteFilter::selects`]) and
//! whether the plugin's state of an object needs the cached one ([`RouteFilter::passes_update`]).
//!
//! Objects travel as JSON text; the filter reads what it needs of them (the metadata for labels,
//! the whole object for the spec predicate) only when its selection asks for it, so a plugin that
//! filters nothing costs nothing: it gets no filter at all ([`RouteFilter::of`]).

use super::{Change, ObjectChange};
use crate::contract::ObjectRef;
use crate::event::{BoxError, Context, Event, Filter, Verdict};
use crate::informer::{Seen, Selection};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use std::sync::Arc;

/// Why a change could not be filtered.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The object's JSON text does not decode (the informer caches hold what the API server
    /// returned, so this is a host bug, never a plugin's doing).
    #[error("cannot read {object} to filter its change")]
    Json {
        /// The object.
        object: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The metadata of an object, read from its JSON text without the rest.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// The event filter of one handler plugin's route.
#[derive(Debug, Clone)]
pub(crate) struct RouteFilter {
    selection: Arc<Selection>,
}

impl RouteFilter {
    /// The filter of a plugin whose manifest declares `selection`; `None` when it selects every
    /// change, so that such a route filters nothing.
    pub(crate) fn of(selection: &Selection) -> Option<Self> {
        (!selection.is_everything()).then(|| Self {
            selection: Arc::new(selection.clone()),
        })
    }

    /// Whether the object `object` in the state `json` is selected (resyncs).
    pub(crate) fn selects(&self, object: &ObjectRef, json: &str) -> Result<bool, FilterError> {
        if !self
            .selection
            .selects_namespace(object.namespace.as_deref())
        {
            return Ok(false);
        }
        if !self.selection.reads_labels() {
            return Ok(true);
        }
        let head: Head = decode(object, json)?;
        Ok(self.selection.selects_labels(head.metadata.labels.as_ref()))
    }

    /// Whether a plugin that has the selected object `object` in the state `old` gets the update
    /// to `new`: always, but with `changes: spec` only when the predicate finds more than a
    /// status change.
    pub(crate) fn passes_update(
        &self,
        object: &ObjectRef,
        old: &str,
        new: &str,
    ) -> Result<bool, FilterError> {
        if !self.selection.spec_only() {
            return Ok(true);
        }
        let (old, new): (DynamicObject, DynamicObject) =
            (decode(object, old)?, decode(object, new)?);
        Ok(self.selection.passes_update(&old, &new))
    }

    /// What the plugin gets of `change`: the change itself, another change (an update that moves
    /// the object into or out of the selection), or nothing.
    fn screen(&self, change: &ObjectChange) -> Result<Screened, FilterError> {
        let object = &change.object;
        if !self
            .selection
            .selects_namespace(object.namespace.as_deref())
        {
            // An object never changes namespace: it is outside the selection before and after.
            return Ok(Screened::Drop);
        }
        match &change.change {
            Change::Added(new) => Ok(pass_if(self.selects(object, new)?)),
            Change::Deleted(last) => Ok(pass_if(self.selects(object, last)?)),
            Change::Updated { new, old } => self.screen_update(object, old, new),
        }
    }

    /// What the plugin gets of the update of `object` from `old` to `new` (in a selected
    /// namespace).
    fn screen_update(
        &self,
        object: &ObjectRef,
        old: &Arc<str>,
        new: &Arc<str>,
    ) -> Result<Screened, FilterError> {
        if !self.selection.reads_labels() {
            return Ok(pass_if(self.passes_update(object, old, new)?));
        }
        let (before, after): (Head, Head) = (decode(object, old)?, decode(object, new)?);
        let seen = Seen::of(
            self.selection
                .selects_labels(before.metadata.labels.as_ref()),
            self.selection
                .selects_labels(after.metadata.labels.as_ref()),
        );
        Ok(match seen {
            Seen::Nothing => Screened::Drop,
            Seen::Updated => pass_if(self.passes_update(object, old, new)?),
            Seen::Added => Screened::Replace(Change::Added(new.clone())),
            Seen::Deleted => Screened::Replace(Change::Deleted(with_resource_version(
                old,
                after.metadata.resource_version.as_deref(),
            ))),
        })
    }
}

impl Filter<ObjectChange, Context> for RouteFilter {
    fn filter(&self, event: &mut Event<ObjectChange, Context>) -> Result<Verdict, BoxError> {
        match self.screen(event.payload())? {
            Screened::Pass => Ok(Verdict::Pass),
            Screened::Drop => Ok(Verdict::Drop),
            Screened::Replace(change) => {
                let object = event.payload().object.clone();
                event.set_payload(ObjectChange { object, change })?;
                Ok(Verdict::Pass)
            }
        }
    }
}

/// What [`RouteFilter::screen`] decided.
enum Screened {
    /// The change as it is.
    Pass,
    /// Nothing.
    Drop,
    /// This change instead.
    Replace(Change),
}

fn pass_if(selected: bool) -> Screened {
    if selected {
        Screened::Pass
    } else {
        Screened::Drop
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    object: &ObjectRef,
    json: &str,
) -> Result<T, FilterError> {
    serde_json::from_str(json).map_err(|source| FilterError::Json {
        object: object.to_string(),
        source,
    })
}

/// `json` with `metadata.resourceVersion` set to `resource_version`: the state an object had
/// while it matched, as of the change that moved it out (as the watch cache sends it).
fn with_resource_version(json: &Arc<str>, resource_version: Option<&str>) -> Arc<str> {
    let Some(rv) = resource_version else {
        return json.clone();
    };
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.clone();
    };
    match value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        Some(meta) => {
            meta.insert("resourceVersion".into(), rv.into());
            Arc::from(value.to_string())
        }
        None => json.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ChangeFilter, EventFilter};
    use crate::event::filter::apply;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn filter(namespaces: &[&str], selector: Option<&str>, changes: ChangeFilter) -> RouteFilter {
        let selection = Selection::new(&EventFilter {
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            label_selector: selector.map(str::to_owned),
            changes,
        })
        .expect("valid");
        RouteFilter::of(&selection).expect("a filter")
    }

    /// A Deployment in `namespace` with `labels`, `generation` and `status.ready`, at `rv`.
    fn state(
        namespace: &str,
        labels: &[(&str, &str)],
        generation: i64,
        ready: i64,
        rv: &str,
    ) -> Arc<str> {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        Arc::from(
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "a", "namespace": namespace, "labels": labels,
                             "generation": generation, "resourceVersion": rv},
                "spec": {"replicas": 1}, "status": {"readyReplicas": ready}
            })
            .to_string(),
        )
    }

    fn change(change: Change) -> ObjectChange {
        let json = match &change {
            Change::Added(j) | Change::Deleted(j) | Change::Updated { new: j, .. } => j.clone(),
        };
        let object =
            ObjectRef::from_json(&serde_json::from_str(&json).expect("json")).expect("ref");
        ObjectChange { object, change }
    }

    /// Run `f` on `c` as the child of an acknowledged root: what passed, and whether the tree was
    /// handled before the plugin acknowledged what passed (so: whether `apply` acknowledged it).
    fn run(f: &RouteFilter, c: ObjectChange) -> (Option<Change>, bool) {
        let handled = Arc::new(AtomicUsize::new(0));
        let h = handled.clone();
        let mut root = Event::with_ack(
            c,
            Context::new(),
            move || {
                h.fetch_add(1, Ordering::SeqCst);
            },
            |_| {},
        );
        let child = root.with_context(Context::new()).expect("live");
        root.ack();
        let out = apply(f, child).expect("filtered");
        let handled_before_the_plugin = handled.load(Ordering::SeqCst) == 1;
        let passed = out.map(|mut e| {
            let c = e.payload().change.clone();
            e.ack();
            c
        });
        assert_eq!(
            handled.load(Ordering::SeqCst),
            1,
            "the tree ends either way"
        );
        (passed, handled_before_the_plugin)
    }

    fn describe(c: &Option<Change>) -> String {
        let rv = |j: &str| {
            let v: serde_json::Value = serde_json::from_str(j).expect("json");
            format!(
                "{}/{}",
                v["metadata"]["resourceVersion"].as_str().unwrap_or(""),
                v["status"]["readyReplicas"]
            )
        };
        match c {
            None => "nothing".into(),
            Some(Change::Added(n)) => format!("added {}", rv(n)),
            Some(Change::Updated { new, .. }) => format!("updated {}", rv(new)),
            Some(Change::Deleted(l)) => format!("deleted {}", rv(l)),
        }
    }

    #[test]
    fn only_selected_objects_pass_and_dropped_children_are_acknowledged() {
        let f = filter(&["prod"], Some("app=web"), ChangeFilter::All);
        let web = &[("app", "web")];
        for (c, expected) in [
            (Change::Added(state("prod", web, 1, 0, "1")), "added 1/0"),
            (Change::Added(state("dev", web, 1, 0, "1")), "nothing"),
            (
                Change::Added(state("prod", &[("app", "db")], 1, 0, "1")),
                "nothing",
            ),
            (
                Change::Deleted(state("prod", web, 1, 0, "1")),
                "deleted 1/0",
            ),
            (Change::Deleted(state("prod", &[], 1, 0, "1")), "nothing"),
        ] {
            let (out, handled) = run(&f, change(c));
            assert_eq!(describe(&out), expected);
            assert_eq!(
                handled,
                out.is_none(),
                "a dropped child is acknowledged by apply"
            );
        }
    }

    #[test]
    fn a_label_change_moves_an_object_in_and_out_as_the_watch_cache_does() {
        let f = filter(&[], Some("app=web"), ChangeFilter::All);
        let (inside, outside) = (&[("app", "web")], &[("app", "db")]);
        let into = Change::Updated {
            new: state("d", inside, 1, 1, "2"),
            old: state("d", outside, 1, 0, "1"),
        };
        assert_eq!(describe(&run(&f, change(into)).0), "added 2/1");
        // Out: deleted, with the state it had while it matched and the change's resourceVersion.
        let out = Change::Updated {
            new: state("d", outside, 1, 1, "3"),
            old: state("d", inside, 1, 0, "2"),
        };
        assert_eq!(describe(&run(&f, change(out)).0), "deleted 3/0");
        let within = Change::Updated {
            new: state("d", inside, 2, 0, "4"),
            old: state("d", inside, 1, 0, "3"),
        };
        assert_eq!(describe(&run(&f, change(within)).0), "updated 4/0");
        let neither = Change::Updated {
            new: state("d", outside, 2, 0, "4"),
            old: state("d", outside, 1, 0, "3"),
        };
        assert_eq!(describe(&run(&f, change(neither)).0), "nothing");
    }

    #[test]
    fn spec_only_drops_status_writes() {
        let status = Change::Updated {
            new: state("d", &[], 1, 1, "2"),
            old: state("d", &[], 1, 0, "1"),
        };
        let spec = Change::Updated {
            new: state("d", &[], 2, 0, "3"),
            old: state("d", &[], 1, 0, "1"),
        };
        let only_spec = filter(&[], None, ChangeFilter::Spec);
        assert_eq!(
            describe(&run(&only_spec, change(status.clone())).0),
            "nothing"
        );
        assert_eq!(
            describe(&run(&only_spec, change(spec.clone())).0),
            "updated 3/0"
        );
        let selected = filter(&[], Some("!legacy"), ChangeFilter::Spec);
        assert_eq!(describe(&run(&selected, change(status)).0), "nothing");
        assert_eq!(describe(&run(&selected, change(spec)).0), "updated 3/0");
        assert!(
            RouteFilter::of(&Selection::default()).is_none(),
            "a plugin that filters nothing gets no filter"
        );
    }

    #[test]
    fn undecodable_objects_fail_the_event() {
        let f = filter(&[], Some("app=web"), ChangeFilter::All);
        let object = ObjectRef::from_json(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "d"}
        }))
        .expect("ref");
        let event = Event::new(
            ObjectChange {
                object,
                change: Change::Added(Arc::from("{not json")),
            },
            Context::new(),
        );
        let e = apply(&f, event).expect_err("fails");
        assert!(e.to_string().contains("cannot read ConfigMap d/a"), "{e}");
    }
}
