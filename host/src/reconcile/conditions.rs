//! Status from component health (seed 003): component conditions, parent conditions, `Ready`,
//! `status.status`, and transition times that change only when a condition's status does.

use crate::contract::{
    ComponentHealth, Condition, ConditionStatus, ErrorCategory, HealthState, Observability,
};
use serde_json::{Value, json};

/// Overall state written to `status.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverallState {
    /// Every component is ready.
    Ready,
    /// Converging: a component is not ready yet, or a transient error is within its grace period.
    Progressing,
    /// Something works only in part.
    Degraded,
    /// A blocking error: auth, invalid spec, missing upstream dependency, resource exhaustion.
    Failed,
}

impl OverallState {
    /// The word written to `status.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Failed => "Failed",
        }
    }
}

/// One computed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedCondition {
    /// Type, e.g. `DeploymentReady`.
    pub condition_type: String,
    /// Status.
    pub status: ConditionStatus,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// How transitions are reported.
    pub observability: Observability,
}

impl ComputedCondition {
    /// A condition.
    pub fn new(
        condition_type: &str,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        observability: Observability,
    ) -> Self {
        Self {
            condition_type: condition_type.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            observability,
        }
    }

    /// Whether the condition holds (`True`); anything else counts as not healthy.
    pub fn healthy(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

impl From<Condition> for ComputedCondition {
    fn from(c: Condition) -> Self {
        Self {
            condition_type: c.condition_type,
            status: c.status,
            reason: c.reason,
            message: c.message,
            observability: c.observability,
        }
    }
}

/// What the host does after a reconcile, by error category (seed 003's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy or converging: nothing to do until something changes.
    Settled,
    /// Requeue with backoff (infrastructure errors).
    Requeue,
    /// Stop applying and fail the resource until its spec changes.
    Fail,
}

/// The status computed from component health.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedStatus {
    /// Conditions, in a stable order: components, then parents, then `Ready`.
    pub conditions: Vec<ComputedCondition>,
    /// The overall state.
    pub state: OverallState,
    /// The host's reaction.
    pub verdict: Verdict,
}

