//! Conditions and the status a reconciler reports in `decorate` or `manual` status mode.
//!
//! The types are the contract's own (generated from `wit/`); this module adds their builders.

pub use crate::wit::capstan::controller::types::{
    CleanupOutcome, Condition, ConditionStatus, Observability, StatusUpdate,
};

impl Default for Observability {
    /// [`Observability::Info`]: an info log and a Normal event on transition.
    fn default() -> Self {
        Self::Info
    }
}

impl Condition {
    /// A condition that holds.
    pub fn mark_true(condition_type: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(condition_type, ConditionStatus::True, reason, message)
    }

    /// A condition that does not hold.
    pub fn mark_false(condition_type: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(condition_type, ConditionStatus::False, reason, message)
    }

    /// A condition in a status, reported with [`Observability::Info`]; the host sets transition
    /// times.
    pub fn new(
        condition_type: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            condition_type: condition_type.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            observability: Observability::Info,
        }
    }

    /// Neither log nor event on transition.
    #[must_use]
    pub fn silent(mut self) -> Self {
        self.observability = Observability::Silent;
        self
    }

    /// Error log and Warning event on transition.
    #[must_use]
    pub fn as_warning(mut self) -> Self {
        self.observability = Observability::Warning;
        self
    }

    /// Error log and Warning event on every reconcile.
    #[must_use]
    pub fn as_error(mut self) -> Self {
        self.observability = Observability::Error;
        self
    }
}

impl StatusUpdate {
    /// No field and no condition.
    pub fn new() -> Self {
        Self {
            fields: "{}".to_owned(),
            conditions: Vec::new(),
        }
    }

    /// Merge these fields into `.status`; `fields` should be a JSON object.
    #[must_use]
    pub fn with_fields(mut self, fields: &serde_json::Value) -> Self {
        self.fields = fields.to_string();
        self
    }

    /// Set a condition, in addition to (decorate) or instead of (manual) the automatic ones.
    #[must_use]
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// The fields as JSON, for assertions in tests (`Null` if they are not JSON).
    pub fn fields_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.fields).unwrap_or(serde_json::Value::Null)
    }
}

impl Default for StatusUpdate {
    /// [`StatusUpdate::new`].
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_update_carries_fields_and_conditions() {
        let update = StatusUpdate::new()
            .with_fields(&serde_json::json!({"calls": 4}))
            .with_condition(Condition::mark_true("Ready", "Done", "ok").silent());
        assert_eq!(update.fields_json()["calls"], 4);
        assert_eq!(update.conditions[0].status, ConditionStatus::True);
        assert_eq!(update.conditions[0].observability, Observability::Silent);
        assert_eq!(StatusUpdate::default().fields_json(), serde_json::json!({}));
    }
}
