//! The `kubernetes` Service of the `default` namespace, which kube-apiserver keeps for in-cluster
//! clients (`pkg/controlplane/controller/kubernetesservice` and the endpoint reconciler of
//! `pkg/controlplane/reconcilers`): ClusterIP `10.96.0.1`, port 443 named `https` to this
//! server's port, and an Endpoints object and an EndpointSlice of this server's address, brought
//! up to date each time the server starts (its port may change).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::verbs::{Target, WriteOptions};

/// The namespace and name of the Service, its Endpoints and its EndpointSlice.
const NAMESPACE: &str = "default";
const NAME: &str = "kubernetes";
/// The first address of the service CIDR, which kube-apiserver reserves for the Service.
const CLUSTER_IP: &str = "10.96.0.1";

/// Makes the Service, Endpoints and EndpointSlice, or brings them to `addr` (the server's bound
/// address; an unspecified one is advertised as loopback). Nothing is written when the `default`
/// namespace is missing or when they already say so.
///
/// # Errors
/// The [`ApiError`] of a write that fails.
pub(crate) fn ensure(cluster: &Cluster, addr: SocketAddr) -> Result<(), ApiError> {
    let namespaces = target(cluster, "", "v1", "namespaces", None)?;
    if cluster
        .get(&Target {
            name: Some(NAMESPACE.into()),
            ..namespaces
        })
        .is_err()
    {
        return Ok(());
    }
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let port = addr.port();
    let labels = json!({"provider": "kubernetes", "component": "apiserver"});
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": CLUSTER_IP,
            "sessionAffinity": "None",
            "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}],
        },
    });
    put(
        cluster,
        target(cluster, "", "v1", "services", Some(NAME))?,
        service,
        |old| old["spec"]["ports"][0]["targetPort"] == port,
    )?;
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{
            "addresses": [{"ip": ip.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    put(
        cluster,
        target(cluster, "", "v1", "endpoints", Some(NAME))?,
        endpoints.clone(),
        |old| old["subsets"] == endpoints["subsets"],
    )?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME},
        },
        "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put(
        cluster,
        target(
            cluster,
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            Some(NAME),
        )?,
        slice.clone(),
        |old| old["endpoints"] == slice["endpoints"] && old["ports"] == slice["ports"],
    )
}

fn target(
    cluster: &Cluster,
    group: &str,
    version: &str,
    plural: &str,
    name: Option<&str>,
) -> Result<Target, ApiError> {
    let info = cluster
        .lock()
        .registry
        .lookup(group, version, plural)
        .ok_or(ApiError::UnknownResource)?;
    let namespace = info.namespaced.then(|| NAMESPACE.to_owned());
    Ok(Target {
        info,
        namespace,
        name: name.map(str::to_owned),
        subresource: None,
    })
}

/// Creates `object` at `target`, or replaces the stored one unless `current` says it is.
fn put(
    cluster: &Cluster,
    target: Target,
    mut object: Value,
    current: impl Fn(&Value) -> bool,
) -> Result<(), ApiError> {
    let options = WriteOptions {
        manager: "kube-apiserver".into(),
        ..WriteOptions::default()
    };
    match cluster.get(&target) {
        Ok(stored) if current(&stored) => Ok(()),
        Ok(stored) => {
            object["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
            cluster.update(&target, object, &options).map(|_| ())
        }
        Err(ApiError::NotFound { .. }) => cluster.create(&target, object, &options).map(|_| ()),
        Err(e) => Err(e),
    }
}
