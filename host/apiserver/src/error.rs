//! API errors and their rendering as `metav1.Status` objects.

use std::fmt;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field-manager conflict found by server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The manager that owns the field.
    pub manager: String,
    /// The field, as structured-merge-diff prints a path: `.spec.replicas`,
    /// `.spec.containers[name="web"].image`.
    pub field: String,
    /// The API version of the owner's entry when it is an `Update` (not an `Apply`) entry.
    pub update_api_version: Option<String>,
    /// The owner entry's subresource (`status`), or empty.
    pub subresource: String,
}

impl FieldConflict {
    /// The owner as kube-apiserver names it (`printManager` in apimachinery's
    /// `managedfields/internal/conflict.go`): `"a"`, `"a" with subresource "status"`,
    /// `"kubectl-edit" using apps/v1`.
    #[must_use]
    pub fn owner(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if let Some(v) = &self.update_api_version {
            out.push_str(&format!(" using {v}"));
        }
        out
    }
}

/// The `metav1.CauseType` of a field error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseType {
    /// `FieldValueInvalid`: the value breaks a rule.
    ValueInvalid,
    /// `FieldValueRequired`: the value is missing.
    ValueRequired,
    /// `FieldValueNotSupported`: the value is not one of a fixed set.
    ValueNotSupported,
    /// `FieldValueDuplicate`: the value repeats one that must be unique.
    ValueDuplicate,
    /// `FieldValueForbidden`: the field may not be set (here, or to this).
    ValueForbidden,
    /// `FieldValueTooLong`: the value is larger than allowed.
    ValueTooLong,
    /// `FieldValueTooMany`: a list or map has more items than allowed.
    ValueTooMany,
}

impl CauseType {
    /// The wire name (`reason` of a `metav1.StatusCause`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValueInvalid => "FieldValueInvalid",
            Self::ValueRequired => "FieldValueRequired",
            Self::ValueNotSupported => "FieldValueNotSupported",
            Self::ValueDuplicate => "FieldValueDuplicate",
            Self::ValueForbidden => "FieldValueForbidden",
            Self::ValueTooLong => "FieldValueTooLong",
            Self::ValueTooMany => "FieldValueTooMany",
        }
    }
}

/// One field error of an [`ApiError::Invalid`], as apimachinery's `field.Error` renders it: the
/// `message` is its `ErrorBody` (`Invalid value: "x": why`), and `field: message` its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// What kind of error.
    pub cause: CauseType,
    /// The field path, such as `metadata.name` (empty when the error is not about one field).
    pub field: String,
    /// The error body.
    pub message: String,
}

impl FieldCause {
    /// `field.Invalid(field, value, detail)` for a string value.
    #[must_use]
    pub fn invalid(field: &str, value: &str, detail: impl fmt::Display) -> Self {
        Self {
            cause: CauseType::ValueInvalid,
            field: field.to_owned(),
            message: format!("Invalid value: {value:?}: {detail}"),
        }
    }

    /// `field.Invalid(field, value, detail)` for a value already printed as Go prints it (`%#v`
    /// of a struct or a slice, such as `[]string{"a"}`).
    #[must_use]
    pub fn invalid_printed(field: &str, printed: &str, detail: impl fmt::Display) -> Self {
        Self {
            cause: CauseType::ValueInvalid,
            field: field.to_owned(),
            message: format!("Invalid value: {printed}: {detail}"),
        }
    }

