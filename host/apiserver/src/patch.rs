//! JSON patch, JSON merge patch and strategic merge patch ([`crate::strategic`]) by content type.

use serde_json::Value;

/// A patch that cannot be decoded or applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not valid JSON (or YAML for apply).
    #[error("the body of the patch is malformed")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A JSON patch operation failed.
    #[error("the json patch cannot be applied")]
    Apply(#[source] json_patch::PatchError),
    /// A merge patch must be a JSON object.
    #[error("a merge patch must be a json object")]
    NotObject,
    /// A strategic merge patch's directive cannot be carried out.
    #[error("the strategic merge patch cannot be applied")]
    Strategic(#[source] crate::strategic::StrategicError),
}

/// The patch flavours, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

/// Media types accepted for PATCH.
pub const PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, \
application/strategic-merge-patch+json, application/apply-patch+yaml";

impl PatchKind {
    /// The kind for a `Content-Type` header value (parameters ignored, case-insensitive); `None`
    /// for any other type, a missing one included.
    #[must_use]
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        [
            ("application/json-patch+json", Self::Json),
            ("application/merge-patch+json", Self::Merge),
            (
                "application/strategic-merge-patch+json",
                Self::StrategicMerge,
            ),
            ("application/apply-patch+yaml", Self::Apply),
        ]
        .into_iter()
        .find_map(|(name, kind)| media.eq_ignore_ascii_case(name).then_some(kind))
    }
}

/// Decodes a YAML or JSON document into a JSON value; YAML 1.1 booleans (`yes`, `on`, ...) are
/// booleans, as kube-apiserver (sigs.k8s.io/yaml) reads them.
///
/// # Errors
/// [`PatchError::Decode`] for malformed input.
pub fn decode_yaml(body: &[u8]) -> Result<Value, PatchError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    serde_saphyr::from_slice(body).map_err(|e| PatchError::Decode(Box::new(e)))
}

/// Applies a JSON, merge or strategic merge patch to `doc`, an object of `object_kind`, and
/// returns the result (`doc` is untouched on error).
///
/// # Errors
/// [`PatchError`] for malformed or inapplicable patches.
pub fn apply_patch(
    kind: PatchKind,
    object_kind: &str,
    doc: &Value,
    body: &[u8],
) -> Result<Value, PatchError> {
    let mut out = doc.clone();
    match kind {
        PatchKind::StrategicMerge => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| PatchError::Decode(Box::new(e)))?;
            if !patch.is_object() {
                return Err(PatchError::NotObject);
            }
            out =
                crate::strategic::apply(object_kind, doc, &patch).map_err(PatchError::Strategic)?;
        }
        PatchKind::Json => {
            let patch: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| PatchError::Decode(Box::new(e)))?;
            json_patch::patch(&mut out, &patch).map_err(PatchError::Apply)?;
        }
        PatchKind::Merge | PatchKind::Apply => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| PatchError::Decode(Box::new(e)))?;
            if !patch.is_object() {
                return Err(PatchError::NotObject);
            }
            json_patch::merge(&mut out, &patch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patch() {
        let doc = json!({"a": 1, "b": {"c": 2}});
        let merged = apply_patch(
            PatchKind::Merge,
            "ConfigMap",
            &doc,
            br#"{"b": {"c": null, "d": 3}}"#,
        )
        .unwrap();
        assert_eq!(merged, json!({"a": 1, "b": {"d": 3}}));
        let patched = apply_patch(
            PatchKind::Json,
            "ConfigMap",
            &doc,
            br#"[{"op": "replace", "path": "/a", "value": 5}]"#,
        )
        .unwrap();
        assert_eq!(patched["a"], 5);
        assert!(
            apply_patch(
                PatchKind::Json,
                "ConfigMap",
                &doc,
                br#"[{"op": "remove", "path": "/zz"}]"#
            )
            .is_err()
        );
        assert!(apply_patch(PatchKind::Merge, "ConfigMap", &doc, b"{oops").is_err());
    }

    /// kube-apiserver reads YAML through sigs.k8s.io/yaml (go-yaml v2): unquoted `yes`, `on`,
    /// `off` and `no` are YAML 1.1 booleans; quoted, they are strings.
    #[test]
    fn yaml_bodies_read_yaml_1_1_booleans_as_kube_apiserver_does() {
        let v = decode_yaml(b"spec:\n  a: yes\n  b: on\n  c: off\n  d: no\n  e: 'yes'\n").unwrap();
        assert_eq!(
            v,
            json!({"spec": {"a": true, "b": true, "c": false, "d": false, "e": "yes"}})
        );
        assert_eq!(decode_yaml(br#"{"a": true}"#).unwrap(), json!({"a": true}));
        assert!(decode_yaml(b"a: [unclosed").is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(PatchKind::from_content_type("text/plain"), None);
        assert_eq!(PatchKind::from_content_type(""), None);
        assert_eq!(PatchKind::from_content_type("application/json"), None);
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+json"),
            None
        );
        assert_eq!(
            PatchKind::from_content_type("Application/Apply-Patch+YAML"),
            Some(PatchKind::Apply)
        );
        assert_eq!(decode_yaml(b"a: 1\n").unwrap(), json!({"a": 1}));
    }
}
