use super::*;
use crate::contract::{AccessRule, Verb};
use crate::plugin::PluginSettings;
use k8s_openapi::api::rbac::v1::PolicyRule;

fn webapp() -> Gvk {
    Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp")
}

fn deployment() -> Gvk {
    Gvk::new("apps", "v1", "Deployment")
}

fn service() -> Gvk {
    Gvk::new("", "v1", "Service")
}

fn reconciler(name: &str, manifest: Manifest) -> PluginAccess {
    PluginAccess {
        name: name.to_owned(),
        version: "0.1.0".to_owned(),
        world: World::ReconcilerPlugin,
        manifest,
        scope: ScopeGrant::default(),
    }
}

fn webapp_manifest() -> Manifest {
    let mut m = Manifest::new("webapp", "0.1.0");
    m.watches = vec![webapp()];
    m.owns = vec![deployment(), service()];
    m
}

fn derive(plugins: Vec<PluginAccess>) -> Rbac {
    plugins
        .into_iter()
        .fold(Rbac::builder(Identities::default()), RbacBuilder::plugin)
        .build()
}

/// The verbs `rules` grant on every object of `resource` in `group`, sorted.
fn verbs(rules: &[PolicyRule], group: &str, resource: &str) -> Vec<String> {
    let mut v: Vec<String> = rules
        .iter()
        .filter(|r| {
            r.resource_names.is_none()
                && r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
        })
        .flat_map(|r| r.verbs.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn cluster_role_rules<'a>(rbac: &'a Rbac, name: &str) -> Option<&'a [PolicyRule]> {
    rbac.objects().find_map(|o| match o {
        Object::ClusterRole(r) if r.metadata.name.as_deref() == Some(name) => r.rules.as_deref(),
        _ => None,
    })
}

fn role_rules<'a>(rbac: &'a Rbac, namespace: &str, name: &str) -> Option<&'a [PolicyRule]> {
    rbac.objects().find_map(|o| match o {
        Object::Role(r)
            if r.metadata.name.as_deref() == Some(name)
                && r.metadata.namespace.as_deref() == Some(namespace) =>
        {
            r.rules.as_deref()
        }
        _ => None,
    })
}

fn roles_named<'a>(rbac: &'a Rbac, name: &'a str) -> impl Iterator<Item = &'a Role> + 'a {
    rbac.objects().filter_map(move |o| match o {
        Object::Role(r) if r.metadata.name.as_deref() == Some(name) => Some(r),
        _ => None,
    })
}

const WEBAPP_ROLE: &str = "capstan-system:capstan-plugin-webapp";

#[test]
fn a_reconciler_without_filters_gets_a_cluster_role_of_exactly_its_requests() {
    let rbac = derive(vec![reconciler("webapp", webapp_manifest())]);
    let rules = cluster_role_rules(&rbac, WEBAPP_ROLE).expect("a ClusterRole");
    let group = "examples.capstan.dev";
    assert_eq!(
        verbs(rules, group, "webapps"),
        sorted(&["get", "list", "watch"])
    );
    assert_eq!(verbs(rules, group, "webapps/status"), ["patch"]);
    assert_eq!(
        verbs(rules, group, "webapps/finalizers"),
        ["update"],
        "owner references with blockOwnerDeletion"
    );
    let own = sorted(&["get", "list", "watch", "create", "patch", "delete"]);
    assert_eq!(verbs(rules, "apps", "deployments"), own);
    assert_eq!(verbs(rules, "", "services"), own);
    assert_eq!(verbs(rules, "apps", "deployments/status"), ["patch"]);
    let resources: usize = rules
        .iter()
        .map(|r| r.resources.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(resources, 7, "nothing else: {rules:?}");
    assert_eq!(roles_named(&rbac, WEBAPP_ROLE).count(), 0, "no Roles");
    let binding = rbac
        .objects()
        .find_map(|o| match o {
            Object::ClusterRoleBinding(b) if b.metadata.name.as_deref() == Some(WEBAPP_ROLE) => {
                Some(b)
            }
            _ => None,
        })
        .expect("a ClusterRoleBinding");
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        (
            "ServiceAccount",
            "capstan-plugin-webapp",
            Some("capstan-system")
        )
    );
}

