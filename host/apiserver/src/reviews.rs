//! The review APIs, created and answered, never stored: `SelfSubjectAccessReview`,
//! `SubjectAccessReview`, `LocalSubjectAccessReview` and `SelfSubjectRulesReview`
//! (`authorization.k8s.io/v1`, what `kubectl auth can-i` asks), and `SelfSubjectReview`
//! (`authentication.k8s.io/v1`, what `kubectl auth whoami` asks). Bodies are JSON, YAML or
//! Kubernetes protobuf (what kubectl sends).

use k8s_openapi::api::authentication::v1::{self as authn, UserInfo};
use k8s_openapi::api::authorization::v1::{
    self as authz, NonResourceAttributes, ResourceAttributes, SubjectAccessReviewSpec,
    SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::authz::Authorizer;
use crate::authz::attributes::{Attributes, ResourceRequest, Target};
use crate::cluster::Cluster;
use crate::error::{ApiError, FieldCause};
use crate::protobuf;

/// `authorization.k8s.io`.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
/// `authentication.k8s.io`.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// Media types accepted for a review.
pub const REVIEW_TYPES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// A review kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// May I? (`selfsubjectaccessreviews`)
    SelfSubjectAccess,
    /// May they? (`subjectaccessreviews`)
    SubjectAccess,
    /// May they, in this namespace? (`namespaces/{ns}/localsubjectaccessreviews`)
    LocalSubjectAccess,
    /// What may I, in a namespace? (`selfsubjectrulesreviews`)
    SelfSubjectRules,
    /// Who am I? (`selfsubjectreviews`)
    SelfSubject,
}

impl Review {
    /// Every review kind.
    pub const ALL: [Self; 5] = [
        Self::SelfSubjectAccess,
        Self::SubjectAccess,
        Self::LocalSubjectAccess,
        Self::SelfSubjectRules,
        Self::SelfSubject,
    ];

    /// Its API group.
    #[must_use]
    pub fn group(self) -> &'static str {
        match self {
            Self::SelfSubject => AUTHENTICATION_GROUP,
            _ => AUTHORIZATION_GROUP,
        }
    }

    /// Its resource (plural).
    #[must_use]
    pub fn plural(self) -> &'static str {
        match self {
            Self::SelfSubjectAccess => "selfsubjectaccessreviews",
            Self::SubjectAccess => "subjectaccessreviews",
            Self::LocalSubjectAccess => "localsubjectaccessreviews",
            Self::SelfSubjectRules => "selfsubjectrulesreviews",
            Self::SelfSubject => "selfsubjectreviews",
        }
    }

    /// Its kind.
    #[must_use]
    pub fn kind(self) -> &'static str {
        match self {
            Self::SelfSubjectAccess => "SelfSubjectAccessReview",
            Self::SubjectAccess => "SubjectAccessReview",
            Self::LocalSubjectAccess => "LocalSubjectAccessReview",
            Self::SelfSubjectRules => "SelfSubjectRulesReview",
            Self::SelfSubject => "SelfSubjectReview",
        }
    }

    /// Whether it lives in a namespace.
    #[must_use]
    pub fn namespaced(self) -> bool {
        self == Self::LocalSubjectAccess
    }

    /// The review at `/apis/{group}/v1/{rest}`, with its namespace for a local one.
    #[must_use]
    pub fn at<'a>(group: &str, version: &str, rest: &[&'a str]) -> Option<(Self, Option<&'a str>)> {
        if version != "v1" {
            return None;
        }
        let (namespace, plural) = match rest {
            [plural] => (None, *plural),
            ["namespaces", ns, plural] => (Some(*ns), *plural),
            _ => return None,
        };
        Self::ALL
            .into_iter()
            .find(|r| {
                r.group() == group && r.plural() == plural && r.namespaced() == namespace.is_some()
            })
            .map(|r| (r, namespace))
    }

    fn api_version(self) -> String {
        format!("{}/v1", self.group())
    }

    fn invalid(self, causes: Vec<FieldCause>) -> ApiError {
        ApiError::Invalid {
            kind: self.kind().to_owned(),
            group: self.group().to_owned(),
            name: String::new(),
            causes,
        }
    }
}

/// What a review is answered with: the caller, the server's state and its authorizer.
#[derive(Debug, Clone, Copy)]
pub struct Reviewer<'a> {
    /// Decides the access reviews.
    pub authorizer: &'a Authorizer,
    /// Where roles and bindings are read.
    pub cluster: &'a Cluster,
    /// The user who asks (after impersonation).
    pub user: &'a UserInfo,
}

