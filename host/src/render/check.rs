//! Plan contract checks (`capstan render --check`): over one object and observed state, a plugin's
//! reconcile is deterministic (the same input renders the same plan and status, byte for byte),
//! idempotent (its plan carried out twice changes nothing the first time did not, and one
//! reconcile after its first carry-out it stands still: the same plan, no change, no status
//! change), and converges (once its children report ready, the object becomes `Ready` within a
//! bound).

use super::merge::{State, carry_out, key, state_of};
use super::{Observed, Reconciled, RenderError, Settings, reconcile};
use crate::contract::{Gvk, ObjectRef};
use crate::plugin::Plugin;
use serde_json::{Value, json};

/// A property of the plan contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    /// The same input renders the same output.
    Deterministic,
    /// Carrying out the plan twice changes nothing more, and after one more reconcile the plan
    /// stands still (the same plan, carried out, changes nothing).
    Idempotent,
    /// With its children ready, the object becomes `Ready`.
    Converges,
}

impl std::fmt::Display for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deterministic => "deterministic",
            Self::Idempotent => "idempotent",
            Self::Converges => "converges",
        })
    }
}

/// A property that does not hold, naming the object where it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub property: Property,
    /// The object it shows on (`Kind namespace/name`).
    pub object: String,
    /// What differs.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not {}: {}: {}", self.property, self.object, self.detail)
    }
}

/// How hard to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Renders of the same input compared (determinism). Default 3.
    pub renders: usize,
    /// Reconciles with ready children before convergence is given up. Default 5.
    pub rounds: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            renders: 3,
            rounds: 5,
        }
    }
}

/// What the checks found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The first render.
    pub first: Reconciled,
    /// Every property that does not hold (empty: the contract holds).
    pub violations: Vec<Violation>,
    /// Reconciles it took to become ready, when it did.
    pub ready_after: Option<usize>,
}

impl CheckReport {
    /// Whether every property holds.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Everything of a render that must not vary, as text.
fn fingerprint(r: &Reconciled) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .applies
        .iter()
        .chain(&r.status_applies)
        .map(|a| (describe(&a.object), a.object.to_string()))
        .collect();
    out.extend(r.deletes.iter().map(|d| (d.to_string(), "delete".into())));
    out.extend(r.prunes.iter().map(|d| (d.to_string(), "prune".into())));
    out.extend(
        r.refusals
            .iter()
            .map(|x| (r.object.to_string(), x.to_string())),
    );
    out.push((
        r.object.to_string(),
        format!("status {}", Value::Object(r.status.clone())),
    ));
    out
}

fn describe(obj: &Value) -> String {
    key(obj).map_or_else(|| "(unnamed object)".into(), |r| r.to_string())
}

/// The first difference of two renders: the object and both versions.
fn difference(a: &Reconciled, b: &Reconciled) -> Option<(String, String)> {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    for i in 0..fa.len().max(fb.len()) {
        match (fa.get(i), fb.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (Some((o, x)), Some((_, y))) => return Some((o.clone(), format!("{x} then {y}"))),
            (Some((o, _)), None) | (None, Some((o, _))) => {
                return Some((o.clone(), "planned once, not the other time".into()));
            }
            (None, None) => {}
        }
    }
    None
}

/// The plan alone (applies, status applies, deletes), as text.
fn plan_of(r: &Reconciled) -> Vec<(String, String)> {
    fingerprint(r)
        .into_iter()
        .filter(|(_, v)| !v.starts_with("status "))
        .collect()
}

/// `state` without managed-field bookkeeping and the status of `object` (which follows its
/// children): what carrying out the same plan again must leave unchanged.
fn comparable(state: &State, object: &ObjectRef) -> Vec<(ObjectRef, Value)> {
    state
        .iter()
        .map(|(r, v)| {
            let mut v = v.clone();
            if let Some(meta) = v["metadata"].as_object_mut() {
                meta.remove("managedFields");
            }
            if r == object
                && let Some(map) = v.as_object_mut()
            {
                map.remove("status");
            }
            (r.clone(), v)
        })
        .collect()
}

/// The first object that differs between two states (see [`comparable`]).
fn changed(now: &State, before: &State, object: &ObjectRef) -> Option<ObjectRef> {
    let (now, before) = (comparable(now, object), comparable(before, object));
    if now.len() != before.len() {
        return Some(object.clone());
    }
    now.into_iter()
        .zip(before)
        .find(|(a, b)| a != b)
        .map(|(a, _)| a.0)
}

/// Mark the children of `owner_uid` in `state` ready, as their controllers would report it:
/// Deployments (and StatefulSets, ReplicaSets) with every replica ready, available and updated and
/// `Available=True`; Jobs complete. Returns whether any was marked.
fn mark_ready(state: &mut State, owner_uid: &str) -> bool {
    let mut marked = false;
    for (r, obj) in state.iter_mut() {
        let controlled = obj["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| {
                o.iter()
                    .any(|o| o["uid"] == owner_uid && o["controller"] == true)
            });
        if !controlled {
            continue;
        }
        let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
        let apps = |k: &str| r.gvk == Gvk::new("apps", "v1", k);
        let status = if apps("Deployment") || apps("StatefulSet") || apps("ReplicaSet") {
            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            json!({
                "observedGeneration": generation,
                "replicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas, "updatedReplicas": replicas,
                "currentReplicas": replicas,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
            })
        } else if r.gvk == Gvk::new("batch", "v1", "Job") {
            let completions = obj["spec"]["completions"].as_i64().unwrap_or(1);
            json!({
                "succeeded": completions, "active": 0,
                "conditions": [{"type": "Complete", "status": "True"}],
            })
        } else {
            continue;
        };
        if obj["status"] != status {
            obj["status"] = status;
            marked = true;
        }
    }
    marked
}

