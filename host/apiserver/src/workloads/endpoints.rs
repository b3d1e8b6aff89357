//! The endpoints and endpoint slice controllers' part (`pkg/controller/endpoint`,
//! `pkg/controller/endpointslice`): each Service with a selector gets, from the Pods it selects
//! that have an address, an Endpoints object of its name and EndpointSlices `NAME-xxxxx` it owns
//! (one per set of ports its Pods serve), which `kubectl describe service` and clients that look
//! for a Service's backends read.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use super::{Writes, is_ready, name, namespace};
use crate::gc;

/// Services' storage key.
pub(super) const SERVICES: &str = "services";
/// Endpoints' storage key.
pub(super) const ENDPOINTS: &str = "endpoints";
/// EndpointSlices' group resource.
pub(super) const ENDPOINT_SLICES: &str = "endpointslices.discovery.k8s.io";
/// The label naming the Service an EndpointSlice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice, and the endpoint slice controller's value.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label a headless Service's endpoints carry.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints the leader election of old components keeps: never the controller's to delete.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// A Pod behind a Service: its address and state.
struct Backend<'a> {
    pod: &'a Value,
    ip: &'a str,
    /// Ready, or the Service publishes unready addresses.
    ready: bool,
    /// Ready, whatever the Service publishes.
    serving: bool,
    /// Being deleted.
    terminating: bool,
    /// The Service's ports as this Pod serves them (a named target port it lacks is left out).
    ports: Vec<Value>,
}

/// `podutil.FindPort`: the port of `pod` a Service port's `targetPort` names (a number as it is;
/// a name through the containers' ports of that name and protocol).
fn target_port(service_port: &Value, pod: &Value) -> Option<i64> {
    match &service_port["targetPort"] {
        Value::Null => service_port["port"].as_i64(),
        Value::String(port_name) => {
            let protocol = service_port["protocol"].as_str().unwrap_or("TCP");
            super::node::containers(pod)
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| {
                    p["name"] == port_name.as_str()
                        && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })
                .and_then(|p| p["containerPort"].as_i64())
        }
        number => number.as_i64(),
    }
}

/// The Pods behind `service`, ordered by address then uid (`LessEndpointAddress`):
/// `ShouldPodBeInEndpoints` with terminating Pods included (not finished, an address), as the
/// endpoint slice controller reads them; the endpoints controller leaves out the terminating
/// ones unless the Service publishes unready addresses.
fn backends<'a>(service: &Value, pods: &[&'a Value]) -> Vec<Backend<'a>> {
    let Some(selector) = service["spec"]["selector"].as_object() else {
        return Vec::new();
    };
    let publish = service["spec"]["publishNotReadyAddresses"] == true;
    let ports = service["spec"]["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut out: Vec<Backend<'a>> = pods
        .iter()
        .copied()
        .filter(|p| namespace(p) == namespace(service))
        .filter(|p| {
            selector
                .iter()
                .all(|(k, v)| p["metadata"]["labels"][k] == *v)
        })
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter_map(|pod| {
            let ip = pod["status"]["podIP"]
                .as_str()
                .filter(|ip| !ip.is_empty())?;
            let terminating = gc::is_deleting(pod);
            let serving = is_ready(pod);
            let ports = ports
                .iter()
                .filter_map(|sp| {
                    let port = target_port(sp, pod)?;
                    let mut p = Map::new();
                    if let Some(name) = sp["name"].as_str().filter(|n| !n.is_empty()) {
                        p.insert("name".into(), json!(name));
                    }
                    p.insert("port".into(), json!(port));
                    p.insert(
                        "protocol".into(),
                        json!(sp["protocol"].as_str().unwrap_or("TCP")),
                    );
                    if let Some(app) = sp["appProtocol"].as_str() {
                        p.insert("appProtocol".into(), json!(app));
                    }
                    Some(Value::Object(p))
                })
                .collect();
            Some(Backend {
                pod,
                ip,
                // A going Pod is never ready unless the Service publishes unready ones.
                ready: publish || serving && !terminating,
                serving,
                terminating,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.ip.cmp(b.ip).then_with(|| {
            a.pod["metadata"]["uid"]
                .as_str()
                .cmp(&b.pod["metadata"]["uid"].as_str())
        })
    });
    out
}

/// A Pod's reference, as both kinds write it.
fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": pod["metadata"]["namespace"],
        "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]})
}

/// The Pod's hostname when it is this Service's subdomain.
fn hostname<'a>(pod: &'a Value, service: &Value) -> Option<&'a str> {
    let spec = &pod["spec"];
    (spec["subdomain"].as_str() == name(service))
        .then(|| spec["hostname"].as_str())
        .flatten()
        .filter(|h| !h.is_empty())
}