    /// `field.Required(field, detail)`.
    #[must_use]
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            cause: CauseType::ValueRequired,
            field: field.to_owned(),
            message,
        }
    }

    /// An invalid `intstr.IntOrString` (a rolling update's or a budget's amount), its value
    /// printed as `field.Error` prints that struct: Go's `%#v`, since its `String` method is on
    /// the pointer.
    #[must_use]
    pub fn invalid_int_or_string(field: &str, value: &Value, detail: impl fmt::Display) -> Self {
        let rendered = match value {
            Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
            other => format!(
                "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
                other.as_i64().unwrap_or(0)
            ),
        };
        Self {
            cause: CauseType::ValueInvalid,
            field: field.to_owned(),
            message: format!("Invalid value: {rendered}: {detail}"),
        }
    }

    /// `field.Invalid(field, value, detail)` for any JSON value, rendered as apimachinery renders
    /// it: a string quoted, a number or boolean as is, anything else as compact JSON.
    #[must_use]
    pub fn invalid_value(field: &str, value: &Value, detail: impl fmt::Display) -> Self {
        Self {
            cause: CauseType::ValueInvalid,
            field: field.to_owned(),
            message: format!("Invalid value: {}: {detail}", render(value)),
        }
    }

    /// `field.NotSupported(field, value, supported)`.
    #[must_use]
    pub fn not_supported(field: &str, value: &Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            cause: CauseType::ValueNotSupported,
            field: field.to_owned(),
            message: format!(
                "Unsupported value: {}: supported values: {list}",
                render(value)
            ),
        }
    }

    /// `field.Duplicate(field, value)`.
    #[must_use]
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Self {
            cause: CauseType::ValueDuplicate,
            field: field.to_owned(),
            message: format!("Duplicate value: {}", render(value)),
        }
    }

    /// `field.Forbidden(field, detail)`.
    #[must_use]
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            cause: CauseType::ValueForbidden,
            field: field.to_owned(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `field.TooLong(field, value, max)` (the value is not repeated, as apimachinery does).
    #[must_use]
    pub fn too_long(field: &str, max_bytes: usize) -> Self {
        Self {
            cause: CauseType::ValueTooLong,
            field: field.to_owned(),
            message: format!(
                "Too long: may not be more than {max_bytes} {}",
                if max_bytes == 1 { "byte" } else { "bytes" }
            ),
        }
    }

    /// An error of `cause` whose body is `message` as given.
    #[must_use]
    pub fn other_typed(cause: CauseType, field: &str, message: impl Into<String>) -> Self {
        Self {
            cause,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// An invalid-value error whose body is `message` as given (for errors that name their own
    /// field or none).
    #[must_use]
    pub fn other(field: &str, message: impl Into<String>) -> Self {
        Self {
            cause: CauseType::ValueInvalid,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A field error's value as apimachinery prints it: strings quoted, numbers and booleans as they
/// are, and (Go's `%#v`) a map of strings as `map[string]string{"k":"v"}` with sorted keys, a list
/// of strings as `[]string{"a", "b"}`; anything else as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_owned(),
        Value::Object(map) if map.values().all(Value::is_string) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            let body: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
                .collect();
            format!("map[string]string{{{}}}", body.join(", "))
        }
        Value::Array(items) if items.iter().all(Value::is_string) => go_strings(items),
        other => other.to_string(),
    }
}

/// A list of strings as Go's `%#v` prints a `[]string`.
pub(crate) fn go_strings(items: &[Value]) -> String {
    let body: Vec<String> = items
        .iter()
        .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
        .collect();
    format!("[]string{{{}}}", body.join(", "))
}

/// `errs.ToAggregate()` as text: one error as is, several in brackets.
fn aggregate(causes: &[FieldCause]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `Kind` or `Kind.group`, as apimachinery prints a `GroupKind` (or a `GroupResource` of a kind).
pub(crate) fn qualified_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

/// An error answered to a client as a `metav1.Status` object.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request carries no valid credentials (401).
    #[error("Unauthorized")]
    Unauthorized,
    /// The request is not authorized (403), as apimachinery's `NewForbidden` renders it: the
    /// message names the qualified resource and the object when there is one.
    #[error("{}", forbidden_message(group, resource, name, message))]
    Forbidden {
        /// The API group of the resource ("" for core).
        group: String,
        /// The resource (plural; empty for a non-resource path).
        resource: String,
        /// The object name (may be empty).
        name: String,
        /// Why: the authorizer's message.
        message: String,
    },
    /// A create in a namespace being deleted (403), as the `NamespaceLifecycle` admission plugin
    /// refuses it, with the `NamespaceTerminating` cause clients look for.
    #[error("{}", forbidden_message(group, resource, name, &format!("unable to create new content in namespace {namespace} because it is being terminated")))]
    NamespaceTerminating {
        /// The API group of the resource ("" for core).
        group: String,
        /// The resource (plural).
        resource: String,
        /// The object's name.
        name: String,
        /// The terminating namespace.
        namespace: String,
    },
    /// A `ValidatingAdmissionPolicy` denied the request: `admission.NewForbidden` given the
    /// failed validation's reason and that reason's code (`Invalid`, 422, by default).
    #[error("{}", forbidden_message(group, resource, name, message))]
    Denied {
        /// The API group of the resource ("" for core).
        group: String,
        /// The resource (plural).
        resource: String,
        /// The object's name.
        name: String,
        /// `Invalid`, `Forbidden`, `Unauthorized` or `RequestEntityTooLarge`.
        reason: &'static str,
        /// The reason's HTTP status code.
        code: u16,
        /// `ValidatingAdmissionPolicy 'P' with binding 'B' denied request: ...`.
        message: String,
    },
    /// The server failed in a way the client cannot fix (500).
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// Not now (429), as `NewTooManyRequests` renders it, with a cause: an eviction a disruption
    /// budget does not allow.
    #[error("{message}")]
    TooManyRequests {
        /// What is refused.
        message: String,
        /// The cause's type and message (`DisruptionBudget`, which budget and why).
        cause: (String, String),
        /// `details.retryAfterSeconds` (left out when 0).
        retry_after: u64,
    },
    /// A `metav1.Status` failure a REST handler returns as its result, with only a code and a
    /// message (no reason): an eviction of a pod that several disruption budgets select (500).
    #[error("{message}")]
    Failure {
        /// The HTTP status code.
        code: u16,
        /// The message.
        message: String,
    },
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
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        /// Resource (plural, with group when not core).
        resource: String,
        /// Object name.
        name: String,
        /// Why.
        message: String,
    },
    /// Server-side apply found fields owned by other managers (409).
    #[error("{}", conflict_message(.0))]
    ApplyConflict(Vec<FieldConflict>),
    /// The object fails validation (422), answered as kube-apiserver's `NewInvalid`.
    #[error("{} {name:?} is invalid{}", qualified_kind(kind, group), if causes.is_empty() { String::new() } else { format!(": {}", aggregate(causes)) })]
    Invalid {
        /// The object's kind.
        kind: String,
        /// The kind's API group (empty for core).
        group: String,
        /// Object name.
        name: String,
        /// The field errors.
        causes: Vec<FieldCause>,
    },
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// apimachinery's `NewGenericServerResponse(422, ...)`, as a JSON patch that cannot be applied
    /// gets it: the generic message only (what failed is logged, not answered).
    #[error("the server rejected our request due to an error in our request")]
    Unprocessable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body's content type is not accepted here (415).
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// None of the media types the request accepts can be written (406).
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
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
    /// A `resourceVersionMatch=Exact` list asks for a version whose later changes are no longer
    /// kept (410), as etcd answers a read at a compacted revision.
    #[error("The resourceVersion for the provided list is too old.")]
    ListExpired,
    /// A continue token's version is no longer kept (410); `token` continues from the same place
    /// in the current state, which a client may use for an inconsistent remainder.
    #[error(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
    )]
    ContinueExpired {
        /// The inconsistent continue token.
        token: String,
    },
    /// A read asks for a version newer than the server's (504 `Timeout`, with the
    /// `ResourceVersionTooLarge` cause a client retries on), as kube-apiserver's
    /// `NewTooLargeResourceVersionError`.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The version asked for.
        requested: u64,
        /// The server's newest version.
        current: u64,
    },
    /// Durable storage failed (500).
    #[error("storage failure")]
    Storage(#[source] crate::store::StoreError),
}

