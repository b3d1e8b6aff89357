//! Where one reconcile may read and write: the reconciled object's namespace, plus the namespaces
//! and cluster-scoped kinds the configuration grants. Cache reads and pod logs lent to the plugin
//! during `fetch` go through the scope, so a plugin sees nothing outside it.

use super::apply::controlled_by;
use super::cache::InformerCache;
use crate::contract::{CategorizedError, ErrorCategory, Gvk};
use crate::informer::InformerHandle;
use crate::plugin::{CacheReader, PodLogReader};
use capstan_apiserver::validation;
use kube::api::DynamicObject;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Every namespace, in [`ScopeGrant::namespaces`].
pub const ALL_NAMESPACES: &str = "*";

/// What the configuration grants a reconciler beyond its object's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeGrant {
    /// Other namespaces it may read and write in; [`ALL_NAMESPACES`] is every namespace.
    pub namespaces: BTreeSet<String>,
    /// Whether it may read and write cluster-scoped kinds (those it declared).
    pub cluster_scoped: bool,
}

/// The scope of one reconcile: the object's namespace (`None` for a cluster-scoped object) and
/// the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The reconciled object's namespace.
    pub home: Option<String>,
    /// What the configuration grants beyond it.
    pub grant: ScopeGrant,
}

impl Scope {
    /// The scope of a reconcile of an object in `home`.
    pub fn new(home: Option<String>, grant: ScopeGrant) -> Self {
        Self { home, grant }
    }

    /// Whether objects in `namespace` may be read or written.
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        self.home.as_deref() == Some(namespace)
            || self.grant.namespaces.contains(ALL_NAMESPACES)
            || self.grant.namespaces.contains(namespace)
    }

    /// Whether every namespace may be read (a list across namespaces).
    pub fn all_namespaces(&self) -> bool {
        self.grant.namespaces.contains(ALL_NAMESPACES)
    }

    /// Why objects of a kind (`namespaced` or not) in `namespace` are out of scope, if they are.
    pub fn refusal(&self, namespaced: bool, namespace: Option<&str>) -> Option<String> {
        match (namespaced, namespace) {
            (false, _) if !self.grant.cluster_scoped => Some(
                "cluster-scoped kinds are outside the reconcile's scope unless the configuration grants `clusterScoped`".into(),
            ),
            (false, _) => None,
            (true, None) => Some(
                "no namespace: the reconciled object is cluster-scoped and the entry names none"
                    .into(),
            ),
            (true, Some(ns)) if !self.namespace_allowed(ns) => Some(format!(
                "namespace {ns:?} is outside the reconcile's scope (the object's namespace {}, and the namespaces the configuration grants)",
                self.home.as_deref().map_or("(none)".into(), |h| format!("{h:?}"))
            )),
            (true, Some(_)) => None,
        }
    }
}

fn refused(message: String) -> CategorizedError {
    CategorizedError {
        category: ErrorCategory::Auth,
        message,
    }
}

fn invalid(message: String) -> CategorizedError {
    CategorizedError {
        category: ErrorCategory::InvalidSpec,
        message,
    }
}

/// Cache reads limited to a scope.
pub(crate) struct ScopedCache {
    /// The caches.
    pub(crate) inner: Arc<InformerCache>,
    /// The reconcile's scope.
    pub(crate) scope: Scope,
}

impl ScopedCache {
    /// The namespace a read of `gvk` goes to: checked, and defaulted to the object's own for
    /// namespaced kinds when the plugin names none and may not read across namespaces.
    fn namespace<'a>(
        &'a self,
        gvk: &Gvk,
        namespace: Option<&'a str>,
        listing: bool,
    ) -> Result<Option<&'a str>, CategorizedError> {
        if let Some(ns) = namespace {
            validation::dns1123_label(ns).map_err(|e| invalid(format!("namespace {ns:?}: {e}")))?;
        }
        let namespaced = self.inner.handle(gvk)?.namespaced();
        if !namespaced {
            return match self.scope.refusal(false, None) {
                Some(why) => Err(refused(format!("cannot read {gvk}: {why}"))),
                None => Ok(None),
            };
        }
        let namespace = match namespace {
            None if listing && self.scope.all_namespaces() => return Ok(None),
            None => self.scope.home.as_deref(),
            Some(ns) => Some(ns),
        };
        match self.scope.refusal(true, namespace) {
            Some(why) => Err(refused(format!("cannot read {gvk}: {why}"))),
            None => Ok(namespace),
        }
    }
}

impl CacheReader for ScopedCache {
    fn get(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, CategorizedError> {
        validation::path_segment(name).map_err(|e| invalid(format!("name {name:?}: {e}")))?;
        let namespace = self.namespace(gvk, namespace, false)?;
        self.inner.get(gvk, namespace, name)
    }

    fn list(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<String>, CategorizedError> {
        let namespace = self.namespace(gvk, namespace, true)?;
        self.inner.list(gvk, namespace, label_selector)
    }
}

/// Whether `labels` match a selector written as a `LabelSelector` (`matchLabels` and
/// `matchExpressions`) or as a plain map (a Service's selector). An empty selector matches
/// nothing here: it would grant every pod.
fn selects(
    selector: &serde_json::Value,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    use serde_json::Value;
    let label_is = |k: &str, v: &Value| labels.get(k).map(String::as_str) == v.as_str();
    let Some(map) = selector.as_object() else {
        return false;
    };
    if map.contains_key("matchLabels") || map.contains_key("matchExpressions") {
        let mut any = false;
        if let Some(m) = map.get("matchLabels").and_then(Value::as_object) {
            any |= !m.is_empty();
            if !m.iter().all(|(k, v)| label_is(k, v)) {
                return false;
            }
        }
        if let Some(exprs) = map.get("matchExpressions").and_then(Value::as_array) {
            any |= !exprs.is_empty();
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let have = labels.get(key).map(String::as_str);
                let ok = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => have.is_some_and(|h| values.contains(&h)),
                    Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
                    Some("Exists") => have.is_some(),
                    Some("DoesNotExist") => have.is_none(),
                    _ => false,
                };
                if !ok {
                    return false;
                }
            }
        }
        any
    } else {
        !map.is_empty() && map.iter().all(|(k, v)| label_is(k, v))
    }
}

