//! The install (`deploy/`) and `capstan rbac`: the kustomize base and example overlay render with
//! kubectl and apply (`--dry-run=server`) to the embedded API server; the RBAC checked in is what
//! `capstan rbac` derives, and its output applies and reads back, with kube-rs and kubectl.
#![allow(clippy::unwrap_used)]

use crate::support::{guest, kubectl, root, tempdir};
use capstan::config::Config;
use capstan::identity::Identities;
use capstan::rbac::{Object, Rbac, Resources};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::Api;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `kubectl --kubeconfig KC ARGS`, its stdout; panics with stderr on failure.
fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut cmd = Command::new(kubectl());
    // The discovery cache beside the kubeconfig: kubectl's default is keyed by host and port,
    // which servers of other tests reuse.
    let cache = kubeconfig.with_file_name("kubectl-cache");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize DIR`.
fn kustomize(dir: &Path) -> String {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a YAML stream, as kubectl reads them (empty ones skipped).
fn documents(yaml: &str) -> Vec<Value> {
    let mut bytes = yaml.as_bytes();
    serde_saphyr::read::<_, Value>(&mut bytes)
        .map(Result::unwrap)
        .filter(|d| !d.is_null())
        .collect()
}

fn yaml_of(docs: &[&Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// `kind namespace/name` of each document, sorted.
fn identities(docs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{} {}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    ids.sort();
    ids
}

/// Render `dir`, create its Namespaces for real (a server-side dry run cannot create objects in a
/// namespace that does not exist, on kube-apiserver as here), then apply everything with
/// `--dry-run=server` (and `--server-side` if `server_side`): every object must be accepted, and
/// none created.
async fn renders_and_dry_runs(dir: &Path, server_side: bool) -> Vec<Value> {
    let server = crate::support::apiserver().await;
    let kc = tempdir();
    let kubeconfig = kc.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let rendered = kustomize(dir);
    let docs = documents(&rendered);
    docs.iter().for_each(assert_known_fields);
    let namespaces: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Namespace").collect();
    assert!(!namespaces.is_empty(), "the install has its namespace");
    kubectl_ok(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(&yaml_of(&namespaces)),
    );
    let mut apply = vec!["apply", "--dry-run=server", "-f", "-"];
    if server_side {
        apply.push("--server-side");
    }
    let out = kubectl_ok(&kubeconfig, &apply, Some(&rendered));
    let accepted = out
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    assert_eq!(accepted, docs.len(), "every object accepted:\n{out}");
    let deployments: Api<Deployment> = Api::namespaced(server.client().unwrap(), "capstan-system");
    assert!(
        deployments.get_opt("capstan").await.unwrap().is_none(),
        "a dry run creates nothing"
    );
    server.shutdown().await.unwrap();
    docs
}

/// Whether `doc` survives a round trip through its k8s-openapi type unchanged: a field the type
/// does not know (a typo) is dropped, and the doc changes. kube-apiserver rejects such a field
/// (kubectl asks for strict field validation); the embedded API server ignores it, so the dry run
/// alone would not notice.
fn assert_known_fields(doc: &Value) {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
        serde_json::to_value(serde_json::from_value::<T>(doc.clone()).unwrap()).unwrap()
    }
    let back = match doc["kind"].as_str().unwrap() {
        "Namespace" => round::<core::Namespace>(doc),
        "ServiceAccount" => round::<core::ServiceAccount>(doc),
        "ConfigMap" => {
            // kustomize wraps binaryData's base64 in lines; Go's decoder skips the line breaks.
            let mut unwrapped = doc.clone();
            if let Some(data) = unwrapped["binaryData"].as_object_mut() {
                for v in data.values_mut() {
                    *v = Value::String(v.as_str().unwrap().split_whitespace().collect());
                }
            }
            round::<core::ConfigMap>(&unwrapped)
        }
        "Service" => round::<core::Service>(doc),
        "Deployment" => round::<apps::Deployment>(doc),
        "ClusterRole" => round::<rbac::ClusterRole>(doc),
        "ClusterRoleBinding" => round::<rbac::ClusterRoleBinding>(doc),
        "Role" => round::<rbac::Role>(doc),
        "RoleBinding" => round::<rbac::RoleBinding>(doc),
        "CustomResourceDefinition" => round::<ext::CustomResourceDefinition>(doc),
        other => panic!("no type for kind {other}"),
    };
    let mut unknown = Vec::new();
    dropped(doc, &back, String::new(), &mut unknown);
    assert!(
        unknown.is_empty(),
        "{} {}: fields the API does not know: {unknown:?}",
        doc["kind"],
        doc["metadata"]["name"]
    );
}

/// The paths of `doc` that `back` (its round trip) lost. Values may change form (a schema's
/// `minimum: 1` comes back as `1.0`); keys may not go.
fn dropped(doc: &Value, back: &Value, path: String, out: &mut Vec<String>) {
    match (doc, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => dropped(v, w, format!("{path}.{k}"), out),
                    None if v.is_null() => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                dropped(v, w, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn the<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", identities(docs)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_renders_and_applies_with_a_hardened_deployment() {
    let docs = renders_and_dry_runs(&root().join("deploy/base"), false).await;
    let d = the(&docs, "Deployment", "capstan");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "capstan");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    let mounts: Vec<(&str, &str)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("plugins", "/plugins"),
            ("cache", "/var/cache/capstan"),
            ("config", "/etc/capstan")
        ]
    );
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(volume("cache")["emptyDir"].is_object());
    // The configuration: a generated ConfigMap holding config.yaml, which the host can read.
    let config_map = volume("config")["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(config_map.starts_with("capstan-config-"), "{config_map}");
    let cm = the(&docs, "ConfigMap", &config_map);
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    Config::parse(text).unwrap().check().unwrap();
    let service = the(&docs, "Service", "capstan");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    assert_eq!(
        the(&docs, "Namespace", "capstan-system")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_overlay_renders_and_applies_with_its_plugins_crds_and_rbac() {
    let docs = renders_and_dry_runs(&root().join("deploy/overlays/example"), false).await;
    let ids = identities(&docs);
    for want in [
        "CustomResourceDefinition /webapps.examples.capstan.dev",
        "ServiceAccount capstan-system/capstan-plugin-webapp",
        "ClusterRole /capstan-system:capstan-plugin-infra-cluster",
        "Role capstan-system/capstan-system:capstan:impersonate",
        "ClusterRole /capstan-system:capstan",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing: {ids:?}");
    }
    let d = the(&docs, "Deployment", "capstan");
    let plugins = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "plugins")
        .unwrap();
    assert!(
        plugins["image"]["reference"].is_string() && plugins.get("emptyDir").is_none(),
        "the plugins come from an image volume, and only from it: {plugins}"
    );
    let config_map = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap()["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = the(&docs, "ConfigMap", &config_map)["data"]["config.yaml"]
        .as_str()
        .unwrap();
    let config = Config::parse(text).unwrap();
    assert!(
        config.plugins.contains_key("webapp"),
        "the overlay's configuration replaces the base's"
    );
}

/// Copy the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The ConfigMap variant, after its documented build step (the plugins that fit in a ConfigMap
/// copied into its `plugins/`): one ConfigMap of binary data per plugin, projected into the plugins volume by its
/// generated name; it applies server-side (client-side apply would copy each plugin into the
/// last-applied annotation, which kube-apiserver limits to 256 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_variant_renders_each_plugin_as_binary_data_and_applies() {
    let tree = tempdir();
    copy_tree(&root().join("deploy"), &tree.path().join("deploy"));
    // (ConfigMap name suffix, file, the test guest copied there). The test guests are built
    // without LTO: deployment-handler's build (1.2 MiB) is over a ConfigMap's 1 MiB, which the
    // server refuses as kube-apiserver does, so a small component stands in for it.
    let files = [
        ("infra-cluster", "infra_cluster.wasm", "infra-cluster"),
        (
            "deployment-handler",
            "deployment_handler.wasm",
            "noisy-reconciler",
        ),
    ];
    let overlay = tree.path().join("deploy/overlays/example-configmap");
    for (_, file, source) in files {
        std::fs::copy(guest(source), overlay.join("plugins").join(file)).unwrap();
    }
    let docs = renders_and_dry_runs(&overlay, true).await;
    let d = the(&docs, "Deployment", "capstan");
    let plugins = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "plugins")
        .unwrap();
    assert!(
        plugins.get("image").is_none() && plugins.get("emptyDir").is_none(),
        "{plugins}"
    );
    let sources = plugins["projected"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), files.len());
    for (projected, (package, file, source)) in sources.iter().zip(files) {
        let name = projected["configMap"]["name"].as_str().unwrap();
        assert!(
            name.starts_with(&format!("capstan-plugin-{package}-")),
            "{name}"
        );
        let cm = the(&docs, "ConfigMap", name);
        assert!(cm.get("data").is_none(), "a plugin is binary data: {name}");
        // kustomize wraps the base64 text in lines.
        let encoded: String = cm["binaryData"][file]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect();
        let decoded: k8s_openapi::ByteString =
            serde_json::from_value(Value::String(encoded)).unwrap();
        let bytes = std::fs::read(guest(source)).unwrap();
        assert!(
            decoded.0 == bytes,
            "{file} is the plugin, byte for byte ({} bytes, {} expected)",
            decoded.0.len(),
            bytes.len()
        );
    }
}

/// The CRDs the example overlay installs are those of `examples/`.
#[test]
fn the_example_overlay_installs_the_examples_crds() {
    let crds = |docs: Vec<Value>| {
        let mut v: Vec<Value> = docs
            .into_iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .collect();
        v.sort_by_key(|d| d["metadata"]["name"].as_str().unwrap().to_owned());
        v
    };
    let overlay = crds(documents(
        &std::fs::read_to_string(root().join("deploy/overlays/example/crds.yaml")).unwrap(),
    ));
    let mut examples = Vec::new();
    for f in ["webapp-crd.yaml", "infra-cluster.yaml"] {
        examples.extend(documents(
            &std::fs::read_to_string(root().join("examples").join(f)).unwrap(),
        ));
    }
    let examples = crds(examples);
    assert_eq!(examples.len(), 3);
    assert_eq!(overlay, examples);
}

/// The example plugins in a plugins directory, named as the `example-plugins` image names them.
fn example_plugins() -> tempfile::TempDir {
    let dir = tempdir();
    for (package, file) in [
        ("webapp", "webapp.wasm"),
        ("infra-cluster", "infra_cluster.wasm"),
        ("deployment-handler", "deployment_handler.wasm"),
    ] {
        std::fs::copy(guest(package), dir.path().join(file)).unwrap();
    }
    dir
}

fn objects_of(rbac: &Rbac) -> Vec<Value> {
    rbac.objects()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

/// The RBAC checked in under deploy/ is what `capstan rbac` derives now: the base's for no plugins,
/// the overlay's for the example plugins with the overlay's configuration and the examples' CRDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checked_in_rbac_is_what_capstan_rbac_derives() {
    let regenerate =
        "regenerate it: see the comment at the top of deploy/overlays/example/config.yaml";
    let base = documents(&std::fs::read_to_string(root().join("deploy/base/rbac.yaml")).unwrap());
    assert_eq!(
        base,
        objects_of(&Rbac::builder(Identities::default()).build()),
        "deploy/base/rbac.yaml: {regenerate}"
    );
    let config = Config::load(&root().join("deploy/overlays/example/config.yaml")).unwrap();
    let plugins = example_plugins();
    let manifests = capstan::manifests::read_dir(&root().join("examples")).unwrap();
    let mut builder = Rbac::builder(Identities::default())
        .resources(Resources::new().with_crds_in(&manifests).unwrap())
        .base(false);
    let derived = capstan::rbac::plugins_in(plugins.path(), &config, None)
        .await
        .unwrap();
    assert_eq!(derived.len(), 3);
    let infra = derived.iter().find(|p| p.name == "infra-cluster").unwrap();
    assert!(
        !infra.manifest.pod_logs,
        "the overlay's configuration entry is bound to the image's file name"
    );
    for p in derived {
        builder = builder.plugin(p);
    }
    let overlay = documents(
        &std::fs::read_to_string(root().join("deploy/overlays/example/rbac.yaml")).unwrap(),
    );
    assert_eq!(
        overlay,
        objects_of(&builder.build()),
        "deploy/overlays/example/rbac.yaml: {regenerate}"
    );
}

/// `capstan rbac` output for real plugins (the examples, a plugin limited to namespace `prod` by
/// its event filter, one reading pod logs in a namespace the configuration grants) applies to the
/// API server with kubectl, and reads back the same with kube-rs and kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capstan_rbac_output_applies_and_reads_back() {
    let plugins = example_plugins();
    for package in ["filtered-controller", "pod-doctor"] {
        std::fs::copy(
            guest(package),
            plugins.path().join(format!("{package}.wasm")),
        )
        .unwrap();
    }
    let config = Config::parse(
        "plugins:\n  pod-doctor:\n    file: pod-doctor.wasm\n    reconcile: { namespaces: [diagnostics] }\n",
    )
    .unwrap();
    let manifests = capstan::manifests::read_dir(&root().join("examples")).unwrap();
    let mut builder = Rbac::builder(Identities::new("capstan-ops"))
        .resources(Resources::new().with_crds_in(&manifests).unwrap());
    for p in capstan::rbac::plugins_in(plugins.path(), &config, None)
        .await
        .unwrap()
    {
        builder = builder.plugin(p);
    }
    let rbac = builder.build();
    let yaml = rbac.to_yaml().unwrap();

    let server = crate::support::apiserver().await;
    let kc = tempdir();
    let kubeconfig = kc.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: capstan-ops}\n---\n\
                      apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\n\
                      apiVersion: v1\nkind: Namespace\nmetadata: {name: diagnostics}\n";
    kubectl_ok(&kubeconfig, &["apply", "-f", "-"], Some(namespaces));
    let out = kubectl_ok(&kubeconfig, &["apply", "-f", "-"], Some(&yaml));
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        rbac.documents().len(),
        "{out}"
    );

    let client = server.client().unwrap();
    for object in rbac.objects() {
        match object {
            Object::ClusterRole(want) => {
                let name = want.metadata.name.as_deref().unwrap();
                let got = Api::<ClusterRole>::all(client.clone())
                    .get(name)
                    .await
                    .unwrap();
                assert_eq!(got.rules, want.rules, "ClusterRole {name}");
            }
            Object::Role(want) => {
                let (ns, name) = (
                    want.metadata.namespace.as_deref().unwrap(),
                    want.metadata.name.as_deref().unwrap(),
                );
                let got = Api::<Role>::namespaced(client.clone(), ns)
                    .get(name)
                    .await
                    .unwrap();
                assert_eq!(got.rules, want.rules, "Role {ns}/{name}");
            }
            Object::RoleBinding(want) => {
                let (ns, name) = (
                    want.metadata.namespace.as_deref().unwrap(),
                    want.metadata.name.as_deref().unwrap(),
                );
                let got = Api::<RoleBinding>::namespaced(client.clone(), ns)
                    .get(name)
                    .await
                    .unwrap();
                assert_eq!(got.role_ref, want.role_ref);
                assert_eq!(got.subjects, want.subjects);
            }
            _ => {}
        }
    }
    // The example plugins' rules, as read back.
    let rules_of = |name: &'static str| {
        let client = client.clone();
        async move {
            Api::<ClusterRole>::all(client)
                .get(&format!("capstan-ops:capstan-plugin-{name}"))
                .await
                .unwrap()
                .rules
                .unwrap_or_default()
        }
    };
    let verbs = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule], group: &str, resource: &str| {
        let mut v: Vec<String> = rules
            .iter()
            .filter(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == resource)
            })
            .flat_map(|r| r.verbs.clone())
            .collect();
        v.sort();
        v
    };
    let own = ["create", "delete", "get", "list", "patch", "watch"];
    let webapp = rules_of("webapp").await;
    let g = "examples.capstan.dev";
    assert_eq!(verbs(&webapp, g, "webapps"), ["get", "list", "watch"]);
    assert_eq!(verbs(&webapp, g, "webapps/status"), ["patch"]);
    assert_eq!(verbs(&webapp, g, "webapps/finalizers"), ["update"]);
    assert_eq!(verbs(&webapp, "apps", "deployments"), own);
    assert_eq!(verbs(&webapp, "", "services"), own);
    assert!(verbs(&webapp, "", "pods").is_empty() && verbs(&webapp, "", "secrets").is_empty());
    let infra = rules_of("infra-cluster").await;
    assert_eq!(
        verbs(&infra, g, "infraclusters"),
        ["get", "list", "patch", "watch"],
        "its finalizer"
    );
    assert_eq!(
        verbs(&infra, g, "clusters"),
        ["create", "get", "list", "patch"]
    );
    assert_eq!(
        verbs(&infra, g, "clusters/status"),
        ["patch"],
        "status to its owner"
    );
    assert_eq!(verbs(&infra, "", "configmaps"), own);
    assert!(
        verbs(&infra, "", "configmaps/status").is_empty(),
        "no such subresource"
    );
    let handler = rules_of("deployment-handler").await;
    assert_eq!(handler.len(), 1);
    assert_eq!(
        verbs(&handler, "apps", "deployments"),
        ["get", "list", "watch"]
    );
    // The plugin filtered to `prod` has a Role there and no ClusterRole at all.
    let filtered = "capstan-ops:capstan-plugin-filtered-controller";
    let roles = kubectl_ok(
        &kubeconfig,
        &[
            "get",
            "roles",
            "-A",
            "-l",
            "capstan.dev/plugin=filtered-controller",
            "-o",
            "json",
        ],
        None,
    );
    let roles: Value = serde_json::from_str(&roles).unwrap();
    let found: Vec<(&str, &str)> = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["namespace"].as_str().unwrap(),
                r["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [("prod", filtered)]);
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(filtered)
            .await
            .unwrap()
            .is_none()
    );
    // pod-doctor reads pod logs in its objects' namespaces (every one: it has no filter).
    let doctor = Api::<ClusterRole>::all(client.clone())
        .get("capstan-ops:capstan-plugin-pod-doctor")
        .await
        .unwrap();
    let pod_log = doctor
        .rules
        .iter()
        .flatten()
        .any(|r| r.resources.iter().flatten().any(|x| x == "pods/log") && r.verbs == ["get"]);
    assert!(pod_log, "{:?}", doctor.rules);
    // The host impersonates exactly the five plugins' accounts, in its namespace.
    let imp = kubectl_ok(
        &kubeconfig,
        &[
            "get",
            "role",
            "-n",
            "capstan-ops",
            "capstan-ops:capstan:impersonate",
            "-o",
            "jsonpath={.rules[0].resourceNames}",
        ],
        None,
    );
    let names: Vec<String> = serde_json::from_str(&imp).unwrap();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("capstan-plugin-")),
        "{names:?}"
    );
    server.shutdown().await.unwrap();
}
