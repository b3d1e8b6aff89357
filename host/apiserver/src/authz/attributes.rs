//! What a request asks to do, as an authorizer sees it (apiserver's `authorizer.Attributes`), read
//! from the request's method, decoded path segments and query as apiserver's `RequestInfoFactory`
//! does, and the refusal kube-apiserver answers when it is not allowed (`responsewriters.Forbidden`).

use k8s_openapi::api::authentication::v1::UserInfo;

use crate::error::ApiError;
use crate::selector::Selector;
use crate::user;
use crate::validation;

/// Subresources of a namespace: `namespaces/{ns}/{status,finalize}` is a subresource of the
/// namespace, any other third segment a resource in that namespace.
pub const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Whether a `watch` query value asks for a watch: any value but an empty one, `0`, `f` or
/// `false` (in any case), as apimachinery converts a query parameter to a bool. The router and
/// the authorizer read it with this one rule, so a request authorized as a list is never served
/// as a watch, nor the other way round.
#[must_use]
pub fn is_watch(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        !v.is_empty()
            && v != "0"
            && !v.eq_ignore_ascii_case("f")
            && !v.eq_ignore_ascii_case("false")
    })
}

/// The resource part of a resource request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource ("" for none).
    pub subresource: String,
    /// Namespace ("" for cluster scope or all namespaces).
    pub namespace: String,
    /// Object name ("" for none).
    pub name: String,
}

/// What is asked: a resource request or a non-resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A request on an API resource.
    Resource(ResourceRequest),
    /// A request on another path (`/version`, `/apis`, `/healthz`...).
    NonResource {
        /// The URL path.
        path: String,
    },
}

/// Who asks to do what.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    /// The user.
    pub user: UserInfo,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or a special one such as `impersonate`); the lowercase HTTP method for
    /// non-resource paths.
    pub verb: String,
    /// What it is asked of.
    pub target: Target,
}

impl Attributes {
    /// A resource request.
    #[must_use]
    pub fn resource(user: UserInfo, verb: &str, request: ResourceRequest) -> Self {
        Self {
            user,
            verb: verb.to_owned(),
            target: Target::Resource(request),
        }
    }

