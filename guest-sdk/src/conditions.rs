//! Conditions and the status a reconciler reports in `decorate` or `manual` status mode.

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Not known.
    Unknown,
}

/// How the host reports transitions of a condition (seed 003 observability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Observability {
    /// Neither log nor event.
    Silent,
    /// Info log and Normal event on transition.
    #[default]
    Info,
    /// Error log and Warning event on transition.
    Warning,
    /// Error log and Warning event on every reconcile.
    Error,
}

/// A status condition, as in `metav1.Condition`; the host sets transition times.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    pub condition_type: String,
    /// Status.
    pub status: ConditionStatus,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// How transitions are reported.
    pub observability: Observability,
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

    fn new(
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
    pub fn silent(mut self) -> Self {
        self.observability = Observability::Silent;
        self
    }

    /// Error log and Warning event on transition.
    pub fn as_warning(mut self) -> Self {
        self.observability = Observability::Warning;
        self
    }

    /// Error log and Warning event on every reconcile.
    pub fn as_error(mut self) -> Self {
        self.observability = Observability::Error;
        self
    }
}

/// Status fields and conditions reported by [`crate::Reconciler::status`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUpdate {
    /// Fields merged into `.status`; must be a JSON object (or null for none).
    pub fields: serde_json::Value,
    /// Conditions to set.
    pub conditions: Vec<Condition>,
}

/// What cleanup achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Finished: the host removes the finalizer.
    Done,
    /// Under way: call again after this many seconds.
    RequeueAfter(u32),
}