impl From<crate::store::StoreError> for ApiError {
    /// A refused write past the storage quota is what kube-apiserver answers when etcd raises its
    /// space alarm: a 500 whose message is etcd's error, with no reason; any other store failure
    /// is [`ApiError::Storage`].
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::QuotaExceeded { quota, would_take } => {
                tracing::warn!(quota, would_take, "write refused: storage quota exceeded");
                Self::Failure {
                    code: 500,
                    message: error.to_string(),
                }
            }
            error => Self::Storage(error),
        }
    }
}

fn forbidden_message(group: &str, resource: &str, name: &str, message: &str) -> String {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    if group.is_empty() && resource.is_empty() {
        format!("forbidden: {message}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} {name:?} is forbidden: {message}")
    }
}

/// The message kube-apiserver gives (`getConflictMessage`): the one conflict, or the conflicts
/// grouped by owner, owners sorted.
fn conflict_message(conflicts: &[FieldConflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.owner(),
            one.field
        );
    }
    let mut by_owner: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for c in conflicts {
        by_owner.entry(c.owner()).or_default().push(&c.field);
    }
    let lines: Vec<String> = by_owner
        .iter()
        .flat_map(|(owner, fields)| {
            std::iter::once(format!("conflicts with {owner}:"))
                .chain(fields.iter().map(|f| format!("- {f}")))
        })
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

