//! Defaulting of built-in kinds, as the `SetDefaults_*` functions of Kubernetes'
//! `pkg/apis/{core,apps,batch}/v1/defaults.go` and the declarative `+default` markers set them: a
//! field the client left unset (absent, `null`, or an empty string where Go's zero value is one)
//! gets the value a cluster would store.

use serde_json::{Map, Value, json};

/// `kubernetes.io/metadata.name`, the label every Namespace carries.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Sets `key` to `value` where Go would see a zero value (absent, `null` or `""`).
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let unset = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if unset {
        map.insert(key.to_owned(), value);
    }
}

/// The object at `key`, created empty when absent (as Go's non-pointer structs always are).
fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry.as_object_mut()
}

/// The objects of the list at `key` (none when absent or not a list).
pub(crate) fn items<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Defaults `object` of `group`/`kind`, which is being created (`creating`) or updated.
pub(super) fn apply(group: &str, kind: &str, value: &mut Value, creating: bool) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("apps", "Deployment") => deployment(map),
        ("apps", "ReplicaSet") => replica_set(map),
        ("apps", "StatefulSet") => stateful_set(map),
        ("apps", "DaemonSet") => daemon_set(map),
        ("batch", "Job") => job(map),
        ("batch", "CronJob") => cron_job(map),
        ("", "Pod") => pod(map, creating),
        // The pod template's defaults, at `template`.
        ("", "PodTemplate") => pod_template(map),
        ("", "ReplicationController") => replication_controller(map),
        ("", "Service") => service(map),
        ("", "Secret") => default(map, "type", json!("Opaque")),
        ("networking.k8s.io", kind) => super::networking::defaults(kind, map),
        ("", "Namespace") => namespace(map),
        // `SetDefaults_NodeStatus`: what is allocatable defaults to the capacity.
        ("", "Node") => {
            if let Some(status) = object_at(map, "status")
                && status.get("allocatable").is_none_or(Value::is_null)
                && let Some(capacity) = status.get("capacity").cloned()
            {
                status.insert("allocatable".into(), capacity);
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = object_at(map, "spec") {
                persistent_volume_claim_spec(spec);
            }
            if creating && let Some(status) = object(map, "status") {
                default(status, "phase", json!("Pending"));
            }
        }
        _ => {}
    }
}

