//! The namespace lifecycle, as kube-apiserver's namespace strategy, the `NamespaceLifecycle`
//! admission plugin and the namespace controller share it: a deleted namespace turns
//! `Terminating` (its `kubernetes` finalizer keeps it), its contents are deleted as any object is
//! (an object with finalizers stays until they are removed), new content is refused, and once
//! nothing is left the finalizer goes and the namespace with it. The controller's work runs
//! synchronously after each deletion here instead of in a loop with a lag.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Inner, now};
use crate::error::ApiError;
use crate::resource::NAMESPACE_RESOURCE;
use crate::store::ObjectKey;

/// The namespaces the `NamespaceLifecycle` admission plugin never lets go (kube-apiserver's
/// `immortalNamespaces`): deleting one is 403.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// The finalizer in `spec.finalizers` that holds a namespace until its contents are gone.
pub const FINALIZER: &str = "kubernetes";

/// What the namespace strategy sets on every write: `status.phase` (`Terminating` once marked for
/// deletion, else `Active`), and on a live namespace the `kubernetes` finalizer.
pub fn prepare(object: &mut Value) {
    let deleting = crate::gc::is_deleting(object);
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let status = map.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    status["phase"] = json!(if deleting { "Terminating" } else { "Active" });
    if !deleting {
        let spec = map.entry("spec").or_insert_with(|| json!({}));
        if !spec.is_object() {
            *spec = json!({});
        }
        let finalizers = spec
            .as_object_mut()
            .map(|s| s.entry("finalizers").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = finalizers
            && !list.iter().any(|f| f == FINALIZER)
        {
            list.push(json!(FINALIZER));
        }
    }
}

/// Whether a namespace still has finalizers in its spec (so a deletion marks it instead of
/// removing it).
#[must_use]
pub fn has_spec_finalizers(object: &Value) -> bool {
    object["spec"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// Marks a namespace `Terminating` (deletion timestamp, phase).
#[must_use]
pub fn mark(object: &Value) -> Value {
    let mut marked = crate::gc::marked(object);
    prepare(&mut marked);
    marked
}

/// The namespace controller's pass over every terminating namespace: deletes the contents not yet
/// being deleted, records what remains in the namespace's conditions, and finalizes and removes
/// the namespaces left empty. Returns whether anything was removed or marked.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub fn terminate(inner: &mut Inner) -> Result<bool, ApiError> {
    let terminating: Vec<Arc<Value>> = inner
        .store
        .list(NAMESPACE_RESOURCE, None, None)
        .map(|(_, ns)| ns.clone())
        .filter(|ns| crate::gc::is_deleting(ns))
        .collect();
    if terminating.is_empty() {
        return Ok(false);
    }
    let resources: Vec<String> = inner
        .store
        .resources()
        .filter(|gr| inner.info(gr).is_some_and(|i| i.namespaced))
        .cloned()
        .collect();
    let mut changed = false;
    for namespace in terminating {
        let name = namespace["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Delete the contents (Background, as the controller does).
        for gr in &resources {
            let live: Vec<(ObjectKey, Arc<Value>)> = inner
                .store
                .list(gr, Some(&name), None)
                .filter(|(_, o)| !crate::gc::is_deleting(o))
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect();
            for (key, object) in live {
                changed = true;
                crate::gc::delete_one(inner, &(gr.clone(), key), &object)?;
            }
        }
        // What remains, by resource and by finalizer.
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
        for gr in &resources {
            for (_, object) in inner.store.list(gr, Some(&name), None) {
                *remaining.entry(gr.clone()).or_default() += 1;
                for f in crate::gc::finalizers(object) {
                    *finalizers.entry(f).or_default() += 1;
                }
            }
        }
        let key = (String::new(), name.clone());
        if remaining.is_empty() {
            changed = true;
            finalize(inner, &key, &namespace)?;
        } else {
            let mut updated = (*namespace).clone();
            updated["status"]["conditions"] = conditions(&namespace, &remaining, &finalizers);
            if updated != *namespace {
                crate::gc::put_raw(inner, &(NAMESPACE_RESOURCE.to_owned(), key), updated)?;
            }
        }
    }
    Ok(changed)
}

/// Removes the `kubernetes` finalizer of an emptied namespace (its `/finalize`), then the
/// namespace itself unless other finalizers (in its spec or its metadata) hold it.
fn finalize(inner: &mut Inner, key: &ObjectKey, namespace: &Value) -> Result<(), ApiError> {
    let mut updated = namespace.clone();
    if let Some(list) = updated["spec"]["finalizers"].as_array_mut() {
        list.retain(|f| f != FINALIZER);
    }
    if has_spec_finalizers(&updated) || !crate::gc::finalizers(namespace).is_empty() {
        if updated != *namespace {
            crate::gc::put_raw(
                inner,
                &(NAMESPACE_RESOURCE.to_owned(), key.clone()),
                updated,
            )?;
        }
        return Ok(());
    }
    inner.remove_now(NAMESPACE_RESOURCE, key)?;
    Ok(())
}

/// The namespace controller's conditions (`namespacedResourcesDeleter`'s types, reasons and
/// messages), keeping a condition's transition time while its status stays.
fn conditions(
    namespace: &Value,
    remaining: &BTreeMap<String, usize>,
    finalizers: &BTreeMap<String, usize>,
) -> Value {
    let resources: Vec<String> = remaining
        .iter()
        .map(|(gr, n)| format!("{gr} has {n} resource instances"))
        .collect();
    let finalizer_text: Vec<String> = finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    let wanted = [
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".to_owned(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".to_owned(),
        ),
        (
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_owned(),
        ),
        (
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", resources.join(", ")),
        ),
        if finalizers.is_empty() {
            (
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".to_owned(),
            )
        } else {
            (
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    finalizer_text.join(", ")
                ),
            )
        },
    ];
    let old = namespace["status"]["conditions"].as_array();
    let time = now();
    Value::Array(
        wanted
            .into_iter()
            .map(|(kind, status, reason, message)| {
                let since = old
                    .and_then(|c| {
                        c.iter()
                            .find(|c| c["type"] == kind && c["status"] == status)
                    })
                    .map_or_else(|| json!(time), |c| c["lastTransitionTime"].clone());
                json!({
                    "type": kind,
                    "status": status,
                    "lastTransitionTime": since,
                    "reason": reason,
                    "message": message,
                })
            })
            .collect(),
    )
}
