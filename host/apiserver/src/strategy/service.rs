//! A Service's cluster IP and node ports, allocated as kube-apiserver's service REST storage does
//! (`pkg/registry/core/service/storage`): from the service CIDR (kube-apiserver's default
//! `10.96.0.0/12`, single-stack IPv4) and the node port range (`30000-32767`), never one already in
//! use; kept from the stored Service on an update that leaves them unset (`patchAllocatedValues`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::cluster::Inner;
use crate::error::FieldCause;

/// The services storage key.
const SERVICES: &str = "services";
/// The default service CIDR's base, `10.96.0.0`.
const CIDR_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
/// The CIDR's size (/12).
const CIDR_SIZE: u32 = 1 << 20;
/// Addresses below this offset are the static band (kept for clients that choose their IP); the
/// first, `10.96.0.1`, is the `kubernetes` Service's. kube-apiserver's static band for a /12 is 256.
const DYNAMIC_OFFSET: u32 = 256;
/// The default node port range.
pub(super) const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Whether a Service of this type gets a cluster IP.
fn wants_cluster_ip(spec: &Map<String, Value>) -> bool {
    spec.get("type").and_then(Value::as_str) != Some("ExternalName")
}

/// Whether a Service of this type gets node ports.
fn wants_node_ports(spec: &Map<String, Value>) -> bool {
    match spec.get("type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)),
        _ => false,
    }
}

/// The cluster IPs and node ports other Services hold (`except` the one being written).
fn in_use(inner: &Inner, except: (&str, &str)) -> (BTreeSet<String>, BTreeSet<i64>) {
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for ((ns, name), svc) in inner.store.list(SERVICES, None, None) {
        if (ns.as_str(), name.as_str()) == except {
            continue;
        }
        if let Some(list) = svc.pointer("/spec/clusterIPs").and_then(Value::as_array) {
            ips.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        for port in svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = port.get("nodePort").and_then(Value::as_i64) {
                ports.insert(p);
            }
        }
    }
    (ips, ports)
}

/// Fills in the Service's cluster IP(s), IP families and node ports (`old` is the stored Service
/// of an update), or says which requested value cannot be had.
pub(super) fn allocate(
    inner: &Inner,
    key: (&str, &str),
    old: Option<&Value>,
    object: &mut Value,
) -> Result<(), Vec<FieldCause>> {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let old_spec = old.and_then(|o| o.get("spec")).and_then(Value::as_object);
    let (ips, ports) = in_use(inner, key);
    let mut causes = Vec::new();
    if wants_cluster_ip(spec) {
        keep_from_old(
            spec,
            old_spec,
            &["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"],
        );
        cluster_ip(spec, &ips, &mut causes);
    } else {
        for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(k);
        }
    }
    if wants_node_ports(spec) {
        node_ports(spec, old_spec, &ports, &mut causes);
    }
    if causes.is_empty() {
        if let Some(map) = object.as_object_mut() {
            map.entry("status")
                .or_insert_with(|| json!({"loadBalancer": {}}));
        }
        Ok(())
    } else {
        Err(causes)
    }
}

/// `patchAllocatedValues`: an update that leaves out the cluster IPs the server allocated keeps
/// them, before validation judges the change, so that a client resubmitting the YAML it created
/// the Service from succeeds (`kubectl replace -f`).
pub(super) fn keep_allocated(old: Option<&Value>, object: &mut Value) {
    let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) else {
        return;
    };
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        && wants_cluster_ip(old_spec)
        && wants_cluster_ip(spec)
    {
        keep_from_old(spec, Some(old_spec), &["clusterIP", "clusterIPs"]);
    }
}

/// Copies `keys` the update left unset from the stored spec.
fn keep_from_old(spec: &mut Map<String, Value>, old: Option<&Map<String, Value>>, keys: &[&str]) {
    let Some(old) = old else { return };
    for k in keys {
        let unset = spec
            .get(*k)
            .is_none_or(|v| v.is_null() || v == "" || v.as_array().is_some_and(Vec::is_empty));
        if unset && let Some(v) = old.get(*k) {
            spec.insert((*k).to_owned(), v.clone());
        }
    }
}

fn cluster_ip(
    spec: &mut Map<String, Value>,
    used: &BTreeSet<String>,
    causes: &mut Vec<FieldCause>,
) {
    let requested = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let ip = match requested {
        Some(none) if none == "None" => none,
        Some(ip) => {
            let parsed: Option<Ipv4Addr> = ip.parse().ok();
            let in_range = parsed.is_some_and(|a| u32::from(a).wrapping_sub(CIDR_BASE) < CIDR_SIZE);
            if !in_range {
                causes.push(FieldCause::invalid(
                    "spec.clusterIPs",
                    &ip,
                    "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
                ));
                return;
            }
            let already_mine = spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .is_some_and(|l| l.first().and_then(Value::as_str) == Some(&ip));
            if used.contains(&ip) && !already_mine {
                causes.push(FieldCause::invalid(
                    "spec.clusterIPs",
                    &ip,
                    "failed to allocate IP: provided IP is already allocated",
                ));
                return;
            }
            ip
        }
        None => match (DYNAMIC_OFFSET..CIDR_SIZE - 1)
            .map(|o| Ipv4Addr::from(CIDR_BASE + o).to_string())
            .find(|ip| !used.contains(ip))
        {
            Some(ip) => ip,
            None => {
                causes.push(FieldCause::other(
                    "spec.clusterIPs",
                    "Internal error: failed to allocate a serviceIP: range is full",
                ));
                return;
            }
        },
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    spec.entry("ipFamilyPolicy")
        .or_insert_with(|| json!("SingleStack"));
}

fn node_ports(
    spec: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
    used: &BTreeSet<i64>,
    causes: &mut Vec<FieldCause>,
) {
    let old_ports: Vec<Value> = old
        .and_then(|o| o.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut taken = used.clone();
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return;
    };
    for (i, port) in ports.iter_mut().enumerate() {
        let Some(port) = port.as_object_mut() else {
            continue;
        };
        let requested = port
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0);
        let requested = requested.or_else(|| {
            old_ports
                .iter()
                .find(|o| {
                    o.get("port") == port.get("port") && o.get("protocol") == port.get("protocol")
                })
                .and_then(|o| o.get("nodePort"))
                .and_then(Value::as_i64)
        });
        let field = format!("spec.ports[{i}].nodePort");
        let chosen = match requested {
            Some(p) if !NODE_PORTS.contains(&p) => {
                causes.push(FieldCause::invalid_value(
                    &field,
                    &json!(p),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
                continue;
            }
            Some(p) if taken.contains(&p) => {
                causes.push(FieldCause::invalid_value(
                    &field,
                    &json!(p),
                    "provided port is already allocated",
                ));
                continue;
            }
            Some(p) => p,
            None => match NODE_PORTS.clone().find(|p| !taken.contains(p)) {
                Some(p) => p,
                None => {
                    causes.push(FieldCause::other(&field, "Internal error: range is full"));
                    continue;
                }
            },
        };
        taken.insert(chosen);
        port.insert("nodePort".into(), json!(chosen));
    }
}
