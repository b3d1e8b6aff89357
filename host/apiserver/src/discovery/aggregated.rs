//! Aggregated discovery (`apidiscovery.k8s.io/v2`, and `v2beta1` for older clients): every
//! resource of every group version in one document at `/api` and at `/apis`, served instead of
//! the `APIVersions`/`APIGroupList` documents when the `Accept` header asks for it, as
//! kube-apiserver's discovery handler does. kubectl (1.30+) and kube-rs'
//! `Discovery::run_aggregated` read it in two requests instead of one per group version.

use kube::core::discovery::v2::{
    APIGroupDiscovery, APIGroupDiscoveryList, APIResourceDiscovery, APISubresourceDiscovery,
    APIVersionDiscovery, GroupVersionKind,
};
use serde_json::Value;
use sha2::{Digest, Sha512};

use super::{Entry, entries, served_groups};
use crate::resource::Registry;

/// The API group of the discovery documents.
const GROUP: &str = "apidiscovery.k8s.io";
/// The kind a client asks for (`as=`).
const KIND: &str = "APIGroupDiscoveryList";

/// A version of the aggregated discovery document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `apidiscovery.k8s.io/v2` (GA in Kubernetes 1.30).
    V2,
    /// `apidiscovery.k8s.io/v2beta1` (the same shape; Kubernetes 1.26–1.29 clients).
    V2Beta1,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V2Beta1 => "v2beta1",
        }
    }

    /// The media type of the answer, which tells a client it got the aggregated form.
    #[must_use]
    pub fn content_type(self) -> String {
        format!("application/json;g={GROUP};v={};as={KIND}", self.name())
    }
}

/// Which document an `Accept` header asks of `/api` or `/apis`: the aggregated one in the first
/// JSON media range that names it, `None` (the legacy one) when a plain JSON range (or none at
/// all) comes first. Ranges this server cannot answer (protobuf, `as=Table`, an unknown version)
/// are passed over, as content negotiation does.
#[must_use]
pub fn negotiate(accept: &str) -> Option<Version> {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if !["application/json", "application/*", "*/*"]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m))
        {
            continue;
        }
        let (mut group, mut version, mut kind) = (None, None, None);
        for param in parts {
            match param.split_once('=') {
                Some(("g", v)) => group = Some(v),
                Some(("v", v)) => version = Some(v),
                Some(("as", v)) => kind = Some(v),
                _ => {}
            }
        }
        match (group, version, kind) {
            (None, None, None) => return None,
            (Some(GROUP), Some("v2"), Some(KIND)) => return Some(Version::V2),
            (Some(GROUP), Some("v2beta1"), Some(KIND)) => return Some(Version::V2Beta1),
            _ => {}
        }
    }
    None
}

/// The document of `/api` (the core group, named `""`) or of `/apis` (every other group, in
/// the order `/apis` lists them), serialized with its `apiVersion` and `kind`.
#[must_use]
pub fn document(registry: &Registry, core: bool, version: Version) -> Value {
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_owned()])]
    } else {
        served_groups(registry)
    };
    let items = groups
        .into_iter()
        .map(|(group, versions)| APIGroupDiscovery {
            metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: (!group.is_empty()).then(|| group.clone()),
                ..Default::default()
            }),
            versions: versions
                .into_iter()
                .map(|v| APIVersionDiscovery {
                    resources: entries(registry, &group, &v)
                        .into_iter()
                        .map(|e| resource(&group, &v, e))
                        .collect(),
                    version: Some(v),
                    freshness: Some("Current".to_owned()),
                })
                .collect(),
        })
        .collect();
    let list = APIGroupDiscoveryList {
        metadata: Some(Default::default()),
        items,
    };
    let mut doc = serde_json::to_value(list).unwrap_or_default();
    if let Some(map) = doc.as_object_mut() {
        map.insert("kind".into(), KIND.into());
        map.insert(
            "apiVersion".into(),
            format!("{GROUP}/{}", version.name()).into(),
        );
    }
    doc
}

/// The entity tag of a serialized document: the SHA-512 of its JSON, in upper-case hex and
/// quoted, as kube-apiserver computes it; a client sending it back in `If-None-Match` gets a 304.
#[must_use]
pub fn etag(json: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(Sha512::digest(json)))
}

fn gvk(group: &str, version: &str, kind: &str) -> GroupVersionKind {
    GroupVersionKind {
        group: Some(group.to_owned()),
        version: Some(version.to_owned()),
        kind: Some(kind.to_owned()),
    }
}

fn resource(group: &str, version: &str, e: Entry) -> APIResourceDiscovery {
    APIResourceDiscovery {
        response_kind: Some(gvk(group, version, &e.kind)),
        scope: Some(
            if e.namespaced {
                "Namespaced"
            } else {
                "Cluster"
            }
            .to_owned(),
        ),
        singular_resource: Some(e.singular),
        verbs: e.verbs.iter().map(|v| (*v).to_owned()).collect(),
        short_names: e.short_names,
        categories: e.categories,
        subresources: e
            .subresources
            .into_iter()
            .map(|s| APISubresourceDiscovery {
                subresource: Some(s.name.to_owned()),
                response_kind: Some(gvk(&s.kind.0, &s.kind.1, &s.kind.2)),
                accepted_types: Vec::new(),
                verbs: s.verbs.iter().map(|v| (*v).to_owned()).collect(),
            })
            .collect(),
        resource: Some(e.plural),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// kubectl 1.32's `Accept` for `/api` and `/apis`.
    const KUBECTL: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn the_first_range_this_server_can_answer_decides() {
        assert_eq!(negotiate(KUBECTL), Some(Version::V2));
        assert_eq!(
            negotiate(
                "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some(Version::V2Beta1)
        );
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate("application/json"), None);
        assert_eq!(
            negotiate(
                "application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            ),
            None,
            "plain JSON asked first"
        );
        assert_eq!(
            negotiate("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
            None
        );
        assert_eq!(
            negotiate("application/json;as=Table;g=meta.k8s.io;v=v1"),
            None
        );
    }

    #[test]
    fn every_served_resource_is_in_one_document_with_its_subresources() {
        let registry = Registry::default();
        let apis = document(&registry, false, Version::V2);
        assert_eq!(apis["kind"], "APIGroupDiscoveryList");
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2");
        let apps = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let v1 = &apps["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let deployments = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        assert_eq!(deployments["singularResource"], "deployment");
        assert_eq!(
            deployments["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let scale = deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert!(
            apis["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["metadata"]["name"] != ""),
            "the core group is only in /api"
        );
        let core = document(&registry, true, Version::V2Beta1);
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        let subresources: Vec<&str> = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subresource"].as_str().unwrap())
            .collect();
        assert_eq!(subresources, ["binding", "eviction", "log", "status"]);
        let namespaces = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap();
        assert_eq!(namespaces["scope"], "Cluster");
    }

    #[test]
    fn the_tag_changes_with_the_document() {
        let a = br#"{"items":[]}"#;
        let b = br#"{"items":[1]}"#;
        assert_eq!(etag(a), etag(a));
        assert_ne!(etag(a), etag(b));
        assert!(etag(a).starts_with('"') && etag(a).len() == 130);
    }
}
