//! The status the host writes (seeds 003 and 004): `status`, `phase`, `lastPhaseTransitionTime`,
//! `observedGeneration`, `conditions`, `failureReason` and `failureMessage`, decorated or replaced
//! by the plugin in decorate and manual modes, and written only when it changed.

use super::conditions::{
    ComputedCondition, ComputedStatus, OverallState, Verdict, compute, render,
};
use super::phase::{Failure, Phase, PhaseRecord, Timed, failure_of, rfc3339, time_phase};
use crate::contract::{ComponentHealth, ConditionStatus, Gvk, Observability, StatusMode};
use crate::plugin::{CallError, CheckedStatus, Reconciliation};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// The keys the host writes in automatic and decorate modes; a decorating plugin cannot set them.
pub const HOST_KEYS: &[&str] = &[
    "status",
    "phase",
    "lastPhaseTransitionTime",
    "observedGeneration",
    "conditions",
    "failureReason",
    "failureMessage",
];

/// Whether a stored status records a terminal failure of the object's current generation: then
/// nothing is done until the spec (and so `metadata.generation`) changes.
pub fn terminal(status: &Value, generation: Option<i64>) -> bool {
    let failed = status
        .get("failureReason")
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    failed && generation.is_some() && observed == generation
}

/// Status, phase and failure of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Conditions, overall state and verdict.
    pub computed: ComputedStatus,
    /// The phase after its timeout was checked.
    pub timed: Timed,
    /// The terminal failure, if any.
    pub failure: Option<Failure>,
}

impl Evaluation {
    /// Time `phase` (see [`time_phase`]); a timed-out phase fails the object: `Ready=False` with
    /// reason `<Phase>Timeout`, state `Failed`. Otherwise a `Fail` verdict is a failure whose
    /// reason comes from `health` (see [`failure_of`]).
    pub fn new(
        mut computed: ComputedStatus,
        phase: Phase,
        health: &[ComponentHealth],
        previous: Option<&PhaseRecord>,
        now: Timestamp,
        limits: &HashMap<String, Duration>,
    ) -> Self {
        let timed = time_phase(phase, previous, now, limits);
        let failure = match &timed.timeout {
            Some(timeout) => {
                if let Some(ready) = computed
                    .conditions
                    .iter_mut()
                    .find(|c| c.condition_type == "Ready")
                {
                    ready.status = ConditionStatus::False;
                    ready.reason.clone_from(&timeout.reason);
                    ready.message.clone_from(&timeout.message);
                }
                computed.state = OverallState::Failed;
                computed.verdict = Verdict::Fail;
                Some(timeout.clone())
            }
            None => failure_of(health, &computed),
        };
        Self {
            computed,
            timed,
            failure,
        }
    }

    /// Whether the object failed terminally.
    pub fn terminal(&self) -> bool {
        self.failure.is_some()
    }
}

/// A status before its conditions are rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Fields other than `conditions`.
    pub fields: Map<String, Value>,
    /// Conditions.
    pub conditions: Vec<ComputedCondition>,
    /// Whether this is the whole status: keys of the stored status it lacks are removed.
    pub complete: bool,
}

impl Draft {
    /// The status computed by the host.
    pub fn automatic(e: &Evaluation, generation: Option<i64>) -> Self {
        let failure = e.failure.as_ref();
        let fields = json!({
            "status": e.computed.state.as_str(),
            "phase": e.timed.phase.as_str(),
            "lastPhaseTransitionTime": rfc3339(e.timed.since),
            "observedGeneration": generation,
            "failureReason": failure.map(|f| f.reason.clone()),
            "failureMessage": failure.map(|f| f.message.clone()),
        });
        Self {
            fields: fields.as_object().cloned().unwrap_or_default(),
            conditions: e.computed.conditions.clone(),
            complete: true,
        }
    }

