//! API errors and their rendering as `metav1.Status` objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field-manager conflict found by server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The manager that owns the field.
    pub manager: String,
    /// The field, as a dotted path such as `.spec.replicas`.
    pub field: String,
}

/// An error answered to a client as a `metav1.Status` object.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object or resource does not exist (404).
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Resource (plural, with group when not core).
        resource: String,
        /// Object name.
        name: String,
    },
    /// The path names no served resource (404).
    #[error("the server could not find the requested resource")]
    UnknownResource,
    /// The object already exists (409).
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Resource (plural, with group when not core).
        resource: String,
        /// Object name.
        name: String,
    },
    /// Optimistic-concurrency or precondition failure (409).
    #[error("operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        /// Resource (plural, with group when not core).
        resource: String,
        /// Object name.
        name: String,
        /// Why.
        message: String,
    },
    /// Server-side apply found fields owned by other managers (409).
    #[error("apply failed with {} conflict(s): {}", .0.len(), conflict_list(.0))]
    ApplyConflict(Vec<FieldConflict>),
    /// The object fails validation (422).
    #[error("{resource} \"{name}\" is invalid: {message}")]
    Invalid {
        /// Resource (plural, with group when not core).
        resource: String,
        /// Object name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body's content type is not accepted here (415).
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// The verb is not allowed on this path (405).
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// The body exceeds the size limit (413).
    #[error("request entity too large: limit is {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The requested resource version is older than the kept history (410).
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The version asked for.
        requested: u64,
        /// The oldest version still served.
        oldest: u64,
    },
    /// Durable storage failed (500).
    #[error("storage failure")]
    Storage(#[source] crate::store::StoreError),
}

fn conflict_list(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// The HTTP status code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound { .. } | Self::UnknownResource => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } | Self::ApplyConflict(_) => 409,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::UnsupportedMediaType(_) => 415,
            Self::MethodNotAllowed => 405,
            Self::TooLarge { .. } => 413,
            Self::Expired { .. } => 410,
            Self::Storage(_) => 500,
        }
    }

    /// The `metav1.StatusReason`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::UnknownResource => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } | Self::ApplyConflict(_) => "Conflict",
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::TooLarge { .. } => "RequestEntityTooLarge",
            Self::Expired { .. } => "Expired",
            Self::Storage(_) => "InternalError",
        }
    }

    /// The error as a `metav1.Status` JSON object.
    #[must_use]
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            Self::NotFound { resource, name }
            | Self::AlreadyExists { resource, name }
            | Self::Conflict { resource, name, .. }
            | Self::Invalid { resource, name, .. } => Some(details(resource, name)),
            Self::ApplyConflict(conflicts) => Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    "type": "FieldManagerConflict",
                    "message": format!("conflict with \"{}\"", c.manager),
                    "field": c.field,
                })).collect::<Vec<_>>()
            })),
            _ => None,
        };
        if let (Some(details), Some(map)) = (details, status.as_object_mut()) {
            map.insert("details".into(), details);
        }
        status
    }
}

fn details(resource: &str, name: &str) -> Value {
    let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
    json!({ "name": name, "group": group, "kind": kind })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Storage(source) = &self {
            tracing::error!(error = %source, "storage failure");
        }
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        crate::handler::json_response(code, &self.to_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status() {
        let err = ApiError::NotFound {
            resource: "deployments.apps".into(),
            name: "web".into(),
        };
        let status = err.to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
    }

    #[test]
    fn apply_conflict_lists_causes() {
        let err = ApiError::ApplyConflict(vec![FieldConflict {
            manager: "a".into(),
            field: ".spec.replicas".into(),
        }]);
        let status = err.to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["details"]["causes"][0]["field"], ".spec.replicas");
    }
}