/// The Service's labels, and the headless label for a headless one.
fn labels(service: &Value) -> Map<String, Value> {
    let mut labels = service["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if service["spec"]["clusterIP"] == "None" {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    labels
}

/// One subset being gathered: ready addresses, the others, the ports they serve.
type Subset<'a> = (Vec<Value>, Vec<Value>, &'a Vec<Value>);

/// `syncService`'s subsets, repacked (`RepackSubsets`): the Pods that serve the same ports in one
/// subset, ready ones in `addresses`, the others in `notReadyAddresses`.
fn subsets(service: &Value, backends: &[&Backend<'_>]) -> Vec<Value> {
    let mut by_ports: BTreeMap<String, Subset<'_>> = BTreeMap::new();
    let headless_without_ports = service["spec"]["ports"]
        .as_array()
        .is_none_or(Vec::is_empty);
    for b in backends {
        if b.ports.is_empty() && !headless_without_ports {
            continue;
        }
        let mut address = json!({"ip": b.ip, "targetRef": target_ref(b.pod)});
        if let Some(node) = b.pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            address["nodeName"] = json!(node);
        }
        if let Some(host) = hostname(b.pod, service) {
            address["hostname"] = json!(host);
        }
        let key = Value::Array(b.ports.clone()).to_string();
        let entry = by_ports
            .entry(key)
            .or_insert_with(|| (Vec::new(), Vec::new(), &b.ports));
        if b.ready {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    by_ports
        .into_values()
        .map(|(ready, not_ready, ports)| {
            let mut subset = Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), Value::Array(ports.clone()));
            }
            Value::Object(subset)
        })
        .collect()
}

/// The EndpointSlice ports of a set of Endpoints ports: every name written, empty or not, as the
/// controller sets the pointer.
fn slice_ports(ports: &[Value]) -> Vec<Value> {
    ports
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.get("name").is_none() {
                p["name"] = json!("");
            }
            p
        })
        .collect()
}

/// The endpoints of one EndpointSlice, from the Pods that serve its ports.
fn slice_endpoints(service: &Value, backends: &[&Backend<'_>]) -> Vec<Value> {
    backends
        .iter()
        .map(|b| {
            let mut endpoint = json!({
                "addresses": [b.ip],
                "conditions": {"ready": b.ready, "serving": b.serving, "terminating": b.terminating},
                "targetRef": target_ref(b.pod),
            });
            if let Some(node) = b.pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                endpoint["nodeName"] = json!(node);
            }
            if let Some(host) = hostname(b.pod, service) {
                endpoint["hostname"] = json!(host);
            }
            endpoint
        })
        .collect()
}

/// What a pass reads for these controllers.
pub(super) struct Read<'a> {
    /// Every Service.
    pub(super) services: &'a [&'a Value],
    /// Every Pod, those being deleted too.
    pub(super) pods: &'a [&'a Value],
    /// Every Endpoints object.
    pub(super) endpoints: &'a [&'a Value],
    /// Every EndpointSlice.
    pub(super) slices: &'a [&'a Value],
}

/// One pass of both controllers: every selecting Service's Endpoints and EndpointSlices made or
/// brought up to date; Endpoints whose Service is gone deleted (their EndpointSlices go with the
/// Service, their owner).
pub(super) fn endpoints_pass(writes: &mut Writes<'_>, read: &Read<'_>) {
    let mut served = HashSet::new();
    for service in read.services {
        let (Some(ns), Some(svc)) = (namespace(service), name(service)) else {
            continue;
        };
        served.insert((ns, svc));
        let selects = service["spec"]["selector"]
            .as_object()
            .is_some_and(|s| !s.is_empty());
        if !selects || service["spec"]["type"] == "ExternalName" {
            continue;
        }
        let publish = service["spec"]["publishNotReadyAddresses"] == true;
        let behind = backends(service, read.pods);
        let listed: Vec<&Backend<'_>> = behind
            .iter()
            .filter(|b| publish || !b.terminating)
            .collect();
        sync_endpoints(writes, service, &listed, read.endpoints);
        sync_slices(writes, service, &behind, read.slices);
    }
    for endpoints in read.endpoints {
        let key = (namespace(endpoints), name(endpoints));
        let owned = matches!(key, (Some(ns), Some(n)) if served.contains(&(ns, n)));
        let leader = !endpoints["metadata"]["annotations"][LEADER_ANNOTATION].is_null();
        if !owned && !leader {
            writes.delete(ENDPOINTS, endpoints);
        }
    }
}