#[test]
fn the_host_watches_every_plugin_kind_and_impersonates_only_its_plugins_in_its_namespace() {
    let mut handler = reconciler(
        "deployment-handler",
        Manifest::new("deployment-handler", "1"),
    );
    handler.world = World::HandlerPlugin;
    handler.manifest.watches = vec![deployment()];
    let rbac = derive(vec![reconciler("webapp", webapp_manifest()), handler]);
    let watch = cluster_role_rules(&rbac, "capstan-system:capstan:watch").expect("informers");
    let read = sorted(&["get", "list", "watch"]);
    assert_eq!(verbs(watch, "examples.capstan.dev", "webapps"), read);
    assert_eq!(verbs(watch, "apps", "deployments"), read);
    assert_eq!(verbs(watch, "", "services"), read);
    assert!(
        cluster_role_rules(&rbac, "capstan-system:capstan:impersonate").is_none(),
        "impersonation is a Role in the host's namespace, not a ClusterRole"
    );
    let imp = role_rules(
        &rbac,
        "capstan-system",
        "capstan-system:capstan:impersonate",
    )
    .expect("an impersonation Role");
    assert_eq!(imp.len(), 1);
    assert_eq!(imp[0].verbs, ["impersonate"]);
    assert_eq!(
        imp[0].resources.as_deref(),
        Some(&["serviceaccounts".to_owned()][..])
    );
    assert_eq!(
        imp[0].resource_names.as_deref(),
        Some(
            &[
                "capstan-plugin-deployment-handler".to_owned(),
                "capstan-plugin-webapp".to_owned()
            ][..]
        )
    );
    let events = cluster_role_rules(&rbac, "capstan-system:capstan").expect("the host's base");
    assert_eq!(
        verbs(events, "events.k8s.io", "events"),
        sorted(&["create", "patch"])
    );
    let leases = role_rules(&rbac, "capstan-system", "capstan-system:capstan").expect("leases");
    assert_eq!(
        verbs(leases, "coordination.k8s.io", "leases"),
        sorted(&["get", "list", "create", "update"])
    );
    // A handler: its watched kind, nothing else.
    let handler = cluster_role_rules(&rbac, "capstan-system:capstan-plugin-deployment-handler")
        .expect("the handler's ClusterRole");
    assert_eq!(handler.len(), 1);
    assert_eq!(verbs(handler, "apps", "deployments"), read);
}

#[test]
fn without_plugins_there_is_no_impersonation_at_all() {
    let rbac = derive(Vec::new());
    let impersonating = rbac.objects().any(|o| {
        let rules = match o {
            Object::Role(r) => r.rules.clone(),
            Object::ClusterRole(r) => r.rules.clone(),
            _ => None,
        };
        rules
            .iter()
            .flatten()
            .any(|r| r.verbs.iter().any(|v| v == "impersonate"))
    });
    assert!(
        !impersonating,
        "an impersonate rule without names is every account"
    );
    let kinds: Vec<String> = rbac.objects().map(Object::describe).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount capstan-system/capstan",
            "ClusterRole capstan-system:capstan",
            "ClusterRoleBinding capstan-system:capstan",
            "Role capstan-system/capstan-system:capstan",
            "RoleBinding capstan-system/capstan-system:capstan",
        ]
    );
    let plugins_only = Rbac::builder(Identities::default()).base(false).build();
    assert!(plugins_only.documents().is_empty());
}

#[test]
fn an_event_filter_limits_the_plugin_to_roles_in_its_namespaces() {
    let mut m = webapp_manifest();
    m.events.namespaces = vec!["prod".into(), "staging".into()];
    let rbac = derive(vec![reconciler("webapp", m)]);
    assert!(
        cluster_role_rules(&rbac, WEBAPP_ROLE).is_none(),
        "namespaced kinds in named namespaces: no ClusterRole"
    );
    let namespaces: Vec<&str> = roles_named(&rbac, WEBAPP_ROLE)
        .filter_map(|r| r.metadata.namespace.as_deref())
        .collect();
    assert_eq!(namespaces, ["prod", "staging"]);
    let prod = role_rules(&rbac, "prod", WEBAPP_ROLE).unwrap();
    assert_eq!(
        verbs(prod, "examples.capstan.dev", "webapps/status"),
        ["patch"]
    );
    assert_eq!(verbs(prod, "apps", "deployments").len(), 6);
    // The host's informers still list every namespace.
    let watch = cluster_role_rules(&rbac, "capstan-system:capstan:watch").unwrap();
    assert_eq!(verbs(watch, "apps", "deployments").len(), 3);
}

