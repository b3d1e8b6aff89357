//! `capstan render`: one reconcile (or one handler event) of one object, offline, in the real
//! sandbox. The plugin runs on the host's own instances and limits; its cache reads are served
//! from observed objects ([`Observed`]); its plan goes through the host's own plan checks
//! (grant, scope, ownership) and its health through the host's own condition, phase and status
//! computation. What a controller would send is returned instead of sent: the objects it would
//! apply (with their owner reference), status applies, deletes and prunes, refusals, and the
//! status it would write. [`check`] tests a plugin's plan contract over the same path.

mod check;
mod command;
mod event;
mod merge;
mod observed;
mod output;

pub use check::{CheckOptions, CheckReport, Property, Violation, check};
pub use command::{RenderArgs, exit, run};
pub use event::{EventKind, Handled, handle};
pub use merge::derived_uid;
pub use observed::{Observed, ObservedError};
pub use output::{OutputError, Section, diff, to_yaml};

use crate::config::Config;
use crate::contract::{ComponentHealth, ObjectRef};
use crate::plugin::{CallError, Grants, Planned, Plugin};
use crate::reconcile::{
    Basis, Checker, ComputedCondition, InformerCache, Refusal, Scope, ScopeGrant, ScopedCache,
    Step, changes, errors_health, finalizer_name, owner_condition, prunable, requeue_after,
    rfc3339, set_owner, status_patch, terminal,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use observed::ObservedWorld;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Why a render could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The object to render is not a Kubernetes object.
    #[error("the object to render lacks apiVersion, kind or metadata.name")]
    NotAnObject,
    /// The object (or an observed one) is not valid.
    #[error(transparent)]
    Observed(#[from] ObservedError),
    /// The plugin has no export for what was asked.
    #[error("plugin {plugin} does not export a {role}")]
    Role {
        /// The plugin.
        plugin: String,
        /// `reconciler` or `handler`.
        role: &'static str,
    },
    /// A call into the plugin failed: a trap, a deadline, output the host refuses.
    #[error("plugin {plugin} failed on {object}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The object.
        object: String,
        /// The failure.
        #[source]
        source: Box<CallError>,
    },
}

/// What the configuration sets for one reconcile (the `reconcile` section of the plugin's entry,
/// when it is bound to the plugin), and the time it runs at.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Namespaces and cluster-scoped kinds granted beyond the object's namespace.
    pub scope: ScopeGrant,
    /// Phase timeouts over the manifest's.
    pub phase_timeouts: HashMap<String, Duration>,
    /// Whether children no longer planned are pruned.
    pub prune: bool,
    /// The time of the reconcile (condition transition times, phase timeouts).
    pub now: Timestamp,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scope: ScopeGrant::default(),
            phase_timeouts: HashMap::new(),
            prune: true,
            now: Timestamp::now(),
        }
    }
}

impl Settings {
    /// The settings `capstan run` would give `plugin` under `config`: only from an entry bound to
    /// the plugin's file.
    #[must_use]
    pub fn of(plugin: &Plugin, config: &Config) -> Self {
        let mut s = Self::default();
        if let Some(r) = plugin
            .grant()
            .bound_entry()
            .and_then(|entry| config.plugins.get(entry))
            .map(|p| &p.reconcile)
        {
            s.prune = r.prune.unwrap_or(true);
            s.phase_timeouts = r
                .phase_timeouts_seconds
                .iter()
                .map(|(p, secs)| (p.clone(), Duration::from_secs(*secs)))
                .collect();
            s.scope = r.scope();
        }
        s
    }

    /// At `now`.
    #[must_use]
    pub fn at(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }
}

/// An object the host would server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The object as sent (for a child, with its controller owner reference).
    pub object: Value,
    /// Whether the apply takes over fields other managers own.
    pub force: bool,
}

/// What the host would do after one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    /// The plugin.
    pub plugin: String,
    /// The reconciled object (with the uid the render gave it).
    pub object: ObjectRef,
    /// Objects applied, in plan order (everything but `status`).
    pub applies: Vec<Applied>,
    /// Status applies through the status subresource (to children or owners), in plan order.
    pub status_applies: Vec<Applied>,
    /// Objects deleted by the plan.
    pub deletes: Vec<ObjectRef>,
    /// Children pruned: controlled by the object, created by the plugin, no longer planned.
    pub prunes: Vec<ObjectRef>,
    /// Why the host refuses the plan (then nothing of it is applied).
    pub refusals: Vec<Refusal>,
    /// The status the host computes for the object.
    pub status: Map<String, Value>,
    /// The merge patch of `status` the host would write; `None` when nothing changes.
    pub status_patch: Option<Value>,
    /// Whether the object is ready (its `Ready` condition is true).
    pub ready: bool,
    /// When the host would reconcile it again.
    pub requeue_after: Option<Duration>,
    /// What the host does instead of a whole reconcile, or adds to it (a finalizer, an event
    /// filter, a terminal failure, a wait for an owner).
    pub notes: Vec<String>,
}

