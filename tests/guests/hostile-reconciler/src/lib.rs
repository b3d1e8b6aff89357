//! A reconciler built on raw bindings, so it can return what the SDK never would. It misbehaves by
//! the object's `metadata.name`:
//!
//! - plan-resources: `bad-json` plans an object that is not JSON, `no-name` one without
//!   `metadata.name`, `huge-plan` ~48 MiB of (valid) objects, `panic` panics, `spin` loops;
//! - fetch: `fetch-error` returns a categorized `auth` error; `huge-observation` keeps an 8 MiB
//!   observation in the reconciliation (contract 0.2.0: it never crosses the boundary, so fetch
//!   succeeds);
//! - status: `bad-status` returns fields that are not JSON.
//!
//! Anything else behaves: an empty observation, an empty plan, one ready component, no status.
//! The object's name is read once, when the reconciliation is opened.

#![allow(missing_docs)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "capstan:controller/reconciler-plugin",
});

use capstan::controller::types::{
    CategorizedError, CleanupOutcome, ComponentHealth, ErrorCategory, GroupVersionKind,
    HealthState, Manifest, Observability, PlanEntry, StatusMode, StatusUpdate,
};
use exports::capstan::controller::reconciler::{Guest, GuestReconciliation, Reconciliation};
use std::cell::RefCell;

/// One planned object of `huge-plan`.
const HUGE_ENTRY: usize = 8 << 20;
/// Objects planned by `huge-plan`: 48 MiB in all.
const HUGE_ENTRIES: usize = 6;

struct Hostile;

/// One reconcile: the object's name, and what `fetch` observed.
struct Reconcile {
    name: String,
    observed: RefCell<String>,
}

/// The object's name, or "" when it has none.
fn name(obj: &str) -> String {
    serde_json::from_str::<serde_json::Value>(obj)
        .ok()
        .and_then(|v| v.pointer("/metadata/name")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A valid ConfigMap of about `size` bytes of JSON, padded with an annotation.
fn big_config_map(index: usize, size: usize) -> String {
    let head = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big-{index}","annotations":{{"pad":""#
    );
    let tail = r#""}}}"#;
    let mut json = String::with_capacity(size);
    json.push_str(&head);
    let pad = size.saturating_sub(head.len() + tail.len());
    json.extend(std::iter::repeat_n('x', pad));
    json.push_str(tail);
    json
}

impl exports::capstan::controller::plugin::Guest for Hostile {
    fn describe() -> Manifest {
        Manifest {
            name: "hostile-reconciler".into(),
            version: "0.1.0".into(),
            watches: vec![GroupVersionKind {
                group: "examples.capstan.dev".into(),
                version: "v1alpha1".into(),
                kind: "WebApp".into(),
            }],
            owns: vec![],
            access: vec![],
            status_mode: StatusMode::Decorate,
            finalizer: false,
            pod_logs: false,
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

impl Guest for Hostile {
    type Reconciliation = Reconcile;
}

impl GuestReconciliation for Reconcile {
    fn open(obj: String) -> Result<Reconciliation, CategorizedError> {
        Ok(Reconciliation::new(Reconcile {
            name: name(&obj),
            observed: RefCell::new(String::new()),
        }))
    }

    fn fetch(&self) -> Result<(), CategorizedError> {
        let observed = match self.name.as_str() {
            "fetch-error" => {
                return Err(CategorizedError {
                    category: ErrorCategory::Auth,
                    message: "credentials of fetch-error were rejected".into(),
                });
            }
            "huge-observation" => big_config_map(0, HUGE_ENTRY),
            _ => "{}".into(),
        };
        *self.observed.borrow_mut() = observed;
        Ok(())
    }

    fn plan_resources(&self) -> Result<Vec<PlanEntry>, CategorizedError> {
        match self.name.as_str() {
            "bad-json" => Ok(vec![PlanEntry::Apply(
                "{\"apiVersion\": \"v1\", not json".into(),
            )]),
            "no-name" => Ok(vec![PlanEntry::Apply(
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":"default"}}"#
                    .into(),
            )]),
            "huge-plan" => Ok((0..HUGE_ENTRIES)
                .map(|i| PlanEntry::Apply(big_config_map(i, HUGE_ENTRY)))
                .collect()),
            "panic" => panic!("hostile reconciler panics while planning"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => Ok(vec![]),
        }
    }

    fn get_component_health(&self) -> Vec<ComponentHealth> {
        vec![ComponentHealth {
            component: "Deployment".into(),
            state: HealthState::Ready,
            reason: "Available".into(),
            message: "all replicas are available".into(),
            errors: vec![],
            requeue_after: None,
        }]
    }

    fn status(&self, _computed: String) -> StatusUpdate {
        let fields = match self.name.as_str() {
            "bad-status" => "{\"ready\": yes".into(),
            _ => "{}".into(),
        };
        StatusUpdate {
            fields,
            conditions: vec![],
        }
    }

    fn cleanup(&self) -> Result<CleanupOutcome, CategorizedError> {
        Ok(CleanupOutcome::Done)
    }
}

export!(Hostile);
