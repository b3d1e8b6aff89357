//! The plugin boundary holds: a reconciler that returns whatever its object tells it (the
//! `attacker` guest, built on the raw WIT bindings) changes and reads nothing outside its grant.
//! Each test lists every Namespace, Secret, ConfigMap, Service and Deployment before and after
//! the attack and asserts that nothing changed, and that the attacked object's conditions name
//! the refusal (plugin, entry, field).
#![allow(clippy::unwrap_used)]

use crate::support::eventually;
use capstan::informer::Informers;
use capstan::plugin::{Plugin, Runtime};
use capstan::reconcile::{Controller, ControllerConfig, ScopeGrant};
use capstan_apiserver::RunningServer;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The attacker's namespace.
const HOME: &str = "team-a";
/// Another team's namespace.
const VICTIM: &str = "team-b";

struct Env {
    server: RunningServer,
    client: kube::Client,
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        plural,
    )
}

fn attacks_ar() -> ApiResource {
    ar("test.capstan.dev", "v1", "Attack", "attacks")
}

impl Env {
    /// A server with the Attack CRD, namespaces `team-a` and `team-b`, and in each a Secret
    /// `creds`, a ConfigMap `unrelated`, a Deployment `other-team` and a Service `web` that
    /// someone else made, and a Pod `web-0` with a log.
    async fn start() -> Self {
        let server = crate::support::apiserver().await;
        let client = server.client().unwrap();
        let env = Self { server, client };
        env.create(
            &ar(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
            ),
            None,
            json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "attacks.test.capstan.dev"},
                "spec": {
                    "group": "test.capstan.dev", "scope": "Namespaced",
                    "names": {"plural": "attacks", "singular": "attack", "kind": "Attack"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true}}}]
                }
            }),
        )
        .await;
        for ns in [HOME, VICTIM] {
            env.create(
                &ar("", "v1", "Namespace", "namespaces"),
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .await;
            env.create(
                &ar("", "v1", "Secret", "secrets"),
                Some(ns),
                json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                    "stringData": {"password": format!("hunter2-{ns}")}
                }),
            )
            .await;
            env.create(
                &ar("", "v1", "ConfigMap", "configmaps"),
                Some(ns),
                json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"},
                    "data": {"owner": "someone else"}
                }),
            )
            .await;
            env.create(&ar("apps", "v1", "Deployment", "deployments"), Some(ns), json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other-team"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                    "template": {"metadata": {"labels": {"app": "other"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
            }))
            .await;
            env.create(
                &ar("", "v1", "Service", "services"),
                Some(ns),
                json!({
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"ports": [{"port": 80}]}
                }),
            )
            .await;
            env.create(
                &ar("", "v1", "Pod", "pods"),
                Some(ns),
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "web-0", "labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}
                }),
            )
            .await;
            env.server
                .set_pod_log(ns, "web-0", "c", format!("secret log line of {ns}\n"));
        }
        env
    }

    async fn create(&self, ar: &ApiResource, namespace: Option<&str>, obj: Value) {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        };
        api.create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap();
    }

    fn attacks(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), HOME, &attacks_ar())
    }

    fn configmaps(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ns,
            &ar("", "v1", "ConfigMap", "configmaps"),
        )
    }

    /// Every Namespace, Secret, ConfigMap, Service, Deployment and Pod, by kind, namespace and
    /// name: uid, resourceVersion, owner references, finalizers.
    async fn snapshot(&self) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        for (group, kind, plural) in [
            ("", "Namespace", "namespaces"),
            ("", "Secret", "secrets"),
            ("", "ConfigMap", "configmaps"),
            ("", "Service", "services"),
            ("apps", "Deployment", "deployments"),
            ("", "Pod", "pods"),
        ] {
            let version = "v1";
            let api: Api<DynamicObject> =
                Api::all_with(self.client.clone(), &ar(group, version, kind, plural));
            for o in api.list(&ListParams::default()).await.unwrap() {
                let m = &o.metadata;
                all.insert(
                    format!(
                        "{kind} {}/{}",
                        m.namespace.clone().unwrap_or_default(),
                        m.name.clone().unwrap_or_default()
                    ),
                    json!({
                        "uid": m.uid, "resourceVersion": m.resource_version,
                        "ownerReferences": m.owner_references, "finalizers": m.finalizers,
                        "deletionTimestamp": m.deletion_timestamp,
                    }),
                );
            }
        }
        all
    }

    async fn controller(&self, plugin: Plugin, scope: ScopeGrant) -> Controller {
        let config = ControllerConfig {
            retry: crate::support::fast_retry(),
            scope,
            ..ControllerConfig::default()
        };
        Controller::start(
            plugin,
            &Informers::new(self.client.clone()),
            self.client.clone(),
            config,
        )
        .await
        .unwrap()
    }

    /// Create the Attack `name` with `spec`.
    async fn attack(&self, name: &str, spec: Value) {
        self.attacks()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "test.capstan.dev/v1", "kind": "Attack",
                    "metadata": {"name": name, "namespace": HOME},
                    "spec": spec,
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }

    /// The condition `t` of the Attack `name`, once `ok` holds for it.
    async fn condition_until(&self, name: &str, t: &str, ok: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("condition {t} of attack {name}"), async || {
            let o = serde_json::to_value(self.attacks().get(name).await.ok()?).ok()?;
            let c = o
                .pointer("/status/conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == t)?
                .clone();
            ok(&c).then_some(c)
        })
        .await
    }

    /// The message of `ApplyReady` once the plan of `name` was refused, after asserting that the
    /// refusal is an authorization (`AuthValid=False`) or invalid-spec (`ConfigValid=False`) one.
    async fn refused(&self, name: &str, category: &str) -> String {
        let apply = self
            .condition_until(name, "ApplyReady", |c| c["status"] == "False")
            .await;
        let (t, reason) = match category {
            "Auth" => ("AuthValid", "AuthFailed"),
            _ => ("ConfigValid", "ConfigInvalid"),
        };
        let c = self
            .condition_until(name, t, |c| c["status"] == "False")
            .await;
        assert_eq!(c["reason"], reason, "{c}");
        apply["message"].as_str().unwrap().to_owned()
    }

    async fn shutdown(self) {
        self.server.shutdown().await.unwrap();
    }
}

