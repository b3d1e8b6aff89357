//! APIServices (`apiregistration.k8s.io/v1`). kube-apiserver's aggregator registers one per group
//! version the server serves itself (the autoregister controller, labelled `onstart`, and the CRD
//! registration controller, labelled `true`, at priority 1000/100): local, and always available.
//! One a user adds for an extension API server is stored, validated, and given the status the
//! availability controller would find here, where no request is proxied: the Service's absence,
//! port or endpoints, else a failed discovery check.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::cluster::{Inner, new_uid, now};
use crate::error::FieldCause;
use crate::store::StoreError;

/// The storage resource.
pub const RESOURCE: &str = "apiservices.apiregistration.k8s.io";
/// The label the aggregator marks the APIServices it manages with.
const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// `apiVersionPriorities` of kube-apiserver v1.32 (`cmd/kube-apiserver/app/aggregator.go`): the
/// group priority minimum and version priority of each built-in group version. A served group
/// version missing here gets no APIService, as kube-apiserver skips it.
const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("autoscaling", "v2", 17500, 30),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
];

/// The name of a group version's APIService: `v1.` for the core group, `v1.apps`.
fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// `NewLocalAvailableAPIServiceCondition`.
fn local_status() -> Value {
    json!({"conditions": [{
        "type": "Available",
        "status": "True",
        "reason": "Local",
        "message": "Local APIServices are always available",
        "lastTransitionTime": now(),
    }]})
}

/// The autoregister and CRD registration controllers: every group version served here has its
/// local APIService, and a custom resource group version no longer served loses its own.
///
/// # Errors
/// [`StoreError`] when a write is not durable.
pub(crate) fn sync(inner: &mut Inner) -> Result<(), StoreError> {
    let mut wanted: Vec<(String, String, i64, i64, &str)> = Vec::new();
    for (group, versions) in
        std::iter::once((String::new(), vec!["v1".to_owned()])).chain(inner.registry.groups())
    {
        let builtin = crate::strategy::is_builtin_group(&group);
        for version in versions {
            if builtin {
                if let Some((.., g, v)) = PRIORITIES
                    .iter()
                    .find(|(pg, pv, ..)| *pg == group && *pv == version)
                {
                    wanted.push((group.clone(), version, *g, *v, "onstart"));
                }
            } else {
                wanted.push((group.clone(), version, 1000, 100, "true"));
            }
        }
    }
    let names: BTreeSet<String> = wanted.iter().map(|(g, v, ..)| name_of(g, v)).collect();
    for (group, version, group_priority, version_priority, managed) in wanted {
        let key = (String::new(), name_of(&group, &version));
        if inner.store.get(RESOURCE, &key).is_some() {
            continue;
        }
        let service = json!({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {
                "name": key.1,
                "uid": new_uid(),
                "creationTimestamp": now(),
                "labels": {AUTOMANAGED: managed},
            },
            "spec": {
                "group": group,
                "version": version,
                "groupPriorityMinimum": group_priority,
                "versionPriority": version_priority,
            },
            "status": local_status(),
        });
        inner.store.put(RESOURCE, key, service)?;
    }
    let gone: Vec<_> = inner
        .store
        .list(RESOURCE, None, None)
        .filter(|(k, o)| o["metadata"]["labels"][AUTOMANAGED] == "true" && !names.contains(&k.1))
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        inner.store.remove(RESOURCE, &key)?;
    }
    Ok(())
}

/// Defaults: a Service's port is 443.
pub(crate) fn defaults(object: &mut Value) {
    if let Some(service) = object
        .pointer_mut("/spec/service")
        .and_then(Value::as_object_mut)
    {
        service.entry("port").or_insert_with(|| json!(443));
    }
}

/// The status the availability controllers give `object` here: local ones are available; a
/// remote one is checked as `remote_available_controller` checks it, up to the discovery request,
/// which this server cannot make.
pub(crate) fn status(inner: &Inner, object: &Value) -> Value {
    let spec = &object["spec"];
    let service = &spec["service"];
    if service.is_null() {
        return local_status();
    }
    let namespace = service["namespace"].as_str().unwrap_or_default();
    let name = service["name"].as_str().unwrap_or_default();
    let port = service["port"].as_i64().unwrap_or(443);
    let unavailable = |reason: &str, message: String| {
        json!({"conditions": [{
            "type": "Available",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now(),
        }]})
    };
    let key = (namespace.to_owned(), name.to_owned());
    let Some(svc) = inner.store.get("services", &key) else {
        return unavailable(
            "ServiceNotFound",
            format!("service/{name} in {namespace:?} is not present"),
        );
    };
    let cluster_ip = matches!(svc["spec"]["type"].as_str(), None | Some("ClusterIP"));
    if cluster_ip {
        let Some(svc_port) = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(port))
        else {
            return unavailable(
                "ServicePortError",
                format!("service/{name} in {namespace:?} is not listening on port {port}"),
            );
        };
        let port_name = svc_port["name"].as_str().unwrap_or_default();
        let Some(endpoints) = inner.store.get("endpoints", &key) else {
            return unavailable(
                "EndpointsNotFound",
                format!("cannot find endpoints for service/{name} in {namespace:?}"),
            );
        };
        let addressed = endpoints["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|subset| {
                subset["addresses"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                    && subset["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"].as_str().unwrap_or_default() == port_name)
            });
        if !addressed {
            return unavailable(
                "MissingEndpoints",
                format!(
                    "endpoints for service/{name} in {namespace:?} have no addresses with port name {port_name:?}"
                ),
            );
        }
    }
    let group = spec["group"].as_str().unwrap_or_default();
    let version = spec["version"].as_str().unwrap_or_default();
    let path = if group.is_empty() {
        "/api/v1".to_owned()
    } else {
        format!("/apis/{group}/{version}")
    };
    unavailable(
        "FailedDiscoveryCheck",
        format!(
            "failing or missing response from https://{name}.{namespace}.svc:{port}{path}: this embedded server does not proxy to extension API servers"
        ),
    )
}

