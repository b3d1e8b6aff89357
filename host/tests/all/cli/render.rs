//! `capstan render` from the command line (and `capstan::render::check` as a library): real
//! guests in the real sandbox, offline; kubectl takes what it prints.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::support;

use capstan::render::{CheckOptions, Observed, Property, Settings};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// The uid of the WebApp `shop` of these tests.
const SHOP_UID: &str = "6f1c1d2e-0000-4000-8000-000000000001";

/// `capstan render ARGS`: exit code, stdout, stderr.
fn render(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("render")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

/// Every YAML document of `text` (comments dropped).
fn docs(text: &str) -> Vec<Value> {
    let mut bytes = text.as_bytes();
    serde_saphyr::read::<_, Value>(&mut bytes)
        .map(Result::unwrap)
        .filter(|v| !v.is_null())
        .collect()
}

fn write(dir: &Path, name: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(value).unwrap()).unwrap();
    path
}

fn shop() -> Value {
    json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": "shop", "namespace": "default", "uid": SHOP_UID, "generation": 1},
        "spec": {"image": "nginx:1.27", "replicas": 2, "port": 8080}
    })
}

fn crd() -> std::path::PathBuf {
    support::root().join("examples/webapp-crd.yaml")
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

#[test]
fn the_webapp_renders_its_deployment_and_service_owned_by_the_app() {
    let dir = support::tempdir();
    let object = write(dir.path(), "shop.yaml", &shop());
    let webapp = support::guest("webapp");
    let (code, stdout, stderr) = render(&[
        os(&webapp),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--observed".as_ref(),
        os(&crd()),
        "--output".as_ref(),
        "plan".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let docs = docs(&stdout);
    assert_eq!(docs.len(), 2, "{stdout}");
    let owner = json!([{
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp", "name": "shop",
        "uid": SHOP_UID, "controller": true, "blockOwnerDeletion": true,
    }]);
    let dep = by_kind(&docs, "Deployment");
    assert_eq!(dep["apiVersion"], "apps/v1");
    assert_eq!(dep["metadata"]["name"], "shop");
    assert_eq!(dep["metadata"]["namespace"], "default");
    assert_eq!(dep["metadata"]["ownerReferences"], owner);
    assert_eq!(dep["metadata"]["labels"]["app"], "shop");
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    let svc = by_kind(&docs, "Service");
    assert_eq!(svc["metadata"]["ownerReferences"], owner);
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);

    // The status the host would write: not ready, both children missing.
    let (code, stdout, _) = render(&[
        os(&webapp),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--output".as_ref(),
        "status".as_ref(),
    ]);
    assert_eq!(code, 0);
    let report = &docs_of_one(&stdout);
    assert_eq!(report["ready"], false);
    assert_eq!(report["status"]["phase"], "Creating");
    assert_eq!(report["status"]["observedGeneration"], 1);
    let conditions = report["status"]["conditions"].as_array().unwrap();
    let of = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
    assert_eq!(of("DeploymentReady")["reason"], "NotFound");
    assert_eq!(of("Ready")["status"], "False");
    assert_eq!(report["writesStatus"], true);
}

fn docs_of_one(text: &str) -> Value {
    let mut d = docs(text);
    assert_eq!(d.len(), 1, "{text}");
    d.remove(0)
}

#[test]
fn kubectl_apply_dry_run_takes_the_rendered_stream() {
    let kubectl = support::kubectl();
    let dir = support::tempdir();
    let object = write(dir.path(), "shop.yaml", &shop());
    // The default output: the objects, then the report as comments.
    let (code, stdout, stderr) = render(&[
        os(&support::guest("webapp")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("# --- capstan render: status report ---"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(support::apiserver());
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(["apply", "--dry-run=client", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdout.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (applied, errors) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "kubectl refused it: {errors}");
    assert!(
        applied.contains("deployment.apps/shop created (dry run)"),
        "{applied}"
    );
    assert!(
        applied.contains("service/shop created (dry run)"),
        "{applied}"
    );
    rt.block_on(server.shutdown()).unwrap();
}

#[test]
fn a_hostile_plan_is_refused_whole_and_says_why() {
    let dir = support::tempdir();
    let attack = json!({
        "apiVersion": "test.capstan.dev/v1", "kind": "Attack",
        "metadata": {"name": "a1", "namespace": "team-a", "uid": "aaaaaaaa-0000-4000-8000-000000000001"},
        "spec": {"plan": [
            {"apply": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}, "data": {"k": "v"}}},
            {"apply": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "elsewhere", "namespace": "team-b"}, "data": {"k": "v"}}},
            {"apply": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"k": "v"}}},
            {"apply": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"k": "v"}}}
        ]}
    });
    let theirs = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "theirs", "namespace": "team-a", "uid": "bbbbbbbb-0000-4000-8000-000000000002",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "other",
                "uid": "cccccccc-0000-4000-8000-000000000003", "controller": true}]},
        "data": {"k": "someone else's"}
    });
    let object = write(dir.path(), "attack.yaml", &attack);
    let observed = write(dir.path(), "theirs.yaml", &theirs);
    let attacker = support::guest("attacker");
    let args = |output: &'static str| {
        vec![
            attacker.clone().into_os_string(),
            "--no-cache".into(),
            "--object".into(),
            object.clone().into_os_string(),
            "--observed".into(),
            observed.clone().into_os_string(),
            "--output".into(),
            output.into(),
        ]
    };
    let plan_args = args("plan");
    let (code, stdout, stderr) =
        render(&plan_args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert_eq!(code, 3, "a refused plan exits 3: {stderr}");
    assert!(
        docs(&stdout).is_empty(),
        "nothing of a refused plan is printed, not even its good entry: {stdout}"
    );
    assert!(
        stderr.contains("refused: plan entry 1 (ConfigMap team-b/elsewhere): namespace \"team-b\" is outside the reconcile's scope"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused: plan entry 2: plugin attacker may not apply Secret token"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused: plan entry 3 (ConfigMap team-a/theirs): it exists and Attack team-a/a1 does not control it"),
        "{stderr}"
    );
    let status_args = args("status");
    let (code, stdout, _) = render(
        &status_args
            .iter()
            .map(|a| a.as_os_str())
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 3);
    let report = docs_of_one(&stdout);
    assert_eq!(report["refused"].as_array().unwrap().len(), 3, "{stdout}");
    assert_eq!(report["status"]["failureReason"], "AuthFailed");
    let conditions = report["status"]["conditions"].as_array().unwrap();
    let auth = conditions
        .iter()
        .find(|c| c["type"] == "AuthValid")
        .unwrap();
    assert_eq!(auth["status"], "False");
}

