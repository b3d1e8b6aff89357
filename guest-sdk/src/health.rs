//! Component health, the categorized errors of seed 003, and health inspectors for common kinds.

use k8s_openapi::api::apps::v1::Deployment;

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

/// Health of a Deployment: ready when every desired replica is updated and available.
pub fn deployment(component: &str, found: Option<&Deployment>) -> ComponentHealth {
    let Some(dep) = found else {
        return ComponentHealth::progressing(component, "NotFound", "not created yet").with_error(
            Error::new(
                ErrorCategory::MissingDownstreamDependency,
                "deployment not found",
            ),
        );
    };
    let desired = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = dep.status.clone().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if available >= desired && updated >= desired {
        ComponentHealth::ready(
            component,
            "Available",
            format!("{available}/{desired} replicas available"),
        )
    } else {
        ComponentHealth::progressing(
            component,
            "RollingOut",
            format!("{available}/{desired} replicas available, {updated} updated"),
        )
    }
}

/// Health of an object that is ready as soon as it exists (a Service, a ConfigMap).
pub fn exists<T>(component: &str, found: Option<&T>) -> ComponentHealth {
    match found {
        Some(_) => ComponentHealth::ready(component, "Exists", "created"),
        None => ComponentHealth::progressing(component, "NotFound", "not created yet").with_error(
            Error::new(
                ErrorCategory::MissingDownstreamDependency,
                format!("{component} not found"),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn dep(replicas: i32, available: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                available_replicas: Some(available),
                updated_replicas: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn deployment_health_follows_replicas() {
        assert_eq!(
            deployment("Deployment", Some(&dep(3, 3))).state,
            HealthState::Ready
        );
        assert_eq!(
            deployment("Deployment", Some(&dep(3, 1))).state,
            HealthState::Progressing
        );
        let missing = deployment("Deployment", None);
        assert_eq!(
            missing.errors[0].category,
            ErrorCategory::MissingDownstreamDependency
        );
    }
}
