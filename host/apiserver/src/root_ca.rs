//! kube-controller-manager's root CA publisher (`rootcacertpublisher`), run with the simulated
//! controllers: every active namespace holds the ConfigMap `kube-root-ca.crt` with the server's
//! CA bundle under `ca.crt` and the controller's description annotation; it is created with the
//! namespace, created again when deleted, and its data and annotation put back when changed.

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::gc;
use crate::resource::NAMESPACE_RESOURCE;
use crate::workloads::Writes;

/// The ConfigMap's name (`RootCACertConfigMapName`).
pub const NAME: &str = "kube-root-ca.crt";
/// The key of the CA bundle in its data.
pub const DATA_KEY: &str = "ca.crt";
/// The annotation the publisher sets (`DescriptionAnnotation`).
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Its value (`Description`).
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the \
    kube-apiserver when using internal endpoints such as the internal service IP or \
    kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes \
    clusters.";

const CONFIG_MAPS: &str = "configmaps";

/// One pass: create or put back the ConfigMap of every active namespace through `writes`,
/// writing only what differs (a pass that finds everything in place writes nothing).
pub(crate) fn pass(cluster: &Cluster, ca: &str, writes: &mut Writes<'_>) {
    let work: Vec<(String, Option<Value>)> = {
        let inner = cluster.lock();
        inner
            .store
            .list(NAMESPACE_RESOURCE, None, None)
            .filter(|(_, ns)| ns["status"]["phase"] == "Active" && !gc::is_deleting(ns))
            .filter_map(|((_, name), _)| {
                let key = (name.clone(), NAME.to_owned());
                match inner.store.get(CONFIG_MAPS, &key) {
                    None => Some((name.clone(), None)),
                    Some(cm) if !in_place(cm, ca) && !gc::is_deleting(cm) => {
                        Some((name.clone(), Some((**cm).clone())))
                    }
                    Some(_) => None,
                }
            })
            .collect()
    };
    for (namespace, existing) in work {
        match existing {
            None => {
                writes.create(
                    CONFIG_MAPS,
                    &namespace,
                    json!({
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": NAME,
                            "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                        },
                        "data": {DATA_KEY: ca},
                    }),
                );
            }
            Some(mut cm) => {
                cm["data"] = json!({DATA_KEY: ca});
                cm["metadata"]["annotations"][DESCRIPTION_ANNOTATION] = json!(DESCRIPTION);
                writes.update("put back", CONFIG_MAPS, cm);
            }
        }
    }
}

/// Whether the ConfigMap holds exactly the bundle and carries the annotation.
fn in_place(cm: &Value, ca: &str) -> bool {
    cm["data"] == json!({DATA_KEY: ca})
        && cm["metadata"]["annotations"][DESCRIPTION_ANNOTATION] == DESCRIPTION
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::DEFAULT_NAMESPACES;

    #[test]
    fn a_pass_publishes_to_every_namespace_then_writes_nothing() {
        let cluster = Cluster::open(None, 100).unwrap();
        pass(&cluster, "PEM", &mut Writes::new(&cluster));
        let version = cluster.lock().store.resource_version();
        for ns in DEFAULT_NAMESPACES {
            let inner = cluster.lock();
            let cm = inner
                .store
                .get(CONFIG_MAPS, &((*ns).to_owned(), NAME.to_owned()))
                .unwrap();
            assert!(in_place(cm, "PEM"), "{ns}: {cm}");
        }
        pass(&cluster, "PEM", &mut Writes::new(&cluster));
        assert_eq!(cluster.lock().store.resource_version(), version);
        // A new bundle (a new authority) is published over the old.
        pass(&cluster, "PEM2", &mut Writes::new(&cluster));
        let inner = cluster.lock();
        let key = ("default".to_owned(), NAME.to_owned());
        assert!(in_place(
            inner.store.get(CONFIG_MAPS, &key).unwrap(),
            "PEM2"
        ));
    }
}
