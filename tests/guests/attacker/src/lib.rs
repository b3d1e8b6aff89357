//! A reconciler that does what its object tells it, built on the raw WIT bindings so it can return
//! anything the contract can carry. It reconciles `Attack` objects (`test.capstan.dev/v1`):
//!
//! - `spec.reads`: reads made in `fetch`, each `{"get": ref}`, `{"list": ref}` (no name) or
//!   `{"log": {"namespace", "pod", "container"}}`, where a ref is `{"group", "version", "kind",
//!   "namespace", "name"}`; each outcome (`ok: <object or log>` or `refused: <error>`) is reported
//!   as the message of a component `Read<i>`, so a test sees exactly what leaked;
//! - `spec.plan`: the plan, verbatim: `{"apply": object}`, `{"applyWithoutOwnerRef": object}` or
//!   `{"delete": ref}`; `spec.plans.<plugin name>` instead, when present, so that two plugins
//!   reconciling one object plan differently.
//!
//! The plugin's name is its package's: `attacker`, or `attacker-twin`, the same code built under
//! a second name (a second reconciler of the same kind).
//!
//! Its manifest declares only what an ordinary plugin would: it owns ConfigMaps, may read Secrets
//! and read, patch and delete Deployments, may delete Namespaces, and reads pod logs. It takes any
//! kind (no `object-kind`).
//!
//! The reads happen in `fetch` and their outcomes stay in the reconciliation (contract 0.2.0: the
//! observation never crosses the boundary) until `get-component-health` reports them.

#![allow(missing_docs)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "capstan:controller/reconciler-plugin",
});

use capstan::controller::cache::{self, ListOptions};
use capstan::controller::pod_logs;
use capstan::controller::types::{
    AccessRule, CategorizedError, CleanupOutcome, ComponentHealth, GroupVersionKind, HealthState,
    Manifest, ObjectRef, Observability, PlanEntry, StatusMode, StatusUpdate, Verb,
};
use exports::capstan::controller::reconciler::{Guest, GuestReconciliation, Reconciliation};
use serde_json::Value;
use std::cell::RefCell;

struct Attacker;

/// One reconcile: the object's JSON, and the outcome of each read once `fetch` ran.
struct Attack {
    obj: String,
    reads: RefCell<Vec<String>>,
}

fn gvk(group: &str, version: &str, kind: &str) -> GroupVersionKind {
    GroupVersionKind {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
    }
}

/// This plugin's name.
const NAME: &str = env!("CARGO_PKG_NAME");

fn spec(obj: &str, field: &str) -> Vec<Value> {
    let Ok(v) = serde_json::from_str::<Value>(obj) else {
        return Vec::new();
    };
    v.pointer(&format!("/spec/{field}s/{NAME}"))
        .or_else(|| v.pointer(&format!("/spec/{field}")))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn optional(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn object_ref(v: &Value) -> ObjectRef {
    ObjectRef {
        gvk: gvk(&text(v, "group"), &text(v, "version"), &text(v, "kind")),
        namespace: optional(v, "namespace"),
        name: text(v, "name"),
        uid: None,
    }
}

fn read(r: &Value) -> String {
    let outcome = if let Some(g) = r.get("get") {
        let o = object_ref(g);
        cache::get(&o.gvk, o.namespace.as_deref(), &o.name)
            .map(|found| found.unwrap_or_else(|| "absent".into()))
    } else if let Some(l) = r.get("list") {
        let o = object_ref(l);
        cache::list(
            &o.gvk,
            &ListOptions {
                namespace: o.namespace,
                label_selector: None,
            },
        )
        .map(|items| items.join("\n"))
    } else if let Some(l) = r.get("log") {
        pod_logs::read(
            &text(l, "namespace"),
            &text(l, "pod"),
            optional(l, "container").as_deref(),
            None,
        )
    } else {
        return "unknown read".into();
    };
    match outcome {
        Ok(s) => format!("ok: {s}"),
        Err(e) => format!("refused: {}", e.message),
    }
}

impl exports::capstan::controller::plugin::Guest for Attacker {
    fn describe() -> Manifest {
        Manifest {
            name: NAME.into(),
            version: "0.1.0".into(),
            watches: vec![gvk("test.capstan.dev", "v1", "Attack")],
            owns: vec![gvk("", "v1", "ConfigMap")],
            access: vec![
                AccessRule {
                    gvk: gvk("", "v1", "Secret"),
                    verbs: vec![Verb::Get, Verb::List],
                },
                AccessRule {
                    gvk: gvk("apps", "v1", "Deployment"),
                    verbs: vec![Verb::Get, Verb::List, Verb::Patch, Verb::Delete],
                },
                AccessRule {
                    gvk: gvk("", "v1", "Namespace"),
                    verbs: vec![Verb::Delete],
                },
            ],
            status_mode: StatusMode::Automatic,
            finalizer: false,
            pod_logs: true,
            observability: Observability::Info,
            phase_timeouts: vec![],
            wait_for_owner: None,
            object_kind: None,
            events: capstan::controller::types::EventFilter {
                namespaces: vec![],
                label_selector: None,
                changes: capstan::controller::types::ChangeFilter::All,
            },
        }
    }
}

impl Guest for Attacker {
    type Reconciliation = Attack;
}

impl GuestReconciliation for Attack {
    fn open(obj: String) -> Result<Reconciliation, CategorizedError> {
        Ok(Reconciliation::new(Attack {
            obj,
            reads: RefCell::new(Vec::new()),
        }))
    }

    fn fetch(&self) -> Result<(), CategorizedError> {
        *self.reads.borrow_mut() = spec(&self.obj, "reads").iter().map(read).collect();
        Ok(())
    }

    fn plan_resources(&self) -> Result<Vec<PlanEntry>, CategorizedError> {
        Ok(spec(&self.obj, "plan")
            .iter()
            .filter_map(|e| {
                if let Some(o) = e.get("apply") {
                    Some(PlanEntry::Apply(o.to_string()))
                } else if let Some(o) = e.get("applyWithoutOwnerRef") {
                    Some(PlanEntry::ApplyWithoutOwnerRef(o.to_string()))
                } else {
                    e.get("delete").map(|r| PlanEntry::Delete(object_ref(r)))
                }
            })
            .collect())
    }

    fn get_component_health(&self) -> Vec<ComponentHealth> {
        let reads = self.reads.borrow();
        std::iter::once(ComponentHealth {
            component: "Attack".into(),
            state: HealthState::Ready,
            reason: "Planned".into(),
            message: "plan returned".into(),
            errors: vec![],
            requeue_after: None,
        })
        .chain(reads.iter().enumerate().map(|(i, r)| ComponentHealth {
            component: format!("Read{i}"),
            state: HealthState::Ready,
            reason: "Read".into(),
            message: r.clone(),
            errors: vec![],
            requeue_after: None,
        }))
        .collect()
    }

    fn status(&self, _: String) -> StatusUpdate {
        StatusUpdate {
            fields: "{}".into(),
            conditions: vec![],
        }
    }

    fn cleanup(&self) -> Result<CleanupOutcome, CategorizedError> {
        Ok(CleanupOutcome::Done)
    }
}

export!(Attacker);
