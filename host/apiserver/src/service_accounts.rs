//! kube-controller-manager's service account controller (`serviceaccounts-controller`), done by
//! the server itself, synchronously: every active namespace holds the ServiceAccount `default`,
//! created with the namespace and created again when deleted. The `ServiceAccount` admission
//! plugin ([`crate::pod_admission`]) refuses a pod whose ServiceAccount does not exist, so on a
//! cluster pods depend on this controller; here it runs whether or not workloads are simulated.

use serde_json::json;

use crate::cluster::{Inner, new_uid, now};
use crate::gc;
use crate::resource::NAMESPACE_RESOURCE;
use crate::store::StoreError;

/// The storage key of ServiceAccounts.
pub const RESOURCE: &str = "serviceaccounts";
/// The ServiceAccount every namespace holds, and the one a pod without one runs as
/// (`DefaultServiceAccountName`).
pub const DEFAULT: &str = "default";

/// Creates the ServiceAccount `default` in `namespace` if the namespace is active and lacks it.
///
/// # Errors
/// [`StoreError`] when the write is not durable.
pub fn ensure_default(inner: &mut Inner, namespace: &str) -> Result<(), StoreError> {
    let active = inner
        .store
        .get(NAMESPACE_RESOURCE, &(String::new(), namespace.to_owned()))
        .is_some_and(|ns| ns["status"]["phase"] == "Active" && !gc::is_deleting(ns));
    let key = (namespace.to_owned(), DEFAULT.to_owned());
    if !active || inner.store.get(RESOURCE, &key).is_some() {
        return Ok(());
    }
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": DEFAULT,
            "namespace": namespace,
            "uid": new_uid(),
            "creationTimestamp": now(),
        },
    });
    inner.store.put(RESOURCE, key, account)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Cluster, DEFAULT_NAMESPACES};

    #[test]
    fn every_namespace_the_server_starts_with_holds_the_default_account() {
        let cluster = Cluster::open(None, 10).unwrap();
        let inner = cluster.lock();
        for ns in DEFAULT_NAMESPACES {
            let account = inner
                .store
                .get(RESOURCE, &((*ns).to_owned(), DEFAULT.to_owned()))
                .unwrap_or_else(|| panic!("{ns} has no default ServiceAccount"));
            assert_eq!(account["metadata"]["namespace"], *ns);
            assert!(account["metadata"]["uid"].is_string());
        }
    }

    #[test]
    fn a_missing_or_terminating_namespace_gets_none() {
        let cluster = Cluster::open(None, 10).unwrap();
        let mut inner = cluster.lock();
        ensure_default(&mut inner, "nowhere").unwrap();
        assert!(
            inner
                .store
                .get(RESOURCE, &("nowhere".to_owned(), DEFAULT.to_owned()))
                .is_none()
        );
    }
}