/// The Endpoints object of `service`, made or updated.
fn sync_endpoints(
    writes: &mut Writes<'_>,
    service: &Value,
    backends: &[&Backend<'_>],
    existing: &[&Value],
) {
    let (Some(ns), Some(svc)) = (namespace(service), name(service)) else {
        return;
    };
    let subsets = subsets(service, backends);
    let labels = Value::Object(labels(service));
    let current = existing
        .iter()
        .find(|e| namespace(e) == Some(ns) && name(e) == Some(svc));
    match current {
        None => {
            let mut object = json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": svc, "namespace": ns, "labels": labels}});
            if !subsets.is_empty() {
                object["subsets"] = Value::Array(subsets);
            }
            writes.create(ENDPOINTS, ns, object);
        }
        Some(current) => {
            let have = current["subsets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let have_labels = &current["metadata"]["labels"];
            let same_labels = *have_labels == labels
                || have_labels.is_null() && labels.as_object().is_some_and(Map::is_empty);
            if have == subsets.as_slice() && same_labels {
                return;
            }
            let mut body = (*current).clone();
            body["metadata"]["labels"] = labels;
            match body.as_object_mut() {
                Some(map) if subsets.is_empty() => {
                    map.remove("subsets");
                }
                _ => body["subsets"] = Value::Array(subsets),
            }
            writes.update("update the endpoints of", ENDPOINTS, body);
        }
    }
}

/// The EndpointSlices of `service`: one per set of ports its Pods serve (a placeholder with no
/// endpoints when none does), labelled with the Service's name and the controller's, owned by
/// the Service.
fn sync_slices(
    writes: &mut Writes<'_>,
    service: &Value,
    backends: &[Backend<'_>],
    existing: &[&Value],
) {
    let (Some(ns), Some(svc)) = (namespace(service), name(service)) else {
        return;
    };
    let mut wanted: BTreeMap<String, (Vec<Value>, Vec<&Backend<'_>>)> = BTreeMap::new();
    for b in backends {
        let ports = slice_ports(&b.ports);
        let key = Value::Array(ports.clone()).to_string();
        wanted
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(b);
    }
    let mut mine: Vec<&Value> = existing
        .iter()
        .copied()
        .filter(|s| namespace(s) == Some(ns))
        .filter(|s| s["metadata"]["labels"][SERVICE_NAME_LABEL] == svc)
        .filter(|s| s["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY)
        .collect();
    let mut labels = labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), json!(svc));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    let labels = Value::Object(labels);
    let placeholder = wanted.is_empty();
    let wanted: Vec<(Vec<Value>, Vec<Value>)> = if placeholder {
        vec![(Vec::new(), Vec::new())]
    } else {
        wanted
            .into_values()
            .map(|(ports, bs)| (ports, slice_endpoints(service, &bs)))
            .collect()
    };
    let ports_of = |s: &Value| s["ports"].as_array().cloned().unwrap_or_default();
    for (ports, endpoints) in wanted {
        // The slice that already serves these ports, else any left over, else a new one.
        let at = mine
            .iter()
            .position(|s| ports_of(s) == ports)
            .or_else(|| (!mine.is_empty()).then_some(0));
        let Some(at) = at else {
            let mut slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": format!("{svc}-"), "namespace": ns, "labels": labels,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc,
                        "uid": service["metadata"]["uid"], "controller": true,
                        "blockOwnerDeletion": true}]},
                "addressType": "IPv4", "endpoints": endpoints});
            if !ports.is_empty() {
                slice["ports"] = Value::Array(ports);
            }
            writes.create(ENDPOINT_SLICES, ns, slice);
            continue;
        };
        let current = mine.remove(at);
        let have_endpoints = current["endpoints"].as_array().cloned().unwrap_or_default();
        if ports_of(current) == ports
            && have_endpoints == endpoints
            && current["metadata"]["labels"] == labels
        {
            continue;
        }
        let mut body = current.clone();
        body["metadata"]["labels"] = labels.clone();
        body["endpoints"] = Value::Array(endpoints);
        match body.as_object_mut() {
            Some(map) if ports.is_empty() => {
                map.remove("ports");
            }
            _ => body["ports"] = Value::Array(ports),
        }
        writes.update("update an endpoint slice of", ENDPOINT_SLICES, body);
    }
    for extra in mine {
        writes.delete(ENDPOINT_SLICES, extra);
    }
}
