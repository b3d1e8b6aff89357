//! Bounds on the lists and texts a call returns (plan entries, component health, status
//! conditions and fields), checked before the host uses them, so that what a plugin returns can
//! never make a status write fail later (kube-apiserver refuses objects over 1.5 MiB with 413).
//!
//! Counts and total sizes come from [`Limits`]; the length of each condition field is
//! Kubernetes' own (`metav1.Condition`: type 316, reason 1024, message 32768 bytes).

use super::limits::Limits;
use crate::contract::{ComponentHealth, Condition};

/// The longest condition type (`metav1.Condition.type`).
pub const MAX_CONDITION_TYPE: usize = 316;
/// The longest condition reason (`metav1.Condition.reason`).
pub const MAX_CONDITION_REASON: usize = 1024;
/// The longest condition message (`metav1.Condition.message`).
pub const MAX_CONDITION_MESSAGE: usize = 32768;
/// The suffix a component's condition type gets (`<component>Ready`).
const COMPONENT_SUFFIX: &str = "Ready";

/// A returned value over a bound. Names the field and the knob that sets the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// A list holds too many entries.
    #[error("{field}: {count} entries, over the limit of {max} ({knob})")]
    TooMany {
        /// The list.
        field: String,
        /// Entries returned.
        count: usize,
        /// Entries allowed.
        max: usize,
        /// What sets the limit.
        knob: &'static str,
    },
    /// A text, or the texts of a list, are too long.
    #[error("{field}: {bytes} bytes, over the limit of {max} ({knob})")]
    TooLarge {
        /// The field.
        field: String,
        /// Bytes returned.
        bytes: usize,
        /// Bytes allowed.
        max: usize,
        /// What sets the limit.
        knob: &'static str,
    },
}

const KNOB_PLAN: &str = "limits.maxPlanEntries";
const KNOB_CONDITIONS: &str = "limits.maxConditions";
const KNOB_STATUS: &str = "limits.maxStatusKiB";
const KUBERNETES: &str = "Kubernetes' metav1.Condition";

fn count(field: &str, count: usize, max: usize, knob: &'static str) -> Result<(), BoundsError> {
    if count > max {
        return Err(BoundsError::TooMany {
            field: field.to_owned(),
            count,
            max,
            knob,
        });
    }
    Ok(())
}

fn size(field: String, bytes: usize, max: usize, knob: &'static str) -> Result<(), BoundsError> {
    if bytes > max {
        return Err(BoundsError::TooLarge {
            field,
            bytes,
            max,
            knob,
        });
    }
    Ok(())
}

/// A plan: at most `max_plan_entries` entries (its bytes are bounded by `max_value_bytes`, as
/// every returned value is).
pub fn plan(limits: &Limits, entries: usize) -> Result<(), BoundsError> {
    count("plan", entries, limits.max_plan_entries, KNOB_PLAN)
}

/// A health report: at most `max_conditions` components, each with at most `max_conditions`
/// errors; each component's name, reason and message fit a condition; at most
/// `max_status_bytes` of text in all.
pub fn health(limits: &Limits, health: &[ComponentHealth]) -> Result<(), BoundsError> {
    count(
        "component health",
        health.len(),
        limits.max_conditions,
        KNOB_CONDITIONS,
    )?;
    let mut total = 0;
    for (i, h) in health.iter().enumerate() {
        let at = |f: &str| format!("component health[{i}] ({}).{f}", cut(&h.component));
        size(
            at("component"),
            h.component.len(),
            MAX_CONDITION_TYPE - COMPONENT_SUFFIX.len(),
            KUBERNETES,
        )?;
        size(
            at("reason"),
            h.reason.len(),
            MAX_CONDITION_REASON,
            KUBERNETES,
        )?;
        size(
            at("message"),
            h.message.len(),
            MAX_CONDITION_MESSAGE,
            KUBERNETES,
        )?;
        count(
            &at("errors"),
            h.errors.len(),
            limits.max_conditions,
            KNOB_CONDITIONS,
        )?;
        for (j, e) in h.errors.iter().enumerate() {
            size(
                at(&format!("errors[{j}].message")),
                e.message.len(),
                MAX_CONDITION_MESSAGE,
                KUBERNETES,
            )?;
        }
        total += h.component.len()
            + h.reason.len()
            + h.message.len()
            + h.errors.iter().map(|e| e.message.len()).sum::<usize>();
    }
    size(
        "component health".into(),
        total,
        limits.max_status_bytes,
        KNOB_STATUS,
    )
}