fn decode<T: DeserializeOwned>(review: Review, media: &str, body: &[u8]) -> Result<T, ApiError> {
    let value: Value = if media == protobuf::MEDIA_TYPE {
        protobuf::object(body).map_err(|e| ApiError::BadRequest(protobuf::error_text(&e)))?
    } else if media == "application/yaml" {
        crate::patch::decode_yaml(body).map_err(|e| ApiError::BadRequest(e.to_string()))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid json: {e}")))?
    };
    for (field, expected) in [
        ("apiVersion", review.api_version()),
        ("kind", review.kind().to_owned()),
    ] {
        if let Some(found) = value[field]
            .as_str()
            .filter(|f| !f.is_empty() && *f != expected)
        {
            return Err(ApiError::BadRequest(format!(
                "the {field} {found:?} is not {expected:?}"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::BadRequest(format!("the body is not a valid {}: {e}", review.kind()))
    })
}

fn encode(object: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(object)
        .map_err(|e| ApiError::Internal(format!("encoding the review: {e}")))
}

/// `field.Invalid(path, null, detail)`.
fn null_invalid(field: &str, detail: &str) -> FieldCause {
    FieldCause::other(field, format!("Invalid value: \"null\": {detail}"))
}

/// The attributes checks of `ValidateSubjectAccessReviewSpec`: exactly one of resource or
/// non-resource attributes.
fn attribute_causes(
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
) -> Vec<FieldCause> {
    match (resource, non_resource) {
        (Some(_), Some(_)) => vec![FieldCause::other(
            "spec.nonResourceAttributes",
            "Invalid value: \"object\": cannot be specified in combination with resourceAttributes",
        )],
        (None, None) => vec![null_invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )],
        _ => Vec::new(),
    }
}

fn attributes(
    user: UserInfo,
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
) -> Attributes {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match (resource, non_resource) {
        (Some(r), _) => Attributes::resource(
            user,
            r.verb.as_deref().unwrap_or_default(),
            ResourceRequest {
                group: text(&r.group),
                version: text(&r.version),
                resource: text(&r.resource),
                subresource: text(&r.subresource),
                namespace: text(&r.namespace),
                name: text(&r.name),
            },
        ),
        (None, n) => Attributes {
            user,
            verb: n.and_then(|n| n.verb.clone()).unwrap_or_default(),
            target: Target::NonResource {
                path: n.and_then(|n| n.path.clone()).unwrap_or_default(),
            },
        },
    }
}

impl Reviewer<'_> {
    fn access(&self, attributes: &Attributes) -> SubjectAccessReviewStatus {
        let decision = self.authorizer.decide_on(self.cluster, attributes);
        SubjectAccessReviewStatus {
            allowed: decision.allowed(),
            denied: None,
            reason: Some(decision.reason().to_owned()).filter(|r| !r.is_empty()),
            evaluation_error: None,
        }
    }

    fn subject(spec: &SubjectAccessReviewSpec) -> UserInfo {
        UserInfo {
            username: spec.user.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
        }
    }

    fn subject_causes(spec: &SubjectAccessReviewSpec) -> Vec<FieldCause> {
        let mut causes = attribute_causes(
            spec.resource_attributes.as_ref(),
            spec.non_resource_attributes.as_ref(),
        );
        if spec.user.as_deref().unwrap_or_default().is_empty()
            && spec.groups.as_deref().unwrap_or_default().is_empty()
        {
            causes.push(FieldCause::invalid(
                "spec.user",
                "",
                "at least one of user or group must be specified",
            ));
        }
        causes
    }

    /// Answers a review of kind `review` (`namespace` from the path of a local one) whose body is
    /// `body` of media type `media`: the review with its `status`, to be answered 201 Created.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for a body that does not decode or misses a required namespace,
    /// [`ApiError::Invalid`] for a spec kube-apiserver's validation refuses.
    pub fn review(
        &self,
        review: Review,
        namespace: Option<&str>,
        media: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        match review {
            Review::SelfSubjectAccess => {
                let mut r: authz::SelfSubjectAccessReview = decode(review, media, body)?;
                let causes = attribute_causes(
                    r.spec.resource_attributes.as_ref(),
                    r.spec.non_resource_attributes.as_ref(),
                );
                if !causes.is_empty() {
                    return Err(review.invalid(causes));
                }
                let attributes = attributes(
                    self.user.clone(),
                    r.spec.resource_attributes.as_ref(),
                    r.spec.non_resource_attributes.as_ref(),
                );
                r.status = Some(self.access(&attributes));
                encode(&r)
            }
            Review::SubjectAccess => {
                let mut r: authz::SubjectAccessReview = decode(review, media, body)?;
                let causes = Self::subject_causes(&r.spec);
                if !causes.is_empty() {
                    return Err(review.invalid(causes));
                }
                let attributes = attributes(
                    Self::subject(&r.spec),
                    r.spec.resource_attributes.as_ref(),
                    r.spec.non_resource_attributes.as_ref(),
                );
                r.status = Some(self.access(&attributes));
                encode(&r)
            }
            Review::LocalSubjectAccess => {
                let mut r: authz::LocalSubjectAccessReview = decode(review, media, body)?;
                let namespace = namespace.unwrap_or_default();
                match r.metadata.namespace.as_deref() {
                    None | Some("") => r.metadata.namespace = Some(namespace.to_owned()),
                    Some(ns) if ns == namespace => {}
                    Some(_) => {
                        return Err(ApiError::BadRequest(format!(
                            "spec.resourceAttributes.namespace must match namespace: {namespace}"
                        )));
                    }
                }
                let mut causes = Self::subject_causes(&r.spec);
                if r.spec.non_resource_attributes.is_some() {
                    causes.push(FieldCause::other(
                        "spec.nonResourceAttributes",
                        "Invalid value: \"object\": disallowed on this kind of request",
                    ));
                }
                if let Some(attrs) = &r.spec.resource_attributes
                    && attrs.namespace.as_deref().unwrap_or_default() != namespace
                {
                    causes.push(FieldCause::invalid(
                        "spec.resourceAttributes.namespace",
                        attrs.namespace.as_deref().unwrap_or_default(),
                        "must match metadata.namespace",
                    ));
                }
                if !causes.is_empty() {
                    return Err(review.invalid(causes));
                }
                let attributes = attributes(
                    Self::subject(&r.spec),
                    r.spec.resource_attributes.as_ref(),
                    None,
                );
                r.status = Some(self.access(&attributes));
                encode(&r)
            }
            Review::SelfSubjectRules => {
                let mut r: authz::SelfSubjectRulesReview = decode(review, media, body)?;
                let namespace = r.spec.namespace.clone().unwrap_or_default();
                if namespace.is_empty() {
                    return Err(ApiError::BadRequest("no namespace on request".into()));
                }
                let rules = self.authorizer.rules(self.cluster, self.user, &namespace);
                r.status = Some(SubjectRulesReviewStatus {
                    incomplete: !rules.evaluation_error.is_empty(),
                    evaluation_error: Some(rules.evaluation_error).filter(|e| !e.is_empty()),
                    resource_rules: rules.resource,
                    non_resource_rules: rules.non_resource,
                });
                encode(&r)
            }
            Review::SelfSubject => {
                let mut r: authn::SelfSubjectReview = decode(review, media, body)?;
                r.status = Some(authn::SelfSubjectReviewStatus {
                    user_info: Some(self.user.clone()),
                });
                encode(&r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Mode;
    use crate::user;
    use serde_json::json;

    fn ask(
        mode: Mode,
        who: &UserInfo,
        review: Review,
        ns: Option<&str>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let cluster = Cluster::open(None, 10).unwrap();
        if mode == Mode::Rbac {
            crate::authz::bootstrap::ensure(&cluster).unwrap();
        }
        let authorizer = Authorizer::new(mode);
        Reviewer {
            authorizer: &authorizer,
            cluster: &cluster,
            user: who,
        }
        .review(review, ns, "application/json", body.to_string().as_bytes())
    }

    #[test]
    fn reviews_are_found_by_path() {
        assert_eq!(
            Review::at("authorization.k8s.io", "v1", &["selfsubjectaccessreviews"]),
            Some((Review::SelfSubjectAccess, None))
        );
        assert_eq!(
            Review::at(
                "authorization.k8s.io",
                "v1",
                &["namespaces", "ns", "localsubjectaccessreviews"]
            ),
            Some((Review::LocalSubjectAccess, Some("ns")))
        );
        assert_eq!(
            Review::at("authorization.k8s.io", "v1", &["localsubjectaccessreviews"]),
            None
        );
        assert_eq!(
            Review::at("authentication.k8s.io", "v1", &["selfsubjectreviews"]),
            Some((Review::SelfSubject, None))
        );
        assert_eq!(
            Review::at("authentication.k8s.io", "v1beta1", &["selfsubjectreviews"]),
            None
        );
        assert_eq!(
            Review::at("authorization.k8s.io", "v1", &["selfsubjectreviews"]),
            None
        );
    }

    #[test]
    fn access_reviews_answer_for_the_subject() {
        let bob = user::with_authenticated_group(user::named("bob", &[]));
        let pods = json!({"spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}});
        let answer = ask(
            Mode::Rbac,
            &bob,
            Review::SelfSubjectAccess,
            None,
            pods.clone(),
        )
        .unwrap();
        assert_eq!(answer["status"]["allowed"], false);
        assert_eq!(answer["kind"], "SelfSubjectAccessReview");
        let answer = ask(
            Mode::Rbac,
            &user::admin(),
            Review::SelfSubjectAccess,
            None,
            pods.clone(),
        )
        .unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        let version =
            json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/version"}}});
        let answer = ask(Mode::Rbac, &bob, Review::SelfSubjectAccess, None, version).unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        assert_eq!(
            answer["status"]["reason"],
            "RBAC: allowed by ClusterRoleBinding \"system:discovery\" of ClusterRole \"system:discovery\" to Group \"system:authenticated\""
        );
        let answer = ask(
            Mode::AlwaysAllow,
            &bob,
            Review::SelfSubjectAccess,
            None,
            pods,
        )
        .unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        let sar = json!({"spec": {"user": "x", "groups": ["system:masters"], "resourceAttributes": {"verb": "delete", "resource": "nodes"}}});
        assert_eq!(
            ask(Mode::Rbac, &bob, Review::SubjectAccess, None, sar).unwrap()["status"]["allowed"],
            true
        );
    }

    #[test]
    fn malformed_reviews_are_refused_as_kubernetes_refuses_them() {
        let bob = user::named("bob", &[]);
        let err = ask(
            Mode::Rbac,
            &bob,
            Review::SelfSubjectAccess,
            None,
            json!({"spec": {}}),
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let err = ask(
            Mode::Rbac,
            &bob,
            Review::SubjectAccess,
            None,
            json!({"spec": {"resourceAttributes": {}}}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("at least one of user or group must be specified"),
            "{err}"
        );
        let err = ask(
            Mode::Rbac,
            &bob,
            Review::SelfSubjectRules,
            None,
            json!({"spec": {}}),
        )
        .unwrap_err();
        assert_eq!(err.code(), 400);
        let local = json!({"spec": {"user": "u", "resourceAttributes": {"namespace": "other", "verb": "get", "resource": "pods"}}});
        let err = ask(
            Mode::Rbac,
            &bob,
            Review::LocalSubjectAccess,
            Some("ns"),
            local,
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        let err = ask(
            Mode::Rbac,
            &bob,
            Review::SelfSubject,
            None,
            json!({"kind": "Pod"}),
        )
        .unwrap_err();
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn rules_and_identity_are_the_callers() {
        let bob = UserInfo {
            uid: Some("u-1".into()),
            extra: Some([("scopes".to_owned(), vec!["a".to_owned()])].into()),
            ..user::with_authenticated_group(user::named("bob", &["dev"]))
        };
        let who = ask(Mode::Rbac, &bob, Review::SelfSubject, None, json!({})).unwrap();
        assert_eq!(who["status"]["userInfo"]["username"], "bob");
        assert_eq!(
            who["status"]["userInfo"]["groups"],
            json!(["dev", "system:authenticated"])
        );
        assert_eq!(who["status"]["userInfo"]["extra"]["scopes"], json!(["a"]));
        assert_eq!(who["apiVersion"], "authentication.k8s.io/v1");
        let rules = ask(
            Mode::Rbac,
            &bob,
            Review::SelfSubjectRules,
            None,
            json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        let resource_rules = rules["status"]["resourceRules"].as_array().unwrap();
        assert!(
            resource_rules.iter().any(|r| r["resources"]
                == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"]))
        );
        assert!(
            !rules["status"]["nonResourceRules"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(rules["status"]["incomplete"], false);
        let all = ask(
            Mode::Rbac,
            &user::admin(),
            Review::SelfSubjectRules,
            None,
            json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(
            all["status"]["resourceRules"],
            json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
        );
    }
}
