//! Impersonation, as kube-apiserver's `WithImpersonation` filter does it: `Impersonate-User`,
//! `Impersonate-Group` (repeatable), `Impersonate-Uid` and `Impersonate-Extra-KEY` headers make
//! the request act as another user, when the requester may `impersonate` each of them: `users`,
//! `groups` and `serviceaccounts` (core group; a `system:serviceaccount:NS:NAME` user is the
//! ServiceAccount NAME in NS), `uids` and `userextras/KEY` (`authentication.k8s.io`).

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::UserInfo;

use super::Authorizer;
use super::attributes::{Attributes, ResourceRequest};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::path;
use crate::user;

/// The user to act as.
pub const USER_HEADER: &str = "impersonate-user";
/// A group to act with (repeatable).
pub const GROUP_HEADER: &str = "impersonate-group";
/// The uid to act with.
pub const UID_HEADER: &str = "impersonate-uid";
/// The prefix of an extra attribute to act with (`Impersonate-Extra-KEY: VALUE`, repeatable).
pub const EXTRA_PREFIX: &str = "impersonate-extra-";
/// The API group of `uids` and `userextras`.
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// One thing a request asks to impersonate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Impersonated {
    /// A user that is not a ServiceAccount.
    User(String),
    /// A ServiceAccount's user.
    ServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A group.
    Group(String),
    /// An extra attribute value.
    Extra {
        /// The key (lowercase, percent-decoded).
        key: String,
        /// One value.
        value: String,
    },
    /// A uid.
    Uid(String),
}

impl fmt::Display for Impersonated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(name) => write!(f, "User {name:?}"),
            Self::ServiceAccount { namespace, name } => {
                write!(f, "ServiceAccount {:?}", format!("{namespace}/{name}"))
            }
            Self::Group(name) => write!(f, "Group {name:?}"),
            Self::Extra { key, value } => write!(f, "UserExtra {key:?}={value:?}"),
            Self::Uid(uid) => write!(f, "UID {uid:?}"),
        }
    }
}

impl Impersonated {
    /// What the requester must be allowed: `impersonate` this user, group, ServiceAccount, uid or
    /// extra value.
    #[must_use]
    pub fn attributes(&self, requester: &UserInfo) -> Attributes {
        let (group, resource, subresource, namespace, name) = match self {
            Self::User(name) => ("", "users", "", "", name.as_str()),
            Self::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", "", namespace.as_str(), name.as_str())
            }
            Self::Group(name) => ("", "groups", "", "", name.as_str()),
            Self::Extra { key, value } => (
                AUTHENTICATION_GROUP,
                "userextras",
                key.as_str(),
                "",
                value.as_str(),
            ),
            Self::Uid(uid) => (AUTHENTICATION_GROUP, "uids", "", "", uid.as_str()),
        };
        Attributes::resource(
            requester.clone(),
            "impersonate",
            ResourceRequest {
                group: group.to_owned(),
                version: "v1".to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
        )
    }
}

fn text<'a>(name: &str, value: &'a axum::http::HeaderValue) -> Result<&'a str, ApiError> {
    value
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("the {name} header is not visible ASCII")))
}

