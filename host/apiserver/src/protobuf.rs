//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), which client-go's typed
//! clients use for built-in kinds (`kubectl create deployment|configmap|...`, `kubectl run`,
//! `kubectl expose`, `kubectl auth can-i`): the `k8s\0` envelope holding a `runtime.Unknown`.
//! The payload of an object is turned into the JSON Kubernetes would have read ([`object`], by
//! [`crate::proto_json`]); the review requests are decoded with `k8s-pb`'s generated messages and
//! turned into the `k8s-openapi` types the server works with.

use k8s_openapi::api::authentication::v1 as authn;
use k8s_openapi::api::authorization::v1 as authz;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::api::authentication::v1 as pb_authn;
use k8s_pb::api::authorization::v1 as pb_authz;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message as _;

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The four bytes every Kubernetes protobuf message starts with.
const MAGIC: &[u8] = b"k8s\0";

/// A protobuf body cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with the `k8s\0` prefix.
    #[error("the protobuf body does not start with the Kubernetes prefix")]
    Prefix,
    /// The envelope (`runtime.Unknown`) does not decode.
    #[error("the protobuf envelope does not decode")]
    Envelope(#[source] prost::DecodeError),
    /// The envelope holds another kind than the endpoint's.
    #[error("the body is a {found}, not a {expected}")]
    Kind {
        /// The endpoint's `apiVersion, kind`.
        expected: String,
        /// The body's.
        found: String,
    },
    /// The payload is encoded (compressed) in a way not supported.
    #[error("the protobuf content encoding {0:?} is not supported")]
    Encoding(String),
    /// The payload does not decode as the kind.
    #[error("the protobuf object does not decode")]
    Object(#[source] prost::DecodeError),
    /// The payload does not turn into JSON.
    #[error("the protobuf object cannot be read")]
    Json(#[source] crate::proto_json::ProtoJsonError),
}

/// Whether an `Accept` header lists only the protobuf media type (with any parameters), which the
/// server does not write: answers are JSON.
#[must_use]
pub fn accepts_only_protobuf(accept: &str) -> bool {
    !accept.trim().is_empty()
        && accept.split(',').all(|range| {
            range
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case(MEDIA_TYPE)
        })
}

/// An error and its sources, `: `-separated, for a `Status` message.
#[must_use]
pub fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The `runtime.Unknown` of a protobuf body: its `apiVersion`, `kind` and payload.
fn envelope(body: &[u8]) -> Result<(String, String, Vec<u8>), ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::Prefix)?;
    let unknown = Unknown::decode(envelope).map_err(ProtobufError::Envelope)?;
    if let Some(encoding) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::Encoding(encoding));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    Ok((
        type_meta.api_version.unwrap_or_default(),
        type_meta.kind.unwrap_or_default(),
        unknown.raw.unwrap_or_default(),
    ))
}

/// The JSON object of a protobuf `body` holding a built-in kind, with the `apiVersion` and `kind`
/// of its envelope (whether they are the endpoint's is checked as for a JSON body).
///
/// # Errors
/// [`ProtobufError`] when the body is not such a message.
pub fn object(body: &[u8]) -> Result<serde_json::Value, ProtobufError> {
    let (api_version, kind, raw) = envelope(body)?;
    crate::proto_json::object(&api_version, &kind, &raw).map_err(ProtobufError::Json)
}