/// A status update: at most `max_conditions` conditions whose fields fit `metav1.Condition`, and
/// at most `max_status_bytes` of fields (`fields_bytes`, as JSON) and condition text in all.
pub fn status(
    limits: &Limits,
    fields_bytes: usize,
    conditions: &[Condition],
) -> Result<(), BoundsError> {
    count(
        "status conditions",
        conditions.len(),
        limits.max_conditions,
        KNOB_CONDITIONS,
    )?;
    let mut total = fields_bytes;
    for (i, c) in conditions.iter().enumerate() {
        let at = |f: &str| format!("status conditions[{i}] ({}).{f}", cut(&c.condition_type));
        size(
            at("type"),
            c.condition_type.len(),
            MAX_CONDITION_TYPE,
            KUBERNETES,
        )?;
        size(
            at("reason"),
            c.reason.len(),
            MAX_CONDITION_REASON,
            KUBERNETES,
        )?;
        size(
            at("message"),
            c.message.len(),
            MAX_CONDITION_MESSAGE,
            KUBERNETES,
        )?;
        total += c.condition_type.len() + c.reason.len() + c.message.len();
    }
    size("status".into(), total, limits.max_status_bytes, KNOB_STATUS)
}

/// A name as it may appear in an error message: at most 64 bytes.
fn cut(s: &str) -> &str {
    super::output::cut(s, 64).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{
        CategorizedError, ConditionStatus, ErrorCategory, HealthState, Observability,
    };

    fn component(name: &str) -> ComponentHealth {
        ComponentHealth {
            component: name.into(),
            state: HealthState::Ready,
            reason: "Available".into(),
            message: "ok".into(),
            errors: vec![],
            requeue_after: None,
        }
    }

    fn condition(t: &str) -> Condition {
        Condition {
            condition_type: t.into(),
            status: ConditionStatus::True,
            reason: "R".into(),
            message: "m".into(),
            observability: Observability::Info,
        }
    }

    #[test]
    fn plans_are_bounded_in_entries() {
        let l = Limits::default();
        assert!(plan(&l, 256).is_ok());
        let e = plan(&l, 257).unwrap_err();
        assert_eq!(
            e.to_string(),
            "plan: 257 entries, over the limit of 256 (limits.maxPlanEntries)"
        );
        assert!(plan(&l.max_plan_entries(1000), 257).is_ok());
    }

    #[test]
    fn health_is_bounded_in_components_fields_and_bytes() {
        let l = Limits::default();
        let ok: Vec<_> = (0..64).map(|i| component(&format!("C{i}"))).collect();
        assert!(health(&l, &ok).is_ok());
        let many: Vec<_> = (0..10_000).map(|i| component(&format!("C{i}"))).collect();
        let e = health(&l, &many).unwrap_err();
        assert_eq!(
            e.to_string(),
            "component health: 10000 entries, over the limit of 64 (limits.maxConditions)"
        );
        let mut long = component("Deployment");
        long.reason = "R".repeat(1025);
        let e = health(&l, &[long]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "component health[0] (Deployment).reason: 1025 bytes, over the limit of 1024 (Kubernetes' metav1.Condition)"
        );
        let e = health(&l, &[component(&"C".repeat(312))]).unwrap_err();
        assert!(e.to_string().contains(".component: 312 bytes"), "{e}");
        let mut errors = component("Db");
        errors.errors = vec![
            CategorizedError {
                category: ErrorCategory::Infrastructure,
                message: String::new(),
            };
            65
        ];
        assert!(health(&l, &[errors]).is_err(), "too many errors");
        // Each message fits, but together they are over the status budget.
        let big: Vec<_> = (0..10)
            .map(|i| {
                let mut c = component(&format!("C{i}"));
                c.message = "m".repeat(30_000);
                c
            })
            .collect();
        let e = health(&l, &big).unwrap_err();
        assert!(e.to_string().contains("limits.maxStatusKiB"), "{e}");
    }

    #[test]
    fn status_updates_are_bounded_in_conditions_and_bytes() {
        let l = Limits::default().max_conditions(2).max_status_bytes(100);
        assert!(status(&l, 10, &[condition("A"), condition("B")]).is_ok());
        let e = status(&l, 10, &[condition("A"), condition("B"), condition("C")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status conditions: 3 entries, over the limit of 2 (limits.maxConditions)"
        );
        let e = status(&l, 200, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status: 200 bytes, over the limit of 100 (limits.maxStatusKiB)"
        );
        let e = status(&Limits::default(), 0, &[condition(&"T".repeat(317))]).unwrap_err();
        assert!(e.to_string().contains(").type: 317 bytes"), "{e}");
    }
}
