//! How `capstan render` prints a render: the objects the host would apply as a multi-document
//! YAML stream (ready for `kubectl apply --dry-run=client -f -`), the status report (status, its
//! patch, status applies, deletes, prunes, refusals, notes) as a YAML document or as comments
//! after the objects, and `--diff`: a unified diff per object between its observed state and the
//! state the render leads to.

use super::merge::{self, key};
use super::{Handled, Observed, Reconciled};
use capstan_apiserver::apply::FieldScope;
use serde_json::{Map, Value, json};

/// An object cannot be written as YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {object} as YAML")]
pub struct OutputError {
    /// The object.
    object: String,
    /// Cause.
    #[source]
    source: serde_saphyr::SerializeError,
}

/// What a render prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Only the objects applied: for `kubectl apply -f -`.
    Plan,
    /// Only the status report, as one YAML document.
    Status,
    /// The objects, then the status report as YAML comments (still fit for `kubectl apply`).
    All,
}

fn yaml(value: &Value, object: &str) -> Result<String, OutputError> {
    let mut text = serde_saphyr::to_string(value).map_err(|source| OutputError {
        object: object.to_owned(),
        source,
    })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn describe(obj: &Value) -> String {
    key(obj).map_or_else(|| "an object".into(), |r| r.to_string())
}

/// The status report of a render, as one document.
#[must_use]
pub fn report(r: &Reconciled) -> Value {
    let mut doc = Map::new();
    doc.insert("plugin".into(), json!(r.plugin));
    doc.insert(
        "object".into(),
        json!({
            "apiVersion": r.object.gvk.api_version(),
            "kind": r.object.gvk.kind,
            "namespace": r.object.namespace,
            "name": r.object.name,
            "uid": r.object.uid,
        }),
    );
    doc.insert("ready".into(), json!(r.ready));
    doc.insert("status".into(), Value::Object(r.status.clone()));
    // The merge patch when it is not simply the whole status (a first write).
    doc.insert("writesStatus".into(), json!(r.status_patch.is_some()));
    if let Some(patch) = r
        .status_patch
        .as_ref()
        .filter(|p| p.as_object() != Some(&r.status))
    {
        doc.insert("statusPatch".into(), patch.clone());
    }
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    if !r.status_applies.is_empty() {
        doc.insert(
            "statusApplies".into(),
            Value::Array(r.status_applies.iter().map(|a| a.object.clone()).collect()),
        );
    }
    for (name, list) in [("deletes", &r.deletes), ("prunes", &r.prunes)] {
        if !list.is_empty() {
            doc.insert(
                name.into(),
                strings(list.iter().map(ToString::to_string).collect()),
            );
        }
    }
    if !r.refusals.is_empty() {
        doc.insert(
            "refused".into(),
            strings(r.refusals.iter().map(ToString::to_string).collect()),
        );
    }
    if let Some(after) = r.requeue_after {
        doc.insert("requeueAfterSeconds".into(), json!(after.as_secs_f64()));
    }
    if !r.notes.is_empty() {
        doc.insert("notes".into(), strings(r.notes.clone()));
    }
    Value::Object(doc)
}

/// A render as text: see [`Section`].
///
/// # Errors
/// [`OutputError`] when an object cannot be written as YAML.
pub fn to_yaml(r: &Reconciled, section: Section) -> Result<String, OutputError> {
    let mut out = String::new();
    if section != Section::Status {
        for (i, a) in r.applies.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&format!(
                "# applied by {} (server-side apply, field manager capstan-{}{})\n",
                r.plugin,
                r.plugin,
                if a.force { ", forced" } else { "" }
            ));
            out.push_str(&yaml(&a.object, &describe(&a.object))?);
        }
    }
    let report = yaml(&report(r), &r.object.to_string())?;
    match section {
        Section::Plan => {}
        Section::Status => out.push_str(&report),
        Section::All => {
            out.push_str("# --- capstan render: status report ---\n");
            for line in report.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// What a handler did, as one YAML document.
///
/// # Errors
/// [`OutputError`] when it cannot be written as YAML.
pub fn handled_yaml(h: &Handled) -> Result<String, OutputError> {
    let statuses: Vec<Value> = h
        .statuses
        .iter()
        .map(|(s, d)| {
            json!({
                "delivery": format!("{d:?}"),
                "status": serde_json::to_value(s).unwrap_or(Value::Null),
            })
        })
        .collect();
    let doc = json!({
        "plugin": h.plugin,
        "object": h.object.to_string(),
        "event": h.event,
        "returned": serde_json::to_value(h.status).unwrap_or(Value::Null),
        "statuses": statuses,
        "leftOpen": h.left_open,
    });
    yaml(&doc, &h.object.to_string())
}

/// Without the bookkeeping that would drown a diff (managed fields).
fn tidy(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    v
}

fn one_diff(out: &mut String, name: &str, before: &str, after: &str) {
    if before == after {
        return;
    }
    let diff = similar::TextDiff::from_lines(before, after);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("a/{name} (observed)"),
            &format!("b/{name} (rendered)"),
        )
        .to_string();
    out.push_str(&text);
}

/// A unified diff per object between its state in `observed` and the state the render leads to
/// (its applies merged as server-side apply would, deletes and prunes gone, the object's status
/// patched), and whether anything differs.
///
/// # Errors
/// [`OutputError`] when an object cannot be written as YAML.
pub fn diff(r: &Reconciled, observed: &Observed) -> Result<(String, bool), OutputError> {
    let manager = format!("capstan-{}", r.plugin);
    let mut out = String::new();
    let text = |v: Option<&Value>, name: &str| -> Result<String, OutputError> {
        v.map_or_else(|| Ok(String::new()), |v| yaml(&tidy(v), name))
    };
    let mut targets: Vec<(String, Option<Value>, Option<Value>)> = Vec::new();
    for (a, scope) in r
        .applies
        .iter()
        .map(|a| (a, FieldScope::NoStatus))
        .chain(r.status_applies.iter().map(|a| (a, FieldScope::StatusOnly)))
    {
        let Some(k) = key(&a.object) else { continue };
        let live = observed.get(&k).cloned();
        let merged = match merge::apply(live.as_ref(), &a.object, &manager, scope, a.force) {
            Ok(v) => v,
            Err(e) => {
                out.push_str(&format!("# {k}: {e} (the apply would be refused)\n"));
                continue;
            }
        };
        targets.push((k.to_string(), live, Some(merged)));
    }
    for gone in r.deletes.iter().chain(&r.prunes) {
        let mut k = gone.clone();
        k.uid = None;
        targets.push((k.to_string(), observed.get(&k).cloned(), None));
    }
    let mut me = r.object.clone();
    me.uid = None;
    if let (Some(patch), Some(live)) = (&r.status_patch, observed.get(&me)) {
        let mut after = live.clone();
        after["status"] = crate::reconcile::merged(&live["status"], patch);
        targets.push((me.to_string(), Some(live.clone()), Some(after)));
    }
    for (name, before, after) in targets {
        let (before, after) = (text(before.as_ref(), &name)?, text(after.as_ref(), &name)?);
        one_diff(&mut out, &name.replace(' ', "/"), &before, &after);
    }
    let differs = !out.is_empty();
    Ok((out, differs))
}