/// The payload of a protobuf `body`, checked to be `kind` of `api_version`, decoded as `M`.
///
/// # Errors
/// [`ProtobufError`] when the body is not such a message.
pub fn decode<M: prost::Message + Default>(
    body: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<M, ProtobufError> {
    let (found_version, found_kind, raw) = envelope(body)?;
    if found_version != api_version || found_kind != kind {
        return Err(ProtobufError::Kind {
            expected: format!("{api_version}, Kind={kind}"),
            found: format!("{found_version}, Kind={found_kind}"),
        });
    }
    M::decode(raw.as_slice()).map_err(ProtobufError::Object)
}

fn object_meta(m: Option<pb_meta::ObjectMeta>) -> meta::ObjectMeta {
    let m = m.unwrap_or_default();
    let map = |m: std::collections::BTreeMap<String, String>| (!m.is_empty()).then_some(m);
    meta::ObjectMeta {
        name: m.name,
        generate_name: m.generate_name,
        namespace: m.namespace,
        labels: map(m.labels),
        annotations: map(m.annotations),
        ..meta::ObjectMeta::default()
    }
}

fn strings(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

fn resource_attributes(a: pb_authz::ResourceAttributes) -> authz::ResourceAttributes {
    authz::ResourceAttributes {
        namespace: a.namespace,
        verb: a.verb,
        group: a.group,
        version: a.version,
        resource: a.resource,
        subresource: a.subresource,
        name: a.name,
        field_selector: a.field_selector.map(|f| authz::FieldSelectorAttributes {
            raw_selector: f.raw_selector,
            requirements: strings_of(f.requirements, |r| meta::FieldSelectorRequirement {
                key: r.key.unwrap_or_default(),
                operator: r.operator.unwrap_or_default(),
                values: strings(r.values),
            }),
        }),
        label_selector: a.label_selector.map(|l| authz::LabelSelectorAttributes {
            raw_selector: l.raw_selector,
            requirements: strings_of(l.requirements, |r| meta::LabelSelectorRequirement {
                key: r.key.unwrap_or_default(),
                operator: r.operator.unwrap_or_default(),
                values: strings(r.values),
            }),
        }),
    }
}

fn strings_of<A, B>(v: Vec<A>, f: impl Fn(A) -> B) -> Option<Vec<B>> {
    (!v.is_empty()).then(|| v.into_iter().map(f).collect())
}

fn non_resource_attributes(a: pb_authz::NonResourceAttributes) -> authz::NonResourceAttributes {
    authz::NonResourceAttributes {
        path: a.path,
        verb: a.verb,
    }
}

/// A `SelfSubjectAccessReview` from its protobuf message.
#[must_use]
pub fn self_subject_access_review(
    review: pb_authz::SelfSubjectAccessReview,
) -> authz::SelfSubjectAccessReview {
    let spec = review.spec.unwrap_or_default();
    authz::SelfSubjectAccessReview {
        metadata: object_meta(review.metadata),
        spec: authz::SelfSubjectAccessReviewSpec {
            resource_attributes: spec.resource_attributes.map(resource_attributes),
            non_resource_attributes: spec.non_resource_attributes.map(non_resource_attributes),
        },
        status: None,
    }
}

/// A `SubjectAccessReview` (or `LocalSubjectAccessReview`, which has the same fields) from its
/// protobuf spec.
#[must_use]
pub fn subject_access_review_spec(
    spec: pb_authz::SubjectAccessReviewSpec,
) -> authz::SubjectAccessReviewSpec {
    authz::SubjectAccessReviewSpec {
        resource_attributes: spec.resource_attributes.map(resource_attributes),
        non_resource_attributes: spec.non_resource_attributes.map(non_resource_attributes),
        user: spec.user,
        groups: strings(spec.groups),
        extra: (!spec.extra.is_empty())
            .then(|| spec.extra.into_iter().map(|(k, v)| (k, v.items)).collect()),
        uid: spec.uid,
    }
}

/// A `SubjectAccessReview` from its protobuf message.
#[must_use]
pub fn subject_access_review(review: pb_authz::SubjectAccessReview) -> authz::SubjectAccessReview {
    authz::SubjectAccessReview {
        metadata: object_meta(review.metadata),
        spec: subject_access_review_spec(review.spec.unwrap_or_default()),
        status: None,
    }
}

/// A `LocalSubjectAccessReview` from its protobuf message.
#[must_use]
pub fn local_subject_access_review(
    review: pb_authz::LocalSubjectAccessReview,
) -> authz::LocalSubjectAccessReview {
    authz::LocalSubjectAccessReview {
        metadata: object_meta(review.metadata),
        spec: subject_access_review_spec(review.spec.unwrap_or_default()),
        status: None,
    }
}

/// A `SelfSubjectRulesReview` from its protobuf message.
#[must_use]
pub fn self_subject_rules_review(
    review: pb_authz::SelfSubjectRulesReview,
) -> authz::SelfSubjectRulesReview {
    authz::SelfSubjectRulesReview {
        metadata: object_meta(review.metadata),
        spec: authz::SelfSubjectRulesReviewSpec {
            namespace: review.spec.and_then(|s| s.namespace),
        },
        status: None,
    }
}

/// A `SelfSubjectReview` from its protobuf message.
#[must_use]
pub fn self_subject_review(review: pb_authn::SelfSubjectReview) -> authn::SelfSubjectReview {
    authn::SelfSubjectReview {
        metadata: object_meta(review.metadata),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

    /// What client-go sends: the prefix, then `runtime.Unknown` holding the message.
    pub(crate) fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn decodes_what_kubectl_sends() {
        // `kubectl auth can-i get pods` as kubectl 1.32 sent it (captured with -v=8).
        let captured: &[u8] = b"k8s\x00\x0a\x32\x0a\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12\x3c\x0a\x10\x0a\x00\x12\x00\x1a\x00\x22\x00\x2a\x002\x008\x00B\x00\x12\x1e\x0a\x1c\x0a\x07default\x12\x03get\x1a\x00\x22\x00\x2a\x04pods2\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00\x20\x00\x1a\x00\x22\x00";
        let review: pb_authz::SelfSubjectAccessReview = decode(
            captured,
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
        )
        .unwrap();
        let review = self_subject_access_review(review);
        let attributes = review.spec.resource_attributes.unwrap();
        assert_eq!(attributes.namespace.as_deref(), Some("default"));
        assert_eq!(attributes.verb.as_deref(), Some("get"));
        assert_eq!(attributes.resource.as_deref(), Some("pods"));
        assert_eq!(attributes.group.as_deref(), Some(""));
    }

    #[test]
    fn protobuf_only_accept_headers_are_told_apart() {
        for only in [
            "application/vnd.kubernetes.protobuf",
            "application/vnd.kubernetes.protobuf;stream=watch",
            "Application/Vnd.Kubernetes.Protobuf, application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
        ] {
            assert!(accepts_only_protobuf(only), "{only}");
        }
        for json in [
            "",
            "application/vnd.kubernetes.protobuf, application/json",
            "application/vnd.kubernetes.protobuf, */*",
            "application/json",
            "*/*",
        ] {
            assert!(!accepts_only_protobuf(json), "{json}");
        }
    }

    #[test]
    fn envelopes_are_checked() {
        let raw = pb_authn::SelfSubjectReview::default().encode_to_vec();
        let body = envelope("authentication.k8s.io/v1", "SelfSubjectReview", raw.clone());
        assert!(
            decode::<pb_authn::SelfSubjectReview>(
                &body,
                "authentication.k8s.io/v1",
                "SelfSubjectReview"
            )
            .is_ok()
        );
        assert!(matches!(
            decode::<pb_authn::SelfSubjectReview>(
                &body,
                "authorization.k8s.io/v1",
                "SelfSubjectAccessReview"
            ),
            Err(ProtobufError::Kind { .. })
        ));
        assert!(matches!(
            decode::<pb_authn::SelfSubjectReview>(
                &raw,
                "authentication.k8s.io/v1",
                "SelfSubjectReview"
            ),
            Err(ProtobufError::Prefix)
        ));
        assert!(matches!(
            decode::<pb_authn::SelfSubjectReview>(b"k8s\0\xff\xff", "v1", "X"),
            Err(ProtobufError::Envelope(_))
        ));
    }
}