impl Reconciled {
    fn new(plugin: &Plugin, object: ObjectRef) -> Self {
        Self {
            plugin: plugin.name().to_owned(),
            object,
            applies: Vec::new(),
            status_applies: Vec::new(),
            deletes: Vec::new(),
            prunes: Vec::new(),
            refusals: Vec::new(),
            status: Map::new(),
            status_patch: None,
            ready: false,
            requeue_after: None,
            notes: Vec::new(),
        }
    }
}

/// The object to render, its namespace defaulted and, without a uid, a derived one
/// ([`derived_uid`]); with `observed`, holding the object too.
pub(crate) fn prepare(
    object: &Value,
    observed: &Observed,
) -> Result<(Value, ObjectRef, Observed), RenderError> {
    let mut with = observed.clone();
    let r = with.insert(0, object.clone()).map_err(|e| match e {
        ObservedError::Incomplete { .. } => RenderError::NotAnObject,
        e => RenderError::Observed(e),
    })?;
    let mut value = with.get(&r).cloned().ok_or(RenderError::NotAnObject)?;
    let uid = match value["metadata"]["uid"].as_str() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => {
            let uid = derived_uid(&r);
            value["metadata"]["uid"] = Value::String(uid.clone());
            uid
        }
    };
    if value["metadata"]["generation"].is_null() {
        // As the API server sets it on create.
        value["metadata"]["generation"] = Value::from(1);
    }
    with.insert(0, value.clone())?;
    let r = ObjectRef {
        uid: Some(uid),
        ..r
    };
    Ok((value, r, with))
}