/// The availability controller's look after a write of `resource` (`services` or `endpoints`)
/// in `namespace`: each APIService whose Service that is gets its status again, when it
/// changes (the transition time kept unless the condition's status changes).
///
/// # Errors
/// [`StoreError`] when a write is not durable.
pub(crate) fn refresh(
    inner: &mut Inner,
    resource: &str,
    namespace: &str,
) -> Result<(), StoreError> {
    if !matches!(resource, "services" | "endpoints") {
        return Ok(());
    }
    let stale: Vec<(crate::store::ObjectKey, Value)> = inner
        .store
        .list(RESOURCE, None, None)
        .filter(|(_, o)| o["spec"]["service"]["namespace"] == namespace)
        .filter_map(|(k, o)| {
            let mut fresh = status(inner, o);
            let old = &o["status"]["conditions"][0];
            let new = &mut fresh["conditions"][0];
            if old["status"] == new["status"] {
                if old["reason"] == new["reason"] && old["message"] == new["message"] {
                    return None;
                }
                new["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            let mut updated = (**o).clone();
            updated["status"] = fresh;
            Some((k.clone(), updated))
        })
        .collect();
    for (key, object) in stale {
        inner.store.put(RESOURCE, key, object)?;
    }
    Ok(())
}

/// `ValidateAPIService`.
pub(crate) fn validate(object: &Value) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    let spec = &object["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let version = spec["version"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name != name_of(group, version) {
        errs.push(FieldCause::invalid_value(
            "metadata.name",
            &json!(name),
            "must be `spec.version+\".\"+spec.group`",
        ));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldCause::required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    for (field, value, max) in [
        ("groupPriorityMinimum", &spec["groupPriorityMinimum"], 20000),
        ("versionPriority", &spec["versionPriority"], 1000),
    ] {
        if value.as_i64().is_none_or(|v| v <= 0 || v > max) {
            errs.push(FieldCause::invalid_value(
                &format!("spec.{field}"),
                value,
                format!("must be positive and less than {max}"),
            ));
        }
    }
    let ca_bundle = spec["caBundle"].as_str().filter(|c| !c.is_empty());
    let insecure = spec["insecureSkipTLSVerify"] == true;
    let service = &spec["service"];
    if service.is_null() {
        if let Some(ca) = ca_bundle {
            errs.push(FieldCause::invalid(
                "spec.caBundle",
                &format!("{} bytes", ca.len()),
                "local APIServices may not have a caBundle",
            ));
        }
        if insecure {
            errs.push(FieldCause::invalid_value(
                "spec.insecureSkipTLSVerify",
                &json!(true),
                "local APIServices may not have insecureSkipTLSVerify",
            ));
        }
        return errs;
    }
    for key in ["namespace", "name"] {
        if service[key].as_str().is_none_or(str::is_empty) {
            errs.push(FieldCause::required(&format!("spec.service.{key}"), ""));
        }
    }
    if insecure && ca_bundle.is_some() {
        errs.push(FieldCause::invalid_value(
            "spec.insecureSkipTLSVerify",
            &json!(true),
            "may not be true if caBundle is present",
        ));
    }
    errs
}

/// What an update keeps of the stored object (`PrepareForUpdate`): nothing of `old`'s status is
/// the writer's to change on the main resource; the status is computed again here.
pub(crate) fn prepare(inner: &Inner, object: &mut Value) {
    let status = status(inner, object);
    if let Some(map) = object.as_object_mut() {
        map.insert("status".into(), status);
    }
}

/// The `Available` condition's cell (`ConvertToTable`): `True`, `False (Reason)`, or `Unknown`.
#[must_use]
pub fn available_cell(object: &Value) -> String {
    let Some(condition) = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available")
    else {
        return "Unknown".to_owned();
    };
    let status = condition["status"].as_str().unwrap_or_default();
    match condition["reason"].as_str().filter(|r| !r.is_empty()) {
        _ if status == "True" => "True".to_owned(),
        Some(reason) => format!("{status} ({reason})"),
        None => status.to_owned(),
    }
}

/// The Service cell: `Local`, or `namespace/name`.
#[must_use]
pub fn service_cell(object: &Value) -> String {
    let service: &Map<String, Value> = match object["spec"]["service"].as_object() {
        Some(s) => s,
        None => return "Local".to_owned(),
    };
    format!(
        "{}/{}",
        service
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        service
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    )
}
