//! The Table columns kube-apiserver prints for built-in kinds (after
//! `pkg/printers/internalversion/printers.go`): `kubectl get deploy` shows READY, UP-TO-DATE and
//! AVAILABLE, `kubectl get svc` TYPE, CLUSTER-IP, EXTERNAL-IP and PORT(S), and so on. Columns of
//! priority 1 show with `-o wide`.

use serde_json::{Value, json};

use crate::resource::ResourceInfo;

/// One column after Name: its title, type, priority and how a cell is computed.
pub struct Column {
    /// Title, as kube-apiserver spells it (kubectl uppercases it).
    pub name: &'static str,
    /// `string`, `integer`, `date` (shown as an age) or `timestamp` (a `date` shown as the time).
    pub column_type: &'static str,
    /// 0: always shown; 1: with `-o wide`.
    pub priority: i64,
    /// The cell of an object.
    pub cell: fn(&Value) -> Value,
}

/// A disruption budget's bound as `printPodDisruptionBudget` shows it: the int or percent, or
/// `N/A` when unset.
fn budget_bound(bound: &Value) -> Value {
    match bound {
        Value::Null => json!("N/A"),
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    }
}

const fn col(name: &'static str, column_type: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        column_type,
        priority: 0,
        cell,
    }
}

const fn wide(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        column_type: "string",
        priority: 1,
        cell,
    }
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn or_none(s: String) -> Value {
    json!(if s.is_empty() { "<none>".to_owned() } else { s })
}

/// A Node's `Ready` condition as `Ready`, `NotReady` or `Unknown`, with `SchedulingDisabled` after
/// it when cordoned.
fn node_status(v: &Value) -> Value {
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    let mut status = match ready {
        Some(c) if c["status"] == "True" => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if v["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` labels and a `kubernetes.io/role` value,
/// sorted, or `<none>`.
fn node_roles(v: &Value) -> Value {
    let mut roles = std::collections::BTreeSet::new();
    for (key, value) in v["metadata"]["labels"].as_object().into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_owned());
            }
        } else if key == "kubernetes.io/role"
            && let Some(role) = value.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(role.to_owned());
        }
    }
    or_none(roles.into_iter().collect::<Vec<_>>().join(","))
}

/// The Node's first address of `kind`, or `<none>`.
fn node_address(v: &Value, kind: &str) -> Value {
    let address = v
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a["type"] == kind)
        .and_then(|a| a["address"].as_str())
        .unwrap_or_default();
    or_none(address.to_owned())
}

/// A field of the Node's `nodeInfo`, or `<unknown>`.
fn node_info(v: &Value, field: &str) -> Value {
    match v["status"]["nodeInfo"][field].as_str() {
        Some(s) if !s.is_empty() => json!(s),
        _ => json!("<unknown>"),
    }
}

fn created(v: &Value) -> Value {
    v.pointer("/metadata/creationTimestamp")
        .cloned()
        .unwrap_or(Value::Null)
}

fn count(v: &Value, pointers: &[&str]) -> Value {
    let n: usize = pointers
        .iter()
        .map(|p| {
            v.pointer(p).map_or(0, |x| {
                x.as_object()
                    .map(serde_json::Map::len)
                    .or_else(|| x.as_array().map(Vec::len))
                    .unwrap_or(0)
            })
        })
        .sum();
    json!(n)
}

fn containers(v: &Value, field: &str) -> Value {
    containers_at(v, "/spec/template/spec/containers", field)
}

/// The `field` of each container in the list at `pointer`, joined by commas.
fn containers_at(v: &Value, pointer: &str, field: &str) -> Value {
    let names: Vec<String> = v
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| text(c, field))
        .collect();
    json!(names.join(","))
}

/// `formatHosts`: an Ingress's rule hosts, three at most (`+ N more...` when rules follow the
/// third host, N counting every rule past the third), `*` when none.
fn ingress_hosts(v: &Value) -> Value {
    let rules = v.pointer("/spec/rules").and_then(Value::as_array);
    let rules = rules.map(Vec::as_slice).unwrap_or(&[]);
    let (mut hosts, mut more) = (Vec::new(), false);
    for rule in rules {
        if hosts.len() == 3 {
            more = true;
        }
        match rule["host"].as_str() {
            Some(host) if !more && !host.is_empty() => hosts.push(host),
            _ => {}
        }
    }
    if hosts.is_empty() {
        return json!("*");
    }
    let joined = hosts.join(",");
    if more {
        json!(format!("{joined} + {} more...", rules.len() - 3))
    } else {
        json!(joined)
    }
}

/// `ingressLoadBalancerStatusStringer`: the addresses (IP, else hostname), sorted and unique,
/// clipped to 16 characters unless wide.
fn ingress_address(v: &Value, wide: bool) -> Value {
    let addresses: std::collections::BTreeSet<String> = v
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let ip = text(i, "/ip");
            let host = text(i, "/hostname");
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    let joined = addresses.into_iter().collect::<Vec<_>>().join(",");
    if !wide && joined.len() > 16 {
        json!(format!("{}...", &joined[..13]))
    } else {
        json!(joined)
    }
}

