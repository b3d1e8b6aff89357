//! Reads from the host's informer caches during the fetch phase.

use crate::health::{Error, ErrorCategory};
use crate::manifest::Gvk;
use serde::de::DeserializeOwned;

/// The result of reading one object: found, not found, or an error with its category (seed 003).
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<T> {
    /// The object exists.
    Found(T),
    /// The object does not exist.
    NotFound,
    /// The read failed.
    Failed(Error),
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

    /// The health of the component this read was for: `inspect` judges the object (or its
    /// absence); a failed read is reported as such, with its error and category, so that a denied
    /// read is never mistaken for a missing object.
    ///
    /// ```ignore
    /// observed.deployment.inspect(|d| inspect::deployment("Deployment", d))
    /// ```
    pub fn inspect(
        &self,
        inspect: impl FnOnce(Option<&T>) -> crate::ComponentHealth,
    ) -> crate::ComponentHealth {
        match self {
            Self::Failed(e) => {
                let mut health = inspect(None);
                health.state = crate::HealthState::Unknown;
                health.reason = "ReadFailed".into();
                health.message = e.message.clone();
                health.errors = vec![e.clone()];
                health
            }
            _ => inspect(self.found()),
        }
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
                Err(e) => Fetched::Failed(Error::new(
                    ErrorCategory::Infrastructure,
                    format!("cannot decode {}: {e}", K::KIND),
                )),
            },
            Ok(None) => Fetched::NotFound,
            Err(e) => Fetched::Failed(e),
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

fn matches(o: &serde_json::Value, gvk: &Gvk, namespace: Option<&str>) -> bool {
    let s = |p: &str| o.pointer(p).and_then(|v| v.as_str());
    s("/apiVersion") == Some(gvk.api_version().as_str())
        && s("/kind") == Some(gvk.kind.as_str())
        && (namespace.is_none() || s("/metadata/namespace") == namespace)
}

/// Read one object from the host's cache.
#[cfg(target_arch = "wasm32")]
fn host_get(
    gvk: &Gvk,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<serde_json::Value>, Error> {
    let found = wit::get(gvk, namespace, name).map_err(read_error)?;
    found.map(|json| decode(&json)).transpose()
}

/// List objects from the host's cache.
#[cfg(target_arch = "wasm32")]
fn host_list(
    gvk: &Gvk,
    namespace: Option<&str>,
    label_selector: Option<&str>,
) -> Result<Vec<serde_json::Value>, Error> {
    let options = wit::ListOptions {
        namespace: namespace.map(str::to_owned),
        label_selector: label_selector.map(str::to_owned),
    };
    wit::list(gvk, &options)
        .map_err(read_error)?
        .iter()
        .map(|json| decode(json))
        .collect()
}

#[cfg(target_arch = "wasm32")]
use crate::wit::capstan::controller::cache as wit;

/// A failed read, as the host categorized it.
#[cfg(target_arch = "wasm32")]
fn read_error(e: wit::ReadError) -> Error {
    Error::new(e.category, e.message)
}

/// A cached object as JSON; the host only hands out JSON objects, so this fails only on a host bug.
#[cfg(target_arch = "wasm32")]
fn decode(json: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(json)
        .map_err(|e| Error::infrastructure(format!("cannot decode a cached object: {e}")))
}

/// Native builds (unit tests) have no host: use [`Cache::from_objects`].
#[cfg(not(target_arch = "wasm32"))]
fn host_get(_: &Gvk, _: Option<&str>, _: &str) -> Result<Option<serde_json::Value>, Error> {
    Err(no_host())
}

/// Native builds (unit tests) have no host: use [`Cache::from_objects`].
#[cfg(not(target_arch = "wasm32"))]
fn host_list(_: &Gvk, _: Option<&str>, _: Option<&str>) -> Result<Vec<serde_json::Value>, Error> {
    Err(no_host())
}

#[cfg(not(target_arch = "wasm32"))]
fn no_host() -> Error {
    Error::invalid_spec(
        "the host's cache is only readable inside a plugin; test with Cache::from_objects",
    )
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

    #[test]
    fn the_host_cache_is_an_error_natively_not_a_panic() {
        let read = Cache::host().get::<ConfigMap>(Some("ns"), "a");
        assert!(matches!(read, Fetched::Failed(e) if e.category == ErrorCategory::InvalidSpec));
    }
}