/// Render `object` with `observed` as `state` holds them.
async fn render_state(
    plugin: &Plugin,
    object: &ObjectRef,
    state: &State,
    settings: &Settings,
) -> Result<Reconciled, RenderError> {
    let value = state.get(object).cloned().ok_or(RenderError::NotAnObject)?;
    let observed = Observed::new(state.values().cloned())?;
    reconcile(plugin, &value, &observed, settings).await
}

/// Check `plugin`'s plan contract on `object` with `observed` (see the module documentation).
/// Every render runs at `settings.now`, so that only the plugin can make two renders differ.
///
/// # Errors
/// [`RenderError`] when a render fails (a plugin error is not a violation: it is an error).
pub async fn check(
    plugin: &Plugin,
    object: &Value,
    observed: &Observed,
    settings: &Settings,
    options: CheckOptions,
) -> Result<CheckReport, RenderError> {
    let first = reconcile(plugin, object, observed, settings).await?;
    let mut violations = Vec::new();
    for _ in 1..options.renders.max(1) {
        let again = reconcile(plugin, object, observed, settings).await?;
        if let Some((object, detail)) = difference(&first, &again) {
            violations.push(Violation {
                property: Property::Deterministic,
                object,
                detail,
            });
            break;
        }
    }
    let mut target = first.object.clone();
    target.uid = None;
    let mut start = observed.clone();
    let mut prepared = object.clone();
    prepared["metadata"]["uid"] = json!(first.object.uid);
    start.insert(0, prepared)?;
    let manager = format!("capstan-{}", plugin.name());
    let state = state_of(start.objects());
    let (after, _) = carry_out(&state, &first, &manager);
    let second = render_state(plugin, &target, &after, settings).await?;
    let mut state = after;
    if first.refusals.is_empty() {
        // The same plan carried out twice changes nothing the first time did not.
        let (twice, _) = carry_out(&state, &first, &manager);
        // The plan may follow what its first carry-out created (a status reported up once a
        // child exists); one reconcile later it must stand still.
        let (settled, _) = carry_out(&state, &second, &manager);
        let third = render_state(plugin, &target, &settled, settings).await?;
        let (still, _) = carry_out(&settled, &third, &manager);
        if let Some(r) = changed(&twice, &state, &target) {
            violations.push(Violation {
                property: Property::Idempotent,
                object: r.to_string(),
                detail: "carrying out the same plan a second time changes it".into(),
            });
        } else if plan_of(&second) != plan_of(&third) {
            let (object, detail) = difference(&second, &third)
                .unwrap_or_else(|| (target.to_string(), "the plan changed".into()));
            violations.push(Violation {
                property: Property::Idempotent,
                object,
                detail: format!("the plan keeps changing once carried out: {detail}"),
            });
        } else if let Some(r) = changed(&still, &settled, &target) {
            violations.push(Violation {
                property: Property::Idempotent,
                object: r.to_string(),
                detail: "carrying out the plan of a settled state changes it".into(),
            });
        } else if let Some(patch) = third.status_patch {
            violations.push(Violation {
                property: Property::Idempotent,
                object: target.to_string(),
                detail: format!("the status keeps changing: {patch}"),
            });
        }
        state = settled;
    }
    let owner_uid = first.object.uid.clone().unwrap_or_default();
    let mut ready_after = None;
    let mut last = second;
    for round in 1..=options.rounds.max(1) {
        mark_ready(&mut state, &owner_uid);
        last = render_state(plugin, &target, &state, settings).await?;
        if last.ready {
            ready_after = Some(round);
            break;
        }
        state = carry_out(&state, &last, &manager).0;
    }
    if ready_after.is_none() {
        let ready = last
            .status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map_or_else(|| "no Ready condition".into(), |c| c.to_string());
        violations.push(Violation {
            property: Property::Converges,
            object: target.to_string(),
            detail: format!(
                "not Ready after {} reconciles with every child ready: {ready}",
                options.rounds.max(1)
            ),
        });
    }
    Ok(CheckReport {
        first,
        violations,
        ready_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(api_version: &str, kind: &str, name: &str, owner: &str) -> Value {
        json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": "d", "generation": 3,
                "ownerReferences": [{"uid": owner, "controller": true}]},
            "spec": {"replicas": 4, "completions": 2}})
    }

    #[test]
    fn only_the_objects_children_are_marked_ready_as_their_controllers_report_it() {
        let mut state = state_of(&[
            child("apps/v1", "Deployment", "web", "me"),
            child("batch/v1", "Job", "migrate", "me"),
            child("apps/v1", "Deployment", "other", "someone"),
            child("v1", "ConfigMap", "conf", "me"),
        ]);
        assert!(mark_ready(&mut state, "me"));
        let get = |state: &State, kind: &str, name: &str| {
            state
                .values()
                .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
                .unwrap()
                .clone()
        };
        let web = get(&state, "Deployment", "web");
        assert_eq!(web["status"]["availableReplicas"], 4);
        assert_eq!(web["status"]["updatedReplicas"], 4);
        assert_eq!(web["status"]["observedGeneration"], 3);
        assert_eq!(web["status"]["conditions"][0]["type"], "Available");
        let job = get(&state, "Job", "migrate");
        assert_eq!(job["status"]["succeeded"], 2);
        assert_eq!(job["status"]["conditions"][0]["type"], "Complete");
        assert!(get(&state, "Deployment", "other").get("status").is_none());
        assert!(get(&state, "ConfigMap", "conf").get("status").is_none());
        assert!(!mark_ready(&mut state, "me"), "marked once: nothing more");
    }
}