/// `formatEndpoints`: `ip:port` of the ready addresses, port by port, three at most (`+ N
/// more...`), `<none>` without subsets.
fn endpoints_list(v: &Value) -> Value {
    let Some(subsets) = v["subsets"].as_array().filter(|s| !s.is_empty()) else {
        return json!("<none>");
    };
    let (mut list, mut more, mut count) = (Vec::new(), false, 0);
    for subset in subsets {
        let addresses = subset["addresses"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let ports = subset["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports
                .iter()
                .map(|p| Some(p["port"].as_i64().unwrap_or(0)))
                .collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for address in addresses {
                if list.len() == 3 {
                    more = true;
                    break;
                }
                let ip = text(address, "/ip");
                list.push(match port {
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                    None => ip,
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        json!(format!("{joined} + {} more...", count - 3))
    } else {
        json!(joined)
    }
}

/// `listWithMoreString`: three at most, then `+ N more...`; `<unset>` when empty.
fn list_with_more(items: Vec<String>) -> Value {
    let count = items.len();
    let joined = items.into_iter().take(3).collect::<Vec<_>>().join(",");
    if count > 3 {
        json!(format!("{joined} + {} more...", count - 3))
    } else if joined.is_empty() {
        json!("<unset>")
    } else {
        json!(joined)
    }
}

/// `formatDiscoveryPorts`: each port's number, else its name, else `*`.
fn slice_ports(v: &Value) -> Value {
    let ports = v["ports"].as_array().into_iter().flatten();
    list_with_more(
        ports
            .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_owned(),
                (None, None) => "*".to_owned(),
            })
            .collect(),
    )
}

/// `formatDiscoveryEndpoints`: every address of every endpoint.
fn slice_endpoints(v: &Value) -> Value {
    let endpoints = v["endpoints"].as_array().into_iter().flatten();
    list_with_more(
        endpoints
            .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
    )
}

/// `formatHPAMetrics` (v1.32): each metric as `current/target` (`<unknown>` before a status has
/// it), resource metrics prefixed with their resource's name, at most two, then `+ N more...`.
fn hpa_metrics(v: &Value) -> Value {
    let specs = v["spec"]["metrics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if specs.is_empty() {
        return json!("<none>");
    }
    let statuses = v["status"]["currentMetrics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let quantity = |q: &Value| q.as_str().map_or_else(|| q.to_string(), str::to_owned);
    let current = |i: usize, key: &str, field: &str| -> Option<String> {
        let value = &statuses.get(i)?[key]["current"][field];
        (!value.is_null()).then(|| quantity(value))
    };
    let unknown = || "<unknown>".to_owned();
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if list.len() == 2 {
            break;
        }
        let kind = spec["type"].as_str().unwrap_or_default();
        let key = match kind {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            _ => {
                list.push("<unknown type>".to_owned());
                continue;
            }
        };
        let target = &spec[key]["target"];
        let cell = match key {
            "resource" | "containerResource" => {
                let name = quantity(&spec[key]["name"]);
                if target["averageValue"].is_null() {
                    let now = current(i, key, "averageUtilization")
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let want = target["averageUtilization"]
                        .as_i64()
                        .map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
                    format!("{name}: {now}/{want}")
                } else {
                    let now = current(i, key, "averageValue").unwrap_or_else(unknown);
                    format!("{name}: {now}/{}", quantity(&target["averageValue"]))
                }
            }
            "pods" => {
                let now = current(i, key, "averageValue").unwrap_or_else(unknown);
                format!("{now}/{}", quantity(&target["averageValue"]))
            }
            _ if target["type"] == "AverageValue" => {
                let now = current(i, key, "averageValue").unwrap_or_else(unknown);
                format!("{now}/{} (avg)", quantity(&target["averageValue"]))
            }
            _ => {
                let now = current(i, key, "value").unwrap_or_else(unknown);
                format!("{now}/{}", quantity(&target["value"]))
            }
        };
        list.push(cell);
    }
    let text = list.join(", ");
    if specs.len() > list.len() {
        json!(format!("{text} + {} more...", specs.len() - list.len()))
    } else {
        json!(text)
    }
}

/// One column of `printResourceQuota`: `resource: used/hard` for the limits (or the rest).
fn quota_usage(v: &Value, limits: bool) -> Value {
    let hard = v["status"]["hard"].as_object();
    let cells: Vec<String> = hard
        .into_iter()
        .flatten()
        .filter(|(resource, _)| resource.starts_with("limits.") == limits)
        .map(|(resource, hard)| {
            let used = v["status"]["used"][resource].as_str().unwrap_or("0");
            format!("{resource}: {used}/{}", hard.as_str().unwrap_or_default())
        })
        .collect();
    json!(cells.join(", "))
}

/// `GetAccessModesAsString`: `RWO`, `ROX`, `RWX`, `RWOP`, in that order, each once.
fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A volume's or claim's phase, `Terminating` once it is being deleted.
fn volume_phase(v: &Value) -> String {
    if v["metadata"]["deletionTimestamp"].is_null() {
        text(v, "/status/phase")
    } else {
        "Terminating".to_owned()
    }
}

/// `spec.volumeAttributesClassName`, or `<unset>`.
fn volume_attributes_class(v: &Value) -> Value {
    json!(
        v["spec"]["volumeAttributesClassName"]
            .as_str()
            .unwrap_or("<unset>")
    )
}

/// `spec.volumeMode`, or `<unset>`.
fn volume_mode(v: &Value) -> Value {
    json!(v["spec"]["volumeMode"].as_str().unwrap_or("<unset>"))
}

/// `labels.FormatLabels`: `key=value` pairs sorted by key, comma-separated, or `<none>`.
fn labels_text(map: &Value) -> Value {
    let pairs: std::collections::BTreeMap<&str, &str> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
        .collect();
    or_none(
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn label_selector(v: &Value) -> Value {
    or_none(crate::selector::label_selector_text(&v["spec"]["selector"]))
}

fn pod_ready(v: &Value) -> Value {
    let total = v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == json!(true))
        .count();
    json!(format!("{ready}/{total}"))
}

/// The pod's STATUS as `kubectl get pods` shows it: the phase, or the reason a container is
/// waiting or terminated, or Terminating.
fn pod_status(v: &Value) -> Value {
    if v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return json!("Terminating");
    }
    let mut reason = text(v, "/status/reason");
    if reason.is_empty() {
        reason = text(v, "/status/phase");
    }
    for c in v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let waiting = text(c, "/state/waiting/reason");
        let terminated = text(c, "/state/terminated/reason");
        if !waiting.is_empty() {
            reason = waiting;
        } else if !terminated.is_empty() {
            reason = terminated;
        }
    }
    json!(if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    })
}

fn restarts(v: &Value) -> Value {
    let n: i64 = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| int(c, "/restartCount"))
        .sum();
    json!(n.to_string())
}

