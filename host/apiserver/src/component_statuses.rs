//! ComponentStatuses (`v1`, `cs`, deprecated since 1.19): the health of the control plane's
//! parts, computed when read as kube-apiserver's `componentstatus` REST computes it (get and
//! list only, nothing stored). Here etcd is the server's own store, always healthy; the scheduler
//! and the controller manager are healthy when the server simulates them
//! (`--simulate-workloads`) and otherwise answer as on a cluster where they do not run.

use serde_json::{Value, json};

/// The warning every request for ComponentStatuses gets (the type's deprecation).
pub const DEPRECATION_WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// The components, in the order kube-apiserver's `GetServersToValidate` names them, with the
/// port of their health endpoint (`None`: etcd, always reached).
const COMPONENTS: [(&str, Option<u16>); 3] = [
    ("scheduler", Some(10259)),
    ("controller-manager", Some(10257)),
    ("etcd-0", None),
];

/// The ComponentStatus of `name`, when it is one of the components.
#[must_use]
pub fn get(name: &str, simulated: bool) -> Option<Value> {
    let (name, port) = COMPONENTS.into_iter().find(|(n, _)| *n == name)?;
    let (status, message, error) = match port {
        None => (
            "True",
            r#"{"health":"true","reason":""}"#.to_owned(),
            String::new(),
        ),
        Some(_) if simulated => ("True", "ok".to_owned(), String::new()),
        // `DoServerCheck`'s error when nothing listens at the component's health endpoint.
        Some(port) => (
            "False",
            String::new(),
            format!(
                "Get \"https://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: \
                 connection refused"
            ),
        ),
    };
    let mut condition = json!({"type": "Healthy", "status": status});
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    if !error.is_empty() {
        condition["error"] = json!(error);
    }
    Some(json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [condition],
    }))
}

/// Every ComponentStatus, as `List` answers (labels and fields are ignored).
#[must_use]
pub fn list(simulated: bool) -> Value {
    let items: Vec<Value> = COMPONENTS
        .iter()
        .filter_map(|(name, _)| get(name, simulated))
        .collect();
    json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items})
}

/// The Table of `statuses` (`printComponentStatus`: NAME STATUS MESSAGE ERROR; the status
/// `Healthy` or `Unhealthy` from the `Healthy` condition, else `Unknown`).
#[must_use]
pub fn table(statuses: &[Value]) -> Value {
    let column = |name: &str, description: &str| {
        json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" },
            "description": description, "priority": 0})
    };
    let rows: Vec<Value> = statuses
        .iter()
        .map(|s| {
            let healthy = s["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Healthy");
            let text = |key: &str| healthy.and_then(|c| c[key].as_str()).unwrap_or_default();
            let status = match healthy {
                Some(c) if c["status"] == "True" => "Healthy",
                Some(_) => "Unhealthy",
                None => "Unknown",
            };
            json!({"cells": [s["metadata"]["name"], status, text("message"), text("error")],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": s["metadata"]}})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            column("Name", "Name must be unique within a namespace."),
            column("Status", "Status of the component conditions"),
            column("Message", "Message of the component conditions"),
            column("Error", "Error of the component conditions"),
        ],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_components_answer_as_their_health_checks_do() {
        let simulated = list(true);
        let names: Vec<&str> = simulated["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, ["scheduler", "controller-manager", "etcd-0"]);
        let rows = table(simulated["items"].as_array().map_or(&[][..], Vec::as_slice));
        assert_eq!(
            rows["rows"][2]["cells"],
            json!(["etcd-0", "Healthy", r#"{"health":"true","reason":""}"#, ""])
        );
        assert_eq!(
            rows["rows"][0]["cells"],
            json!(["scheduler", "Healthy", "ok", ""])
        );
        let alone = get("controller-manager", false).expect("a component");
        assert_eq!(alone["conditions"][0]["status"], "False");
        assert_eq!(
            alone["conditions"][0]["error"],
            "Get \"https://127.0.0.1:10257/healthz\": dial tcp 127.0.0.1:10257: connect: connection refused"
        );
        assert_eq!(get("etcd-1", true), None);
    }
}