#[test]
fn granted_namespaces_widen_reads_and_writes_but_not_the_reconciled_objects() {
    let mut m = webapp_manifest();
    m.events.namespaces = vec!["prod".into()];
    let mut p = reconciler("webapp", m);
    p.scope.namespaces = ["shared".to_owned()].into();
    let rbac = derive(vec![p.clone()]);
    let shared = role_rules(&rbac, "shared", WEBAPP_ROLE).expect("a Role in the granted namespace");
    assert_eq!(verbs(shared, "apps", "deployments").len(), 6);
    assert_eq!(
        verbs(shared, "examples.capstan.dev", "webapps"),
        sorted(&["get", "list", "watch"]),
        "it may read WebApps there"
    );
    assert!(
        verbs(shared, "examples.capstan.dev", "webapps/status").is_empty(),
        "but reconciles none there"
    );
    p.scope.namespaces = [ALL_NAMESPACES.to_owned()].into();
    let rbac = derive(vec![p]);
    let everywhere = cluster_role_rules(&rbac, WEBAPP_ROLE).expect("\"*\": a ClusterRole");
    assert_eq!(verbs(everywhere, "apps", "deployments").len(), 6);
    assert!(verbs(everywhere, "examples.capstan.dev", "webapps/status").is_empty());
    let prod = role_rules(&rbac, "prod", WEBAPP_ROLE).unwrap();
    assert_eq!(
        verbs(prod, "examples.capstan.dev", "webapps/status"),
        ["patch"]
    );
}

#[test]
fn cluster_scoped_kinds_need_the_cluster_scoped_grant() {
    let namespace = Gvk::new("", "v1", "Namespace");
    let mut m = webapp_manifest();
    m.owns.push(namespace.clone());
    let mut p = reconciler("webapp", m);
    let rbac = derive(vec![p.clone()]);
    let rules = cluster_role_rules(&rbac, WEBAPP_ROLE).unwrap();
    assert!(verbs(rules, "", "namespaces").is_empty(), "not granted");
    p.scope.cluster_scoped = true;
    let rbac = derive(vec![p]);
    let rules = cluster_role_rules(&rbac, WEBAPP_ROLE).unwrap();
    assert_eq!(verbs(rules, "", "namespaces").len(), 6);
}

#[test]
fn access_rules_finalizers_and_pod_logs() {
    let cluster = Gvk::new("examples.capstan.dev", "v1alpha1", "Cluster");
    let mut m = Manifest::new("infra-cluster", "0.1.0");
    m.watches = vec![Gvk::new("examples.capstan.dev", "v1alpha1", "InfraCluster")];
    m.owns = vec![Gvk::new("", "v1", "ConfigMap")];
    m.access = vec![
        AccessRule::new(cluster.clone(), vec![Verb::Get, Verb::List, Verb::Patch]),
        AccessRule::new(Gvk::new("", "v1", "Secret"), vec![Verb::Get, Verb::Update]),
        AccessRule::new(Gvk::new("batch", "v1", "Job"), vec![Verb::Delete]),
    ];
    m.finalizer = true;
    m.pod_logs = true;
    let rbac = derive(vec![reconciler("infra-cluster", m.clone())]);
    let rules = cluster_role_rules(&rbac, "capstan-system:capstan-plugin-infra-cluster").unwrap();
    let g = "examples.capstan.dev";
    assert_eq!(
        verbs(rules, g, "infraclusters"),
        sorted(&["get", "list", "watch", "patch"]),
        "the finalizer is a merge patch"
    );
    assert_eq!(
        verbs(rules, g, "clusters"),
        sorted(&["get", "list", "create", "patch"]),
        "read, and apply (a patch that may create); no watch, no delete"
    );
    assert_eq!(
        verbs(rules, g, "clusters/status"),
        ["patch"],
        "status to the owner"
    );
    assert_eq!(
        verbs(rules, "", "secrets"),
        ["get", "list"],
        "update grants nothing"
    );
    assert_eq!(verbs(rules, "batch", "jobs"), sorted(&["get", "delete"]));
    assert_eq!(verbs(rules, "", "pods"), ["get"]);
    assert_eq!(verbs(rules, "", "pods/log"), ["get"]);
    // Configuration turns pod logs off: no pods at all.
    let narrowed = PluginSettings {
        pod_logs: Some(false),
        ..PluginSettings::default()
    }
    .narrow(&m);
    let rbac = derive(vec![reconciler("infra-cluster", narrowed)]);
    let rules = cluster_role_rules(&rbac, "capstan-system:capstan-plugin-infra-cluster").unwrap();
    assert!(verbs(rules, "", "pods").is_empty());
    assert!(verbs(rules, "", "pods/log").is_empty());
}