fn service_ports(v: &Value) -> Value {
    let ports: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node) if node != 0 => format!("{}:{node}/{protocol}", int(p, "/port")),
                _ => format!("{}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn external_ip(v: &Value) -> Value {
    let kind = text(v, "/spec/type");
    let mut ips: Vec<String> = v
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    match kind.as_str() {
        "ExternalName" => json!(text(v, "/spec/externalName")),
        "LoadBalancer" => {
            ips.extend(
                v.pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        let ip = text(i, "/ip");
                        if ip.is_empty() {
                            text(i, "/hostname")
                        } else {
                            ip
                        }
                    }),
            );
            json!(if ips.is_empty() {
                "<pending>".to_owned()
            } else {
                ips.join(",")
            })
        }
        _ => or_none(ips.join(",")),
    }
}

fn job_status(v: &Value) -> Value {
    let conditions = v.pointer("/status/conditions").and_then(Value::as_array);
    let has = |t: &str| {
        conditions
            .into_iter()
            .flatten()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    json!(if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if v.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    })
}

fn job_completions(v: &Value) -> Value {
    let succeeded = int(v, "/status/succeeded");
    match v.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => json!(format!("{succeeded}/{c}")),
        None if int(v, "/spec/parallelism") > 1 => {
            json!(format!("{succeeded}/1 of {}", int(v, "/spec/parallelism")))
        }
        None => json!(format!("{succeeded}/1")),
    }
}

/// `printJob`'s duration: from the start to the completion, or to now while running; empty
/// before it started.
fn job_duration(v: &Value) -> Value {
    let time = |pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(crate::cluster::parse_timestamp)
    };
    let Some(start) = time("/status/startTime") else {
        return json!("");
    };
    let end = time("/status/completionTime").unwrap_or_else(chrono::Utc::now);
    json!(crate::table::human_duration((end - start).num_seconds()))
}

fn role_ref(v: &Value) -> Value {
    json!(format!(
        "{}/{}",
        text(v, "/roleRef/kind"),
        text(v, "/roleRef/name")
    ))
}

/// The form of `object` the kind's cells read: an Event in its stored `v1` form and an HPA in its
/// stored `autoscaling/v2` form, whichever API presents them (converted once per row, not per
/// cell); any other object as it is.
#[must_use]
pub fn row_form<'a>(info: &ResourceInfo, object: &'a Value) -> std::borrow::Cow<'a, Value> {
    if info.kind == "Event" && object["apiVersion"] != "v1" {
        std::borrow::Cow::Owned(crate::event_versions::to_core(object.clone()))
    } else if info.kind == "HorizontalPodAutoscaler" && object["apiVersion"] == "autoscaling/v1" {
        std::borrow::Cow::Owned(crate::autoscaler_versions::to_v2(object.clone()))
    } else {
        std::borrow::Cow::Borrowed(object)
    }
}