fn cond(t: &str, ok: bool, reason: &str, message: &str) -> ComputedCondition {
    ComputedCondition {
        condition_type: t.to_owned(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_owned(),
        message: message.to_owned(),
        observability: Observability::Info,
    }
}

/// Compute conditions from component health. `in_grace` tells whether infrastructure errors are
/// still inside their grace period (then they show as Progressing, not as failures);
/// `observability` is how transitions of every computed condition are reported (the manifest's).
pub fn compute(
    health: &[ComponentHealth],
    in_grace: bool,
    observability: Observability,
) -> ComputedStatus {
    let mut status = compute_conditions(health, in_grace);
    for c in &mut status.conditions {
        c.observability = observability;
    }
    status
}

fn compute_conditions(health: &[ComponentHealth], in_grace: bool) -> ComputedStatus {
    let mut conditions: Vec<ComputedCondition> = health
        .iter()
        .map(|h| {
            cond(
                &format!("{}Ready", h.component),
                h.state == HealthState::Ready,
                &h.reason,
                &h.message,
            )
        })
        .collect();
    let errors: Vec<_> = health.iter().flat_map(|h| h.errors.iter()).collect();
    let first = |cats: &[ErrorCategory]| {
        errors
            .iter()
            .find(|e| cats.contains(&e.category))
            .map(|e| e.message.clone())
    };
    let auth = first(&[ErrorCategory::Auth]);
    let config = first(&[
        ErrorCategory::InvalidSpec,
        ErrorCategory::MissingUpstreamDependency,
    ]);
    let infra = first(&[ErrorCategory::Infrastructure]);
    let exhausted = first(&[ErrorCategory::ResourceExhaustion]);
    conditions.push(match &auth {
        Some(m) => cond("AuthValid", false, "AuthFailed", m),
        None => cond("AuthValid", true, "AuthValid", "no authentication errors"),
    });
    conditions.push(match &config {
        Some(m) => cond("ConfigValid", false, "ConfigInvalid", m),
        None => cond("ConfigValid", true, "ConfigValid", "configuration is valid"),
    });
    conditions.push(match (&infra, in_grace) {
        (Some(m), false) => cond("DependenciesReachable", false, "Unreachable", m),
        (Some(m), true) => {
            let mut c = cond("DependenciesReachable", true, "Retrying", m);
            c.status = ConditionStatus::Unknown;
            c
        }
        (None, _) => cond(
            "DependenciesReachable",
            true,
            "Reachable",
            "dependencies are reachable",
        ),
    });
    let blocking = auth.is_some()
        || config.is_some()
        || exhausted.is_some()
        || health.iter().any(|h| h.state == HealthState::Failed);
    let all_ready = health.iter().all(|h| h.state == HealthState::Ready);
    let (state, verdict) = if blocking {
        (OverallState::Failed, Verdict::Fail)
    } else if infra.is_some() {
        (
            if in_grace {
                OverallState::Progressing
            } else {
                OverallState::Degraded
            },
            Verdict::Requeue,
        )
    } else if all_ready {
        (OverallState::Ready, Verdict::Settled)
    } else if health.iter().any(|h| h.state == HealthState::Degraded) {
        (OverallState::Degraded, Verdict::Settled)
    } else {
        (OverallState::Progressing, Verdict::Settled)
    };
    let not_ready: Vec<&str> = health
        .iter()
        .filter(|h| h.state != HealthState::Ready)
        .map(|h| h.component.as_str())
        .collect();
    conditions.push(if state == OverallState::Ready {
        cond(
            "Ready",
            true,
            "AllComponentsReady",
            "all components are ready",
        )
    } else {
        cond(
            "Ready",
            false,
            state.as_str(),
            &format!("not ready: {}", not_ready.join(", ")),
        )
    });
    ComputedStatus {
        conditions,
        state,
        verdict,
    }
}

fn status_word(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

/// Render conditions as `metav1.Condition` JSON, keeping `lastTransitionTime` from `previous`
/// (the object's current `status.conditions`) for every condition whose status did not change.
/// Returns the conditions and the types that transitioned.
pub fn render(
    computed: &[ComputedCondition],
    previous: Option<&Value>,
    generation: Option<i64>,
    now: &str,
) -> (Vec<Value>, Vec<String>) {
    let old = |t: &str| {
        previous.and_then(Value::as_array).and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
        })
    };
    let mut transitioned = Vec::new();
    let rendered = computed
        .iter()
        .map(|c| {
            let status = status_word(c.status);
            let prior = old(&c.condition_type);
            let since = match prior {
                Some(p) if p.get("status").and_then(Value::as_str) == Some(status) => p
                    .get("lastTransitionTime")
                    .and_then(Value::as_str)
                    .unwrap_or(now)
                    .to_owned(),
                _ => {
                    transitioned.push(c.condition_type.clone());
                    now.to_owned()
                }
            };
            let mut v = json!({
                "type": c.condition_type,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
            });
            if let Some(g) = generation {
                v["observedGeneration"] = json!(g);
            }
            v
        })
        .collect();
    (rendered, transitioned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::CategorizedError;

    fn h(component: &str, state: HealthState, errors: &[(ErrorCategory, &str)]) -> ComponentHealth {
        ComponentHealth {
            component: component.into(),
            state,
            reason: "R".into(),
            message: "m".into(),
            errors: errors
                .iter()
                .map(|(c, m)| CategorizedError {
                    category: *c,
                    message: (*m).into(),
                })
                .collect(),
            requeue_after: None,
        }
    }

    fn status_of(s: &ComputedStatus, t: &str) -> ConditionStatus {
        s.conditions
            .iter()
            .find(|c| c.condition_type == t)
            .map(|c| c.status)
            .unwrap()
    }

    #[test]
    fn all_ready_is_ready() {
        let s = compute(
            &[
                h("Deployment", HealthState::Ready, &[]),
                h("Service", HealthState::Ready, &[]),
            ],
            false,
            Observability::Info,
        );
        assert_eq!(
            (s.state, s.verdict),
            (OverallState::Ready, Verdict::Settled)
        );
        assert_eq!(status_of(&s, "DeploymentReady"), ConditionStatus::True);
        assert_eq!(status_of(&s, "Ready"), ConditionStatus::True);
        let types: Vec<_> = s
            .conditions
            .iter()
            .map(|c| c.condition_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "DeploymentReady",
                "ServiceReady",
                "AuthValid",
                "ConfigValid",
                "DependenciesReachable",
                "Ready"
            ]
        );
    }

    #[test]
    fn categories_follow_the_seed_table() {
        let cases = [
            (
                ErrorCategory::Auth,
                "AuthValid",
                OverallState::Failed,
                Verdict::Fail,
            ),
            (
                ErrorCategory::InvalidSpec,
                "ConfigValid",
                OverallState::Failed,
                Verdict::Fail,
            ),
            (
                ErrorCategory::MissingUpstreamDependency,
                "ConfigValid",
                OverallState::Failed,
                Verdict::Fail,
            ),
            (
                ErrorCategory::Infrastructure,
                "DependenciesReachable",
                OverallState::Degraded,
                Verdict::Requeue,
            ),
        ];
        for (cat, parent, state, verdict) in cases {
            let s = compute(
                &[h("Deployment", HealthState::Progressing, &[(cat, "boom")])],
                false,
                Observability::Info,
            );
            assert_eq!(status_of(&s, parent), ConditionStatus::False, "{cat:?}");
            assert_eq!((s.state, s.verdict), (state, verdict), "{cat:?}");
            assert_eq!(status_of(&s, "Ready"), ConditionStatus::False);
        }
        let exhausted = compute(
            &[h(
                "Storage",
                HealthState::Failed,
                &[(ErrorCategory::ResourceExhaustion, "disk full")],
            )],
            false,
            Observability::Info,
        );
        assert_eq!(
            (exhausted.state, exhausted.verdict),
            (OverallState::Failed, Verdict::Fail)
        );
        assert_eq!(
            status_of(&exhausted, "StorageReady"),
            ConditionStatus::False
        );
        let downstream = compute(
            &[h(
                "Deployment",
                HealthState::Progressing,
                &[(ErrorCategory::MissingDownstreamDependency, "not yet")],
            )],
            false,
            Observability::Info,
        );
        assert_eq!(
            (downstream.state, downstream.verdict),
            (OverallState::Progressing, Verdict::Settled)
        );
    }

    #[test]
    fn infrastructure_errors_in_grace_are_progressing() {
        let s = compute(
            &[h(
                "Deployment",
                HealthState::Progressing,
                &[(ErrorCategory::Infrastructure, "timeout")],
            )],
            true,
            Observability::Info,
        );
        assert_eq!(
            (s.state, s.verdict),
            (OverallState::Progressing, Verdict::Requeue)
        );
        assert_eq!(
            status_of(&s, "DependenciesReachable"),
            ConditionStatus::Unknown
        );
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let ready = compute(
            &[h("Deployment", HealthState::Ready, &[])],
            false,
            Observability::Info,
        );
        let (first, changed) = render(&ready.conditions, None, Some(1), "2026-01-01T00:00:00Z");
        assert_eq!(changed.len(), first.len(), "everything is new");
        let previous = Value::Array(first);
        let (second, changed) = render(
            &ready.conditions,
            Some(&previous),
            Some(2),
            "2026-01-02T00:00:00Z",
        );
        assert!(changed.is_empty());
        assert_eq!(second[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(second[0]["observedGeneration"], 2);
        let broken = compute(
            &[h("Deployment", HealthState::Progressing, &[])],
            false,
            Observability::Info,
        );
        let (third, changed) = render(
            &broken.conditions,
            Some(&Value::Array(second)),
            Some(3),
            "2026-01-03T00:00:00Z",
        );
        assert_eq!(changed, ["DeploymentReady", "Ready"]);
        assert_eq!(third[0]["lastTransitionTime"], "2026-01-03T00:00:00Z");
        assert_eq!(
            third[1]["lastTransitionTime"], "2026-01-01T00:00:00Z",
            "AuthValid did not change"
        );
    }
}