/// What `headers` ask to impersonate, in kube-apiserver's order (user, groups, extras, uid); empty
/// when they ask nothing. The first `Impersonate-User` is the user; an empty one is none.
///
/// # Errors
/// [`ApiError::Internal`] when groups, extras or a uid are asked without a user (kube-apiserver
/// answers 500 there too), [`ApiError::BadRequest`] for a header value that is not visible ASCII.
pub fn requested(headers: &HeaderMap) -> Result<Vec<Impersonated>, ApiError> {
    let mut out = Vec::new();
    let mut has_user = false;
    if let Some(value) = headers.get(USER_HEADER) {
        let name = text(USER_HEADER, value)?;
        if !name.is_empty() {
            has_user = true;
            out.push(match user::split_service_account_username(name) {
                Some((namespace, sa)) => Impersonated::ServiceAccount {
                    namespace: namespace.to_owned(),
                    name: sa.to_owned(),
                },
                None => Impersonated::User(name.to_owned()),
            });
        }
    }
    for value in headers.get_all(GROUP_HEADER) {
        out.push(Impersonated::Group(text(GROUP_HEADER, value)?.to_owned()));
    }
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let key = path::decode(&key).unwrap_or(key);
        out.push(Impersonated::Extra {
            key,
            value: text(name.as_str(), value)?.to_owned(),
        });
    }
    if let Some(value) = headers.get(UID_HEADER) {
        let uid = text(UID_HEADER, value)?;
        if !uid.is_empty() {
            out.push(Impersonated::Uid(uid.to_owned()));
        }
    }
    if !has_user && !out.is_empty() {
        let asked: Vec<String> = out.iter().map(ToString::to_string).collect();
        return Err(ApiError::Internal(format!(
            "requested [{}] without impersonating a user",
            asked.join(", ")
        )));
    }
    Ok(out)
}