/// `translateTimestampSince` of the first of `pointers` that holds a time, else `<unknown>`.
fn since(v: &Value, pointers: &[&str]) -> Value {
    pointers
        .iter()
        .find_map(|p| {
            v.pointer(p)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        })
        .map_or_else(|| json!("<unknown>"), crate::table::age)
}

/// `printEvent`'s first-seen time: `firstTimestamp`, else `eventTime`.
fn event_first_seen(v: &Value) -> Value {
    since(v, &["/firstTimestamp", "/eventTime"])
}

/// `printEvent`'s last-seen time: the series' last observation, else `lastTimestamp`, else the
/// first-seen time.
fn event_last_seen(v: &Value) -> Value {
    since(
        v,
        &[
            "/series/lastObservedTime",
            "/lastTimestamp",
            "/firstTimestamp",
            "/eventTime",
        ],
    )
}

/// `kind/name` of the involved object, the kind in lower case.
fn event_object(v: &Value) -> Value {
    let kind = text(v, "/involvedObject/kind").to_lowercase();
    let name = text(v, "/involvedObject/name");
    json!(if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    })
}

/// `formatEventSource`: the source's component (or the reporting controller), then its host
/// (or the reporting instance) after a comma.
fn event_source(v: &Value) -> Value {
    let first = |a: &str, b: &str| {
        let a = text(v, a);
        if a.is_empty() { text(v, b) } else { a }
    };
    let component = first("/source/component", "/reportingComponent");
    let instance = first("/source/host", "/reportingInstance");
    json!(if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    })
}

/// The series' count, else `count`; a singleton event of the new API counts 1.
fn event_count(v: &Value) -> Value {
    let n = v
        .pointer("/series/count")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| int(v, "/count"));
    json!(if n == 0 && v.get("series").is_none() {
        1
    } else {
        n
    })
}

/// Whether the Table of a kind starts with its Name (every kind's does but the Event's, whose
/// name is its last column, shown with `-o wide`).
#[must_use]
pub fn name_first(info: &ResourceInfo) -> bool {
    !(matches!(info.group.as_str(), "" | "events.k8s.io") && info.kind == "Event")
}

/// The Name cell of a built-in kind's row: the name, with ` (default)` after a StorageClass
/// marked as a default one (`printStorageClass`).
#[must_use]
pub fn name_cell(info: &ResourceInfo, object: &Value) -> Value {
    let name = object["metadata"]["name"].clone();
    if info.group == "storage.k8s.io"
        && info.kind == "StorageClass"
        && crate::strategy::storage::is_default_class(object)
    {
        return json!(format!("{} (default)", name.as_str().unwrap_or_default()));
    }
    name
}

