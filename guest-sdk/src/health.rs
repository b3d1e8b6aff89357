//! Component health and the categorized errors of seed 003; inspectors live in [`crate::inspect`].
//!
//! The types are the contract's own (generated from `wit/`); this module adds their builders.

pub use crate::inspect::{deployment, exists};
pub use crate::wit::capstan::controller::types::{
    CategorizedError, ComponentHealth, ErrorCategory, HealthState,
};
use std::time::Duration;

/// The error `fetch`, `plan` and `cleanup` return: a [`CategorizedError`] (a `std::error::Error`).
pub type Error = CategorizedError;

impl CategorizedError {
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
    #[must_use]
    pub fn with_error(mut self, error: Error) -> Self {
        self.errors.push(error);
        self
    }

    /// Ask the host to reconcile again after `delay` (whole seconds), e.g. to poll an external
    /// system.
    #[must_use]
    pub fn requeue_after(mut self, delay: Duration) -> Self {
        self.requeue_after = Some(u32::try_from(delay.as_secs()).unwrap_or(u32::MAX));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_contract_record() {
        let h = ComponentHealth::progressing("Vpc", "Creating", "not yet")
            .with_error(Error::infrastructure("timeout"))
            .requeue_after(Duration::from_millis(30_500));
        assert_eq!(h.state, HealthState::Progressing);
        assert_eq!(h.errors[0].category, ErrorCategory::Infrastructure);
        assert_eq!(h.requeue_after, Some(30));
        let err: Box<dyn std::error::Error> = Box::new(Error::invalid_spec("bad"));
        assert!(err.to_string().contains("bad"), "{err}");
    }
}