    /// Decorate mode: the plugin's fields merged in (the host's keys stay the host's), its
    /// conditions added (replacing computed ones of the same type).
    pub fn decorate(mut self, update: CheckedStatus) -> Self {
        if let Value::Object(fields) = update.fields {
            for (k, v) in fields {
                if HOST_KEYS.contains(&k.as_str()) {
                    tracing::debug!(field = %k, "decorated status field left to the host");
                } else {
                    self.fields.insert(k, v);
                }
            }
        }
        for c in update.conditions.into_iter().map(ComputedCondition::from) {
            match self
                .conditions
                .iter_mut()
                .find(|x| x.condition_type == c.condition_type)
            {
                Some(x) => *x = c,
                None => self.conditions.push(c),
            }
        }
        self
    }

    /// Manual mode: the plugin's status, with the host's `observedGeneration`.
    pub fn manual(update: CheckedStatus, generation: Option<i64>) -> Self {
        let mut fields = match update.fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        fields.remove("conditions");
        fields.insert("observedGeneration".into(), json!(generation));
        Self {
            fields,
            conditions: update
                .conditions
                .into_iter()
                .map(ComputedCondition::from)
                .collect(),
            complete: true,
        }
    }

    /// The status document, with conditions rendered against the stored status (transition times
    /// kept where a condition's status did not change), and each condition with whether it
    /// transitioned.
    pub fn render(
        &self,
        stored: &Value,
        generation: Option<i64>,
        now: &str,
    ) -> (Map<String, Value>, Vec<(ComputedCondition, bool)>) {
        let (rendered, transitioned) =
            render(&self.conditions, stored.get("conditions"), generation, now);
        let mut doc = self.fields.clone();
        doc.insert("conditions".into(), Value::Array(rendered));
        let report = self
            .conditions
            .iter()
            .map(|c| (c.clone(), transitioned.contains(&c.condition_type)))
            .collect();
        (doc, report)
    }
}

/// What one reconcile's status is computed from besides the components' health: the same for a
/// controller's reconcile and for `capstan render`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Basis<'a> {
    /// The manifest's observability (how loudly conditions are reported).
    pub(crate) observability: Observability,
    /// The manifest's status mode.
    pub(crate) mode: StatusMode,
    /// The object's stored status.
    pub(crate) stored: &'a Value,
    /// The object's `metadata.generation`.
    pub(crate) generation: Option<i64>,
    /// The time of the reconcile.
    pub(crate) now: Timestamp,
    /// Phase timeouts by phase name.
    pub(crate) limits: &'a HashMap<String, Duration>,
}

impl Basis<'_> {
    /// Conditions, phase and failure from `health` (infrastructure errors still `in_grace` show
    /// as progressing); `owner_condition`, when the plugin waits for an owner, goes before
    /// `Ready`.
    pub(crate) fn evaluate(
        &self,
        health: &[ComponentHealth],
        in_grace: bool,
        owner_condition: Option<ComputedCondition>,
    ) -> Evaluation {
        let mut computed = compute(health, in_grace, self.observability);
        if let Some(c) = owner_condition {
            let before_ready = computed.conditions.len().saturating_sub(1);
            computed.conditions.insert(before_ready, c);
        }
        let previous = PhaseRecord::from_status(self.stored);
        let phase = Phase::from_status(&computed, previous.map(|p| p.phase));
        Evaluation::new(
            computed,
            phase,
            health,
            previous.as_ref(),
            self.now,
            self.limits,
        )
    }

    /// The status to write after `eval`: the host's in automatic mode; decorated or replaced by
    /// the plugin's `status` call on `observed` otherwise (without an observation, the computed
    /// status keeping the plugin's own fields).
    ///
    /// # Errors
    /// The plugin's `status` call failed.
    pub(crate) async fn draft(
        &self,
        eval: &Evaluation,
        observed: Option<&mut Reconciliation>,
    ) -> Result<Draft, CallError> {
        let host = Draft::automatic(eval, self.generation);
        Ok(match (self.mode, observed) {
            (StatusMode::Automatic, _) => host,
            (_, None) => Draft {
                complete: false,
                ..host
            },
            (mode, Some(r)) => {
                let (computed, _) = host.render(self.stored, self.generation, &rfc3339(self.now));
                let update = r.status(&Value::Object(computed)).await?;
                if mode == StatusMode::Decorate {
                    host.decorate(update)
                } else {
                    Draft::manual(update, self.generation)
                }
            }
        })
    }

    /// The status while the plugin waits for an owner reference to a `kind`: phase `Pending`,
    /// `condition` and `Ready` false.
    pub(crate) fn waiting_for_owner(&self, kind: &Gvk, condition: &str) -> (Evaluation, Draft) {
        let message = format!("waiting for an owner reference to a {}", kind.kind);
        let waiting = |t: &str| {
            ComputedCondition::new(
                t,
                ConditionStatus::False,
                "WaitingForOwner",
                &message,
                self.observability,
            )
        };
        let computed = ComputedStatus {
            conditions: vec![waiting(condition), waiting("Ready")],
            state: OverallState::Progressing,
            verdict: Verdict::Settled,
        };
        let previous = PhaseRecord::from_status(self.stored);
        let eval = Evaluation::new(
            computed,
            Phase::Pending,
            &[],
            previous.as_ref(),
            self.now,
            self.limits,
        );
        let mut draft = Draft::automatic(&eval, self.generation);
        draft.complete = self.mode == StatusMode::Automatic;
        (eval, draft)
    }
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Whether writing `doc` would change the stored status (a null and a missing key are the same).
pub fn changes(doc: &Map<String, Value>, stored: &Value, complete: bool) -> bool {
    let differs = doc
        .iter()
        .any(|(k, v)| present(Some(v)) != present(stored.get(k)));
    let dropped = complete
        && stored
            .as_object()
            .is_some_and(|m| m.iter().any(|(k, v)| !v.is_null() && !doc.contains_key(k)));
    differs || dropped
}

