//! Admission: a check a write passes after it is built and before it is stored, seeing the state
//! it would be stored in (under the same lock), such as RBAC's escalation check.

use std::fmt;

use serde_json::Value;

use crate::cluster::Inner;
use crate::error::ApiError;
use crate::verbs::Target;

/// Checks a create, update, patch or apply before it is stored.
pub trait Admission: fmt::Debug + Send + Sync {
    /// Allows storing `new` at `target` (`old` is the stored object an update replaces, None for a
    /// create), or refuses it.
    ///
    /// # Errors
    /// The [`ApiError`] the client is answered.
    fn admit(
        &self,
        inner: &Inner,
        target: &Target,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError>;
}