    /// A request's attributes, as apiserver's `RequestInfoFactory` reads them: `segments` are the
    /// path's decoded segments after its leading `/`, `query` its decoded parameters. Paths under
    /// `/api/{version}/...` and `/apis/{group}/{version}/...` are resource requests; the verb comes
    /// from the method (a GET without a name is `list`, or `watch` with `watch=true`; a DELETE
    /// without a name is `deletecollection`); a list or watch whose field selector requires
    /// `metadata.name` names that object. Anything else is a non-resource request whose verb is
    /// the lowercase method.
    #[must_use]
    pub fn from_request(
        user: UserInfo,
        method: &str,
        path: &str,
        segments: &[&str],
        query: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let non_resource = |user| Self {
            user,
            verb: method.to_ascii_lowercase(),
            target: Target::NonResource {
                path: path.to_owned(),
            },
        };
        // apiserver's splitPath trims leading and trailing slashes.
        let start = segments.iter().position(|s| !s.is_empty());
        let end = segments.iter().rposition(|s| !s.is_empty());
        let parts = match (start, end) {
            (Some(start), Some(end)) => &segments[start..=end],
            _ => &[][..],
        };
        let (group, rest) = match parts {
            ["api", rest @ ..] if rest.len() >= 2 => ("", rest),
            ["apis", group, rest @ ..] if rest.len() >= 2 => (*group, rest),
            _ => return non_resource(user),
        };
        let mut request = ResourceRequest {
            group: group.to_owned(),
            version: rest[0].to_owned(),
            ..ResourceRequest::default()
        };
        let mut parts = &rest[1..];
        let mut verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_owned();
        if parts[0] == "watch" && parts.len() >= 2 {
            verb = "watch".to_owned();
            parts = &parts[1..];
        }
        if parts[0] == "namespaces"
            && let Some(namespace) = parts.get(1)
        {
            request.namespace = (*namespace).to_owned();
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
                parts = &parts[2..];
            }
        }
        request.resource = parts[0].to_owned();
        if let Some(name) = parts.get(1) {
            request.name = (*name).to_owned();
        }
        if let Some(subresource) = parts.get(2) {
            request.subresource = (*subresource).to_owned();
        }
        if request.name.is_empty() && verb == "get" {
            verb = if is_watch(query("watch").as_deref()) {
                "watch"
            } else {
                "list"
            }
            .to_owned();
            if let Some(name) = query("fieldSelector")
                .and_then(|s| Selector::parse(&s).ok())
                .and_then(|s| s.exact_match("metadata.name").map(str::to_owned))
                .filter(|n| validation::path_segment(n).is_ok())
            {
                request.name = name;
            }
        }
        if request.name.is_empty() && verb == "delete" {
            verb = "deletecollection".to_owned();
        }
        Self {
            user,
            verb,
            target: Target::Resource(request),
        }
    }

    /// The resource request, if this is one.
    #[must_use]
    pub fn resource_request(&self) -> Option<&ResourceRequest> {
        match &self.target {
            Target::Resource(r) => Some(r),
            Target::NonResource { .. } => None,
        }
    }

    /// The refusal of this request, as kube-apiserver's `responsewriters.Forbidden` writes it:
    /// `User "U" cannot VERB resource "R[/SUB]" in API group "G" in the namespace "NS"` (or `at the
    /// cluster scope`), or `User "U" cannot VERB path "P"`, then `: REASON` when the authorizer gave
    /// one; the status names the resource and object.
    #[must_use]
    pub fn forbidden(&self, reason: &str) -> ApiError {
        let username = user::name(&self.user);
        let mut message = match &self.target {
            Target::NonResource { path } => {
                format!("User {username:?} cannot {} path {path:?}", self.verb)
            }
            Target::Resource(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {:?}", r.namespace)
                };
                format!(
                    "User {username:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                    self.verb, r.group
                )
            }
        };
        if !reason.is_empty() {
            message = format!("{message}: {reason}");
        }
        let (group, resource, name) = match &self.target {
            Target::NonResource { .. } => (String::new(), String::new(), String::new()),
            Target::Resource(r) => (r.group.clone(), r.resource.clone(), r.name.clone()),
        };
        ApiError::Forbidden {
            group,
            resource,
            name,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(method: &str, uri: &str) -> Attributes {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let query: HashMap<String, String> = crate::handler::parse_query(query);
        let segments = crate::path::segments(path).unwrap();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Attributes::from_request(user::named("bob", &[]), method, path, &segments, &|k| {
            query.get(k).cloned()
        })
    }

    fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> (String, ResourceRequest) {
        (
            verb.to_owned(),
            ResourceRequest {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
            },
        )
    }

    fn got(a: Attributes) -> (String, ResourceRequest) {
        (
            a.verb.clone(),
            a.resource_request().cloned().expect("resource"),
        )
    }

    #[test]
    fn resource_requests_as_request_info_reads_them() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                resource("list", "", "pods", "", "default", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods?watch=true",
                resource("watch", "", "pods", "", "default", ""),
            ),
            (
                "GET",
                "/api/v1/pods?watch=0",
                resource("list", "", "pods", "", "", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/web",
                resource("get", "", "pods", "", "default", "web"),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/web/log",
                resource("get", "", "pods", "log", "default", "web"),
            ),
            (
                "PUT",
                "/apis/apps/v1/namespaces/ns/deployments/web/status",
                resource("update", "apps", "deployments", "status", "ns", "web"),
            ),
            (
                "PATCH",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
                resource(
                    "patch",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    "",
                    "",
                    "view",
                ),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/default/configmaps",
                resource("deletecollection", "", "configmaps", "", "default", ""),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/default/configmaps/",
                resource("deletecollection", "", "configmaps", "", "default", ""),
            ),
            (
                "POST",
                "/api/v1/namespaces",
                resource("create", "", "namespaces", "", "", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/ns",
                resource("get", "", "namespaces", "", "ns", "ns"),
            ),
            (
                "PUT",
                "/api/v1/namespaces/ns/status",
                resource("update", "", "namespaces", "status", "ns", "ns"),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dcm1",
                resource("list", "", "configmaps", "", "default", "cm1"),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/configmaps?watch=1&fieldSelector=metadata.name%3D%3Dcm1",
                resource("watch", "", "configmaps", "", "default", "cm1"),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name!%3Dcm1",
                resource("list", "", "configmaps", "", "default", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3D..",
                resource("list", "", "configmaps", "", "default", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/default/configmaps/a%2Fb",
                resource("get", "", "configmaps", "", "default", "a/b"),
            ),
        ];
        for (method, uri, want) in cases {
            assert_eq!(got(parse(method, uri)), want, "{method} {uri}");
        }
    }

    #[test]
    fn watch_values_read_as_apimachinery_reads_them() {
        for yes in ["true", "1", "yes", "True", "t"] {
            assert!(is_watch(Some(yes)), "{yes}");
        }
        for no in ["", "0", "false", "FALSE", "f", "F"] {
            assert!(!is_watch(Some(no)), "{no}");
        }
        assert!(!is_watch(None));
    }

    #[test]
    fn other_paths_are_non_resource_requests() {
        for (method, uri, verb) in [
            ("GET", "/version", "get"),
            ("GET", "/api", "get"),
            ("GET", "/api/v1", "get"),
            ("GET", "/apis/apps", "get"),
            ("GET", "/apis/apps/v1", "get"),
            ("GET", "/openapi/v3/apis/apps/v1", "get"),
            ("POST", "/healthz", "post"),
            ("GET", "/", "get"),
        ] {
            let a = parse(method, uri);
            assert_eq!(a.verb, verb, "{uri}");
            assert_eq!(
                a.target,
                Target::NonResource {
                    path: uri.to_owned()
                },
                "{uri}"
            );
        }
    }

    #[test]
    fn refusals_read_as_kube_apiservers() {
        let msg = |method: &str, uri: &str, reason: &str| {
            parse(method, uri).forbidden(reason).to_string()
        };
        assert_eq!(
            msg("GET", "/api/v1/namespaces/default/pods", ""),
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            msg(
                "GET",
                "/apis/apps/v1/namespaces/ns/deployments/web/status",
                ""
            ),
            "deployments.apps \"web\" is forbidden: User \"bob\" cannot get resource \"deployments/status\" in API group \"apps\" in the namespace \"ns\""
        );
        assert_eq!(
            msg(
                "GET",
                "/api/v1/nodes",
                "RBAC: role.rbac.authorization.k8s.io \"x\" not found"
            ),
            "nodes is forbidden: User \"bob\" cannot list resource \"nodes\" in API group \"\" at the cluster scope: RBAC: role.rbac.authorization.k8s.io \"x\" not found"
        );
        assert_eq!(
            msg("GET", "/metrics", ""),
            "forbidden: User \"bob\" cannot get path \"/metrics\""
        );
    }
}