/// The merge patch writing `doc`: with nulls for the stored keys it drops when `complete`.
pub fn patch(doc: &Map<String, Value>, stored: &Value, complete: bool) -> Value {
    let mut patch = doc.clone();
    if complete && let Some(m) = stored.as_object() {
        for k in m.keys() {
            patch.entry(k.clone()).or_insert(Value::Null);
        }
    }
    Value::Object(patch)
}

/// The status once `patch` (a merge patch of `status`) is applied to `stored`.
pub fn merged(stored: &Value, patch: &Value) -> Value {
    let mut out = stored.as_object().cloned().unwrap_or_default();
    if let Some(p) = patch.as_object() {
        for (k, v) in p {
            if v.is_null() {
                out.remove(k);
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{CategorizedError, Condition, ErrorCategory, HealthState, Observability};
    use crate::reconcile::compute;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn health(state: HealthState, errors: &[ErrorCategory]) -> Vec<ComponentHealth> {
        vec![ComponentHealth {
            component: "Deployment".into(),
            state,
            reason: "R".into(),
            message: "m".into(),
            errors: errors
                .iter()
                .map(|c| CategorizedError {
                    category: *c,
                    message: "bad".into(),
                })
                .collect(),
            requeue_after: None,
        }]
    }

    fn evaluate(h: &[ComponentHealth], previous: Option<&PhaseRecord>) -> Evaluation {
        let computed = compute(h, false, Observability::Info);
        let phase = Phase::from_status(&computed, previous.map(|p| p.phase));
        Evaluation::new(computed, phase, h, previous, now(), &HashMap::new())
    }

    #[test]
    fn automatic_status_has_phase_and_failure_fields() {
        let e = evaluate(&health(HealthState::Progressing, &[]), None);
        let d = Draft::automatic(&e, Some(3));
        assert_eq!(d.fields["status"], "Progressing");
        assert_eq!(d.fields["phase"], "Creating");
        assert_eq!(d.fields["lastPhaseTransitionTime"], NOW);
        assert_eq!(d.fields["observedGeneration"], 3);
        assert_eq!(d.fields["failureReason"], Value::Null, "cleared");
        let failed = evaluate(
            &health(HealthState::Progressing, &[ErrorCategory::InvalidSpec]),
            None,
        );
        let d = Draft::automatic(&failed, Some(3));
        assert_eq!(d.fields["phase"], "Failed");
        assert_eq!(d.fields["failureReason"], "InvalidSpec");
        assert_eq!(d.fields["failureMessage"], "bad");
        let (doc, _) = d.render(&Value::Null, Some(3), NOW);
        assert!(terminal(&Value::Object(doc.clone()), Some(3)));
        assert!(
            !terminal(&Value::Object(doc), Some(4)),
            "a new generation is tried again"
        );
    }

    #[test]
    fn a_timeout_fails_ready_with_its_reason() {
        let previous = PhaseRecord {
            phase: Phase::Creating,
            since: "2025-12-31T23:00:00Z".parse().unwrap(),
        };
        let h = health(HealthState::Progressing, &[]);
        let computed = compute(&h, false, Observability::Info);
        let limits = HashMap::from([("Creating".to_owned(), Duration::from_secs(60))]);
        let e = Evaluation::new(
            computed,
            Phase::Creating,
            &h,
            Some(&previous),
            now(),
            &limits,
        );
        assert!(e.terminal());
        assert_eq!(e.timed.phase, Phase::Failed);
        assert_eq!(e.computed.verdict, Verdict::Fail);
        let ready = e
            .computed
            .conditions
            .iter()
            .find(|c| c.condition_type == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "CreatingTimeout")
        );
        let d = Draft::automatic(&e, Some(1));
        assert_eq!(d.fields["failureReason"], "CreatingTimeout");
        assert_eq!(d.fields["status"], "Failed");
    }

    fn update(fields: Value, conditions: Vec<Condition>) -> CheckedStatus {
        CheckedStatus { fields, conditions }
    }

    fn condition(t: &str, status: ConditionStatus) -> Condition {
        Condition {
            condition_type: t.into(),
            status,
            reason: "Because".into(),
            message: "msg".into(),
            observability: Observability::Warning,
        }
    }

    #[test]
    fn decorate_adds_fields_and_conditions_but_keeps_host_keys() {
        let e = evaluate(&health(HealthState::Ready, &[]), None);
        let d = Draft::automatic(&e, Some(1)).decorate(update(
            json!({"ready": true, "phase": "Bogus", "vpcId": "vpc-1"}),
            vec![condition("Reachable", ConditionStatus::True)],
        ));
        assert_eq!(d.fields["ready"], true);
        assert_eq!(d.fields["vpcId"], "vpc-1");
        assert_eq!(d.fields["phase"], "Ready", "host keys stay the host's");
        let (doc, report) = d.render(&Value::Null, Some(1), NOW);
        let types: Vec<_> = doc["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(types.last().unwrap(), "Reachable");
        assert!(report.iter().all(|(_, transitioned)| *transitioned));
        let plugin = report
            .iter()
            .find(|(c, _)| c.condition_type == "Reachable")
            .unwrap();
        assert_eq!(
            plugin.0.observability,
            Observability::Warning,
            "own observability"
        );
    }

    #[test]
    fn manual_status_replaces_all_but_observed_generation() {
        let d = Draft::manual(
            update(
                json!({"custom": 1, "observedGeneration": 99, "conditions": []}),
                vec![condition("Custom", ConditionStatus::False)],
            ),
            Some(4),
        );
        let (doc, _) = d.render(&Value::Null, Some(4), NOW);
        assert_eq!(doc["custom"], 1);
        assert_eq!(doc["observedGeneration"], 4);
        assert_eq!(doc["conditions"][0]["type"], "Custom");
        assert!(!doc.contains_key("phase"));
    }

    #[test]
    fn unchanged_status_is_not_written() {
        let e = evaluate(&health(HealthState::Ready, &[]), None);
        let d = Draft::automatic(&e, Some(1));
        let (doc, _) = d.render(&Value::Null, Some(1), NOW);
        let stored = merged(&Value::Null, &patch(&doc, &Value::Null, true));
        assert!(
            stored.get("failureReason").is_none(),
            "nulls are not stored"
        );
        let (again, report) = d.render(&stored, Some(1), "2026-02-01T00:00:00Z");
        assert!(!changes(&again, &stored, true));
        assert!(report.iter().all(|(_, transitioned)| !transitioned));
        let mut extra = stored.clone();
        extra["leftover"] = json!(1);
        assert!(
            changes(&again, &extra, true),
            "a whole status drops leftovers"
        );
        assert!(!changes(&again, &extra, false));
        assert_eq!(patch(&again, &extra, true)["leftover"], Value::Null);
    }
}
