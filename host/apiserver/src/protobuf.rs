//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), which client-go's typed
//! clients use for built-in kinds (`kubectl create deployment|configmap|...`, `kubectl run`,
//! `kubectl expose`, `kubectl auth can-i`): the `k8s\0` envelope holding a `runtime.Unknown`.
//! The payload is turned into the JSON Kubernetes would have read ([`object`], by
//! [`crate::proto_json`]), which is then read as a JSON body is.

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
    Envelope(#[source] crate::proto_json::ProtoJsonError),
    /// The payload is encoded (compressed) in a way not supported.
    #[error("the protobuf content encoding {0:?} is not supported")]
    Encoding(String),
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
    let unknown = crate::proto_json::unknown(envelope).map_err(ProtobufError::Envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::Encoding(unknown.content_encoding));
    }
    Ok((unknown.api_version, unknown.kind, unknown.raw))
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message as _;

    /// What client-go sends: the prefix, then `runtime.Unknown` holding the message.
    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
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
        let review = object(captured).unwrap();
        assert_eq!(
            review,
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": {
                    "namespace": "default", "verb": "get", "resource": "pods",
                }},
                "status": {"allowed": false},
            })
        );
    }

    #[test]
    fn extra_values_are_lists() {
        use k8s_pb::api::authorization::v1 as pb_authz;
        let review = pb_authz::SubjectAccessReview {
            spec: Some(pb_authz::SubjectAccessReviewSpec {
                user: Some("alice".into()),
                extra: [(
                    "scopes".to_string(),
                    pb_authz::ExtraValue {
                        items: vec!["a".into(), "b".into()],
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = envelope(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            review.encode_to_vec(),
        );
        let read = object(&body).unwrap();
        assert_eq!(
            read["spec"],
            serde_json::json!({"user": "alice", "extra": {"scopes": ["a", "b"]}})
        );
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
        use k8s_pb::api::authentication::v1 as pb_authn;
        let raw = pb_authn::SelfSubjectReview::default().encode_to_vec();
        let body = envelope("authentication.k8s.io/v1", "SelfSubjectReview", raw.clone());
        assert_eq!(object(&body).unwrap()["kind"], "SelfSubjectReview");
        assert!(matches!(object(&raw), Err(ProtobufError::Prefix)));
        assert!(matches!(
            object(b"k8s\0\xff\xff"),
            Err(ProtobufError::Envelope(_))
        ));
        let mut gzip = Unknown::decode(&body[4..]).unwrap();
        gzip.content_encoding = Some("gzip".into());
        let mut compressed = MAGIC.to_vec();
        compressed.extend(gzip.encode_to_vec());
        assert!(matches!(
            object(&compressed),
            Err(ProtobufError::Encoding(_))
        ));
        assert!(matches!(
            object(&envelope("example.com/v1", "Widget", Vec::new())),
            Err(ProtobufError::Json(_))
        ));
    }
}
