//! Authorization with `--authorization rbac` through real HTTP and kube-rs clients: refusals in
//! kube-apiserver's words, Roles and bindings scoped as Kubernetes scopes them, impersonation only
//! as far as it is granted, the escalation check, and the review APIs.

use crate::common;

use capstan_apiserver::authz::Mode;
use capstan_apiserver::{ApiServer, RunningServer, user};
use common::{api_code, send};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::{Value, json};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const IMPERSONATOR: &str = "impersonator-token";

/// A server with RBAC on, users alice (group dev), bob and impersonator, and a namespace `team`.
async fn rbac_server() -> (RunningServer, Client) {
    let (server, admin) = common::start_with(
        ApiServer::builder()
            .authorization(Mode::Rbac)
            .token_user(ALICE, user::named("alice", &["dev"]))
            .token_user(BOB, user::named("bob", &[]))
            .token_user(IMPERSONATOR, user::named("impersonator", &[])),
    )
    .await;
    create(
        &server,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "team"}}),
    )
    .await;
    (server, admin)
}

/// Creates `object` at `collection` as the admin.
async fn create(server: &RunningServer, collection: &str, object: Value) {
    let (code, body) = as_token(
        server,
        server.token(),
        "POST",
        collection,
        &[],
        &object.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{collection}: {body}");
}

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

fn roles(ns: &str) -> String {
    format!("{RBAC}/namespaces/{ns}/roles")
}

fn role_bindings(ns: &str) -> String {
    format!("{RBAC}/namespaces/{ns}/rolebindings")
}

fn config_maps(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

fn status(err: &kube::Error) -> &kube::core::Status {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request as the user of `token`, with extra headers.
async fn as_token(
    server: &RunningServer,
    token: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let mut all = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let (code, text) = send(server, method, path, &all, body.as_bytes()).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
    (code, value)
}

#[tokio::test]
async fn refusals_read_as_kube_apiservers_and_change_nothing() {
    let (server, admin) = rbac_server().await;
    let bob = server.client_with_token(BOB).unwrap();
    let pods: Api<ConfigMap> = Api::namespaced(bob.clone(), "default");
    let err = pods.list(&ListParams::default()).await.unwrap_err();
    let st = status(&err);
    assert_eq!(st.code, 403);
    assert_eq!(st.reason, "Forbidden");
    assert_eq!(
        st.message,
        "configmaps is forbidden: User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "sneaky"}})).unwrap();
    let err = pods.create(&PostParams::default(), &cm).await.unwrap_err();
    assert_eq!(
        status(&err).message,
        "configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let err = pods.get("kube-root").await.unwrap_err();
    assert_eq!(
        status(&err).message,
        "configmaps \"kube-root\" is forbidden: User \"bob\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(
        api_code(
            &pods
                .watch(&WatchParams::default(), "0")
                .await
                .err()
                .expect("watch refused")
        ),
        403
    );
    let deploys: Api<Deployment> = Api::all(bob.clone());
    assert_eq!(
        status(&deploys.list(&ListParams::default()).await.unwrap_err()).message,
        "deployments.apps is forbidden: User \"bob\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
    );
    let stored: Api<ConfigMap> = Api::namespaced(admin, "default");
    assert!(
        stored
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was created"
    );
    // Non-resource paths: discovery is open to every authenticated user, others are not.
    let (code, _) = as_token(&server, BOB, "GET", "/version", &[], "").await;
    assert_eq!(code, 200);
    let (code, _) = as_token(&server, BOB, "GET", "/apis/apps/v1", &[], "").await;
    assert_eq!(code, 200);
    let (code, body) = as_token(&server, BOB, "GET", "/metrics", &[], "").await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "forbidden: User \"bob\" cannot get path \"/metrics\""
    );
    // Without an accepted token: 401, whatever else the request carries.
    let (code, body) = as_token(
        &server,
        "nope",
        "GET",
        "/api/v1/namespaces",
        &[("Impersonate-User", "alice")],
        "",
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
    let (code, _) = send(&server, "GET", "/version", &[], b"").await;
    assert_eq!(code, 401);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn roles_and_bindings_grant_only_where_they_are() {
    let (server, _admin) = rbac_server().await;
    create(&server, &roles("team"), json!({"metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})).await;
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "bob-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    // A binding in default may not use team's Role: it names a Role "cm-reader" of default.
    create(
        &server,
        &role_bindings("default"),
        json!({"metadata": {"name": "bob-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    // A RoleBinding to a ClusterRole grants it in its own namespace only.
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "dev-views"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "Group", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    create(
        &server,
        &config_maps("team"),
        json!({"metadata": {"name": "one"}}),
    )
    .await;
    create(
        &server,
        &config_maps("team"),
        json!({"metadata": {"name": "two"}}),
    )
    .await;

    let bob = server.client_with_token(BOB).unwrap();
    let team: Api<ConfigMap> = Api::namespaced(bob.clone(), "team");
    assert_eq!(
        team.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    assert!(team.get("one").await.is_ok());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "three"}})).unwrap();
    assert_eq!(
        api_code(&team.create(&PostParams::default(), &cm).await.unwrap_err()),
        403
    );
    let default: Api<ConfigMap> = Api::namespaced(bob.clone(), "default");
    assert_eq!(
        status(&default.list(&ListParams::default()).await.unwrap_err()).message,
        "configmaps is forbidden: User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\": RBAC: role.rbac.authorization.k8s.io \"cm-reader\" not found"
    );
    let everywhere: Api<ConfigMap> = Api::all(bob);
    assert_eq!(
        api_code(&everywhere.list(&ListParams::default()).await.unwrap_err()),
        403
    );

    let alice = server.client_with_token(ALICE).unwrap();
    let in_team: Api<Deployment> = Api::namespaced(alice.clone(), "team");
    assert!(
        in_team.list(&ListParams::default()).await.is_ok(),
        "view is aggregated from system:aggregate-to-view"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(alice.clone(), "team");
    assert_eq!(
        api_code(&secrets.list(&ListParams::default()).await.unwrap_err()),
        403,
        "view does not read secrets"
    );
    let in_default: Api<Deployment> = Api::namespaced(alice, "default");
    assert_eq!(
        api_code(&in_default.list(&ListParams::default()).await.unwrap_err()),
        403
    );

    // resourceNames: one object, and a list or watch narrowed to it by a field selector.
    create(&server, &roles("default"), json!({"metadata": {"name": "just-one"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get", "list", "watch"]}]})).await;
    create(
        &server,
        &role_bindings("default"),
        json!({"metadata": {"name": "alice-one"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "just-one"},
        "subjects": [{"kind": "User", "name": "alice"}]}),
    )
    .await;
    create(
        &server,
        &config_maps("default"),
        json!({"metadata": {"name": "one"}}),
    )
    .await;
    create(
        &server,
        &config_maps("default"),
        json!({"metadata": {"name": "two"}}),
    )
    .await;
    let alice_cms: Api<ConfigMap> =
        Api::namespaced(server.client_with_token(ALICE).unwrap(), "default");
    assert!(alice_cms.get("one").await.is_ok());
    assert_eq!(api_code(&alice_cms.get("two").await.unwrap_err()), 403);
    assert_eq!(
        api_code(&alice_cms.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    let only_one = alice_cms
        .list(&ListParams::default().fields("metadata.name=one"))
        .await
        .unwrap();
    assert_eq!(only_one.items.len(), 1);
    assert_eq!(
        api_code(
            &alice_cms
                .list(&ListParams::default().fields("metadata.name=two"))
                .await
                .unwrap_err()
        ),
        403
    );
    let (code, _) = as_token(&server, ALICE, "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Done%2Cmetadata.name%3Dtwo", &[], "").await;
    assert_eq!(code, 200, "a conjunction narrows, never widens");

    // watch without list: what is authorized as a watch is served as one, and only that.
    create(
        &server,
        &roles("default"),
        json!({"metadata": {"name": "watch-only"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}]}),
    )
    .await;
    create(
        &server,
        &role_bindings("default"),
        json!({"metadata": {"name": "bob-watches"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "watch-only"},
        "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    for (query, want) in [
        ("watch=false", 403),
        ("watch=0", 403),
        ("watch=", 403),
        ("watch=yes&timeoutSeconds=1", 200),
        ("watch=1&timeoutSeconds=1", 200),
    ] {
        let (code, body) = as_token(
            &server,
            BOB,
            "GET",
            &format!("{}?{query}", config_maps("default")),
            &[],
            "",
        )
        .await;
        assert_eq!(code, want, "{query}: {body}");
    }
    server.shutdown().await.unwrap();
}

/// An admission policy's `authorizer` asks RBAC as the requester (or a service account): a
/// user who may create but not delete ConfigMaps is denied by a policy that requires both, one
/// who may do both passes, and the reasons name the binding that allowed.
#[tokio::test]
async fn admission_policies_ask_rbac_as_the_requester() {
    let (server, _admin) = rbac_server().await;
    for (name, verbs) in [
        ("cm-writer", json!(["create"])),
        ("cm-deleter", json!(["delete"])),
    ] {
        create(
            &server,
            &roles("team"),
            json!({"metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]}),
        )
        .await;
    }
    let subject = |kind: &str, name: &str| json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"});
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "writers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"},
        "subjects": [subject("User", "bob"), subject("Group", "dev")]}),
    )
    .await;
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "deleters"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-deleter"},
        "subjects": [subject("Group", "dev")]}),
    )
    .await;
    let policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
    let bindings = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings";
    let rules = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
        "operations": ["CREATE"], "resources": ["configmaps"]}]});
    create(&server, policies, json!({"metadata": {"name": "deleters-only"}, "spec": {
        "matchConstraints": rules,
        "validations": [{"expression": "authorizer.group('').resource('configmaps').namespace(request.namespace).check('delete').allowed()",
            "message": "only those who may delete ConfigMaps may create them"}]}})).await;
    create(&server, policies, json!({"metadata": {"name": "explain"}, "spec": {
        "matchConstraints": rules,
        "validations": [{"expression": "false",
            "messageExpression": "authorizer.requestResource.check('create').reason() + '; builder creates: ' + string(authorizer.serviceAccount('team', 'builder').group('').resource('configmaps').namespace('team').check('create').allowed()) + '; healthz: ' + string(authorizer.path('/healthz').check('get').allowed()) + '; as builder: ' + string(authorizer.serviceAccount('team', 'builder').path('/healthz').check('get').allowed())"}]}})).await;
    for (name, action) in [("deleters-only", "Deny"), ("explain", "Warn")] {
        create(
            &server,
            bindings,
            json!({"metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": [action]}}),
        )
        .await;
    }
    // The service account `team/builder` may create ConfigMaps in team.
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "builder-writes"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"},
        "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": "team"}]}),
    )
    .await;

    async fn post(server: &RunningServer, token: &str, name: &str) -> (u16, String, String) {
        let auth = format!("Bearer {token}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let body = json!({"metadata": {"name": name}}).to_string();
        common::exchange(
            server,
            "POST",
            &config_maps("team"),
            &headers,
            body.as_bytes(),
        )
        .await
    }
    let (code, _, body) = post(&server, BOB, "from-bob").await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("ValidatingAdmissionPolicy 'deleters-only' with binding 'deleters-only' denied request: only those who may delete ConfigMaps may create them"),
        "{body}"
    );
    let (code, head, body) = post(&server, ALICE, "from-alice").await;
    assert_eq!(code, 201, "{body}");
    let warning = common::header(&head, "Warning").unwrap_or_default();
    assert!(
        warning.contains(r#"Validation failed for ValidatingAdmissionPolicy 'explain' with binding 'explain': RBAC: allowed by RoleBinding \"writers/team\" of Role \"cm-writer\" to Group \"dev\"; builder creates: true; healthz: true; as builder: false"#),
        "{head}"
    );
    // The admin (system:masters) passes both checks, with no reason.
    let (code, head, body) = post(&server, server.token(), "from-admin").await;
    assert_eq!(code, 201, "{body}");
    let warning = common::header(&head, "Warning").unwrap_or_default();
    assert!(
        warning.contains("'explain': ; builder creates: true"),
        "{head}"
    );
}

#[tokio::test]
async fn impersonation_is_only_what_is_granted() {
    let (server, _admin) = rbac_server().await;
    create(&server, &format!("{RBAC}/clusterroles"), json!({"metadata": {"name": "impersonate-some"},
        "rules": [
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["alice"]},
            {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["dev", "system:authenticated"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
        ]})).await;
    create(&server, &role_bindings("team"), json!({"metadata": {"name": "impersonator-sa"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonate-some"},
        "subjects": [{"kind": "User", "name": "impersonator"}]})).await;
    create(&server, &format!("{RBAC}/clusterrolebindings"), json!({"metadata": {"name": "impersonator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonate-some"},
        "subjects": [{"kind": "User", "name": "impersonator"}]})).await;
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "alice-views"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}]}),
    )
    .await;
    let list_team = "/apis/apps/v1/namespaces/team/deployments";

    // Without the impersonate permission.
    let (code, body) = as_token(
        &server,
        BOB,
        "GET",
        list_team,
        &[("Impersonate-User", "alice")],
        "",
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    // Allowed to impersonate alice, and then only alice's rights (header names in any case).
    for header in ["Impersonate-User", "impersonate-user", "IMPERSONATE-USER"] {
        let (code, body) = as_token(
            &server,
            IMPERSONATOR,
            "GET",
            list_team,
            &[(header, "alice")],
            "",
        )
        .await;
        assert_eq!(code, 200, "{header}: {body}");
    }
    let (code, body) = as_token(
        &server,
        IMPERSONATOR,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments",
        &[("Impersonate-User", "alice")],
        "",
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "deployments.apps is forbidden: User \"alice\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""
    );
    // Not someone else, nor a group not granted, nor a group without a user.
    let (code, body) = as_token(
        &server,
        IMPERSONATOR,
        "GET",
        list_team,
        &[("Impersonate-User", "Alice")],
        "",
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some(
                "users \"Alice\" is forbidden: User \"impersonator\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
            )
        )
    );
    let (code, body) = as_token(
        &server,
        IMPERSONATOR,
        "GET",
        list_team,
        &[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "system:masters"),
        ],
        "",
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some(
                "groups \"system:masters\" is forbidden: User \"impersonator\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
            )
        )
    );
    let (code, body) = as_token(
        &server,
        IMPERSONATOR,
        "GET",
        list_team,
        &[("Impersonate-Group", "dev")],
        "",
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["message"],
        "Internal error occurred: requested [Group \"dev\"] without impersonating a user"
    );
    let (code, body) = as_token(
        &server,
        IMPERSONATOR,
        "GET",
        list_team,
        &[("Impersonate-User", "alice"), ("Impersonate-Uid", "1")],
        "",
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some(
                "uids.authentication.k8s.io \"1\" is forbidden: User \"impersonator\" cannot impersonate resource \"uids\" in API group \"authentication.k8s.io\" at the cluster scope"
            )
        )
    );
    // ServiceAccounts: by namespace and name; impersonating one does not carry the impersonator's rights.
    let review = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let (code, body) = as_token(
        &server,
        IMPERSONATOR,
        "POST",
        review,
        &[("Impersonate-User", "system:serviceaccount:team:robot")],
        "{}",
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["status"]["userInfo"]["username"],
        "system:serviceaccount:team:robot"
    );
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    let (code, _) = as_token(
        &server,
        IMPERSONATOR,
        "GET",
        list_team,
        &[("Impersonate-User", "system:serviceaccount:team:robot")],
        "",
    )
    .await;
    assert_eq!(code, 403);
    // The admin (system:masters) may impersonate anyone, and gets only their rights.
    let (code, body) = as_token(
        &server,
        server.token(),
        "POST",
        review,
        &[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Extra-Scopes", "view"),
        ],
        "{}",
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "bob", "groups": ["dev", "system:authenticated"], "extra": {"scopes": ["view"]}})
    );
    let (code, _) = as_token(
        &server,
        server.token(),
        "GET",
        "/api/v1/namespaces",
        &[("Impersonate-User", "bob")],
        "",
    )
    .await;
    assert_eq!(code, 403);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn granting_needs_holding_or_escalate_and_bind() {
    let (server, _admin) = rbac_server().await;
    create(&server, &roles("team"), json!({"metadata": {"name": "rbac-writer"},
        "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
        ]})).await;
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "bob-writes"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-writer"},
        "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    let bob = server.client_with_token(BOB).unwrap();
    let team_roles: Api<Role> = Api::namespaced(bob.clone(), "team");
    let role = |name: &str, resource: &str| -> Role {
        serde_json::from_value(json!({"metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get"]}]}))
        .unwrap()
    };
    team_roles
        .create(&PostParams::default(), &role("cm-get", "configmaps"))
        .await
        .expect("held permissions can be granted");
    let err = team_roles
        .create(&PostParams::default(), &role("secret-get", "secrets"))
        .await
        .unwrap_err();
    assert_eq!(status(&err).code, 403);
    assert_eq!(
        status(&err).message,
        "roles.rbac.authorization.k8s.io \"secret-get\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    let bindings: Api<RoleBinding> = Api::namespaced(bob, "team");
    let binding = |name: &str, kind: &str, role: &str| -> RoleBinding {
        serde_json::from_value(json!({"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "User", "name": "carol"}]}))
        .unwrap()
    };
    bindings
        .create(
            &PostParams::default(),
            &binding("carol-cm", "Role", "cm-get"),
        )
        .await
        .expect("a held role can be bound");
    let err = bindings
        .create(
            &PostParams::default(),
            &binding("carol-admin", "ClusterRole", "cluster-admin"),
        )
        .await
        .unwrap_err();
    assert_eq!(status(&err).code, 403);
    assert!(
        status(&err).message.starts_with(
            "rolebindings.rbac.authorization.k8s.io \"carol-admin\" is forbidden: user \"bob\""
        ),
        "{}",
        status(&err).message
    );
    // With `bind` on cluster-admin in team, bob may bind it there (and only there).
    create(&server, &roles("team"), json!({"metadata": {"name": "bind-admin"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["cluster-admin"]}]})).await;
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "bob-binds"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bind-admin"},
        "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    bindings
        .create(
            &PostParams::default(),
            &binding("carol-admin", "ClusterRole", "cluster-admin"),
        )
        .await
        .expect("bind allows it");
    // A binding is never repointed at another role, whoever asks.
    let auth = format!("Bearer {}", server.token());
    let (code, body) = send(
        &server,
        "PATCH",
        &format!("{}/carol-cm", role_bindings("team")),
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/merge-patch+json"),
        ],
        br#"{"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}"#,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("cannot change roleRef"), "{body}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn reviews_answer_for_the_caller() {
    let (server, admin) = rbac_server().await;
    let bob = server.client_with_token(BOB).unwrap();
    let ssar = |verb: &str, resource: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                namespace: Some("default".into()),
                ..ResourceAttributes::default()
            }),
            non_resource_attributes: None,
        },
        ..SelfSubjectAccessReview::default()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(bob.clone());
    let answer = reviews
        .create(&PostParams::default(), &ssar("list", "pods"))
        .await
        .unwrap();
    assert!(!answer.status.unwrap().allowed);
    let reviews: Api<SelfSubjectAccessReview> = Api::all(admin.clone());
    assert!(
        reviews
            .create(&PostParams::default(), &ssar("delete", "pods"))
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    let whoami: Api<SelfSubjectReview> = Api::all(bob.clone());
    let me = whoami
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let info = me.status.unwrap().user_info.unwrap();
    assert_eq!(info.username.as_deref(), Some("bob"));
    assert_eq!(
        info.groups.as_deref(),
        Some(&["system:authenticated".to_owned()][..])
    );
    // Asking about someone else needs permission to create subjectaccessreviews.
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("bob".into()),
            resource_attributes: ssar("list", "pods").spec.resource_attributes,
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let as_bob: Api<SubjectAccessReview> = Api::all(bob);
    assert_eq!(
        status(
            &as_bob
                .create(&PostParams::default(), &sar)
                .await
                .unwrap_err()
        )
        .message,
        "subjectaccessreviews.authorization.k8s.io is forbidden: User \"bob\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"
    );
    let as_admin: Api<SubjectAccessReview> = Api::all(admin);
    assert!(
        !as_admin
            .create(&PostParams::default(), &sar)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    // Reviews are in discovery, create only.
    let (code, body) = as_token(
        &server,
        BOB,
        "GET",
        "/apis/authorization.k8s.io/v1",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "selfsubjectaccessreviews")
    );
    let (code, _) = as_token(
        &server,
        BOB,
        "GET",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 403, "authorization comes first");
    let (code, _) = as_token(
        &server,
        server.token(),
        "GET",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 405);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn always_allow_stays_as_before_with_static_users() {
    let (server, admin) =
        common::start_with(ApiServer::builder().token_user(BOB, user::named("bob", &[]))).await;
    let bob = server.client_with_token(BOB).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(bob, "default");
    assert!(cms.list(&ListParams::default()).await.is_ok());
    let (code, body) = as_token(
        &server,
        BOB,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &[("Impersonate-User", "someone")],
        "{}",
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(body["status"]["userInfo"]["username"], "someone");
    let roles: Api<ClusterRole> = Api::all(admin);
    assert!(
        roles
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no bootstrap policy without RBAC"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn service_account_tokens_authenticate_as_their_account_while_it_lives() {
    let (server, _admin) = rbac_server().await;
    let accounts = "/api/v1/namespaces/team/serviceaccounts";
    create(&server, accounts, json!({"metadata": {"name": "bot"}})).await;
    let request = |spec: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
            .to_string()
    };
    let issue = |spec: Value| {
        let server = &server;
        let body = request(spec);
        async move {
            as_token(
                server,
                server.token(),
                "POST",
                &format!("{accounts}/bot/token"),
                &[],
                &body,
            )
            .await
        }
    };
    let (code, answer) = issue(json!({})).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        answer["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let token = answer["status"]["token"].as_str().unwrap().to_owned();
    assert!(answer["status"]["expirationTimestamp"].is_string());

    // Who the token is.
    let whoami = |token: String| {
        let server = &server;
        async move {
            as_token(
                server,
                &token,
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                &[],
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
            )
            .await
        }
    };
    let (code, review) = whoami(token.clone()).await;
    assert_eq!(code, 201, "{review}");
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:team:bot");
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    assert!(
        info["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .is_some_and(|id| id.starts_with("JTI=")),
        "{info}"
    );

    // RBAC applies to the account: nothing until a binding grants it.
    let (code, refusal) = as_token(&server, &token, "GET", &config_maps("team"), &[], "").await;
    assert_eq!(code, 403, "{refusal}");
    assert_eq!(
        refusal["message"],
        "configmaps is forbidden: User \"system:serviceaccount:team:bot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );
    create(
        &server,
        &roles("team"),
        json!({"metadata": {"name": "read"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
    )
    .await;
    create(
        &server,
        &role_bindings("team"),
        json!({"metadata": {"name": "bot-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "team"}]}),
    )
    .await;
    let (code, list) = as_token(&server, &token, "GET", &config_maps("team"), &[], "").await;
    assert_eq!(code, 200, "{list}");

    // A changed signature, another audience, a short life, a missing account.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(whoami(tampered).await.0, 401);
    let (code, other) = issue(json!({"audiences": ["https://vault.example.com"]})).await;
    assert_eq!(code, 201, "{other}");
    let elsewhere = other["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        whoami(elsewhere).await.0,
        401,
        "a token for another audience"
    );
    let (code, short) = issue(json!({"expirationSeconds": 60})).await;
    assert_eq!(code, 422, "{short}");
    assert_eq!(
        short["details"]["causes"][0]["message"],
        "Invalid value: 60: may not specify a duration less than 10 minutes"
    );
    let (code, missing) = as_token(
        &server,
        server.token(),
        "POST",
        &format!("{accounts}/nobody/token"),
        &[],
        &request(json!({})),
    )
    .await;
    assert_eq!(code, 404, "{missing}");
    assert_eq!(missing["message"], "serviceaccounts \"nobody\" not found");

    // A token bound to a Pod lives as long as the Pod.
    create(
        &server,
        "/api/v1/namespaces/team/pods",
        json!({"metadata": {"name": "worker"}, "spec": {"serviceAccountName": "bot", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let (code, bound) =
        issue(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker"}}))
            .await;
    assert_eq!(code, 201, "{bound}");
    let pod_token = bound["status"]["token"].as_str().unwrap().to_owned();
    let (code, review) = whoami(pod_token.clone()).await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(
        review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["worker"])
    );
    let (code, _) = as_token(
        &server,
        server.token(),
        "DELETE",
        "/api/v1/namespaces/team/pods/worker",
        &[],
        r#"{"gracePeriodSeconds":0}"#,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(whoami(pod_token).await.0, 401, "the bound Pod is gone");

    // Deleting the account ends its tokens, even when one of the same name comes back.
    let (code, _) = as_token(
        &server,
        server.token(),
        "DELETE",
        &format!("{accounts}/bot"),
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(whoami(token.clone()).await.0, 401);
    create(&server, accounts, json!({"metadata": {"name": "bot"}})).await;
    assert_eq!(whoami(token).await.0, 401, "a new account of the same name");
}

/// The token of a fresh `TokenRequest` for ServiceAccount `default/bot`, as the admin.
async fn bot_token(server: &RunningServer) -> String {
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#;
    let path = "/api/v1/namespaces/default/serviceaccounts/bot/token";
    let (code, answer) = as_token(server, server.token(), "POST", path, &[], body).await;
    assert_eq!(code, 201, "{answer}");
    answer["status"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// The username a bearer of `token` authenticates as, or the refusal's code.
async fn who(server: &RunningServer, token: &str) -> Result<String, u16> {
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    match as_token(server, token, "POST", path, &[], review).await {
        (201, answer) => Ok(answer["status"]["userInfo"]["username"]
            .as_str()
            .expect("a username")
            .to_owned()),
        (code, _) => Err(code),
    }
}

#[tokio::test]
async fn issuer_discovery_lets_a_relying_party_check_tokens_offline_and_a_kept_key_outlives_a_restart()
 {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let dir = tempfile::tempdir().unwrap();
    let builder = || {
        ApiServer::builder()
            .authorization(Mode::Rbac)
            .state_dir(Some(dir.path().to_path_buf()))
            .token_user(BOB, user::named("bob", &[]))
    };
    let (server, _admin) = common::start_with(builder()).await;
    create(
        &server,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "bot"}}),
    )
    .await;
    let token = bot_token(&server).await;

    // Service accounts read the discovery documents (system:service-account-issuer-discovery);
    // other users are not granted them.
    let auth = format!("Bearer {token}");
    let get = |path: &'static str, auth: String| {
        let server = &server;
        async move {
            let (code, head, body) =
                common::exchange(server, "GET", path, &[("Authorization", &auth)], b"").await;
            (code, head.to_ascii_lowercase(), body)
        }
    };
    let (code, head, body) = get("/.well-known/openid-configuration", auth.clone()).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(
        head.contains("cache-control: public, max-age=3600"),
        "{head}"
    );
    let config: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        config,
        json!({"issuer": "https://kubernetes.default.svc.cluster.local",
            "jwks_uri": format!("https://{}/openid/v1/jwks", server.addr()),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]})
    );
    let (code, head, body) = get("/openid/v1/jwks", auth.clone()).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        head.contains("content-type: application/jwk-set+json"),
        "{head}"
    );
    let keys: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(get("/openid/v1/jwks/", auth.clone()).await.2, body);
    let bob = format!("Bearer {BOB}");
    assert_eq!(get("/openid/v1/jwks", bob.clone()).await.0, 403);
    assert_eq!(get("/.well-known/openid-configuration", bob).await.0, 403);

    // The token checks out against the published key alone: its kid names it, and the signature
    // verifies with the point (x, y).
    let key = &keys["keys"][0];
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["kid"], key["kid"]);
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let point = [vec![4], coordinate("x"), coordinate("y")].concat();
    let signed = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("the token verifies with the published key");

    // The key is kept, readable by its owner only, and tokens outlive a restart.
    let kept = dir.path().join("service-account-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        who(&server, &token).await,
        Ok("system:serviceaccount:default:bot".into())
    );
    server.shutdown().await.unwrap();
    let (server, _admin) = common::start_with(builder()).await;
    assert_eq!(
        who(&server, &token).await,
        Ok("system:serviceaccount:default:bot".into()),
        "a token issued before the restart"
    );
    let auth = format!("Bearer {token}");
    let (code, _, body) = common::exchange(
        &server,
        "GET",
        "/openid/v1/jwks",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), keys);
    server.shutdown().await.unwrap();

    // A key file that is not a key stops the server with the file named, and stays as it was.
    std::fs::write(&kept, "not a key").unwrap();
    let error = builder().build().unwrap_err();
    let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("service-account-key.pem"), "{chain}");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "not a key");
}