/// Pod logs limited to a reconcile: pods in the object's namespace (or a granted one) that the
/// object or one of its children owns, or that a child selects (`spec.selector`).
pub(super) struct ScopedPodLogs {
    pub(super) inner: Arc<dyn PodLogReader>,
    pub(super) client: kube::Client,
    pub(super) scope: Scope,
    /// The reconciled object's uid.
    pub(super) owner_uid: String,
    /// The object's children: objects of its owned kinds that it controls (from the caches).
    pub(super) children: Vec<Arc<DynamicObject>>,
}

impl ScopedPodLogs {
    /// Build the scoped reader, collecting the object's children from the owned kinds' caches.
    pub(super) fn new(
        inner: Arc<dyn PodLogReader>,
        client: kube::Client,
        scope: Scope,
        owner_uid: String,
        owned: &[&InformerHandle],
    ) -> Self {
        let children = owned
            .iter()
            .filter_map(|h| h.list(scope.home.as_deref(), None).ok())
            .flatten()
            .filter(|c| controlled_by(c, &owner_uid))
            .collect();
        Self {
            inner,
            client,
            scope,
            owner_uid,
            children,
        }
    }

    /// Whether `pod` belongs to the reconciled object.
    fn belongs(&self, pod: &k8s_openapi::api::core::v1::Pod) -> bool {
        let owners: BTreeSet<&str> = std::iter::once(self.owner_uid.as_str())
            .chain(
                self.children
                    .iter()
                    .filter_map(|c| c.metadata.uid.as_deref()),
            )
            .collect();
        let owned = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| owners.contains(o.uid.as_str()));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let same_namespace = |c: &DynamicObject| c.metadata.namespace == pod.metadata.namespace;
        owned
            || self.children.iter().any(|c| {
                same_namespace(c)
                    && c.data
                        .pointer("/spec/selector")
                        .is_some_and(|s| selects(s, &labels))
            })
    }
}

impl PodLogReader for ScopedPodLogs {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: Option<&'a str>,
        tail_lines: Option<u32>,
    ) -> futures::future::BoxFuture<'a, Result<String, CategorizedError>> {
        Box::pin(async move {
            validation::field("namespace", namespace, validation::dns1123_label)
                .and_then(|()| validation::field("pod", pod, validation::dns1123_subdomain))
                .and_then(|()| match container {
                    Some(c) => validation::field("container", c, validation::dns1123_label),
                    None => Ok(()),
                })
                .map_err(|e| invalid(format!("cannot read a pod log: {e}")))?;
            if let Some(why) = self.scope.refusal(true, Some(namespace)) {
                return Err(refused(format!(
                    "cannot read the log of pod {namespace}/{pod}: {why}"
                )));
            }
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let found = pods.get_opt(pod).await.map_err(|e| CategorizedError {
                category: super::apply::category_of(&e),
                message: format!("cannot read pod {namespace}/{pod}: {e}"),
            })?;
            let Some(found) = found else {
                return Err(CategorizedError {
                    category: ErrorCategory::MissingDownstreamDependency,
                    message: format!("pod {namespace}/{pod} does not exist"),
                });
            };
            if !self.scope.all_namespaces() && !self.belongs(&found) {
                return Err(refused(format!(
                    "cannot read the log of pod {namespace}/{pod}: neither the reconciled object nor one of its children owns or selects it"
                )));
            }
            self.inner.read(namespace, pod, container, tail_lines).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(grant: ScopeGrant) -> Scope {
        Scope::new(Some("team-a".into()), grant)
    }

    #[test]
    fn the_home_namespace_only_unless_granted() {
        let s = scope(ScopeGrant::default());
        assert!(s.refusal(true, Some("team-a")).is_none());
        assert!(s.refusal(true, Some("kube-system")).is_some());
        assert!(
            s.refusal(false, None).is_some(),
            "cluster-scoped needs a grant"
        );
        let s = scope(ScopeGrant {
            namespaces: ["shared".to_owned()].into(),
            cluster_scoped: true,
        });
        assert!(s.refusal(true, Some("shared")).is_none());
        assert!(s.refusal(true, Some("kube-system")).is_some());
        assert!(s.refusal(false, None).is_none());
        let s = scope(ScopeGrant {
            namespaces: [ALL_NAMESPACES.to_owned()].into(),
            cluster_scoped: false,
        });
        assert!(s.refusal(true, Some("kube-system")).is_none());
        let cluster_object = Scope::new(None, ScopeGrant::default());
        assert!(cluster_object.refusal(true, None).is_some());
    }

    #[test]
    fn selectors_match_labels_and_empty_ones_match_nothing() {
        let labels = [("app".to_owned(), "web".to_owned())].into();
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), &labels));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), &labels));
        assert!(selects(&json!({"app": "web"}), &labels), "a Service's map");
        assert!(selects(
            &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}),
            &labels
        ));
        assert!(!selects(&json!({}), &labels));
        assert!(!selects(&json!({"matchLabels": {}}), &labels));
    }
}