/// The columns after Name for a built-in kind (`None`: Name and Age, or the CRD's own).
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn columns(info: &ResourceInfo) -> Option<Vec<Column>> {
    let cols = match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => vec![
            col("Ready", "string", pod_ready),
            col("Status", "string", pod_status),
            col("Restarts", "string", restarts),
            col("Age", "date", created),
            wide("IP", |v| or_none(text(v, "/status/podIP"))),
            wide("Node", |v| or_none(text(v, "/spec/nodeName"))),
        ],
        ("apps", "Deployment") => vec![
            col("Ready", "string", |v| {
                json!(format!(
                    "{}/{}",
                    int(v, "/status/readyReplicas"),
                    int(v, "/spec/replicas")
                ))
            }),
            col("Up-to-date", "integer", |v| {
                json!(int(v, "/status/updatedReplicas"))
            }),
            col("Available", "integer", |v| {
                json!(int(v, "/status/availableReplicas"))
            }),
            col("Age", "date", created),
            wide("Containers", |v| containers(v, "/name")),
            wide("Images", |v| containers(v, "/image")),
            wide("Selector", label_selector),
        ],
        // `printReplicationController`.
        ("", "ReplicationController") => vec![
            col("Desired", "integer", |v| json!(int(v, "/spec/replicas"))),
            col("Current", "integer", |v| json!(int(v, "/status/replicas"))),
            col("Ready", "integer", |v| {
                json!(int(v, "/status/readyReplicas"))
            }),
            col("Age", "date", created),
            wide("Containers", |v| containers(v, "/name")),
            wide("Images", |v| containers(v, "/image")),
            wide("Selector", |v| labels_text(&v["spec"]["selector"])),
        ],
        // `printPodTemplate`: the template's containers and labels.
        ("", "PodTemplate") => vec![
            col("Containers", "string", |v| {
                containers_at(v, "/template/spec/containers", "/name")
            }),
            col("Images", "string", |v| {
                containers_at(v, "/template/spec/containers", "/image")
            }),
            col("Pod Labels", "string", |v| {
                labels_text(&v["template"]["metadata"]["labels"])
            }),
        ],
        ("apps", "ReplicaSet") => vec![
            col("Desired", "integer", |v| json!(int(v, "/spec/replicas"))),
            col("Current", "integer", |v| json!(int(v, "/status/replicas"))),
            col("Ready", "integer", |v| {
                json!(int(v, "/status/readyReplicas"))
            }),
            col("Age", "date", created),
        ],
        ("apps", "StatefulSet") => vec![
            col("Ready", "string", |v| {
                json!(format!(
                    "{}/{}",
                    int(v, "/status/readyReplicas"),
                    int(v, "/spec/replicas")
                ))
            }),
            col("Age", "date", created),
        ],
        // `printHorizontalPodAutoscaler`, from the stored v2 form ([`row_form`]).
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            col("Reference", "string", |v| {
                json!(format!(
                    "{}/{}",
                    text(v, "/spec/scaleTargetRef/kind"),
                    text(v, "/spec/scaleTargetRef/name")
                ))
            }),
            col("Targets", "string", hpa_metrics),
            col("MinPods", "string", |v| {
                match v["spec"]["minReplicas"].as_i64() {
                    Some(n) => json!(n.to_string()),
                    None => json!("<unset>"),
                }
            }),
            col("MaxPods", "string", |v| json!(int(v, "/spec/maxReplicas"))),
            col("Replicas", "string", |v| {
                json!(int(v, "/status/currentReplicas"))
            }),
            col("Age", "date", created),
        ],
        // `printDaemonSet`: the counts of its status, and the template's node selector.
        ("apps", "DaemonSet") => vec![
            col("Desired", "integer", |v| {
                json!(int(v, "/status/desiredNumberScheduled"))
            }),
            col("Current", "integer", |v| {
                json!(int(v, "/status/currentNumberScheduled"))
            }),
            col("Ready", "integer", |v| json!(int(v, "/status/numberReady"))),
            col("Up-to-date", "integer", |v| {
                json!(int(v, "/status/updatedNumberScheduled"))
            }),
            col("Available", "integer", |v| {
                json!(int(v, "/status/numberAvailable"))
            }),
            col("Node Selector", "string", |v| {
                labels_text(&v["spec"]["template"]["spec"]["nodeSelector"])
            }),
            col("Age", "date", created),
            wide("Containers", |v| containers(v, "/name")),
            wide("Images", |v| containers(v, "/image")),
            wide("Selector", label_selector),
        ],
        // `printControllerRevision`: the controller as `kind.group/name`.
        ("apps", "ControllerRevision") => vec![
            col("Controller", "string", |v| {
                let controller = v["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["controller"] == true);
                json!(controller.map_or_else(
                    || "<none>".to_owned(),
                    |r| {
                        let api_version = r["apiVersion"].as_str().unwrap_or_default();
                        let kind = r["kind"].as_str().unwrap_or_default().to_lowercase();
                        let name = r["name"].as_str().unwrap_or_default();
                        match api_version.split_once('/') {
                            Some((group, _)) => format!("{kind}.{group}/{name}"),
                            None => format!("{kind}/{name}"),
                        }
                    }
                ))
            }),
            col("Revision", "integer", |v| json!(int(v, "/revision"))),
            col("Age", "date", created),
        ],
        // `printCronJob`.
        ("batch", "CronJob") => vec![
            col("Schedule", "string", |v| json!(text(v, "/spec/schedule"))),
            col("Timezone", "string", |v| or_none(text(v, "/spec/timeZone"))),
            col("Suspend", "boolean", |v| {
                json!(match v["spec"]["suspend"].as_bool() {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                })
            }),
            col("Active", "integer", |v| {
                json!(v["status"]["active"].as_array().map_or(0, Vec::len))
            }),
            col("Last Schedule", "string", |v| {
                v["status"]["lastScheduleTime"]
                    .as_str()
                    .map_or_else(|| json!("<none>"), crate::table::age)
            }),
            col("Age", "date", created),
        ],
        ("batch", "Job") => vec![
            col("Status", "string", job_status),
            col("Completions", "string", job_completions),
            col("Duration", "string", job_duration),
            col("Age", "date", created),
            wide("Containers", |v| containers(v, "/name")),
            wide("Images", |v| containers(v, "/image")),
            wide("Selector", label_selector),
        ],
        ("", "Service") => vec![
            col("Type", "string", |v| json!(text(v, "/spec/type"))),
            col("Cluster-IP", "string", |v| {
                or_none(text(v, "/spec/clusterIP"))
            }),
            col("External-IP", "string", external_ip),
            col("Port(s)", "string", service_ports),
            col("Age", "date", created),
            wide("Selector", |v| {
                let pairs: Vec<String> = v
                    .pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or_default()))
                    .collect();
                or_none(pairs.join(","))
            }),
        ],
        ("", "ConfigMap") => vec![
            col("Data", "integer", |v| count(v, &["/data", "/binaryData"])),
            col("Age", "date", created),
        ],
        ("", "Secret") => vec![
            col("Type", "string", |v| json!(text(v, "/type"))),
            col("Data", "integer", |v| count(v, &["/data"])),
            col("Age", "date", created),
        ],
        // `printNode`.
        ("", "Node") => vec![
            col("Status", "string", node_status),
            col("Roles", "string", node_roles),
            col("Age", "date", created),
            col("Version", "string", |v| {
                json!(text(v, "/status/nodeInfo/kubeletVersion"))
            }),
            wide("Internal-IP", |v| node_address(v, "InternalIP")),
            wide("External-IP", |v| node_address(v, "ExternalIP")),
            wide("OS-Image", |v| node_info(v, "osImage")),
            wide("Kernel-Version", |v| node_info(v, "kernelVersion")),
            wide("Container-Runtime", |v| {
                node_info(v, "containerRuntimeVersion")
            }),
        ],
        ("", "Namespace") => vec![
            col("Status", "string", |v| json!(text(v, "/status/phase"))),
            col("Age", "date", created),
        ],
        ("", "ServiceAccount") => vec![
            col("Secrets", "integer", |v| count(v, &["/secrets"])),
            col("Age", "date", created),
        ],
        // `printPersistentVolumeClaim`: the volume's size and modes once bound.
        ("", "PersistentVolumeClaim") => vec![
            col("Status", "string", |v| json!(volume_phase(v))),
            col("Volume", "string", |v| json!(text(v, "/spec/volumeName"))),
            col("Capacity", "string", |v| {
                json!(if text(v, "/spec/volumeName").is_empty() {
                    String::new()
                } else {
                    text(v, "/status/capacity/storage")
                })
            }),
            col("Access Modes", "string", |v| {
                json!(if text(v, "/spec/volumeName").is_empty() {
                    String::new()
                } else {
                    access_modes(&v["status"]["accessModes"])
                })
            }),
            col("StorageClass", "string", |v| {
                json!(crate::strategy::storage::class_name(v).unwrap_or_default())
            }),
            col("VolumeAttributesClass", "string", volume_attributes_class),
            col("Age", "date", created),
            wide("VolumeMode", volume_mode),
        ],
        // LimitRanges have the default table convertor's columns: Name and Created At.
        ("", "LimitRange") => vec![col("Created At", "timestamp", created)],
        // `printResourceQuota` (v1.32's order: Age before the usage): `status.hard` sorted by
        // name, `limits.*` in Limit, the rest in Request, each `used/hard`.
        ("", "ResourceQuota") => vec![
            col("Age", "date", created),
            col("Request", "string", |v| quota_usage(v, false)),
            col("Limit", "string", |v| quota_usage(v, true)),
        ],
        // `printPersistentVolume`.
        ("", "PersistentVolume") => vec![
            col("Capacity", "string", |v| {
                json!(text(v, "/spec/capacity/storage"))
            }),
            col("Access Modes", "string", |v| {
                json!(access_modes(&v["spec"]["accessModes"]))
            }),
            col("Reclaim Policy", "string", |v| {
                json!(text(v, "/spec/persistentVolumeReclaimPolicy"))
            }),
            col("Status", "string", |v| json!(volume_phase(v))),
            col("Claim", "string", |v| {
                json!(if v["spec"]["claimRef"].is_object() {
                    format!(
                        "{}/{}",
                        text(v, "/spec/claimRef/namespace"),
                        text(v, "/spec/claimRef/name")
                    )
                } else {
                    String::new()
                })
            }),
            col("StorageClass", "string", |v| {
                json!(crate::strategy::storage::class_name(v).unwrap_or_default())
            }),
            col("VolumeAttributesClass", "string", volume_attributes_class),
            col("Reason", "string", |v| json!(text(v, "/status/reason"))),
            col("Age", "date", created),
            wide("VolumeMode", volume_mode),
        ],
        // `printStorageClass`: the name marked `(default)`.
        ("storage.k8s.io", "StorageClass") => vec![
            col("Provisioner", "string", |v| json!(text(v, "/provisioner"))),
            col("ReclaimPolicy", "string", |v| {
                json!(v["reclaimPolicy"].as_str().unwrap_or("Delete"))
            }),
            col("VolumeBindingMode", "string", |v| {
                json!(v["volumeBindingMode"].as_str().unwrap_or("Immediate"))
            }),
            col("AllowVolumeExpansion", "string", |v| {
                json!(v["allowVolumeExpansion"].as_bool().unwrap_or(false))
            }),
            col("Age", "date", created),
        ],
        // `printEvent`, for both APIs (one registry serves them).
        ("" | "events.k8s.io", "Event") => vec![
            col("Last Seen", "string", event_last_seen),
            col("Type", "string", |v| json!(text(v, "/type"))),
            col("Reason", "string", |v| json!(text(v, "/reason"))),
            col("Object", "string", event_object),
            wide("Subobject", |v| json!(text(v, "/involvedObject/fieldPath"))),
            wide("Source", event_source),
            col("Message", "string", |v| json!(text(v, "/message").trim())),
            wide("First Seen", event_first_seen),
            Column {
                name: "Count",
                column_type: "string",
                priority: 1,
                cell: event_count,
            },
            wide("Name", |v| v["metadata"]["name"].clone()),
        ],
        // The aggregator's `ConvertToTable`: SERVICE `Local` or `namespace/name`, AVAILABLE
        // `True`, `False (Reason)` or `Unknown`.
        ("apiregistration.k8s.io", "APIService") => vec![
            col("Service", "string", |v| {
                json!(crate::api_services::service_cell(v))
            }),
            col("Available", "string", |v| {
                json!(crate::api_services::available_cell(v))
            }),
            col("Age", "date", created),
        ],
        // `printValidatingAdmissionPolicy`.
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => vec![
            col("Validations", "integer", |v| {
                json!(v["spec"]["validations"].as_array().map_or(0, Vec::len))
            }),
            col("ParamKind", "string", |v| {
                let kind = &v["spec"]["paramKind"];
                json!(if kind.is_null() {
                    "<unset>".to_owned()
                } else {
                    format!("{}/{}", text(kind, "/apiVersion"), text(kind, "/kind"))
                })
            }),
            col("Age", "date", created),
        ],
        // `printValidatingAdmissionPolicyBinding`: a selector is shown by its `matchLabels`
        // (kubectl prints Go's dump of the struct).
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => vec![
            col("PolicyName", "string", |v| {
                json!(text(v, "/spec/policyName"))
            }),
            col("ParamRef", "string", |v| {
                let reference = &v["spec"]["paramRef"];
                let name = text(reference, "/name");
                let namespace = text(reference, "/namespace");
                json!(
                    match (reference.is_null(), name.is_empty(), namespace.is_empty()) {
                        (true, ..) => "<unset>".to_owned(),
                        (false, false, false) => format!("{namespace}/{name}"),
                        (false, false, true) => format!("*/{name}"),
                        (false, true, _) if !reference["selector"].is_null() => {
                            reference["selector"].to_string()
                        }
                        _ => "<unset>".to_owned(),
                    }
                )
            }),
            col("Age", "date", created),
        ],
        // `printCertificateSigningRequest`: the condition as `extractCSRStatus` reads the types.
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            col("Age", "date", created),
            col("SignerName", "string", |v| {
                json!(
                    Some(text(v, "/spec/signerName"))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "<none>".into())
                )
            }),
            col("Requestor", "string", |v| json!(text(v, "/spec/username"))),
            col("RequestedDuration", "string", |v| {
                json!(
                    v["spec"]["expirationSeconds"]
                        .as_i64()
                        .map_or_else(|| "<none>".to_owned(), crate::table::human_duration)
                )
            }),
            col("Condition", "string", |v| {
                let has = |kind: &str| {
                    v["status"]["conditions"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|c| c["type"] == kind))
                };
                let mut out = if has("Denied") {
                    "Denied".to_owned()
                } else if has("Approved") {
                    "Approved".to_owned()
                } else {
                    "Pending".to_owned()
                };
                if has("Failed") {
                    out.push_str(",Failed");
                }
                if v["status"]["certificate"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
                {
                    out.push_str(",Issued");
                }
                json!(out)
            }),
        ],
        // `printRuntimeClass`.
        ("node.k8s.io", "RuntimeClass") => vec![
            col("Handler", "string", |v| json!(text(v, "/handler"))),
            col("Age", "date", created),
        ],
        // `printPriorityClass`: no policy is an empty cell.
        ("scheduling.k8s.io", "PriorityClass") => vec![
            col("Value", "integer", |v| v["value"].clone()),
            col("Global-Default", "boolean", |v| {
                json!(v["globalDefault"].as_bool().unwrap_or(false))
            }),
            col("Age", "date", created),
            col("PreemptionPolicy", "string", |v| {
                json!(text(v, "/preemptionPolicy"))
            }),
        ],
        // `printPodDisruptionBudget`: an unset bound is `N/A`.
        ("policy", "PodDisruptionBudget") => {
            vec![
                col("Min Available", "string", |v| {
                    budget_bound(&v["spec"]["minAvailable"])
                }),
                col("Max Unavailable", "string", |v| {
                    budget_bound(&v["spec"]["maxUnavailable"])
                }),
                col("Allowed Disruptions", "integer", |v| {
                    json!(v["status"]["disruptionsAllowed"].as_i64().unwrap_or(0))
                }),
                col("Age", "date", created),
            ]
        }
        // `printEndpoints`.
        ("", "Endpoints") => vec![
            col("Endpoints", "string", endpoints_list),
            col("Age", "date", created),
        ],
        // `printEndpointSlice`.
        ("discovery.k8s.io", "EndpointSlice") => vec![
            col("AddressType", "string", |v| json!(text(v, "/addressType"))),
            col("Ports", "string", slice_ports),
            col("Endpoints", "string", slice_endpoints),
            col("Age", "date", created),
        ],
        // `printIngress`: the class (`<none>`), the hosts, the load balancer's addresses, the
        // ports (443 too with TLS).
        ("networking.k8s.io", "Ingress") => vec![
            col("Class", "string", |v| {
                or_none(text(v, "/spec/ingressClassName"))
            }),
            col("Hosts", "string", ingress_hosts),
            col("Address", "string", |v| ingress_address(v, false)),
            col("Ports", "string", |v| {
                let tls = v.pointer("/spec/tls").and_then(Value::as_array);
                json!(if tls.is_some_and(|t| !t.is_empty()) {
                    "80, 443"
                } else {
                    "80"
                })
            }),
            col("Age", "date", created),
        ],
        // `printIngressClass`: the parameters as `Kind[.group]/name`.
        ("networking.k8s.io", "IngressClass") => vec![
            col("Controller", "string", |v| {
                json!(text(v, "/spec/controller"))
            }),
            col("Parameters", "string", |v| {
                let p = &v["spec"]["parameters"];
                if p.is_null() {
                    return json!("<none>");
                }
                let mut kind = text(p, "/kind");
                if let Some(group) = p["apiGroup"].as_str() {
                    kind = format!("{kind}.{group}");
                }
                json!(format!("{kind}/{}", text(p, "/name")))
            }),
            col("Age", "date", created),
        ],
        // `printNetworkPolicy`: the pod selector as `FormatLabelSelector` writes it.
        ("networking.k8s.io", "NetworkPolicy") => vec![
            col("Pod-Selector", "string", |v| {
                or_none(crate::selector::label_selector_text(
                    &v["spec"]["podSelector"],
                ))
            }),
            col("Age", "date", created),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            col("Holder", "string", |v| {
                json!(text(v, "/spec/holderIdentity"))
            }),
            col("Age", "date", created),
        ],
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            vec![col("Created At", "string", created)]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            vec![col("Role", "string", role_ref), col("Age", "date", created)]
        }
        _ => return None,
    };
    Some(cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;

    fn cells(group: &str, plural: &str, object: &Value) -> Vec<Value> {
        let registry = Registry::default();
        let info = registry.lookup(group, "v1", plural).unwrap();
        columns(&info)
            .unwrap()
            .iter()
            .filter(|c| c.column_type != "date" && c.priority == 0)
            .map(|c| (c.cell)(object))
            .collect()
    }

    #[test]
    fn deployments_services_and_pods_print_as_kubectl_shows_them() {
        let d = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3,
            "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "deployments", &d),
            [json!("2/3"), json!(3), json!(2)]
        );
        let s = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.1.0",
            "ports": [{"port": 80, "nodePort": 30000, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            cells("", "services", &s),
            [
                json!("NodePort"),
                json!("10.96.1.0"),
                json!("<none>"),
                json!("80:30000/TCP,53/UDP")
            ]
        );
        let p = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 1},
                {"ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            cells("", "pods", &p),
            [json!("1/2"), json!("CrashLoopBackOff"), json!("3")]
        );
    }

    #[test]
    fn events_print_as_kubectl_get_events_shows_them_from_either_api() {
        let core = json!({"apiVersion": "v1", "metadata": {"name": "e"}, "type": "Warning",
            "reason": "BackOff", "involvedObject": {"kind": "Pod", "name": "web"},
            "message": " restarting \n", "count": 3, "source": {"component": "kubelet", "host": "n1"}});
        let events_api = json!({"apiVersion": "events.k8s.io/v1", "metadata": {"name": "e"},
            "type": "Normal", "reason": "Ready", "regarding": {"kind": "WebApp", "name": "shop"},
            "note": "Ready is True", "reportingController": "capstan", "reportingInstance": "webapp",
            "eventTime": "2026-01-01T00:00:00.000000Z"});
        let registry = Registry::default();
        let wide = |group: &str, object: &Value| -> Vec<Value> {
            let info = registry.lookup(group, "v1", "events").unwrap();
            assert!(!name_first(&info));
            let row = row_form(&info, object);
            columns(&info).unwrap()[1..]
                .iter()
                .map(|c| (c.cell)(&row))
                .collect()
        };
        assert_eq!(
            wide("", &core),
            [
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!(""),
                json!("kubelet, n1"),
                json!("restarting"),
                json!("<unknown>"),
                json!(3),
                json!("e")
            ]
        );
        let shown = wide("events.k8s.io", &events_api);
        assert_eq!(
            shown[..6],
            [
                json!("Normal"),
                json!("Ready"),
                json!("webapp/shop"),
                json!(""),
                json!("capstan, webapp"),
                json!("Ready is True")
            ]
        );
        assert_eq!(shown[7..], [json!(1), json!("e")]);
    }
}
