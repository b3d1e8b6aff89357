//! One Event, two APIs: kube-apiserver keeps a single store of Events, which `v1` serves as is
//! and `events.k8s.io/v1` through a conversion (`pkg/apis/events/v1/conversion.go`); so an Event
//! a controller records through `events.k8s.io` (kube-runtime's `Recorder` does) is listed by
//! `kubectl get events` and shown by `kubectl describe`, and the other way round. Events are
//! stored here in their `v1` form.

use serde_json::{Map, Value};

use crate::resource::ResourceInfo;

/// The storage key both APIs' Events share.
pub const STORAGE: &str = "events";

/// The `events.k8s.io/v1` field and the `v1` field it is stored as, for the fields the two forms
/// name differently (`Convert_v1_Event_To_core_Event`); the rest have one name in both.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

/// The field labels `events.k8s.io/v1` lists select by and the `v1` fields they are matched
/// against (`AddFieldLabelConversionsForEvent`).
const FIELD_LABELS: [(&str, &str); 12] = [
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("type", "type"),
];

/// Whether `info` is `events.k8s.io`'s Events, stored as `v1` Events.
#[must_use]
pub fn is_events_api(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.plural == STORAGE
}

/// The `v1` field an `events.k8s.io/v1` field selector label is matched against, if it is one.
#[must_use]
pub fn field_label(label: &str) -> Option<&'static str> {
    FIELD_LABELS
        .iter()
        .find(|(events, _)| *events == label)
        .map(|(_, core)| *core)
}

fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = map.remove(from) {
        map.insert(to.to_owned(), value);
    }
}

/// An `events.k8s.io/v1` Event in its stored `v1` form (an object already in that form is
/// returned as it is).
#[must_use]
pub fn to_core(mut object: Value) -> Value {
    if object["apiVersion"] == "v1" {
        return object;
    }
    if let Some(map) = object.as_object_mut() {
        for (events, core) in RENAMED {
            rename(map, events, core);
        }
        map.insert("apiVersion".into(), Value::from("v1"));
        map.insert("kind".into(), Value::from("Event"));
    }
    object
}

/// A stored `v1` Event as `events.k8s.io/v1` shows it.
#[must_use]
pub fn to_events_api(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        for (events, core) in RENAMED {
            rename(map, core, events);
        }
        map.insert("apiVersion".into(), Value::from("events.k8s.io/v1"));
        map.insert("kind".into(), Value::from("Event"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_two_forms_convert_both_ways() {
        let events = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled",
            "reportingController": "kubelet", "reportingInstance": "node-1",
            "deprecatedCount": 2, "reason": "Pulled", "type": "Normal",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        });
        let core = to_core(events.clone());
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "e"},
                "involvedObject": {"kind": "Pod", "name": "p"}, "message": "pulled",
                "reportingComponent": "kubelet", "reportingInstance": "node-1",
                "count": 2, "reason": "Pulled", "type": "Normal",
                "eventTime": "2026-01-01T00:00:00.000000Z",
            })
        );
        assert_eq!(to_core(core.clone()), core);
        assert_eq!(to_events_api(&core), events);
        assert_eq!(field_label("regarding.name"), Some("involvedObject.name"));
        assert_eq!(field_label("involvedObject.name"), None);
    }
}