/// The user the request acts as: `requester` itself without impersonation headers, else the
/// impersonated user once the requester was allowed to impersonate each part. Groups given replace
/// the user's (a ServiceAccount without them gets `system:serviceaccounts` and
/// `system:serviceaccounts:NS`); `system:authenticated` is added unless
/// `system:authenticated` or `system:unauthenticated` is there (for `system:anonymous`,
/// `system:unauthenticated` is).
///
/// # Errors
/// [`ApiError::Forbidden`] (the first part not allowed, as kube-apiserver words it) and the
/// errors of [`requested`].
pub fn impersonate(
    authorizer: &Authorizer,
    cluster: &Cluster,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let asked = requested(headers)?;
    if asked.is_empty() {
        return Ok(requester);
    }
    let groups_given = headers.contains_key(GROUP_HEADER);
    let mut name = String::new();
    let mut groups: Vec<String> = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut uid = None;
    for part in &asked {
        let attributes = part.attributes(&requester);
        authorizer.authorize(cluster, &attributes)?;
        match part {
            Impersonated::User(user) => name.clone_from(user),
            Impersonated::ServiceAccount {
                namespace,
                name: sa,
            } => {
                name = user::service_account_username(namespace, sa);
                if !groups_given {
                    groups = user::service_account_groups(namespace);
                }
            }
            Impersonated::Group(group) => groups.push(group.clone()),
            Impersonated::Extra { key, value } => {
                extra.entry(key.clone()).or_default().push(value.clone());
            }
            Impersonated::Uid(id) => uid = Some(id.clone()),
        }
    }
    if name == user::ANONYMOUS {
        if !groups.iter().any(|g| g == user::ALL_UNAUTHENTICATED) {
            groups.push(user::ALL_UNAUTHENTICATED.to_owned());
        }
    } else if !groups
        .iter()
        .any(|g| g == user::ALL_AUTHENTICATED || g == user::ALL_UNAUTHENTICATED)
    {
        groups.push(user::ALL_AUTHENTICATED.to_owned());
    }
    tracing::debug!(
        requester = user::name(&requester),
        acting_as = %name,
        "impersonation"
    );
    Ok(UserInfo {
        username: Some(name),
        uid,
        groups: Some(groups),
        extra: (!extra.is_empty()).then_some(extra),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn headers_become_requests_in_order() {
        let asked = requested(&headers(&[
            ("Impersonate-Group", "g1"),
            ("IMPERSONATE-USER", "system:serviceaccount:ns:sa"),
            ("impersonate-group", "g2"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Acme.com%2Fproject", "p1"),
            ("Impersonate-Uid", "1234"),
        ]))
        .unwrap();
        assert_eq!(
            asked,
            [
                Impersonated::ServiceAccount {
                    namespace: "ns".into(),
                    name: "sa".into()
                },
                Impersonated::Group("g1".into()),
                Impersonated::Group("g2".into()),
                Impersonated::Extra {
                    key: "scopes".into(),
                    value: "view".into()
                },
                Impersonated::Extra {
                    key: "acme.com/project".into(),
                    value: "p1".into()
                },
                Impersonated::Uid("1234".into()),
            ]
        );
        assert_eq!(requested(&HeaderMap::new()).unwrap(), []);
        assert_eq!(
            requested(&headers(&[(
                "Impersonate-User",
                "system:serviceaccount:NS:sa"
            )]))
            .unwrap(),
            [Impersonated::User("system:serviceaccount:NS:sa".into())],
            "an invalid ServiceAccount user name is a plain user"
        );
    }

    #[test]
    fn groups_extras_or_uids_need_a_user() {
        for pairs in [
            &[("Impersonate-Group", "system:masters")][..],
            &[("Impersonate-Uid", "1")][..],
            &[("Impersonate-Extra-X", "1")][..],
            &[("Impersonate-User", ""), ("Impersonate-Group", "g")][..],
        ] {
            let err = requested(&headers(pairs)).unwrap_err();
            assert_eq!(err.code(), 500, "{pairs:?}");
            assert!(
                err.to_string().ends_with("without impersonating a user"),
                "{err}"
            );
        }
    }

    #[test]
    fn refusals_name_what_was_asked() {
        let bob = user::named("bob", &[user::ALL_AUTHENTICATED]);
        let sa = Impersonated::ServiceAccount {
            namespace: "ns".into(),
            name: "sa".into(),
        };
        assert_eq!(
            sa.attributes(&bob).forbidden("").to_string(),
            "serviceaccounts \"sa\" is forbidden: User \"bob\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"ns\""
        );
        assert_eq!(
            Impersonated::User("alice".into())
                .attributes(&bob)
                .forbidden("")
                .to_string(),
            "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            Impersonated::Extra {
                key: "scopes".into(),
                value: "v".into()
            }
            .attributes(&bob)
            .forbidden("")
            .to_string(),
            "userextras.authentication.k8s.io \"v\" is forbidden: User \"bob\" cannot impersonate resource \"userextras/scopes\" in API group \"authentication.k8s.io\" at the cluster scope"
        );
    }

    #[test]
    fn impersonated_users_get_kubernetes_groups() {
        let cluster = Cluster::open(None, 10).unwrap();
        let admin = user::admin();
        let act = |pairs: &[(&str, &str)]| {
            impersonate(
                &Authorizer::default(),
                &cluster,
                admin.clone(),
                &headers(pairs),
            )
            .unwrap()
        };
        let sa = act(&[("Impersonate-User", "system:serviceaccount:ns:sa")]);
        assert_eq!(user::name(&sa), "system:serviceaccount:ns:sa");
        assert_eq!(
            user::groups(&sa),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        let with_groups = act(&[
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
            ("Impersonate-Group", "g"),
        ]);
        assert_eq!(user::groups(&with_groups), ["g", "system:authenticated"]);
        let alice = act(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes", "a"),
            ("Impersonate-Extra-Scopes", "b"),
        ]);
        assert_eq!(user::groups(&alice), ["system:authenticated"]);
        assert_eq!(alice.uid.as_deref(), Some("u-1"));
        assert_eq!(
            alice.extra,
            Some([("scopes".to_owned(), vec!["a".to_owned(), "b".to_owned()])].into())
        );
        let anonymous = act(&[("Impersonate-User", "system:anonymous")]);
        assert_eq!(user::groups(&anonymous), ["system:unauthenticated"]);
        let unauthenticated = act(&[
            ("Impersonate-User", "carol"),
            ("Impersonate-Group", "system:unauthenticated"),
        ]);
        assert_eq!(user::groups(&unauthenticated), ["system:unauthenticated"]);
        assert_eq!(act(&[]), admin);
    }
}