#[test]
fn a_trapping_plugin_exits_2_naming_the_plugin_and_the_object() {
    let dir = support::tempdir();
    let object = write(
        dir.path(),
        "panic.yaml",
        &json!({"apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
            "metadata": {"name": "panic", "namespace": "default"}, "spec": {}}),
    );
    let (code, stdout, stderr) = render(&[
        os(&support::guest("hostile-reconciler")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("error: plugin hostile-reconciler failed on WebApp default/panic"),
        "{stderr}"
    );
    assert!(stderr.contains("plan-resources"), "{stderr}");
    assert!(stderr.contains("trapped"), "{stderr}");
}

#[test]
fn check_passes_for_the_webapp_and_names_the_property_a_restless_plugin_breaks() {
    let dir = support::tempdir();
    let object = write(dir.path(), "shop.yaml", &shop());
    let (code, stdout, stderr) = render(&[
        os(&support::guest("webapp")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--check".as_ref(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("check passed for WebApp default/shop"),
        "{stdout}"
    );
    let (code, stdout, _) = render(&[
        os(&support::guest("restless-reconciler")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--check".as_ref(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("violation: not deterministic: ConfigMap default/shop-stamp"),
        "{stdout}"
    );
}

#[test]
fn diff_shows_each_change_against_the_observed_state() {
    let dir = support::tempdir();
    let object = write(dir.path(), "shop.yaml", &shop());
    let owner = json!([{"apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "name": "shop", "uid": SHOP_UID, "controller": true, "blockOwnerDeletion": true}]);
    // The Deployment with one replica; the Service as the plugin plans it.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "default", "uid": "dddddddd-0000-4000-8000-000000000004",
            "labels": {"app": "shop"}, "ownerReferences": owner, "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}}}
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "shop", "namespace": "default", "uid": "eeeeeeee-0000-4000-8000-000000000005",
            "labels": {"app": "shop"}, "ownerReferences": owner, "generation": 1},
        "spec": {"selector": {"app": "shop"}, "ports": [{"port": 8080}]}
    });
    let observed_dir = dir.path().join("observed");
    std::fs::create_dir(&observed_dir).unwrap();
    write(&observed_dir, "deployment.yaml", &deployment);
    write(&observed_dir, "service.yaml", &service);
    let (code, stdout, stderr) = render(&[
        os(&support::guest("webapp")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--observed".as_ref(),
        os(&observed_dir),
        os(&crd()),
        "--diff".as_ref(),
    ]);
    assert_eq!(code, 1, "differences exit 1, as kubectl diff: {stderr}");
    assert!(
        stdout.contains(
            "--- a/Deployment/default/shop (observed)\n+++ b/Deployment/default/shop (rendered)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n-  replicas: 1\n+  replicas: 2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-  generation: 1\n+  generation: 2\n"),
        "a spec change bumps the generation: {stdout}"
    );
    assert!(
        !stdout.contains("Service/default/shop"),
        "the Service is as planned: no hunk: {stdout}"
    );
    assert!(
        stdout.contains("+++ b/WebApp/default/shop (rendered)"),
        "the status the host writes: {stdout}"
    );
}

#[test]
fn a_handler_gets_the_object_as_an_event() {
    let dir = support::tempdir();
    let deployment: Value = serde_json::from_str(&support::deployment_json("web")).unwrap();
    let object = write(dir.path(), "web.yaml", &deployment);
    let (code, stdout, stderr) = render(&[
        os(&support::guest("deployment-handler")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--event".as_ref(),
        "added".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report = docs_of_one(&stdout);
    assert_eq!(report["plugin"], "deployment-handler");
    assert_eq!(report["event"], "added");
    assert!(
        !report["statuses"].as_array().unwrap().is_empty(),
        "the handler reports through its status channel: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_check_reports_each_property_with_its_object() {
    let runtime = capstan::plugin::Runtime::new(support::runtime_config()).unwrap();
    let crd: Vec<Value> = docs(&std::fs::read_to_string(crd()).unwrap())
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    let observed = Observed::new(crd).unwrap();
    let settings = Settings::default();
    let webapp = runtime.load(&support::guest("webapp")).await.unwrap();
    let report = capstan::render::check(
        &webapp,
        &shop(),
        &observed,
        &settings,
        CheckOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.passed(), "{:?}", report.violations);
    assert_eq!(
        report.ready_after,
        Some(1),
        "ready once its Deployment reports every replica available"
    );
    assert_eq!(report.first.applies.len(), 2);

    let restless = runtime
        .load(&support::guest("restless-reconciler"))
        .await
        .unwrap();
    let report = capstan::render::check(
        &restless,
        &shop(),
        &observed,
        &settings,
        CheckOptions::default(),
    )
    .await
    .unwrap();
    let v = &report.violations[0];
    assert_eq!(v.property, Property::Deterministic);
    assert_eq!(v.object, "ConfigMap default/shop-stamp");

    // The seed 004 example reports its state up to its owner once its child exists: the plan
    // follows what it created, then stands still.
    let mut examples = docs(
        &std::fs::read_to_string(support::root().join("examples/infra-cluster.yaml")).unwrap(),
    );
    let cluster_uid = "0000aaaa-0000-4000-8000-00000000000c";
    let mut infra = None;
    for d in &mut examples {
        match d["kind"].as_str() {
            Some("Cluster") => d["metadata"]["uid"] = json!(cluster_uid),
            Some("InfraCluster") => infra = Some(d.clone()),
            _ => {}
        }
    }
    let mut infra = infra.unwrap();
    infra["metadata"]["ownerReferences"] = json!([{"apiVersion": "examples.capstan.dev/v1alpha1",
        "kind": "Cluster", "name": "demo", "uid": cluster_uid}]);
    let infra_cluster = runtime
        .load(&support::guest("infra-cluster"))
        .await
        .unwrap();
    let report = capstan::render::check(
        &infra_cluster,
        &infra,
        &Observed::new(examples).unwrap(),
        &settings,
        CheckOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.passed(), "{:?}", report.violations);
    assert!(
        report
            .first
            .status_applies
            .iter()
            .any(|a| a.object["kind"] == "Cluster"),
        "it reports to its owner: {:?}",
        report.first.status_applies
    );

    // Deterministic, but each plan carried out calls for another: never stands still.
    let mut counting = shop();
    counting["metadata"]["name"] = json!("shop-counting");
    let report = capstan::render::check(
        &restless,
        &counting,
        &observed,
        &settings,
        CheckOptions::default(),
    )
    .await
    .unwrap();
    let properties: Vec<Property> = report.violations.iter().map(|v| v.property).collect();
    assert_eq!(
        properties,
        [Property::Idempotent],
        "{:?}",
        report.violations
    );
    assert_eq!(
        report.violations[0].object,
        "ConfigMap default/shop-counting-stamp"
    );
    assert!(
        report.violations[0]
            .detail
            .starts_with("the plan keeps changing once carried out"),
        "{}",
        report.violations[0].detail
    );

    // A component that stays unhealthy whatever its children report: never Ready.
    let noisy = runtime
        .load(&support::guest("noisy-reconciler"))
        .await
        .unwrap();
    let mut steady = shop();
    steady["metadata"]["name"] = json!("steady-warning");
    let report = capstan::render::check(
        &noisy,
        &steady,
        &observed,
        &settings,
        CheckOptions::default(),
    )
    .await
    .unwrap();
    let properties: Vec<Property> = report.violations.iter().map(|v| v.property).collect();
    assert_eq!(properties, [Property::Converges], "{:?}", report.violations);
    assert_eq!(report.violations[0].object, "WebApp default/steady-warning");
    assert_eq!(report.ready_after, None);
}

#[test]
fn the_configuration_bound_to_the_plugin_widens_its_scope() {
    let dir = support::tempdir();
    let attack = json!({
        "apiVersion": "test.capstan.dev/v1", "kind": "Attack",
        "metadata": {"name": "a2", "namespace": "team-a"},
        "spec": {"plan": [
            {"applyWithoutOwnerRef": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "shared", "namespace": "team-b"}, "data": {"k": "v"}}}
        ]}
    });
    let object = write(dir.path(), "attack.yaml", &attack);
    let attacker = support::guest("attacker");
    assert_eq!(attacker.file_name().unwrap(), "attacker.wasm");
    let config = dir.path().join("capstan.yaml");
    std::fs::write(
        &config,
        "plugins:\n  attacker:\n    file: attacker.wasm\n    reconcile:\n      namespaces: [team-b]\n",
    )
    .unwrap();
    let base = [
        os(&attacker),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--output".as_ref(),
        "plan".as_ref(),
    ];
    let (code, stdout, stderr) = render(&base);
    assert_eq!(
        code, 3,
        "team-b is outside the scope without the grant: {stdout}"
    );
    assert!(
        stderr.contains("namespace \"team-b\" is outside"),
        "{stderr}"
    );
    let with_config = [&base[..], &["--config".as_ref(), os(&config)]].concat();
    let (code, stdout, stderr) = render(&with_config);
    assert_eq!(code, 0, "{stderr}");
    let docs = docs(&stdout);
    assert_eq!(docs.len(), 1, "{stdout}");
    assert_eq!(docs[0]["metadata"]["namespace"], "team-b");
    assert!(
        docs[0]["metadata"].get("ownerReferences").is_none(),
        "applyWithoutOwnerRef: no owner reference: {stdout}"
    );
}

#[test]
fn children_no_longer_planned_are_pruned_only_if_the_plugin_created_them() {
    let dir = support::tempdir();
    let object = write(dir.path(), "shop.yaml", &shop());
    let owner = json!([{"apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "name": "shop", "uid": SHOP_UID, "controller": true, "blockOwnerDeletion": true}]);
    let service = |name: &str, manager: &str| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "ownerReferences": owner,
                "managedFields": [{"manager": manager, "operation": "Apply", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"ports": [{"port": 80}]}
        })
    };
    let observed = dir.path().join("observed");
    std::fs::create_dir(&observed).unwrap();
    write(&observed, "old.yaml", &service("old", "capstan-webapp"));
    write(&observed, "kept.yaml", &service("kept", "someone-else"));
    let (code, stdout, stderr) = render(&[
        os(&support::guest("webapp")),
        "--no-cache".as_ref(),
        "--object".as_ref(),
        os(&object),
        "--observed".as_ref(),
        os(&observed),
        "--output".as_ref(),
        "status".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report = docs_of_one(&stdout);
    assert_eq!(report["prunes"], json!(["Service default/old"]), "{stdout}");
}