async fn attacker(name: &str) -> Plugin {
    Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&crate::support::guest(name))
        .await
        .unwrap()
}

fn configmap(namespace: Option<&str>, name: &str) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}})
}

fn reference(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    json!({"group": group, "version": "v1", "kind": kind, "namespace": namespace, "name": name})
}

/// Run one attack per `(name, spec, category, expected words in the refusal)` and check that
/// nothing outside the grant changed.
async fn refused_all(attacks: Vec<(&str, Value, &str, Vec<&str>)>) {
    let env = Env::start().await;
    let controller = env
        .controller(attacker("attacker").await, ScopeGrant::default())
        .await;
    let before = env.snapshot().await;
    for (name, spec, category, words) in attacks {
        env.attack(name, spec).await;
        let message = env.refused(name, category).await;
        for w in words {
            assert!(
                message.contains(w),
                "attack {name}: {w:?} not in {message:?}"
            );
        }
        assert!(message.contains("attacker"), "names the plugin: {message}");
    }
    assert_eq!(
        env.snapshot().await,
        before,
        "nothing outside the grant changed"
    );
    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_with_separators_traversal_or_empty_segments_refuse_the_whole_plan() {
    refused_all(vec![
        (
            "slash-namespace",
            json!({"plan": [
                {"apply": configmap(Some(HOME), "fine")},
                {"delete": reference("apps", "Deployment", Some("team-b/deployments/other-team?x="), "y")},
            ]}),
            "InvalidSpec",
            vec!["plan entry 1", "namespace", "team-b/deployments"],
        ),
        (
            "empty-name",
            json!({"plan": [{"delete": reference("", "ConfigMap", Some(HOME), "/")}]}),
            "InvalidSpec",
            vec!["plan entry 0", "name"],
        ),
        (
            "blank-name",
            json!({"plan": [{"delete": reference("", "ConfigMap", Some(HOME), "")}]}),
            "InvalidSpec",
            vec!["name", "must not be empty"],
        ),
        (
            "query-name",
            json!({"plan": [{"apply": configmap(None, "x?dryRun=All")}]}),
            "InvalidSpec",
            vec!["metadata.name"],
        ),
        (
            "dotdot-name",
            json!({"plan": [{"apply": configmap(None, "..")}]}),
            "InvalidSpec",
            vec!["metadata.name"],
        ),
        (
            "traversal-version",
            json!({"plan": [{"apply": {"apiVersion": "v1/../../api/v1/namespaces/team-b/secrets",
                "kind": "ConfigMap", "metadata": {"name": "x"}}}]}),
            "InvalidSpec",
            vec!["apiVersion"],
        ),
        (
            "traversal-namespace",
            json!({"plan": [{"apply": configmap(Some(".."), "x")}]}),
            "InvalidSpec",
            vec!["metadata.namespace"],
        ),
        (
            "bad-kind",
            json!({"plan": [{"delete": {"group": "", "version": "v1", "kind": "ConfigMap/x", "namespace": HOME, "name": "unrelated"}}]}),
            "InvalidSpec",
            vec!["gvk.kind"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_objects_namespace_or_to_cluster_scoped_kinds_are_refused() {
    refused_all(vec![
        (
            "other-namespace-apply",
            json!({"plan": [{"apply": configmap(Some(VICTIM), "planted")}]}),
            "Auth",
            vec!["namespace \"team-b\" is outside"],
        ),
        (
            "other-namespace-delete",
            json!({"plan": [{"delete": reference("apps", "Deployment", Some(VICTIM), "other-team")}]}),
            "Auth",
            vec!["outside"],
        ),
        (
            "delete-namespace",
            json!({"plan": [{"delete": reference("", "Namespace", None, VICTIM)}]}),
            "Auth",
            vec!["cluster-scoped"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_plugin_did_not_create_are_never_deleted_adopted_taken_over_or_finalized() {
    refused_all(vec![
        (
            "delete-unrelated",
            json!({"plan": [{"delete": reference("", "ConfigMap", Some(HOME), "unrelated")}]}),
            "Auth",
            vec!["may delete only objects"],
        ),
        (
            "delete-other-team",
            json!({"plan": [{"delete": reference("apps", "Deployment", Some(HOME), "other-team")}]}),
            "Auth",
            vec!["may delete only objects"],
        ),
        (
            "adopt-unrelated",
            json!({"plan": [{"apply": configmap(None, "unrelated")}]}),
            "Auth",
            vec!["never adopts"],
        ),
        (
            "take-over-deployment",
            json!({"plan": [{"apply": {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "other-team"}, "spec": {"replicas": 0}}}]}),
            "Auth",
            vec!["never adopts"],
        ),
        (
            "update-unmanaged",
            json!({"plan": [{"applyWithoutOwnerRef": configmap(None, "unrelated")}]}),
            "Auth",
            vec!["updates only objects it created"],
        ),
        (
            "plant-finalizer",
            json!({"plan": [{"apply": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fresh", "finalizers": ["example.com/hold"]}}}]}),
            "Auth",
            vec!["metadata.finalizers"],
        ),
        (
            "re-own",
            json!({"plan": [{"applyWithoutOwnerRef": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fresh", "ownerReferences": [{"apiVersion": "v1",
                    "kind": "Namespace", "name": HOME, "uid": "x", "controller": true}]}}}]}),
            "Auth",
            vec!["metadata.ownerReferences"],
        ),
        (
            "status-of-unrelated",
            json!({"plan": [{"applyWithoutOwnerRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "other-team"}, "status": {"replicas": 42}}}]}),
            "Auth",
            vec!["status goes only to"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_plan_still_works_inside_the_grant() {
    let env = Env::start().await;
    let controller = env
        .controller(attacker("attacker").await, ScopeGrant::default())
        .await;
    env.attack(
        "honest",
        json!({"plan": [{"apply": configmap(None, "honest-child")}, {"apply": configmap(Some(HOME), "honest-2")}]}),
    )
    .await;
    env.condition_until("honest", "Ready", |c| c["status"] == "True")
        .await;
    let child = env.configmaps(HOME).get("honest-child").await.unwrap();
    assert_eq!(
        child.metadata.owner_references.unwrap()[0].kind,
        "Attack",
        "applied with the owner reference"
    );
    // Deleting its own child is allowed.
    env.attacks()
        .patch(
            "honest",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"plan": [
                {"apply": configmap(None, "honest-child")},
                {"delete": reference("", "ConfigMap", Some(HOME), "honest-2")}
            ]}})),
        )
        .await
        .unwrap();
    eventually("honest-2 deleted", async || {
        env.configmaps(HOME)
            .get_opt("honest-2")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_namespace_may_be_written() {
    let env = Env::start().await;
    let grant = ScopeGrant {
        namespaces: [VICTIM.to_owned()].into(),
        cluster_scoped: false,
    };
    let controller = env.controller(attacker("attacker").await, grant).await;
    env.attack(
        "granted",
        json!({"plan": [{"applyWithoutOwnerRef": configmap(Some(VICTIM), "granted-child")}]}),
    )
    .await;
    eventually("the child in the granted namespace", async || {
        env.configmaps(VICTIM)
            .get_opt("granted-child")
            .await
            .unwrap()
    })
    .await;
    // Even there, no owner reference across namespaces (the garbage collector would delete it).
    env.attack(
        "granted-owned",
        json!({"plan": [{"apply": configmap(Some(VICTIM), "orphan")}]}),
    )
    .await;
    let message = env.refused("granted-owned", "Auth").await;
    assert!(
        message.contains("owner reference cannot point"),
        "{message}"
    );
    assert!(
        env.configmaps(VICTIM)
            .get_opt("orphan")
            .await
            .unwrap()
            .is_none()
    );
    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// What the `Read<i>` components of the Attack `name` report.
async fn reads(env: &Env, name: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = env
            .condition_until(name, &format!("Read{i}Ready"), |_| true)
            .await;
        out.push(c["message"].as_str().unwrap().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_pod_logs_stay_in_the_objects_namespace_and_family() {
    let env = Env::start().await;
    let controller = env
        .controller(attacker("attacker").await, ScopeGrant::default())
        .await;
    let before = env.snapshot().await;
    env.attack(
        "snoop",
        json!({"reads": [
            {"get": reference("", "Secret", Some(VICTIM), "creds")},
            {"list": {"group": "", "version": "v1", "kind": "Secret"}},
            {"get": reference("", "Secret", Some("team-b/secrets/creds"), "x")},
            {"log": {"namespace": VICTIM, "pod": "web-0", "container": "c"}},
            {"log": {"namespace": HOME, "pod": "web-0", "container": "c"}},
            {"log": {"namespace": HOME, "pod": "../../../team-b/secrets/creds", "container": "c"}},
            {"log": {"namespace": "team-b/secrets/creds?", "pod": "x"}},
            {"get": reference("", "Secret", Some(HOME), "creds")},
        ]}),
    )
    .await;
    let r = reads(&env, "snoop", 8).await;
    assert!(
        r[0].starts_with("refused:") && r[0].contains("outside"),
        "{}",
        r[0]
    );
    assert!(
        r[1].starts_with("ok:") && r[1].contains(HOME) && !r[1].contains(VICTIM),
        "a list without namespace stays home: {}",
        r[1]
    );
    assert!(r[2].starts_with("refused:"), "{}", r[2]);
    assert!(
        r[3].starts_with("refused:") && r[3].contains("outside"),
        "{}",
        r[3]
    );
    assert!(
        r[4].starts_with("refused:") && r[4].contains("neither the reconciled object"),
        "a pod the object does not own or select: {}",
        r[4]
    );
    assert!(r[5].starts_with("refused:"), "{}", r[5]);
    assert!(r[6].starts_with("refused:"), "{}", r[6]);
    assert!(r[7].starts_with("ok:") && r[7].contains(HOME), "{}", r[7]);
    for leak in &r[..7] {
        assert!(
            !leak.contains("hunter2-team-b") && !leak.contains("secret log line"),
            "{leak}"
        );
    }
    assert_eq!(env.snapshot().await, before);
    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reconciler_of_the_same_kind_never_prunes_the_firsts_children() {
    let env = Env::start().await;
    let first = env
        .controller(attacker("attacker").await, ScopeGrant::default())
        .await;
    env.attack(
        "shared",
        json!({"plans": {
            "attacker": [{"apply": configmap(None, "first-child")}],
            "attacker-twin": [{"apply": configmap(None, "twin-child")}],
        }}),
    )
    .await;
    let child = eventually("the first plugin's child", async || {
        env.configmaps(HOME).get_opt("first-child").await.unwrap()
    })
    .await;
    let uid = child.metadata.uid.clone();
    let twin = env
        .controller(attacker("attacker-twin").await, ScopeGrant::default())
        .await;
    eventually("the twin's child", async || {
        env.configmaps(HOME).get_opt("twin-child").await.unwrap()
    })
    .await;
    // The twin plans something else: its next reconcile prunes its own child, and (the reconcile
    // before it being over) would have pruned the first plugin's child by now.
    env.attacks()
        .patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"plans": {
                "attacker-twin": [{"apply": configmap(None, "twin-child-2")}]
            }}})),
        )
        .await
        .unwrap();
    eventually("the twin's first child pruned", async || {
        let gone = env
            .configmaps(HOME)
            .get_opt("twin-child")
            .await
            .unwrap()
            .is_none();
        let next = env
            .configmaps(HOME)
            .get_opt("twin-child-2")
            .await
            .unwrap()
            .is_some();
        (gone && next).then_some(())
    })
    .await;
    let still = env.configmaps(HOME).get("first-child").await.unwrap();
    assert_eq!(still.metadata.uid, uid, "never deleted (and recreated)");
    twin.shutdown(Duration::from_secs(5)).await;
    first.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusal_is_reported_as_an_event_naming_plugin_entry_and_field() {
    let env = Env::start().await;
    let controller = env
        .controller(attacker("attacker").await, ScopeGrant::default())
        .await;
    env.attack(
        "evented",
        json!({"plan": [{"delete": reference("", "ConfigMap", Some(HOME), "/")}]}),
    )
    .await;
    env.refused("evented", "InvalidSpec").await;
    let events: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        HOME,
        &ar("events.k8s.io", "v1", "Event", "events"),
    );
    let note = eventually("an event about the refusal", async || {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .into_iter()
            .filter_map(|e| e.data["note"].as_str().map(str::to_owned))
            .find(|n| n.contains("plan entry 0"))
    })
    .await;
    assert!(note.contains("attacker") && note.contains("name"), "{note}");
    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}
