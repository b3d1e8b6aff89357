//! The embedded server driven by the real `kubectl` binary.

use crate::common::{self, Kubectl, kubectl_path};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Phase, type: string, jsonPath: .status.phase}
"#;

const GADGET: &str = r#"
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
spec:
  color: teal
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_watch_patch_delete() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);

    let crd = k.file("crd.yaml", CRD);
    let out = k.run(&["apply", "--server-side", "-f", &crd]);
    assert!(out.contains("gadgets.example.com"), "{out}");
    let gadget = k.file("gadget.yaml", GADGET);
    let out = k.run(&["apply", "--server-side", "-f", &gadget]);
    assert!(out.contains("g1"), "{out}");
    // Re-applying is a no-op, not a conflict.
    k.run(&["apply", "--server-side", "-f", &gadget]);

    let json: Value = serde_json::from_str(&k.run(&["get", "gadgets", "-o", "json"])).unwrap();
    assert_eq!(json["items"][0]["metadata"]["name"], "g1");
    assert_eq!(json["items"][0]["spec"]["color"], "teal");

    let table = k.run(&["get", "gadgets"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAME") && header.contains("COLOR") && header.contains("PHASE"),
        "{table}"
    );
    assert!(table.contains("teal"), "{table}");
    assert!(
        k.run(&["get", "gd", "g1", "-o", "name"])
            .contains("gadget.example.com/g1")
    );

    let out = k.run(&[
        "patch",
        "gadget",
        "g1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ]);
    assert!(out.contains("patched"), "{out}");
    assert!(k.run(&["get", "gadgets"]).contains("Ready"));

    let mut watch = k
        .command(&["get", "gadgets", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        first.contains("NAME") && second.contains("g1"),
        "{first}\n{second}"
    );
    k.run(&["label", "gadget", "g1", "seen=yes"]);
    let third = lines.next().unwrap().unwrap();
    assert!(third.contains("g1"), "{third}");
    watch.kill().unwrap();
    let _ = watch.wait();

    // Client-side apply (GET, then POST as JSON; then a merge patch), replace (PUT as JSON) and a
    // JSON patch all send media types the server takes.
    let second = k.file("g2.yaml", &GADGET.replace("g1", "g2"));
    k.run(&["apply", "-f", &second]);
    let changed = k.file(
        "g2b.yaml",
        &GADGET.replace("g1", "g2").replace("teal", "plum"),
    );
    k.run(&["apply", "-f", &changed]);
    let color = |name: &str| k.run(&["get", "gadget", name, "-o", "jsonpath={.spec.color}"]);
    assert_eq!(color("g2"), "plum");
    let replaced = k.file("g1-replace.yaml", &GADGET.replace("teal", "navy"));
    k.run(&["replace", "-f", &replaced]);
    assert_eq!(color("g1"), "navy");
    k.run(&[
        "patch",
        "gadget",
        "g1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/color","value":"red"}]"#,
    ]);
    assert_eq!(color("g1"), "red");
    k.run(&[
        "patch",
        "gadget",
        "g1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":3}}"#,
    ]);
    k.run(&["delete", "gadget", "g2"]);

    // Without the token, kubectl is refused.
    let wrong = k.dir.path().join("wrong-kubeconfig");
    std::fs::write(
        &wrong,
        capstan_apiserver::kubeconfig_yaml(
            &server.url(),
            server.authority().certificate_pem(),
            "not-the-token",
        ),
    )
    .unwrap();
    let refused = Command::new(&k.bin)
        .arg("--kubeconfig")
        .arg(&wrong)
        .args(["get", "gadgets"])
        .env("HOME", k.dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("provide credentials"), "{stderr}");

    k.run(&["get", "configmaps", "-A"]);
    k.run(&["get", "namespaces"]);
    let out = k.run(&["delete", "gadget", "g1"]);
    assert!(out.contains("deleted"), "{out}");
    let json: Value = serde_json::from_str(&k.run(&["get", "gadgets", "-o", "json"])).unwrap();
    assert_eq!(json["items"].as_array().map(Vec::len), Some(0));
    server.shutdown().await.unwrap();
}

