//! Reads from the host's informer caches during the fetch phase.

use crate::health::{Error, ErrorCategory};
use crate::manifest::Gvk;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The result of reading one object: found, not found, or an error with its category (seed 003).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fetched<T> {
    /// The object exists.
    Found(T),
    /// The object does not exist.
    NotFound,
    /// The read failed.
    Failed {
        /// Category of the failure.
        category: String,
        /// Description.
        message: String,
    },
}

impl<T> Fetched<T> {
    /// The object, if found.
    pub fn found(&self) -> Option<&T> {
        match self {
            Self::Found(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }
}

/// Read access to the informer caches, for the kinds the plugin declared.
pub struct Cache {
    memory: Option<Vec<serde_json::Value>>,
}

impl Cache {
    #[doc(hidden)]
    pub fn host() -> Self {
        Self { memory: None }
    }

    /// A cache holding these objects: for testing `fetch` natively.
    pub fn from_objects(objects: Vec<serde_json::Value>) -> Self {
        Self {
            memory: Some(objects),
        }
    }

    /// Read one object of a k8s-openapi kind.
    pub fn get<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Fetched<K> {
        match self.get_raw(&Gvk::of::<K>(), namespace, name) {
            Ok(Some(v)) => match serde_json::from_value(v) {
                Ok(obj) => Fetched::Found(obj),
                Err(e) => failed(
                    ErrorCategory::Infrastructure,
                    format!("cannot decode {}: {e}", K::KIND),
                ),
            },
            Ok(None) => Fetched::NotFound,
            Err(e) => failed(e.category, e.message),
        }
    }

    /// List objects of a k8s-openapi kind, optionally in one namespace and by label selector.
    pub fn list<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<K>, Error> {
        self.list_raw(&Gvk::of::<K>(), namespace, label_selector)?
            .into_iter()
            .map(|v| {
                serde_json::from_value(v)
                    .map_err(|e| Error::infrastructure(format!("cannot decode {}: {e}", K::KIND)))
            })
            .collect()
    }

    /// Read one object of any kind as JSON.
    pub fn get_raw(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        match &self.memory {
            Some(objects) => Ok(objects
                .iter()
                .find(|o| {
                    matches(o, gvk, namespace)
                        && o.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name)
                })
                .cloned()),
            None => host_get(gvk, namespace, name),
        }
    }

    /// List objects of any kind as JSON.
    pub fn list_raw(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, Error> {
        match &self.memory {
            Some(objects) => {
                if label_selector.is_some() {
                    return Err(Error::invalid_spec(
                        "label selectors are not supported by the in-memory cache",
                    ));
                }
                Ok(objects
                    .iter()
                    .filter(|o| matches(o, gvk, namespace))
                    .cloned()
                    .collect())
            }
            None => host_list(gvk, namespace, label_selector),
        }
    }
}

fn failed<T>(category: ErrorCategory, message: String) -> Fetched<T> {
    Fetched::Failed {
        category: format!("{category:?}"),
        message,
    }
}

fn matches(o: &serde_json::Value, gvk: &Gvk, namespace: Option<&str>) -> bool {
    let s = |p: &str| o.pointer(p).and_then(|v| v.as_str());
    s("/apiVersion") == Some(gvk.api_version().as_str())
        && s("/kind") == Some(gvk.kind.as_str())
        && (namespace.is_none() || s("/metadata/namespace") == namespace)
}

#[cfg(feature = "reconciler")]
fn host_get(
    gvk: &Gvk,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<serde_json::Value>, Error> {
    crate::glue::cache_get(gvk, namespace, name)
}

#[cfg(feature = "reconciler")]
fn host_list(
    gvk: &Gvk,
    namespace: Option<&str>,
    label_selector: Option<&str>,
) -> Result<Vec<serde_json::Value>, Error> {
    crate::glue::cache_list(gvk, namespace, label_selector)
}

#[cfg(not(feature = "reconciler"))]
fn host_get(_: &Gvk, _: Option<&str>, _: &str) -> Result<Option<serde_json::Value>, Error> {
    Err(Error::invalid_spec(
        "the cache is only available to reconcilers",
    ))
}

#[cfg(not(feature = "reconciler"))]
fn host_list(_: &Gvk, _: Option<&str>, _: Option<&str>) -> Result<Vec<serde_json::Value>, Error> {
    Err(Error::invalid_spec(
        "the cache is only available to reconcilers",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn memory_cache_finds_by_kind_namespace_and_name() {
        let cache = Cache::from_objects(vec![serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns"}
        })]);
        assert!(cache.get::<ConfigMap>(Some("ns"), "a").found().is_some());
        assert!(cache.get::<ConfigMap>(Some("other"), "a").is_not_found());
        assert_eq!(cache.list::<ConfigMap>(None, None).unwrap().len(), 1);
    }
}