impl ApiError {
    /// The HTTP status code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden { .. } | Self::NamespaceTerminating { .. } => 403,
            Self::Internal(_) => 500,
            Self::TooManyRequests { .. } => 429,
            Self::Failure { code, .. } | Self::Denied { code, .. } => *code,
            Self::NotFound { .. } | Self::UnknownResource => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } | Self::ApplyConflict(_) => 409,
            Self::Invalid { .. } | Self::Unprocessable(_) => 422,
            Self::BadRequest(_) => 400,
            Self::UnsupportedMediaType(_) => 415,
            Self::NotAcceptable(_) => 406,
            Self::MethodNotAllowed => 405,
            Self::TooLarge { .. } => 413,
            Self::Expired { .. } | Self::ListExpired | Self::ContinueExpired { .. } => 410,
            Self::TooLargeResourceVersion { .. } => 504,
            Self::Storage(_) => 500,
        }
    }

    /// The `metav1.StatusReason`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden { .. } | Self::NamespaceTerminating { .. } => "Forbidden",
            Self::Internal(_) => "InternalError",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::Failure { .. } => "",
            Self::Denied { reason, .. } => reason,
            Self::NotFound { .. } | Self::UnknownResource => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } | Self::ApplyConflict(_) => "Conflict",
            Self::Invalid { .. } | Self::Unprocessable(_) => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::TooLarge { .. } => "RequestEntityTooLarge",
            Self::Expired { .. } | Self::ListExpired | Self::ContinueExpired { .. } => "Expired",
            Self::TooLargeResourceVersion { .. } => "Timeout",
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
            | Self::Conflict { resource, name, .. } => Some(details(resource, name)),
            // go-restful's answer for a path under a served group version that no route takes
            // (kube-apiserver's `serviceErrorHandler`: `NewGenericServerResponse`), which clients
            // such as `kubectl debug` read the details of.
            Self::UnknownResource => Some(json!({
                "causes": [{"reason": "UnexpectedServerResponse", "message": "404: Page Not Found"}],
            })),
            Self::Forbidden {
                group,
                resource,
                name,
                ..
            } => Some(json!({ "name": name, "group": group, "kind": resource })),
            Self::Denied {
                group,
                resource,
                name,
                message,
                ..
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": resource,
                "causes": [{"message": message}],
            })),
            Self::NamespaceTerminating {
                group,
                resource,
                name,
                namespace,
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": resource,
                "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }],
            })),
            Self::Invalid {
                kind,
                group,
                name,
                causes,
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.cause.as_str(),
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            Self::ApplyConflict(conflicts) => Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    "type": "FieldManagerConflict",
                    "message": format!("conflict with {}", c.owner()),
                    "field": c.field,
                })).collect::<Vec<_>>()
            })),
            Self::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            Self::TooManyRequests {
                cause: (reason, message),
                retry_after,
                ..
            } => {
                let mut details = json!({"causes": [{"reason": reason, "message": message}]});
                if *retry_after > 0 {
                    details["retryAfterSeconds"] = json!(retry_after);
                }
                Some(details)
            }
            Self::Failure { .. } => {
                if let Some(map) = status.as_object_mut() {
                    map.remove("reason");
                }
                None
            }
            Self::ContinueExpired { token } => {
                status["metadata"] = json!({ "continue": token });
                None
            }
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
        if let Self::Unprocessable(source) = &self {
            tracing::debug!(error = %source, "request rejected as unprocessable");
        }
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let status = self.to_status();
        let mut response = crate::handler::json_response(code, &status);
        // As kube-apiserver's `ErrorNegotiated`: a status that asks for a retry after a delay
        // says so in `Retry-After` too, which clients' retry layers (kube-rs's among them) obey.
        if let Some(delay) = status["details"]["retryAfterSeconds"]
            .as_u64()
            .filter(|d| *d > 0)
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, delay.into());
        }
        response
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
    fn invalid_status_has_kube_apiservers_shape() {
        let err = ApiError::Invalid {
            kind: "Deployment".into(),
            group: "apps".into(),
            name: "a..b".into(),
            causes: vec![FieldCause::invalid("metadata.name", "a..b", "bad")],
        };
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(
            status["message"],
            "Deployment.apps \"a..b\" is invalid: metadata.name: Invalid value: \"a..b\": bad"
        );
        assert_eq!(
            status["details"],
            json!({"name": "a..b", "group": "apps", "kind": "Deployment", "causes": [
                {"reason": "FieldValueInvalid", "field": "metadata.name", "message": "Invalid value: \"a..b\": bad"}
            ]})
        );
        let two = ApiError::Invalid {
            kind: "ConfigMap".into(),
            group: String::new(),
            name: String::new(),
            causes: vec![
                FieldCause::required("metadata.name", "name or generateName is required"),
                FieldCause::invalid("metadata.namespace", "A", "bad"),
            ],
        };
        assert_eq!(
            two.to_string(),
            "ConfigMap \"\" is invalid: [metadata.name: Required value: name or generateName is required, metadata.namespace: Invalid value: \"A\": bad]"
        );
        assert_eq!(ApiError::Unauthorized.to_status()["reason"], "Unauthorized");
        assert_eq!(
            ApiError::Unauthorized.to_status()["message"],
            "Unauthorized"
        );
        assert_eq!(ApiError::Unauthorized.code(), 401);
    }

    #[test]
    fn forbidden_status_has_kube_apiservers_shape() {
        let err = ApiError::Forbidden {
            group: String::new(),
            resource: "pods".into(),
            name: String::new(),
            message: "User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"".into(),
        };
        let status = err.to_status();
        assert_eq!(status["code"], 403);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(
            status["message"],
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            status["details"],
            json!({"name": "", "group": "", "kind": "pods"})
        );
        let named = ApiError::Forbidden {
            group: "apps".into(),
            resource: "deployments".into(),
            name: "web".into(),
            message: "x".into(),
        };
        assert_eq!(
            named.to_string(),
            "deployments.apps \"web\" is forbidden: x"
        );
        let path = ApiError::Forbidden {
            group: String::new(),
            resource: String::new(),
            name: String::new(),
            message: "User \"bob\" cannot get path \"/metrics\"".into(),
        };
        assert_eq!(
            path.to_string(),
            "forbidden: User \"bob\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn apply_conflict_lists_causes() {
        let err = ApiError::ApplyConflict(vec![FieldConflict {
            manager: "a".into(),
            field: ".spec.replicas".into(),
            update_api_version: None,
            subresource: String::new(),
        }]);
        let status = err.to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["details"]["causes"][0]["field"], ".spec.replicas");
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
        );
        let two = ApiError::ApplyConflict(vec![
            FieldConflict {
                manager: "b".into(),
                field: ".data.x".into(),
                update_api_version: Some("v1".into()),
                subresource: String::new(),
            },
            FieldConflict {
                manager: "a".into(),
                field: ".data.y".into(),
                update_api_version: None,
                subresource: "status".into(),
            },
        ]);
        let status = two.to_status();
        assert_eq!(
            status["message"],
            "Apply failed with 2 conflicts: conflicts with \"a\" with subresource \"status\":\n- .data.y\nconflicts with \"b\" using v1:\n- .data.x"
        );
        assert_eq!(
            status["details"]["causes"][0]["message"],
            "conflict with \"b\" using v1"
        );
    }
}
