//! Component health and the categorized errors of seed 003; inspectors live in [`crate::inspect`].

pub use crate::inspect::{deployment, exists};

/// The categories of reconcile errors; each decides what the host does (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// Network timeout, API server down: requeue with backoff after a grace period.
    Infrastructure,
    /// Forbidden or invalid credentials: stop, fail the resource.
    Auth,
    /// Invalid configuration: stop, fail the resource.
    InvalidSpec,
    /// A user-referenced object is missing: stop, fail the resource.
    MissingUpstreamDependency,
    /// An object the controller creates is not ready yet: progressing.
    MissingDownstreamDependency,
    /// Out of memory, disk or quota: stop, fail the resource.
    ResourceExhaustion,
}

/// An error with its category: what `fetch`, `plan` and `cleanup` return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The category.
    pub category: ErrorCategory,
    /// Human-readable description.
    pub message: String,
}

impl Error {
    /// An error of a category.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
        }
    }

    /// An invalid-spec error.
    pub fn invalid_spec(message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::InvalidSpec, message)
    }

    /// An infrastructure error.
    pub fn infrastructure(message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Infrastructure, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.category, self.message)
    }
}

impl std::error::Error for Error {}

/// The state of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Ready.
    Ready,
    /// Being created or converging.
    Progressing,
    /// Working, but not fully.
    Degraded,
    /// Failed.
    Failed,
    /// Cannot tell.
    Unknown,
}

/// The health of one component; the host turns it into a `<Component>Ready` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ComponentHealth {
    /// Component name in CamelCase.
    pub component: String,
    /// State.
    pub state: HealthState,
    /// Machine-readable reason in CamelCase.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Errors found while inspecting.
    pub errors: Vec<Error>,
    /// Ask the host to reconcile again after this long (for state no watch reports).
    pub requeue_after: Option<std::time::Duration>,
}

impl ComponentHealth {
    /// A component in a state.
    pub fn new(
        component: &str,
        state: HealthState,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            component: component.to_owned(),
            state,
            reason: reason.to_owned(),
            message: message.into(),
            errors: Vec::new(),
            requeue_after: None,
        }
    }

    /// A ready component.
    pub fn ready(component: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(component, HealthState::Ready, reason, message)
    }

    /// A progressing component.
    pub fn progressing(component: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(component, HealthState::Progressing, reason, message)
    }

    /// A failed component.
    pub fn failed(component: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(component, HealthState::Failed, reason, message)
    }

    /// Attach an error; the host categorizes the reconcile by it.
    pub fn with_error(mut self, error: Error) -> Self {
        self.errors.push(error);
        self
    }

    /// Ask the host to reconcile again after `delay`, e.g. to poll an external system.
    pub fn requeue_after(mut self, delay: std::time::Duration) -> Self {
        self.requeue_after = Some(delay);
        self
    }
}