#[test]
fn an_allow_list_without_delete_removes_delete_and_pruning() {
    let narrowed = PluginSettings {
        allow: Some(vec![
            AccessRule::new(webapp(), vec![Verb::Get, Verb::List, Verb::Watch]),
            AccessRule::new(
                deployment(),
                vec![Verb::Get, Verb::List, Verb::Watch, Verb::Patch],
            ),
        ]),
        ..PluginSettings::default()
    }
    .narrow(&webapp_manifest());
    let rbac = derive(vec![reconciler("webapp", narrowed)]);
    let rules = cluster_role_rules(&rbac, WEBAPP_ROLE).unwrap();
    assert_eq!(
        verbs(rules, "apps", "deployments"),
        sorted(&["get", "list", "watch", "create", "patch"])
    );
    assert!(
        verbs(rules, "", "services").is_empty(),
        "not allowed at all"
    );
}

#[test]
fn the_yaml_stream_reads_back_as_the_objects_and_says_what_it_guessed() {
    let mut m = webapp_manifest();
    m.owns.push(Gvk::new("y.dev", "v1", "Policy"));
    // YAML 1.1 would read `on` as a boolean: it must stay a namespace name.
    m.events.namespaces = vec!["on".into()];
    let rbac = derive(vec![reconciler("webapp", m)]);
    let yaml = rbac.to_yaml().unwrap();
    assert!(
        yaml.contains("GUESSED: y.dev/v1/Policy") && yaml.contains("policies.y.dev"),
        "{yaml}"
    );
    let mut bytes = yaml.as_bytes();
    let docs: Vec<serde_json::Value> = serde_saphyr::read::<_, serde_json::Value>(&mut bytes)
        .collect::<Result<_, _>>()
        .unwrap();
    let objects: Vec<serde_json::Value> = rbac
        .objects()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    assert_eq!(docs, objects);
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "on"),
        "{yaml}"
    );
    assert_eq!(docs[0]["apiVersion"], "v1");
    assert_eq!(docs[0]["kind"], "ServiceAccount");
}

#[test]
fn manifests_the_host_applies_are_granted_by_name() {
    let objects: Vec<DynamicObject> = [
        serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "webapps.examples.capstan.dev"}}),
        serde_json::json!({"apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp", "metadata": {"name": "shop"}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    let rbac = Rbac::builder(Identities::new("ops"))
        .base(false)
        .applies(objects)
        .build();
    let crds = cluster_role_rules(&rbac, "ops:capstan:manifests").unwrap();
    assert_eq!(crds.len(), 1);
    assert_eq!(
        crds[0].resource_names.as_deref(),
        Some(&["webapps.examples.capstan.dev".to_owned()][..])
    );
    assert_eq!(crds[0].verbs, ["create", "patch"]);
    let default = role_rules(&rbac, "default", "ops:capstan:manifests").unwrap();
    assert_eq!(
        default[0].resource_names.as_deref(),
        Some(&["shop".to_owned()][..])
    );
}