/// The object at `key` if there is one (not created).
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// `SetDefaults_Deployment` (apps/v1), and the pod template's defaults.
fn deployment(map: &mut Map<String, Value>) {
    let Some(spec) = object(map, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    if let Some(strategy) = object(spec, "strategy") {
        default(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate"
            && let Some(rolling) = object(strategy, "rollingUpdate")
        {
            default(rolling, "maxUnavailable", json!("25%"));
            default(rolling, "maxSurge", json!("25%"));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    pod_template(spec);
}

/// `SetDefaults_ReplicaSet` (apps/v1).
fn replica_set(map: &mut Map<String, Value>) {
    if let Some(spec) = object(map, "spec") {
        default(spec, "replicas", json!(1));
        pod_template(spec);
    }
}

/// `SetDefaults_StatefulSet` (apps/v1; `StatefulSetAutoDeletePVC` is on by default since 1.27).
fn stateful_set(map: &mut Map<String, Value>) {
    let Some(spec) = object(map, "spec") else {
        return;
    };
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = object(spec, "updateStrategy") {
        if strategy.get("type").is_none_or(|t| t.is_null() || t == "") {
            strategy.insert("type".into(), json!("RollingUpdate"));
            object(strategy, "rollingUpdate");
        }
        if strategy["type"] == "RollingUpdate"
            && let Some(rolling) = object_at(strategy, "rollingUpdate")
        {
            default(rolling, "partition", json!(0));
        }
    }
    if let Some(policy) = object(spec, "persistentVolumeClaimRetentionPolicy") {
        default(policy, "whenDeleted", json!("Retain"));
        default(policy, "whenScaled", json!("Retain"));
    }
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    for claim in items(spec, "volumeClaimTemplates") {
        if let Some(claim_spec) = object(claim, "spec") {
            persistent_volume_claim_spec(claim_spec);
        }
        if let Some(status) = object(claim, "status") {
            default(status, "phase", json!("Pending"));
        }
    }
    pod_template(spec);
}

/// `SetDefaults_DaemonSet` (apps/v1): the `RollingUpdate` strategy, one Pod unavailable at a
/// time and none surging, ten revisions kept; and the pod template's defaults.
fn daemon_set(map: &mut Map<String, Value>) {
    let Some(spec) = object(map, "spec") else {
        return;
    };
    if let Some(strategy) = object(spec, "updateStrategy") {
        if strategy.get("type").is_none_or(|t| t.is_null() || t == "") {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy["type"] == "RollingUpdate"
            && let Some(rolling) = object(strategy, "rollingUpdate")
        {
            default(rolling, "maxUnavailable", json!(1));
            default(rolling, "maxSurge", json!(0));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
}

/// `SetDefaults_Job` (batch/v1; `JobPodReplacementPolicy` is on by default since 1.29).
fn job(map: &mut Map<String, Value>) {
    let template_labels = map
        .get("spec")
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .cloned();
    if let Some(metadata) = object(map, "metadata")
        && metadata
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        && let Some(labels) = template_labels
    {
        metadata.insert("labels".into(), labels);
    }
    let Some(spec) = object(map, "spec") else {
        return;
    };
    let unset = |spec: &Map<String, Value>, key: &str| spec.get(key).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    let backoff = if unset(spec, "backoffLimitPerIndex") {
        6
    } else {
        i64::from(i32::MAX)
    };
    default(spec, "backoffLimit", json!(backoff));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default(spec, "podReplacementPolicy", json!(replacement));
    // A pod failure policy's condition pattern is about a True condition unless it says.
    let rules = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut);
    for rule in rules.into_iter().flatten() {
        let patterns = rule
            .get_mut("onPodConditions")
            .and_then(Value::as_array_mut);
        for pattern in patterns
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            default(pattern, "status", json!("True"));
        }
    }
    default(spec, "manualSelector", json!(false));
    pod_template(spec);
}

/// The job strategy's `generateSelector`, run on create unless `spec.manualSelector`: the
/// template gets the `job-name` and `controller-uid` labels (legacy and `batch.kubernetes.io/`;
/// a label the client set is kept, and validation then judges it) and the selector matches the
/// `batch.kubernetes.io/controller-uid` one. Then the defaults again, as kube-apiserver's read of
/// the stored object applies them: a job without labels gets its template's.
pub(super) fn job_selector(value: &mut Value) {
    let name = value
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let uid = value
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(template) = object(spec, "template")
        && let Some(metadata) = object(template, "metadata")
        && let Some(labels) = object(metadata, "labels")
    {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels.entry(key).or_insert_with(|| name.clone());
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels.entry(key).or_insert_with(|| uid.clone());
        }
    }
    if let Some(selector) = object(spec, "selector")
        && let Some(match_labels) = object(selector, "matchLabels")
    {
        match_labels
            .entry("batch.kubernetes.io/controller-uid")
            .or_insert(uid);
    }
    apply("batch", "Job", value, true);
}

/// `SetDefaults_ReplicationController`: the selector and the labels default to the template's
/// labels, the replicas to 1; and the pod template's defaults.
fn replication_controller(map: &mut Map<String, Value>) {
    let labels = map
        .get("spec")
        .and_then(|spec| spec.pointer("/template/metadata/labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        if empty(map.get("metadata").and_then(|m| m.get("labels")))
            && let Some(metadata) = object(map, "metadata")
        {
            metadata.insert("labels".into(), labels.clone());
        }
        if let Some(spec) = object_at(map, "spec")
            && empty(spec.get("selector"))
        {
            spec.insert("selector".into(), labels);
        }
    }
    let Some(spec) = object(map, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    pod_template(spec);
}

/// The defaults of the pod template at `spec.template`.
fn pod_template(spec: &mut Map<String, Value>) {
    if let Some(template) = object_at(spec, "template")
        && let Some(pod_spec) = object(template, "spec")
    {
        pod_spec_defaults(pod_spec);
    }
}

/// `SetDefaults_CronJob` and the defaults of its Job template's pod template (not of the Job
/// spec: `SetDefaults_Job` runs on Jobs, not on templates).
fn cron_job(map: &mut Map<String, Value>) {
    let Some(spec) = object(map, "spec") else {
        return;
    };
    default(spec, "concurrencyPolicy", json!("Allow"));
    if spec.get("suspend").is_none_or(Value::is_null) {
        spec.insert("suspend".into(), json!(false));
    }
    for (key, limit) in [
        ("successfulJobsHistoryLimit", 3),
        ("failedJobsHistoryLimit", 1),
    ] {
        if spec.get(key).is_none_or(Value::is_null) {
            spec.insert(key.into(), json!(limit));
        }
    }
    if let Some(job_spec) = object_at(spec, "jobTemplate").and_then(|t| object_at(t, "spec")) {
        pod_template(job_spec);
    }
}

/// `SetDefaults_Pod` (pods only, not templates) and the pod spec's defaults; a new pod starts
/// `Pending`, with its QoS class.
fn pod(map: &mut Map<String, Value>, creating: bool) {
    let Some(spec) = object(map, "spec") else {
        return;
    };
    for key in ["containers", "initContainers"] {
        for container in items(spec, key) {
            requests_from_limits(container);
        }
    }
    default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&json!(true)) {
        for key in ["containers", "initContainers"] {
            for container in items(spec, key) {
                for port in items(container, "ports") {
                    if port.get("hostPort").is_none_or(|p| p.is_null() || p == 0) {
                        let container_port = port.get("containerPort").cloned().unwrap_or(json!(0));
                        port.insert("hostPort".into(), container_port);
                    }
                }
            }
        }
    }
    pod_spec_defaults(spec);
    let qos = qos_class(spec);
    if creating && let Some(status) = object(map, "status") {
        default(status, "phase", json!("Pending"));
        default(status, "qosClass", json!(qos));
    }
}

/// Sets a pod's `status.qosClass` again from its containers' resources (after an admission
/// plugin changed them; the class is the strategy's, computed after mutating admission).
pub(super) fn pod_qos(value: &mut Value) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    let Some(qos) = map.get("spec").and_then(Value::as_object).map(qos_class) else {
        return;
    };
    if let Some(status) = object(map, "status") {
        status.insert("qosClass".into(), json!(qos));
    }
}

/// A container's requests default to its limits.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = object_at(container, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(requests) = object(resources, "requests") {
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
    }
}

/// `GetPodQOS`, for the containers' cpu and memory: Guaranteed when every container's requests
/// equal its limits for both, BestEffort when none sets any, Burstable otherwise.
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let resource = |c: &Value, kind: &str, name: &str| {
        c.pointer(&format!("/resources/{kind}/{name}")).cloned()
    };
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        for name in ["cpu", "memory"] {
            let (request, limit) = (resource(c, "requests", name), resource(c, "limits", name));
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && (request.is_none() || request == limit);
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `SetDefaults_PodSpec`, with the defaults of its containers, volumes and probes.
fn pod_spec_defaults(spec: &mut Map<String, Value>) {
    service_account_alias(spec);
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    object(spec, "securityContext");
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for container in items(spec, key) {
            container_defaults(container);
        }
    }
    for volume in items(spec, "volumes") {
        volume_defaults(volume);
    }
}

/// `serviceAccount`, the v1 alias of `serviceAccountName` (`DeprecatedServiceAccount`), as the
/// conversions through the internal type treat it: read when `serviceAccountName` is empty,
/// written from it (and left out when empty).
fn service_account_alias(spec: &mut Map<String, Value>) {
    let named = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    };
    match named(spec.get("serviceAccountName")).or_else(|| named(spec.get("serviceAccount"))) {
        Some(name) => {
            spec.insert("serviceAccountName".into(), json!(name));
            spec.insert("serviceAccount".into(), json!(name));
        }
        None => {
            spec.remove("serviceAccount");
        }
    }
}

/// The image's tag as `ParseImageName` finds it: `latest` when the reference has neither tag
/// nor digest, empty when it has only a digest.
fn image_tag(image: &str) -> &str {
    if image.contains('@') {
        let before = image.split('@').next().unwrap_or_default();
        return tag_of(before).unwrap_or_default();
    }
    tag_of(image).unwrap_or("latest")
}

/// The tag after the last `:` of the last path segment (a `:` before a `/` is a registry port).
fn tag_of(reference: &str) -> Option<&str> {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map(|(_, tag)| tag)
}

/// `SetDefaults_Container`, the ports' protocol and the probes' defaults.
fn container_defaults(container: &mut Map<String, Value>) {
    let policy = match container.get("image").and_then(Value::as_str) {
        Some(image) if image_tag(image) != "latest" => "IfNotPresent",
        _ => "Always",
    };
    default(container, "imagePullPolicy", json!(policy));
    default(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    default(container, "terminationMessagePolicy", json!("File"));
    object(container, "resources");
    for port in items(container, "ports") {
        default(port, "protocol", json!("TCP"));
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = object_at(container, key) {
            probe_defaults(probe);
        }
    }
}

/// `SetDefaults_Probe` and `SetDefaults_HTTPGetAction`.
fn probe_defaults(probe: &mut Map<String, Value>) {
    let zero_or_unset =
        |p: &Map<String, Value>, k: &str| p.get(k).is_none_or(|v| v.is_null() || v == 0);
    for (key, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if zero_or_unset(probe, key) {
            probe.insert(key.into(), json!(value));
        }
    }
    if let Some(http) = object_at(probe, "httpGet") {
        default(http, "path", json!("/"));
        default(http, "scheme", json!("HTTP"));
    }
}

/// A volume with no source is an emptyDir; secret, configMap, downwardAPI and projected sources
/// get mode 0644.
fn volume_defaults(volume: &mut Map<String, Value>) {
    let has_source = volume.keys().any(|k| k != "name");
    if !has_source {
        volume.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = object_at(volume, key) {
            default(source, "defaultMode", json!(0o644));
        }
    }
    if let Some(host_path) = object_at(volume, "hostPath") {
        default(host_path, "type", json!(""));
    }
}

/// `SetDefaults_PersistentVolumeClaimSpec`.
fn persistent_volume_claim_spec(spec: &mut Map<String, Value>) {
    default(spec, "volumeMode", json!("Filesystem"));
}

/// `SetDefaults_Service`.
fn service(map: &mut Map<String, Value>) {
    let Some(spec) = object(map, "spec") else {
        return;
    };
    default(spec, "sessionAffinity", json!("None"));
    if spec["sessionAffinity"] == "None" {
        spec.remove("sessionAffinityConfig");
    } else if spec["sessionAffinity"] == "ClientIP"
        && spec
            .get("sessionAffinityConfig")
            .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
            .is_none_or(Value::is_null)
    {
        spec.insert(
            "sessionAffinityConfig".into(),
            json!({"clientIP": {"timeoutSeconds": 10800}}),
        );
    }
    default(spec, "type", json!("ClusterIP"));
    for port in items(spec, "ports") {
        default(port, "protocol", json!("TCP"));
        let target_unset = port
            .get("targetPort")
            .is_none_or(|t| t.is_null() || t == 0 || t == "");
        if target_unset {
            let number = port.get("port").cloned().unwrap_or(json!(0));
            port.insert("targetPort".into(), number);
        }
    }
    let kind = spec["type"].as_str().unwrap_or_default().to_owned();
    let external = kind == "NodePort"
        || kind == "LoadBalancer"
        || spec
            .get("externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|ips| !ips.is_empty());
    if external {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// `SetDefaults_Namespace`: the name label.
fn namespace(map: &mut Map<String, Value>) {
    let Some(name) = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
    else {
        return;
    };
    if let Some(metadata) = object(map, "metadata")
        && let Some(labels) = object(metadata, "labels")
    {
        labels.insert(NAMESPACE_NAME_LABEL.into(), json!(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_gets_what_a_cluster_stores() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"port": 80}}}]}}}});
        apply("apps", "Deployment", &mut d, true);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["securityContext"], json!({}));
        let c = &pod["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always", "no tag means latest");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert!(
            spec["template"]["spec"].get("enableServiceLinks").is_none(),
            "pod-only defaults stay off templates"
        );
    }

    #[test]
    fn what_the_client_set_is_kept() {
        let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"},
            "template": {"spec": {"restartPolicy": "Always", "containers": [
                {"name": "c", "image": "registry:5000/app:1.2", "imagePullPolicy": "Never"}]}}}});
        apply("apps", "Deployment", &mut d, true);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Never"
        );
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry:5000/nginx", "Always"),
            ("registry:5000/nginx:1", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
        ] {
            let mut c = json!({"image": image});
            container_defaults(c.as_object_mut().unwrap());
            assert_eq!(c["imagePullPolicy"], policy, "{image}");
        }
    }

    #[test]
    fn services_secrets_namespaces_pods_and_jobs() {
        let mut s =
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply("", "Service", &mut s, true);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["internalTrafficPolicy"], "Cluster");
        assert!(s["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "https");
        assert_eq!(s["spec"]["ports"][1]["protocol"], "TCP");
        let mut lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        apply("", "Service", &mut lb, true);
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);

        let mut secret = json!({"data": {}});
        apply("", "Secret", &mut secret, true);
        assert_eq!(secret["type"], "Opaque");

        let mut ns = json!({"metadata": {"name": "team-a"}});
        apply("", "Namespace", &mut ns, true);
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );

        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x:1",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply("", "Pod", &mut pod, true);
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");

        let mut job = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}});
        apply("batch", "Job", &mut job, true);
        assert_eq!(job["spec"]["completions"], 1);
        assert_eq!(job["spec"]["parallelism"], 1);
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(job["spec"]["completionMode"], "NonIndexed");
        assert_eq!(job["spec"]["suspend"], false);
        assert_eq!(job["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(job["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }
}
