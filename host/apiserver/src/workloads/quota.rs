//! The resource quota controller's part: each ResourceQuota's `status.hard` its spec's, and
//! `status.used` what the objects of its namespace charge against each of those resources
//! (`crate::quota::usage`), written when it changes, so the `ResourceQuota` admission plugin
//! enforces it.

use std::sync::Arc;

use serde_json::Value;

use super::Writes;
use crate::cluster::Cluster;
use crate::quota::{RESOURCE_QUOTAS, status};
use crate::resource::ResourceInfo;

/// The kinds every quota may count, besides the `count/RESOURCE.GROUP` ones it names.
const COUNTED: [&str; 6] = [
    "pods",
    "services",
    "persistentvolumeclaims",
    "configmaps",
    "secrets",
    "resourcequotas",
];

/// One pass over the quotas.
pub(super) fn quota_pass(writes: &mut Writes<'_>, cluster: &Cluster) {
    let quotas: Vec<Arc<Value>> = {
        let inner = cluster.lock();
        inner
            .store
            .list(RESOURCE_QUOTAS, None, None)
            .map(|(_, q)| q.clone())
            .collect()
    };
    for quota in &quotas {
        let Some(namespace) = quota["metadata"]["namespace"].as_str() else {
            continue;
        };
        // The storage keys of the kinds this quota's resources count.
        let mut keys: Vec<String> = COUNTED.iter().map(|k| (*k).to_owned()).collect();
        for resource in quota["spec"]["hard"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(r, _)| r)
        {
            if let Some(key) = resource.strip_prefix("count/")
                && !keys.iter().any(|k| k == key)
            {
                keys.push(key.to_owned());
            }
        }
        let objects: Vec<(Arc<ResourceInfo>, Arc<Value>)> = {
            let inner = cluster.lock();
            keys.iter()
                .filter_map(|key| Some((key, inner.registry.by_group_resource(key)?)))
                .filter(|(_, info)| info.namespaced)
                .flat_map(|(key, info)| {
                    inner
                        .store
                        .list(key, Some(namespace), None)
                        .filter(|(_, o)| !crate::gc::is_deleting(o))
                        .map(move |(_, o)| (info.clone(), o.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let refs: Vec<(&ResourceInfo, &Value)> =
            objects.iter().map(|(i, o)| (&**i, &**o)).collect();
        writes.status(RESOURCE_QUOTAS, quota, status(quota, &refs));
    }
}