/// Reconcile `object` once with `plugin`, offline: the phases a controller calls (fetch with the
/// cache made of `observed`, health, plan, status), the host's plan checks and status
/// computation; nothing is sent anywhere.
///
/// # Errors
/// [`RenderError::Plugin`] when a call into the plugin fails (a trap, a deadline, refused output);
/// the plugin's own errors (from fetch or plan) are part of the status, as a controller reports
/// them.
pub async fn reconcile(
    plugin: &Plugin,
    object: &Value,
    observed: &Observed,
    settings: &Settings,
) -> Result<Reconciled, RenderError> {
    if !plugin.info().world.reconciles() {
        return Err(RenderError::Role {
            plugin: plugin.name().to_owned(),
            role: "reconciler",
        });
    }
    let (value, oref, observed) = prepare(object, observed)?;
    let obj: DynamicObject = serde_json::from_value(value.clone()).map_err(|source| {
        RenderError::Observed(ObservedError::Invalid {
            index: 0,
            object: oref.to_string(),
            source,
        })
    })?;
    let mut out = Reconciled::new(plugin, oref.clone());
    let manifest = plugin.manifest();
    let failed = |source| RenderError::Plugin {
        plugin: plugin.name().to_owned(),
        object: oref.to_string(),
        source: Box::new(source),
    };
    if !plugin.selection().selects(&obj) {
        out.notes.push(
            "outside the plugin's event filter: the host does not reconcile this object".into(),
        );
        return Ok(out);
    }
    if obj.metadata.deletion_timestamp.is_some() {
        out.notes.push(
            "being deleted: the host would run the plugin's cleanup, which render does not".into(),
        );
        return Ok(out);
    }
    let stored = value.get("status").cloned().unwrap_or(Value::Null);
    let generation = obj.metadata.generation;
    if terminal(&stored, generation) {
        out.notes.push(
            "failed terminally (status.failureReason for this generation): the host does nothing until the spec changes".into(),
        );
        return Ok(out);
    }
    let mut limits: HashMap<String, Duration> = manifest.phase_limits().collect();
    limits.extend(settings.phase_timeouts.clone());
    let basis = Basis {
        observability: manifest.observability,
        mode: manifest.status_mode,
        stored: &stored,
        generation,
        now: settings.now,
        limits: &limits,
    };
    let now = rfc3339(settings.now);
    let owner_condition = match owner_condition(manifest, &obj) {
        Ok(c) => c,
        Err(kind) => {
            let (eval, draft) = basis.waiting_for_owner(kind, crate::reconcile::OWNER_CONDITION);
            out.notes
                .push(format!("waiting for an owner reference to a {}", kind.kind));
            let (doc, _) = draft.render(&stored, generation, &now);
            finish(
                &mut out,
                doc,
                &stored,
                draft.complete,
                &eval.computed.conditions,
            );
            out.requeue_after = eval.timed.time_left;
            return Ok(out);
        }
    };
    if manifest.finalizer {
        let name = finalizer_name(plugin.name());
        if !crate::reconcile::has_finalizer(&obj, &name) {
            out.notes
                .push(format!("the host adds the finalizer {name} first"));
        }
    }
    let scope = Scope::new(oref.namespace.clone(), settings.scope.clone());
    let informers = observed.informers(&crate::reconcile::kinds_of(manifest));
    let grants = Grants {
        cache: Some(Arc::new(ScopedCache {
            inner: Arc::new(InformerCache { handles: informers }),
            scope: scope.clone(),
        })),
        pod_logs: None,
    };
    let json = value.to_string();
    let mut health: Vec<ComponentHealth> = Vec::new();
    let mut reconciliation = match plugin.reconcile(&oref, &json).await.map_err(failed)? {
        Ok(mut r) => match r.fetch(grants).await.map_err(failed)? {
            Ok(()) => Some(r),
            Err(e) => {
                health.push(errors_health("Fetch", vec![e]));
                None
            }
        },
        Err(e) => {
            health.push(errors_health("Fetch", vec![e]));
            None
        }
    };
    if let Some(r) = reconciliation.as_mut() {
        health.extend(r.health().await.map_err(failed)?);
    }
    let before = basis.evaluate(&health, true, owner_condition.clone());
    if !before.terminal()
        && let Some(r) = reconciliation.as_mut()
    {
        match r.plan().await.map_err(failed)? {
            Ok(entries) => {
                let world = ObservedWorld {
                    observed: &observed,
                    field_manager: format!("capstan-{}", plugin.name()),
                };
                let checker = Checker {
                    world: &world,
                    plugin: plugin.name(),
                    manifest,
                    owner: &obj,
                    owner_ref: &oref,
                    scope: &scope,
                };
                plan(
                    &mut out,
                    &checker,
                    &observed,
                    entries,
                    settings.prune,
                    &mut health,
                )
                .await;
            }
            Err(e) => health.push(errors_health("Plan", vec![e])),
        }
    }
    // Offline, an infrastructure error is always new: within the grace period.
    let eval = basis.evaluate(&health, true, owner_condition);
    let draft = basis
        .draft(&eval, reconciliation.as_mut())
        .await
        .map_err(failed)?;
    let (doc, _) = draft.render(&stored, generation, &now);
    finish(&mut out, doc, &stored, draft.complete, &draft.conditions);
    if !eval.terminal() {
        let asked = requeue_after(&health, plugin.limits().min_requeue_after);
        out.requeue_after = match (asked, eval.timed.time_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(out)
}

/// The status part of a reconcile: the document, its patch if it changes anything, readiness.
fn finish(
    out: &mut Reconciled,
    doc: Map<String, Value>,
    stored: &Value,
    complete: bool,
    conditions: &[ComputedCondition],
) {
    out.status_patch =
        changes(&doc, stored, complete).then(|| status_patch(&doc, stored, complete));
    out.ready = conditions
        .iter()
        .any(|c| c.condition_type == "Ready" && c.status == crate::contract::ConditionStatus::True);
    out.status = doc;
}

/// Check the plan as a controller does; the steps become what `out` says the host would send.
async fn plan(
    out: &mut Reconciled,
    checker: &Checker<'_>,
    observed: &Observed,
    entries: Vec<Planned>,
    prune: bool,
    health: &mut Vec<ComponentHealth>,
) {
    let steps = match checker.check(entries).await {
        Ok(steps) => steps,
        Err(refused) => {
            health.push(crate::reconcile::refused_health(checker.plugin, &refused));
            out.refusals = refused;
            return;
        }
    };
    let uid = checker.owner.metadata.uid.as_deref().unwrap_or_default();
    let planned: HashSet<ObjectRef> = steps.iter().map(|s| s.target().clone()).collect();
    for step in steps {
        match step {
            Step::Apply {
                mut body,
                owned,
                force,
                ..
            } => {
                if owned {
                    set_owner(&mut body, checker.owner_ref, uid);
                }
                out.applies.push(Applied {
                    object: body,
                    force,
                });
            }
            Step::Status { body, force, .. } => out.status_applies.push(Applied {
                object: body,
                force,
            }),
            Step::Delete { target, .. } => out.deletes.push(target),
        }
    }
    if !prune {
        return;
    }
    // As the controller's prune: children of owned kinds in the object's namespace.
    for gvk in &checker.manifest.owns {
        for child in observed.objects() {
            let Some(r) = merge::key(child) else { continue };
            if &r.gvk != gvk || r.namespace != checker.owner_ref.namespace || planned.contains(&r) {
                continue;
            }
            let Ok(child) = serde_json::from_value::<DynamicObject>(child.clone()) else {
                continue;
            };
            if child.metadata.deletion_timestamp.is_none()
                && prunable(&child, uid, checker.world.field_manager())
            {
                out.prunes.push(r);
            }
        }
    }
}
