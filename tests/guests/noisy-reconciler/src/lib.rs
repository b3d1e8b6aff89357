//! A reconciler of WebApps built on raw bindings, so it can return what the SDK never would, that
//! runs up the host's costs by the object's `metadata.name`:
//!
//! - `unique-reason`: a component with a new reason every call, and `requeue-after: 0`;
//! - `steady-warning`: the same unhealthy component every call, and `requeue-after: 0`;
//! - `child-churn`: plans a ConfigMap whose data changes every call (each apply wakes the owner);
//! - `log-flood`: writes 100 MiB to stdout while fetching, in lines of 1023 bytes;
//! - `huge-health`: reports 10 000 components;
//! - `many-entries`: plans 300 small ConfigMaps;
//! - `many-conditions`: decorates its status with 100 conditions;
//! - `poison-*`: traps while fetching (a plugin that throws on unexpected data).
//!
//! Anything else behaves: one ready component, an empty plan, no status of its own. The manifest
//! asks for `Warning` observability, so an unhealthy condition is an Event every reconcile. The
//! object's name is read once, when the reconciliation is opened.

#![allow(missing_docs)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "capstan:controller/reconciler-plugin",
});

use capstan::controller::types::{
    CategorizedError, CleanupOutcome, ComponentHealth, Condition, ConditionStatus,
    GroupVersionKind, HealthState, Manifest, Observability, PlanEntry, StatusMode, StatusUpdate,
};
use exports::capstan::controller::reconciler::{Guest, GuestReconciliation, Reconciliation};
use std::io::Write as _;

/// What `log-flood` writes.
const FLOOD_BYTES: usize = 100 << 20;
/// One line of it, newline included.
const FLOOD_LINE: usize = 1024;

struct Noisy;

/// One reconcile: the object's name.
struct Reconcile {
    name: String,
}

/// The object's name, or "" when it has none.
fn name(obj: &str) -> String {
    serde_json::from_str::<serde_json::Value>(obj)
        .ok()
        .and_then(|v| v.pointer("/metadata/name")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Something new every call: nanoseconds of the wall clock.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn component(
    name: &str,
    state: HealthState,
    reason: &str,
    requeue: Option<u32>,
) -> ComponentHealth {
    ComponentHealth {
        component: name.into(),
        state,
        reason: reason.into(),
        message: format!("{name} is {reason}"),
        errors: vec![],
        requeue_after: requeue,
    }
}

fn flood() {
    let line: Vec<u8> = std::iter::repeat_n(b'x', FLOOD_LINE - 1)
        .chain([b'\n'])
        .collect();
    let chunk = line.repeat((1 << 20) / FLOOD_LINE);
    let mut out = std::io::stdout().lock();
    for _ in 0..FLOOD_BYTES / chunk.len() {
        let _ = out.write_all(&chunk);
    }
    let _ = out.flush();
}

fn config_map(name: &str, data: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"value": data}
    })
    .to_string()
}

impl exports::capstan::controller::plugin::Guest for Noisy {
    fn describe() -> Manifest {
        Manifest {
            name: "noisy-reconciler".into(),
            version: "0.1.0".into(),
            watches: vec![GroupVersionKind {
                group: "examples.capstan.dev".into(),
                version: "v1alpha1".into(),
                kind: "WebApp".into(),
            }],
            owns: vec![GroupVersionKind {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
            }],
            access: vec![],
            status_mode: StatusMode::Decorate,
            finalizer: false,
            pod_logs: false,
            observability: Observability::Warning,
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

impl Guest for Noisy {
    type Reconciliation = Reconcile;
}

impl GuestReconciliation for Reconcile {
    fn open(obj: String) -> Result<Reconciliation, CategorizedError> {
        Ok(Reconciliation::new(Reconcile { name: name(&obj) }))
    }

    fn fetch(&self) -> Result<(), CategorizedError> {
        if self.name.starts_with("poison-") {
            core::arch::wasm32::unreachable();
        }
        if self.name == "log-flood" {
            flood();
        }
        Ok(())
    }

    fn plan_resources(&self) -> Result<Vec<PlanEntry>, CategorizedError> {
        let name = &self.name;
        Ok(match name.as_str() {
            "child-churn" => vec![PlanEntry::Apply(config_map(
                &format!("{name}-child"),
                &unique().to_string(),
            ))],
            "many-entries" => (0..300)
                .map(|i| PlanEntry::Apply(config_map(&format!("{name}-{i}"), "x")))
                .collect(),
            _ => vec![],
        })
    }

    fn get_component_health(&self) -> Vec<ComponentHealth> {
        match self.name.as_str() {
            "unique-reason" => vec![component(
                "Widget",
                HealthState::Progressing,
                &format!("Attempt{}", unique()),
                Some(0),
            )],
            "steady-warning" => vec![component(
                "Widget",
                HealthState::Progressing,
                "Waiting",
                Some(0),
            )],
            "failed-widget" => vec![component("Widget", HealthState::Failed, "Broken", None)],
            "huge-health" => (0..10_000)
                .map(|i| component(&format!("Part{i}"), HealthState::Ready, "Available", None))
                .collect(),
            _ => vec![component("Widget", HealthState::Ready, "Available", None)],
        }
    }

    fn status(&self, _computed: String) -> StatusUpdate {
        let conditions = match self.name.as_str() {
            "many-conditions" => (0..100)
                .map(|i| Condition {
                    condition_type: format!("Extra{i}"),
                    status: ConditionStatus::True,
                    reason: "Fine".into(),
                    message: String::new(),
                    observability: Observability::Silent,
                })
                .collect(),
            _ => vec![],
        };
        StatusUpdate {
            fields: "{}".into(),
            conditions,
        }
    }

    fn cleanup(&self) -> Result<CleanupOutcome, CategorizedError> {
        Ok(CleanupOutcome::Done)
    }
}

export!(Noisy);