/// `kubectl auth can-i`, `kubectl auth whoami`, `--as` and `--as-group` against a server with
/// RBAC on and static token users: kubectl sends these reviews as protobuf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_and_impersonation_with_rbac() {
    let bin = kubectl_path();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "bob-token,bob,u-bob\nalice-token,alice,u-alice,\"dev,ops\"\n",
    )
    .unwrap();
    let (server, _client) = common::start_with(
        capstan_apiserver::ApiServer::builder()
            .authorization(capstan_apiserver::authz::Mode::Rbac)
            .token_auth_file(Some(tokens)),
    )
    .await;
    let admin = Kubectl { bin, dir };
    server
        .write_kubeconfig(&admin.dir.path().join("kubeconfig"))
        .unwrap();
    let bob_config = admin.file("bob", &server.kubeconfig_yaml_with_token("bob-token"));
    let as_bob = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", bob_config.as_str()];
        all.extend_from_slice(args);
        admin.command(&all).output().expect("run kubectl")
    };
    let failing = |out: std::process::Output| {
        assert!(!out.status.success(), "expected a failure: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };

    let me: Value = serde_json::from_str(&admin.run(&["auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], "capstan-admin");
    let out = as_bob(&["auth", "whoami", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let bob: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        bob["status"]["userInfo"],
        serde_json::json!({"username": "bob", "uid": "u-bob", "groups": ["system:authenticated"]})
    );
    assert_eq!(admin.run(&["auth", "can-i", "*", "*"]).trim(), "yes");
    let out = failing(as_bob(&["auth", "can-i", "list", "pods"]));
    assert_eq!(out.trim(), "no");
    let out = failing(as_bob(&["get", "pods"]));
    assert!(
        out.contains("Error from server (Forbidden): pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{out}"
    );
    let list = String::from_utf8_lossy(&as_bob(&["auth", "can-i", "--list"]).stdout).into_owned();
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    assert!(!list.contains("pods"), "{list}");

    // Grant the group dev read access to configmaps in default; alice is in dev, bob is not.
    let grant = admin.file(
        "grant.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: cm-reader, namespace: default}\n\
         rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list, watch]}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: dev-reads, namespace: default}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}\n\
         subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: dev}]\n",
    );
    admin.run(&["apply", "-f", &grant]);
    assert_eq!(
        admin
            .run(&[
                "auth",
                "can-i",
                "list",
                "configmaps",
                "--as",
                "alice",
                "--as-group",
                "dev"
            ])
            .trim(),
        "yes"
    );
    let out = failing(
        admin
            .command(&["auth", "can-i", "list", "configmaps", "--as", "bob"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.trim(), "no");
    let out = failing(
        admin
            .command(&[
                "auth",
                "can-i",
                "list",
                "configmaps",
                "-n",
                "kube-system",
                "--as",
                "alice",
                "--as-group",
                "dev",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(out.trim(), "no");
    admin.run(&["get", "configmaps", "--as", "alice", "--as-group", "dev"]);
    let out = failing(
        admin
            .command(&["get", "configmaps", "--as", "alice"])
            .output()
            .unwrap(),
    );
    assert!(
        out.contains("User \"alice\" cannot list resource \"configmaps\""),
        "{out}"
    );
    let sa: Value = serde_json::from_str(&admin.run(&[
        "auth",
        "whoami",
        "--as",
        "system:serviceaccount:default:robot",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        sa["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );

    // bob may not impersonate.
    let out = failing(as_bob(&[
        "get",
        "configmaps",
        "--as",
        "alice",
        "--as-group",
        "dev",
    ]));
    assert!(
        out.contains("users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{out}"
    );
    server.shutdown().await.unwrap();
}

const DEPLOYMENT: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
";

const BAD_DEPLOYMENT: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: other}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
";

const SERVICES: &str = r"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: https, port: 443, targetPort: 8443}]
";

/// What a cluster stores for a minimal Deployment and Service (defaults from
/// `pkg/apis/{apps,core}/v1/defaults.go`, addresses from the service allocators), and the errors
/// kubectl shows for an invalid Deployment, as kube-apiserver words them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_defaults_allocations_and_validation_as_on_a_cluster() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);

    let deployment = k.file("deploy.yaml", DEPLOYMENT);
    k.run(&["apply", "--server-side", "-f", &deployment]);
    let d: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "web", "-o", "json"])).unwrap();
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let c = &pod["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(d["metadata"]["generation"], 1);
    // Re-applying the same manifest changes nothing: the defaults are not a spec change.
    k.run(&["apply", "--server-side", "-f", &deployment]);
    let again: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(again["metadata"]["generation"], 1);
    assert_eq!(again["spec"]["replicas"], 1);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        d["metadata"]["resourceVersion"]
    );

    // kubectl scale goes through the /scale subresource (autoscaling/v1 Scale).
    k.run(&["scale", "deployment", "web", "--replicas=3"]);
    let scale: Value = serde_json::from_str(&k.run(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    let scaled: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(scaled["spec"]["replicas"], 3);
    assert_eq!(scaled["metadata"]["generation"], 2);
    let out = k
        .command(&["scale", "deployment", "web", "--replicas=-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    k.run(&["scale", "deployment", "web", "--replicas=1"]);

    let explained = k.run(&["explain", "deployment.spec.strategy"]);
    assert!(
        explained.contains("KIND:       Deployment")
            && explained.contains("GROUP:      apps")
            && explained.contains("rollingUpdate"),
        "{explained}"
    );
    let explained = k.run(&["explain", "pods.spec.containers", "--recursive"]);
    assert!(explained.contains("imagePullPolicy"), "{explained}");

    let services = k.file("svc.yaml", SERVICES);
    k.run(&["create", "-f", &services]);
    let svc: Value = serde_json::from_str(&k.run(&["get", "svc", "web", "-o", "json"])).unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10.9") || ip.starts_with("10.10"), "{ip}");
    assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!([ip]));
    assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert!(svc["metadata"].get("generation").is_none(), "{svc}");
    let np: Value = serde_json::from_str(&k.run(&["get", "svc", "web-np", "-o", "json"])).unwrap();
    assert_ne!(np["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
    let ports: Vec<i64> = np["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["nodePort"].as_i64().unwrap())
        .collect();
    assert!(
        ports.iter().all(|p| (30000..=32767).contains(p)) && ports[0] != ports[1],
        "{ports:?}"
    );
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    // Tables with the columns kube-apiserver prints for these kinds.
    let table = k.run(&["get", "svc", "web-np"]);
    assert!(
        table.contains("TYPE") && table.contains("CLUSTER-IP") && table.contains("PORT(S)"),
        "{table}"
    );
    assert!(table.contains(&format!("80:{}/TCP", ports[0])), "{table}");
    let table = k.run(&["get", "deployments"]);
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(table.contains("0/1"), "{table}");
    // A field selector names only fields the kind is selectable by.
    let out = k
        .command(&[
            "get",
            "deployments",
            "--field-selector",
            "status.phase=Running",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("field label not supported: status.phase"),
        "{err}"
    );
    assert!(
        k.run(&[
            "get",
            "deployments",
            "--field-selector",
            "metadata.name=web",
            "-o",
            "name"
        ])
        .contains("deployment.apps/web")
    );
    let wide = k.run(&["get", "deployments", "-o", "wide"]);
    assert!(
        wide.contains("nginx:1.27") && wide.contains("app=web"),
        "{wide}"
    );

    let bad = k.file("bad.yaml", BAD_DEPLOYMENT);
    let out = k
        .command(&["apply", "--server-side", "-f", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"The Deployment "bad" is invalid"#)
            && err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    let listed = k.run(&["get", "deployments", "-o", "name"]);
    assert!(!listed.contains("bad"), "nothing stored: {listed}");

    // kubectl asks for strict field validation: a typo is refused, not silently dropped.
    let typo = k.file(
        "typo.yaml",
        &DEPLOYMENT
            .replace("metadata: {name: web}", "metadata: {name: typo}\nspec_: {}")
            .replace("spec_: {}\nspec:\n", "spec:\n  replica: 3\n"),
    );
    let out = k.command(&["apply", "-f", &typo]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(r#"strict decoding error: unknown field "spec.replica""#),
        "{err}"
    );
    // With --validate=warn it is dropped with a warning; with false, silently.
    let out = k
        .command(&["apply", "--validate=warn", "-f", &typo])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(r#"unknown field "spec.replica""#), "{err}");
    let stored: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "typo", "-o", "json"])).unwrap();
    assert!(stored["spec"].get("replica").is_none(), "{stored}");
    assert_eq!(stored["spec"]["replicas"], 1);
}

/// Strategic merge patch as kubectl sends it: `set image` changes one container and keeps the rest,
/// a client-side `apply` that drops an env var sends `$setElementOrder` and `$patch: delete`
/// directives that are carried out and never stored; a custom resource refuses it (415).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_strategic_merge_patches_merge_lists_by_key() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);
    let with_env = DEPLOYMENT.replace(
        "ports: [{containerPort: 80}]",
        "ports: [{containerPort: 80}]\n        env: [{name: A, value: '1'}, {name: B, value: '2'}]\n      - {name: sidecar, image: envoy:1}",
    );
    let file = k.file("deploy.yaml", &with_env);
    k.run(&["apply", "-f", &file]);
    k.run(&["set", "image", "deployment/web", "web=nginx:1.28"]);
    let d: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "web", "-o", "json"])).unwrap();
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert_eq!(containers[0]["image"], "nginx:1.28");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    assert_eq!(containers[1]["name"], "sidecar");

    let without_a = with_env.replace("{name: A, value: '1'}, ", "");
    let file = k.file("deploy.yaml", &without_a);
    k.run(&["apply", "-f", &file]);
    let d: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "B", "value": "2"}])
    );
    assert!(!d.to_string().contains("$patch"), "{d}");
    assert!(!d.to_string().contains("$setElementOrder"), "{d}");

    let crd = k.file("crd.yaml", CRD);
    k.run(&["apply", "--server-side", "-f", &crd]);
    let gadget = k.file("gadget.yaml", GADGET);
    k.run(&["apply", "--server-side", "-f", &gadget]);
    let out = k
        .command(&[
            "patch",
            "gadget",
            "g1",
            "--type=strategic",
            "-p",
            r#"{"spec":{"color":"red"}}"#,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the body of the request was in an unknown format"),
        "{err}"
    );
    k.run(&[
        "patch",
        "gadget",
        "g1",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"red"}}"#,
    ]);
}

/// A custom resource goes through its CRD's structural schema as on a cluster: defaults applied,
/// unknown fields refused under kubectl's strict validation, rules checked with kube-openapi's
/// messages. The CRD is the example's, as a user applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_custom_resources_are_defaulted_pruned_and_validated_by_their_schema() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/webapp-crd.yaml"
    );
    // The first apply may find the kind before the CRD is served, as on a cluster; the second
    // creates what is left.
    let _ = k.command(&["apply", "-f", example]).output().unwrap();
    k.run(&["apply", "-f", example]);

    let minimal = k.file(
        "minimal.yaml",
        "apiVersion: examples.capstan.dev/v1alpha1\nkind: WebApp\nmetadata: {name: minimal}\nspec: {image: 'nginx:1.27', port: 80}\n",
    );
    k.run(&["apply", "-f", &minimal]);
    let w: Value =
        serde_json::from_str(&k.run(&["get", "webapp", "minimal", "-o", "json"])).unwrap();
    assert_eq!(w["spec"]["replicas"], 1, "the schema's default: {w}");
    let explained = k.run(&["explain", "webapp.spec"]);
    assert!(
        explained.contains("KIND:       WebApp")
            && explained.contains("port")
            && explained.contains("replicas")
            && explained.contains("-required-"),
        "{explained}"
    );

    let invalid = k.file(
        "invalid.yaml",
        "apiVersion: examples.capstan.dev/v1alpha1\nkind: WebApp\nmetadata: {name: invalid}\nspec: {port: 0, replicas: -2}\n",
    );
    let out = k.command(&["apply", "-f", &invalid]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    for expected in [
        r#"The WebApp "invalid" is invalid"#,
        "spec.image: Required value",
        "spec.port: Invalid value: 0: spec.port in body should be greater than or equal to 1",
        "spec.replicas: Invalid value: -2: spec.replicas in body should be greater than or equal to 0",
    ] {
        assert!(err.contains(expected), "{expected} not in {err}");
    }

    let typo = k.file(
        "typo.yaml",
        "apiVersion: examples.capstan.dev/v1alpha1\nkind: WebApp\nmetadata: {name: typo}\nspec: {image: x, port: 80, replcas: 3}\n",
    );
    let out = k.command(&["apply", "-f", &typo]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(r#"unknown field "spec.replcas""#),
        "{err}"
    );
    k.run(&["apply", "--validate=false", "-f", &typo]);
    let w: Value = serde_json::from_str(&k.run(&["get", "webapp", "typo", "-o", "json"])).unwrap();
    assert!(w["spec"].get("replcas").is_none(), "pruned: {w}");
}

/// The object as stored, without what differs between two creations (identity, times,
/// allocations, generated labels), for comparing a protobuf-created object with a JSON-created one.
fn comparable(mut object: Value) -> Value {
    let metadata = object["metadata"].take();
    object["metadata"] = serde_json::json!({
        "name": metadata["name"],
        "labels": metadata["labels"],
        "annotations": metadata["annotations"],
    });
    let job = object["kind"] == "Job";
    // A Job's selector, pod labels and (copied from them) labels carry its uid.
    if job && let Some(labels) = object["metadata"]["labels"].as_object_mut() {
        labels.retain(|k, _| !k.contains("controller-uid"));
    }
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        // A pod's API access volume has a generated name (the ServiceAccount admission plugin).
        let generated = |name: &mut Value| {
            if name
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
            {
                *name = Value::from("kube-api-access-*");
            }
        };
        for volume in spec
            .get_mut("volumes")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            generated(&mut volume["name"]);
        }
        for container in spec
            .get_mut("containers")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for mount in container
                .get_mut("volumeMounts")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                generated(&mut mount["name"]);
            }
        }
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
        // A Job's selector and pod labels carry its uid.
        if job {
            spec.remove("selector");
            if let Some(labels) = spec
                .get_mut("template")
                .and_then(|t| t["metadata"]["labels"].as_object_mut())
            {
                labels.retain(|k, _| !k.contains("controller-uid"));
            }
        }
    }
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("startTime");
    }
    object
}

/// The `Content-Type` of the body kubectl sent (its first POST or PUT), from its `-v=8` log
/// (`"Request" verb="POST" ... headers=<` in v1.33, `] POST https://...` then one line per header
/// in v1.32).
fn sent_content_type(stderr: &str) -> Option<String> {
    let writes = |l: &&str| {
        ["verb=\"POST\"", "verb=\"PUT\"", "] POST http", "] PUT http"]
            .iter()
            .any(|w| l.contains(w))
    };
    stderr
        .lines()
        .skip_while(|l| !writes(l))
        .filter_map(|l| l.split_once("Content-Type: "))
        .map(|(_, t)| t.trim().to_string())
        .next()
}

/// kubectl's typed commands (`create <kind>`, `run`, `expose`) send protobuf bodies: each object is
/// stored as the same command's object sent as JSON (`--dry-run=client -o json`, then
/// `kubectl create -f`) is stored, defaults included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_commands_send_protobuf_read_as_their_json() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);
    k.run(&["create", "namespace", "viajson"]);
    let ns: Value =
        serde_json::from_str(&k.run(&["get", "namespace", "viajson", "-o", "json"])).unwrap();
    assert_eq!(ns["status"]["phase"], "Active", "{ns}");

    // (`run` and `expose` send JSON from kubectl v1.33 on, the others protobuf; the kubectl
    // dispatcher may pick v1.32 or v1.33)
    let commands: &[(&str, &[&str])] = &[
        (
            "deployment/web",
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx",
                "--replicas=2",
                "--port=8080",
            ],
        ),
        (
            "deployment/zero",
            &[
                "create",
                "deployment",
                "zero",
                "--image=nginx:1.27",
                "--replicas=0",
            ],
        ),
        (
            "configmap/settings",
            &[
                "create",
                "configmap",
                "settings",
                "--from-literal=a=1",
                "--from-literal=empty=",
            ],
        ),
        (
            "secret/password",
            &[
                "create",
                "secret",
                "generic",
                "password",
                "--from-literal=password=s3cr3t",
            ],
        ),
        (
            "secret/registry",
            &[
                "create",
                "secret",
                "docker-registry",
                "registry",
                "--docker-server=registry.example",
                "--docker-username=u",
                "--docker-password=p",
            ],
        ),
        (
            "service/web-np",
            &["create", "service", "nodeport", "web-np", "--tcp=80:8080"],
        ),
        (
            "service/web-lb",
            &[
                "create",
                "service",
                "loadbalancer",
                "web-lb",
                "--tcp=80:8080",
            ],
        ),
        (
            "service/web-svc",
            &[
                "expose",
                "deployment",
                "web",
                "--port=80",
                "--target-port=8080",
                "--name=web-svc",
            ],
        ),
        (
            "service/web-ip",
            &["create", "service", "clusterip", "web-ip", "--tcp=443:8443"],
        ),
        (
            "service/web-ext",
            &[
                "create",
                "service",
                "externalname",
                "web-ext",
                "--external-name=example.com",
            ],
        ),
        (
            "pod/shell",
            &[
                "run",
                "shell",
                "--image=busybox",
                "--restart=Never",
                "--labels=app=shell",
                "--env=A=1",
                "--",
                "sleep",
                "3600",
            ],
        ),
        (
            "job/once",
            &[
                "create",
                "job",
                "once",
                "--image=busybox",
                "--",
                "echo",
                "hi",
            ],
        ),
        (
            "serviceaccount/robot",
            &["create", "serviceaccount", "robot"],
        ),
        (
            "role/reader",
            &[
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=configmaps,deployments.apps",
            ],
        ),
        (
            "rolebinding/reads",
            &[
                "create",
                "rolebinding",
                "reads",
                "--role=reader",
                "--serviceaccount=default:robot",
                "--user=alice",
            ],
        ),
    ];
    for (object, command) in commands {
        // Flags go before a `--`, which starts the container's command.
        let with = |flags: &[&'static str]| {
            let mut args = command.to_vec();
            let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
            args.splice(at..at, flags.iter().copied());
            args
        };
        let args = with(&["-v=8"]);
        let out = k.command(&args).output().expect("run kubectl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {command:?}: {stderr}");
        let sent = sent_content_type(&stderr);
        if ["run", "expose"].contains(&command[0]) {
            assert!(sent.is_some(), "{stderr}");
        } else {
            assert_eq!(
                sent.as_deref(),
                Some("application/vnd.kubernetes.protobuf"),
                "kubectl {command:?} sent: {stderr}"
            );
        }
        // The same object as JSON, created in another namespace.
        let json = k.file(
            "object.json",
            &k.run(&with(&["--dry-run=client", "-o", "json", "-n", "viajson"])),
        );
        let out = k
            .command(&["create", "-f", &json, "-v=8"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "create -f {object}: {stderr}");
        assert_eq!(
            sent_content_type(&stderr).as_deref(),
            Some("application/json")
        );

        let via_protobuf: Value =
            serde_json::from_str(&k.run(&["get", object, "-o", "json"])).unwrap();
        let via_json: Value =
            serde_json::from_str(&k.run(&["get", object, "-n", "viajson", "-o", "json"])).unwrap();
        assert_eq!(
            comparable(via_protobuf.clone()),
            comparable(via_json),
            "{object}"
        );
        assert_eq!(via_protobuf["metadata"]["namespace"], "default");
    }

    // What Kubernetes stores for some of them, checked on its own.
    let get = |object: &str| -> Value {
        serde_json::from_str(&k.run(&["get", object, "-o", "json"])).unwrap()
    };
    let web = get("deployment/web");
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(web["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(web["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(web["spec"]["revisionHistoryLimit"], 10);
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    // An image without a tag is `latest`: always pulled.
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["ports"][0]["protocol"], "TCP");
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    // An explicit zero of a pointer field is kept, not defaulted.
    let zero = get("deployment/zero");
    assert_eq!(zero["spec"]["replicas"], 0);
    assert_eq!(
        zero["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let settings = get("configmap/settings");
    assert_eq!(settings["data"], serde_json::json!({"a": "1", "empty": ""}));
    let password = get("secret/password");
    assert_eq!(password["data"]["password"], "czNjcjN0");
    assert_eq!(password["type"], "Opaque");
    let registry = get("secret/registry");
    assert_eq!(registry["type"], "kubernetes.io/dockerconfigjson");
    assert!(
        registry["data"][".dockerconfigjson"].is_string(),
        "{registry}"
    );
    let np = get("service/web-np");
    assert_eq!(np["spec"]["type"], "NodePort");
    assert_eq!(np["spec"]["ports"][0]["port"], 80);
    assert_eq!(np["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(np["spec"]["ports"][0]["protocol"], "TCP");
    let node_port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{np}");
    assert_eq!(np["spec"]["sessionAffinity"], "None");
    let exposed = get("service/web-svc");
    assert_eq!(exposed["spec"]["type"], "ClusterIP");
    assert_eq!(
        exposed["spec"]["selector"],
        serde_json::json!({"app": "web"})
    );
    assert_eq!(exposed["spec"]["ports"][0]["targetPort"], 8080);
    assert!(exposed["spec"]["clusterIP"].is_string(), "{exposed}");
    let external = get("service/web-ext");
    assert_eq!(external["spec"]["type"], "ExternalName");
    assert_eq!(external["spec"]["externalName"], "example.com");
    let job = get("job/once");
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(job["spec"]["parallelism"], 1);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    let shell = get("pod/shell");
    assert_eq!(
        shell["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep", "3600"])
    );
    assert_eq!(shell["spec"]["restartPolicy"], "Never");
    let reader = get("role/reader");
    assert_eq!(
        reader["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        ])
    );
    let reads = get("rolebinding/reads");
    assert_eq!(reads["roleRef"]["name"], "reader");
    assert_eq!(
        reads["subjects"].as_array().map(Vec::len),
        Some(2),
        "{reads}"
    );

    // Cluster-scoped kinds.
    k.run(&[
        "create",
        "clusterrole",
        "watcher",
        "--verb=watch",
        "--resource=pods",
    ]);
    k.run(&[
        "create",
        "clusterrolebinding",
        "watchers",
        "--clusterrole=watcher",
        "--group=ops",
    ]);
    let watcher = get("clusterrole/watcher");
    assert_eq!(
        watcher["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]}])
    );
    let watchers = get("clusterrolebinding/watchers");
    assert_eq!(
        watchers["subjects"],
        serde_json::json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}])
    );

    // `kubectl replace -f` of a built-in kind.
    let mut changed = web.clone();
    changed["spec"]["replicas"] = 3.into();
    let file = k.file("web.json", &changed.to_string());
    k.run(&["replace", "-f", &file]);
    let replaced = get("deployment/web");
    assert_eq!(replaced["spec"]["replicas"], 3);
    assert_eq!(replaced["metadata"]["generation"], 2);
}

/// `kubectl apply --server-side` by two field managers, each with its own container of one
/// Deployment: both containers stay, with ownership per container; the same container's image
/// from the other manager is refused with kube-apiserver's conflict message, and `--force-conflicts`
/// takes it over; a manager dropping its container removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_merges_containers_of_two_managers() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);
    let web = k.file("web.yaml", DEPLOYMENT);
    k.run(&[
        "apply",
        "--server-side",
        "--field-manager=team/a",
        "-f",
        &web,
    ]);
    let sidecar = k.file(
        "sidecar.yaml",
        &DEPLOYMENT.replace(
            "      - name: web\n        image: nginx:1.27\n        ports: [{containerPort: 80}]",
            "      - {name: sidecar, image: envoy:1}",
        ),
    );
    k.run(&[
        "apply",
        "--server-side",
        "--field-manager=team/b",
        "-f",
        &sidecar,
    ]);
    let d: Value = serde_json::from_str(&k.run(&[
        "get",
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "sidecar"]);
    let a = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "team/a")
        .unwrap();
    assert_eq!(a["operation"], "Apply");
    assert_eq!(
        a["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"],
        serde_json::json!({"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {},
            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}})
    );

    let takeover = k.file(
        "takeover.yaml",
        &DEPLOYMENT.replace("nginx:1.27", "nginx:1.28"),
    );
    let out = k
        .command(&[
            "apply",
            "--server-side",
            "--field-manager=team/b",
            "-f",
            &takeover,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"team/a\": .spec.template.spec.containers[name=\"web\"].image"
        ),
        "{err}"
    );
    k.run(&[
        "apply",
        "--server-side",
        "--field-manager=team/b",
        "--force-conflicts",
        "-f",
        &takeover,
    ]);
    // team/b's configuration now names web (no sidecar): the sidecar goes, web has team/b's image.
    let d: Value =
        serde_json::from_str(&k.run(&["get", "deployment", "web", "-o", "json"])).unwrap();
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["image"], "nginx:1.28");
}

/// kubectl 1.32 asks `/api` and `/apis` for aggregated discovery (apidiscovery.k8s.io/v2) and,
/// given it, never fetches a group version's resource list: `kubectl api-resources` is complete
/// (built-in kinds, a CRD's kind with its short name, the review kinds) from those two requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_every_resource_from_the_aggregated_documents() {
    let (server, _client) = common::start().await;
    let k = Kubectl::for_server(&server);
    let crd = k.file("crd.yaml", CRD);
    k.run(&["apply", "-f", &crd]);

    // A fresh cache, so discovery is read from the server.
    let fresh = Kubectl::for_server(&server);
    let out = fresh
        .command(&["api-resources", "-v=6"])
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let gets: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("GET") || l.contains("verb=\"GET\""))
        .collect();
    assert!(
        gets.iter().any(|l| l.contains("/apis?")) && gets.iter().any(|l| l.contains("/api?")),
        "{stderr}"
    );
    assert!(
        !gets
            .iter()
            .any(|l| l.contains("/apis/apps/v1") || l.contains("/api/v1?")),
        "a group version's list was fetched, so aggregated discovery was not used:\n{stderr}"
    );
    for (name, short) in [("gadgets", Some("gd")), ("deployments", Some("deploy"))] {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{stdout}"));
        if let Some(short) = short {
            assert!(row.split_whitespace().any(|c| c == short), "{row}");
        }
    }
    for name in [
        "configmaps",
        "namespaces",
        "selfsubjectaccessreviews",
        "leases",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing:\n{stdout}"
        );
    }
    // And what it discovered works.
    let gadget = fresh.file("gadget.yaml", GADGET);
    fresh.run(&["apply", "-f", &gadget]);
    assert!(fresh.run(&["get", "gd", "-o", "name"]).contains("g1"));
    server.shutdown().await.unwrap();
}

/// Polls `kubectl args` (its stdout) until `done` holds, for at most 30 s.
fn eventually(kubectl: &Kubectl, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = kubectl.run(args);
        if done(&out) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {out} after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// With `--simulate-workloads`, a new user's Deployment behaves as on a cluster: kubectl creates
/// it (a protobuf body), it gets a ReplicaSet and Pods that become Running and Ready, `kubectl
/// rollout status` finishes, `kubectl scale` and `kubectl set image` roll it, and deleting it
/// takes its ReplicaSets and Pods along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rolls_out_simulated_workloads() {
    let (server, _client) = common::start_with(
        capstan_apiserver::ApiServer::builder()
            .simulate_workloads(Some(std::time::Duration::from_millis(300))),
    )
    .await;
    let k = Kubectl::for_server(&server);
    let rollout = ["rollout", "status", "deployment/web", "--timeout=60s"];
    let items_of = |json: &str| -> Vec<Value> {
        serde_json::from_str::<Value>(json).unwrap()["items"]
            .as_array()
            .unwrap()
            .clone()
    };

    k.run(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    let out = k.run(&rollout);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = items_of(&k.run(&["get", "pods", "-l", "app=web", "-o", "json"]));
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Running");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert!(
            pod["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            "{pod}"
        );
    }
    let table = k.run(&["get", "deployment", "web"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("2/2")),
        "{table}"
    );

    k.run(&["scale", "deployment", "web", "--replicas=3"]);
    let out = k.run(&rollout);
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(
        &k,
        &["get", "pods", "-l", "app=web", "-o", "name"],
        "three pods",
        |o| o.lines().count() == 3,
    );

    k.run(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    let out = k.run(&rollout);
    assert!(out.contains("successfully rolled out"), "{out}");
    let sets = items_of(&k.run(&["get", "replicasets", "-l", "app=web", "-o", "json"]));
    let mut replicas: Vec<(String, i64)> = sets
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                rs["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    replicas.sort();
    assert_eq!(replicas, [("1".to_owned(), 0), ("2".to_owned(), 3)]);
    eventually(
        &k,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        "three pods of the new image",
        |o| o.split_whitespace().collect::<Vec<_>>() == ["nginx:1.27"; 3],
    );

    k.run(&["delete", "deployment", "web"]);
    eventually(
        &k,
        &["get", "replicasets,pods", "-l", "app=web", "-o", "name"],
        "the ReplicaSets and Pods collected",
        |o| o.trim().is_empty(),
    );
    server.shutdown().await.unwrap();
}

/// The "issue a certificate for a Kubernetes API client" task end to end with RBAC on: a
/// CertificateSigningRequest created and approved with kubectl, issued by the simulated
/// controllers' signer from the server's authority, then a kubeconfig with that certificate and
/// its key authenticates as the subject's common name and organizations, which RBAC then judges;
/// a certificate another authority signed is refused; the authority, kept in the state directory,
/// outlives a restart with what it issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_issued_client_certificates_authenticate_as_their_subject() {
    use base64::Engine as _;
    use rcgen::{CertificateParams, DnType, KeyPair};
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let state = tempfile::tempdir().unwrap();
    let builder = || {
        capstan_apiserver::ApiServer::builder()
            .authorization(capstan_apiserver::authz::Mode::Rbac)
            .state_dir(Some(state.path().to_path_buf()))
            .simulate_workloads(Some(std::time::Duration::from_millis(100)))
    };
    let (server, _client) = common::start_with(builder()).await;
    let admin = Kubectl::for_server(&server);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "jane");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "dev");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let manifest = admin.file(
        "csr.yaml",
        &format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: jane\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [client auth]\n",
            b64(&request)
        ),
    );
    admin.run(&["create", "-f", &manifest]);
    assert_eq!(
        admin.run(&["certificate", "approve", "jane"]).trim(),
        "certificatesigningrequest.certificates.k8s.io/jane approved"
    );
    let mut certificate = String::new();
    for _ in 0..50 {
        certificate = admin.run(&["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"]);
        if !certificate.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!certificate.is_empty(), "the request was never issued");

    // A kubeconfig with the issued certificate and its key, no token.
    let kubeconfig = |url: &str, ca_pem: &str, cert_b64: &str, key_pem: &str| {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {cert_b64}\n    client-key-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: default}}\ncurrent-context: c\n",
            b64(ca_pem),
            b64(key_pem)
        )
    };
    let ca = server.authority().certificate_pem().to_owned();
    let config = |cert_b64: &str, key_pem: &str| kubeconfig(&server.url(), &ca, cert_b64, key_pem);
    let jane = admin.file("jane.yaml", &config(&certificate, &key.serialize_pem()));
    let as_jane = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", jane.as_str()];
        all.extend_from_slice(args);
        admin.command(&all).output().expect("run kubectl")
    };
    let out = as_jane(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"jane ["dev","system:authenticated"]"#
    );
    let out = as_jane(&["get", "pods"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{out:?}"
    );

    // The same subject, signed by an authority of its own: the handshake fails, nothing is served.
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other.distinguished_name.push(DnType::CommonName, "jane");
    other.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = other.self_signed(&other_key).unwrap().pem();
    let forger = admin.file(
        "forger.yaml",
        &config(&b64(&forged), &other_key.serialize_pem()),
    );
    let mut all = vec!["--kubeconfig", forger.as_str()];
    all.extend_from_slice(&["auth", "whoami"]);
    let out = admin.command(&all).output().expect("run kubectl");
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{out:?}");
    server.shutdown().await.unwrap();

    // Restarted on the same state, the server is the same authority: the client's trust and
    // the certificate it issued still hold (at the new address).
    let (server, _client) = common::start_with(builder()).await;
    assert_eq!(server.authority().certificate_pem(), ca);
    let again = admin.file(
        "again.yaml",
        &kubeconfig(&server.url(), &ca, &certificate, &key.serialize_pem()),
    );
    let out = admin
        .command(&[
            "--kubeconfig",
            again.as_str(),
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .expect("run kubectl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "jane", "{out:?}");
    server.shutdown().await.unwrap();
}
