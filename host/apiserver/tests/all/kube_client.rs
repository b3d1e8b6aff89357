//! The embedded server driven by real kube-rs clients.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use kube::runtime::watcher;
use serde_json::json;

use common::{api_code, start, start_with};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"},
    }))
    .expect("configmap")
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]
            }]
        }
    }))
    .expect("crd")
}

#[tokio::test]
async fn typed_configmap_crud() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", &[("app", "web")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    api.create(&PostParams::default(), &cm("b", &[("app", "db")]))
        .await
        .unwrap();
    let err = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);

    let web = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 1);
    let not_web = api
        .list(&ListParams::default().labels("app notin (web)"))
        .await
        .unwrap();
    assert_eq!(not_web.items.len(), 1);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].metadata.name.as_deref(), Some("b"));
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("b"));

    let mut fresh = api.get("a").await.unwrap();
    fresh.data = Some(BTreeMap::from([("k".to_string(), "new".to_string())]));
    let replaced = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "new");
    let err = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409, "stale resourceVersion");

    let merged = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["m"], "1");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(&api.get("a").await.unwrap_err()), 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn deployment_generation_and_status() {
    let (server, client) = start().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &deploy).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );
    let with_status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"replicas": 3, "readyReplicas": 3}, "spec": {"replicas": 7}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(with_status.status.unwrap().ready_replicas, Some(3));
    assert_eq!(
        with_status.spec.unwrap().replicas,
        Some(3),
        "status writes ignore spec"
    );
    assert_eq!(with_status.metadata.generation, Some(2));
    let main = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.unwrap().ready_replicas,
        Some(3),
        "main resource writes ignore status"
    );
    server.shutdown().await.unwrap();
}

/// Aggregated discovery (apidiscovery.k8s.io/v2) as kube-apiserver serves it: kube-rs'
/// `Discovery::run_aggregated` finds built-in kinds, a CRD's kind and its subresources from `/api`
/// and `/apis` alone; the answer names its media type, carries an ETag that a client's
/// `If-None-Match` turns into a 304, and changes when a CRD is added.
#[tokio::test]
async fn aggregated_discovery_describes_every_resource_in_two_documents() {
    let (server, client) = start().await;
    let aggregated =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let auth = common::bearer(&server);
    let get = |path: &'static str, extra: Vec<(&'static str, String)>| {
        let server = &server;
        let auth = auth.clone();
        async move {
            let mut headers = vec![("Authorization", auth.as_str()), ("Accept", aggregated)];
            headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            common::exchange(server, "GET", path, &headers, b"").await
        }
    };
    let (code, head, before) = get("/apis", vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(
        common::header(&head, "content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    assert_eq!(common::header(&head, "vary"), Some("Accept"));
    let tag = common::header(&head, "etag").expect("an ETag").to_owned();
    let (code, _, body) = get("/apis", vec![("If-None-Match", tag.clone())]).await;
    assert_eq!((code, body.as_str()), (304, ""), "unchanged: not modified");
    let (code, head, _) = get("/api", vec![]).await;
    assert_eq!(code, 200);
    assert_ne!(common::header(&head, "etag"), Some(tag.as_str()));
    // A plain JSON request still gets the legacy documents.
    let (code, legacy) = common::send(
        &server,
        "GET",
        "/apis",
        &[
            ("Authorization", auth.as_str()),
            ("Accept", "application/json"),
        ],
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert!(legacy.contains("\"APIGroupList\""), "{legacy}");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();
    let (code, _, after) = get("/apis", vec![("If-None-Match", tag)]).await;
    assert_eq!(code, 200, "a new CRD changes the document");
    assert_ne!(before, after);

    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (resource, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("widget discovered");
    assert_eq!(resource.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural.ends_with("status")),
        "{:?}",
        caps.subresources
    );
    let (deployments, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .expect("deployments discovered");
    assert_eq!(deployments.plural, "deployments");
    assert!(caps.supports_operation("watch"));
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"))
            .is_some(),
        "the core group comes from /api"
    );
    server.shutdown().await.unwrap();
}

/// List semantics of `resourceVersion` and `resourceVersionMatch` as kube-apiserver's: Exact
/// reads a past state, NotOlderThan a future version is a 504 with the cause clients retry on,
/// and the option combinations apimachinery forbids are a 422 on `ListOptions`.
#[tokio::test]
async fn lists_read_the_version_they_ask_for() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let before = api.list(&ListParams::default()).await.unwrap();
    let rv = before.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let names = |list: &kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect()
    };
    let exact = api
        .list(
            &ListParams::default()
                .at(&rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(names(&exact), ["a"]);
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let newest = api
        .list(
            &ListParams::default()
                .at(&rv)
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(names(&newest), ["b"]);
    let future = (newest
        .metadata
        .resource_version
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 10)
        .to_string();
    // kube-rs retries a 504 fifteen times with exponential backoff (about five minutes): ask with
    // its retry layer off to see the answer itself.
    let mut config = server.kube_config().unwrap();
    config.default_retry = false;
    let once: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let err = once
        .list(
            &ListParams::default()
                .at(&future)
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 504);

    let auth = common::bearer(&server);
    let get = |query: String| {
        let server = &server;
        let auth = auth.clone();
        async move {
            let (code, body) = common::send(
                server,
                "GET",
                &format!("/api/v1/namespaces/default/configmaps?{query}"),
                &[("Authorization", auth.as_str())],
                b"",
            )
            .await;
            (
                code,
                serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (code, status) = get(format!("resourceVersion={future}")).await;
    assert_eq!(code, 504);
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
    let (_, head, _) = common::exchange(
        &server,
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?resourceVersion={future}"),
        &[("Authorization", auth.as_str())],
        b"",
    )
    .await;
    assert_eq!(common::header(&head, "Retry-After"), Some("1"), "{head}");
    for (query, message) in [
        (
            "resourceVersionMatch=Exact".to_owned(),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact".to_owned(),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ),
        (
            format!("resourceVersion={rv}&resourceVersionMatch=Newest"),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\"",
        ),
        (
            "sendInitialEvents=true".to_owned(),
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ),
        (
            "watch=true&resourceVersionMatch=NotOlderThan".to_owned(),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ),
        (
            "watch=true&sendInitialEvents=true".to_owned(),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ),
    ] {
        let (code, status) = get(query.clone()).await;
        assert_eq!(
            (code, status["message"].as_str()),
            (422, Some(message)),
            "{query}"
        );
    }
    let (code, status) = get(format!("continue=abc&resourceVersion={rv}")).await;
    assert_eq!(code, 400, "{status}");
    server.shutdown().await.unwrap();
}

/// A namespace's deletion as on a cluster: it turns `Terminating` (its `kubernetes` finalizer
/// holds it), its contents are deleted, one held by a finalizer stays and is named in the
/// namespace's conditions, new content is refused with the `NamespaceTerminating` cause, and once
/// the last object goes the namespace goes too.
#[tokio::test]
async fn a_deleted_namespace_terminates_until_its_contents_are_gone() {
    use k8s_openapi::api::core::v1::Namespace;
    let (server, client) = start().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(
        created.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_owned()])
    );
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    configmaps
        .create(&PostParams::default(), &cm("plain", &[]))
        .await
        .unwrap();
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    configmaps
        .create(&PostParams::default(), &held)
        .await
        .unwrap();

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = namespaces.get("doomed").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let status = terminating.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Terminating"));
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
            .unwrap_or_else(|| panic!("no {kind} condition: {:?}", status.conditions))
    };
    assert_eq!(
        condition("NamespaceContentRemaining"),
        (
            "True".into(),
            "Some resources are remaining: configmaps has 1 resource instances".into()
        )
    );
    assert_eq!(
        condition("NamespaceFinalizersRemaining"),
        (
            "True".into(),
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()
        )
    );
    assert_eq!(api_code(&configmaps.get("plain").await.unwrap_err()), 404);
    assert!(
        configmaps
            .get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    let (code, body) = common::send(
        &server,
        "POST",
        "/api/v1/namespaces/doomed/configmaps",
        &[
            ("Authorization", common::bearer(&server).as_str()),
            ("Content-Type", "application/json"),
        ],
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"}}"#,
    )
    .await;
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        refused["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    assert_eq!(
        refused["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    assert_eq!(
        refused["details"]["causes"][0]["field"],
        "metadata.namespace"
    );

    configmaps
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(api_code(&configmaps.get("held").await.unwrap_err()), 404);
    assert_eq!(api_code(&namespaces.get("doomed").await.unwrap_err()), 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn crd_served_dynamically_and_removed() {
    let (server, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (resource, caps) = discovery.resolve_gvk(&gvk).expect("widget discovered");
    assert_eq!(resource.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural == "widgets/status" || r.plural == "status")
    );
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .is_some()
    );

    let ar = ApiResource::from_gvk(&gvk);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let got = api.get("w1").await.unwrap();
    assert_eq!(got.data["spec"]["size"], 3);
    let status = api
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ok": true}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["ok"], true);

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), 404, "kind no longer served");
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "objects went with the CRD"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn watcher_lists_then_watches() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let mut created = false;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match event {
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                seen.push(o.metadata.name.unwrap())
            }
            watcher::Event::InitDone if !created => {
                api.create(&PostParams::default(), &cm("after", &[]))
                    .await
                    .unwrap();
                api.delete("before", &DeleteParams::default())
                    .await
                    .unwrap();
                created = true;
            }
            watcher::Event::Delete(o) => {
                assert_eq!(o.metadata.name.as_deref(), Some("before"));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["before", "after"]);
    server.shutdown().await.unwrap();
}

/// A watch from a version the server has not reached yet is no error (unlike a list, which is a
/// 504): as kube-apiserver's watch cache, it waits and delivers only the changes after that
/// version, never those between the current one and it.
#[tokio::test]
async fn a_watch_from_a_future_version_waits_for_the_changes_after_it() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let current: u64 = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let future = current + 3;
    let mut events = api
        .watch(&WatchParams::default().timeout(10), &future.to_string())
        .await
        .unwrap()
        .boxed();
    let mut written = Vec::new();
    for name in ["one", "two", "three", "four", "five"] {
        let created = api
            .create(&PostParams::default(), &cm(name, &[]))
            .await
            .unwrap();
        let rv: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
        written.push((name, rv));
    }
    let mut seen = Vec::new();
    while seen.len() < written.iter().filter(|(_, rv)| *rv > future).count() {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .expect("the changes after the version arrive")
            .unwrap()
        {
            Some(WatchEvent::Added(cm)) => seen.push(cm.metadata.name.unwrap()),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("expected ADDED, got {other:?}"),
        }
    }
    let after: Vec<&str> = written
        .iter()
        .filter(|(_, rv)| *rv > future)
        .map(|(name, _)| *name)
        .collect();
    assert!(
        !after.is_empty() && after.len() < written.len(),
        "{written:?}"
    );
    assert_eq!(seen, after);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn watch_from_expired_version_gets_410_and_watcher_relists() {
    let (server, client) =
        start_with(capstan_apiserver::ApiServer::builder().watch_history(5)).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");

    for i in 100..110 {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let mut raw = api
        .watch(&WatchParams::default().timeout(2), "1")
        .await
        .unwrap()
        .boxed();
    match raw.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    api.create(&PostParams::default(), &cm("first", &[]))
        .await
        .unwrap();
    let config = watcher::Config::default().timeout(1).disable_bookmarks();
    let mut stream = watcher(api.clone(), config).boxed();
    let mut inits = 0;
    let mut relisted = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("watcher relisted in time");
        match next {
            Some(Ok(watcher::Event::Init)) => {
                inits += 1;
                relisted.clear();
            }
            Some(Ok(watcher::Event::InitApply(o))) => relisted.push(o.metadata.name.unwrap()),
            Some(Ok(watcher::Event::InitDone)) if inits == 1 => {
                // Push the watcher's last seen version out of the kept history while it waits.
                for i in 0..20 {
                    let s: Secret =
                        serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}}))
                            .unwrap();
                    secrets.create(&PostParams::default(), &s).await.unwrap();
                }
                api.create(&PostParams::default(), &cm("second", &[]))
                    .await
                    .unwrap();
                for i in 20..40 {
                    let s: Secret =
                        serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}}))
                            .unwrap();
                    secrets.create(&PostParams::default(), &s).await.unwrap();
                }
            }
            Some(Ok(watcher::Event::InitDone)) if inits >= 2 => break,
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    relisted.sort();
    assert_eq!(relisted, ["first", "second"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn server_side_apply_two_managers() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let config = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let created = api
        .patch(
            "ssa",
            &PatchParams::apply("alice"),
            &Patch::Apply(config(json!({"a": "1", "shared": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");
    let err = api
        .patch(
            "ssa",
            &PatchParams::apply("bob"),
            &Patch::Apply(config(json!({"shared": "y"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(config(json!({"shared": "y"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["shared"], "y");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"alice".to_string()) && managers.contains(&"bob".to_string()));
    // Alice stops applying "a": it is removed; "shared" now belongs to bob and stays.
    let after = api
        .patch(
            "ssa",
            &PatchParams::apply("alice"),
            &Patch::Apply(config(json!({"b": "2"}))),
        )
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert!(!data.contains_key("a"));
    assert_eq!(data["shared"], "y");
    assert_eq!(data["b"], "2");
    let err = api
        .patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Apply(config(json!({}))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 400, "apply needs a field manager");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut obj = cm("held", &[]);
    obj.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_code(&api.get("held").await.unwrap_err()), 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cascading_deletion_and_orphans() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let make_owned = |name: &str, owner: &ConfigMap| {
        let mut obj = cm(name, &[]);
        obj.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: owner.metadata.name.clone().unwrap(),
            uid: owner.metadata.uid.clone().unwrap(),
            ..OwnerReference::default()
        }]);
        obj
    };
    for (policy, keeps) in [
        (DeleteParams::background(), false),
        (DeleteParams::foreground(), false),
        (DeleteParams::orphan(), true),
    ] {
        let owner = api
            .create(&PostParams::default(), &cm("owner", &[]))
            .await
            .unwrap();
        let child = api
            .create(&PostParams::default(), &make_owned("child", &owner))
            .await
            .unwrap();
        api.create(&PostParams::default(), &make_owned("grandchild", &child))
            .await
            .unwrap();
        api.delete("owner", &policy).await.unwrap();
        let names: Vec<String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect();
        if keeps {
            assert_eq!(names, ["child", "grandchild"]);
            assert!(
                api.get("child")
                    .await
                    .unwrap()
                    .metadata
                    .owner_references
                    .unwrap_or_default()
                    .is_empty()
            );
        } else {
            assert!(names.is_empty(), "{names:?}");
        }
        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .unwrap();
    }
    server.shutdown().await.unwrap();
}

/// Server-side apply merges lists by their Kubernetes list type, over real HTTP with kube
/// clients: two managers applying different containers of one Deployment both keep theirs; the
/// same container field with another value is a 409 naming the field as kube-apiserver does
/// (`.spec.template.spec.containers[name="web"].image`); a manager that stops applying its
/// container removes it; finalizers (a set) and labels (a granular map) merge per item; a custom
/// resource's `x-kubernetes-list-type: map` list merges by its keys.
#[tokio::test]
async fn server_side_apply_merges_lists_by_their_list_type() {
    let (server, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let config = |containers: serde_json::Value, finalizer: &str, label: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": [finalizer], "labels": {label: "yes"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}})
    };
    let apply = |manager: &'static str, body: serde_json::Value, force: bool| {
        let deployments = deployments.clone();
        async move {
            let mut params = PatchParams::apply(manager);
            params.force = force;
            deployments.patch("web", &params, &Patch::Apply(body)).await
        }
    };
    apply(
        "team-a",
        config(
            json!([{"name": "web", "image": "nginx:1"}]),
            "example.com/a",
            "a",
        ),
        false,
    )
    .await
    .unwrap();
    let both = apply(
        "team-b",
        config(
            json!([{"name": "sidecar", "image": "envoy:1"}]),
            "example.com/b",
            "b",
        ),
        false,
    )
    .await
    .expect("different containers do not conflict");
    let names = |d: &Deployment| -> Vec<String> {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(names(&both), ["web", "sidecar"]);
    assert_eq!(
        both.metadata.finalizers.clone().unwrap(),
        ["example.com/a", "example.com/b"]
    );
    let labels = both.metadata.labels.clone().unwrap();
    assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("yes", "yes"));
    let b_fields = both
        .metadata
        .managed_fields
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.manager.as_deref() == Some("team-b"))
        .and_then(|m| m.fields_v1.clone())
        .unwrap()
        .0;
    assert_eq!(
        b_fields["f:spec"]["f:template"]["f:spec"]["f:containers"],
        json!({"k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
    assert_eq!(
        b_fields["f:metadata"]["f:finalizers"],
        json!({"v:\"example.com/b\"": {}})
    );

    let err = apply(
        "team-b",
        config(
            json!([{"name": "sidecar", "image": "envoy:1"}, {"name": "web", "image": "nginx:2"}]),
            "example.com/b",
            "b",
        ),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(api_code(&err), 409);
    let kube::Error::Api(status) = &err else {
        unreachable!("api_code checked it")
    };
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"team-a\": .spec.template.spec.containers[name=\"web\"].image"
    );

    // team-a stops applying its container, finalizer and label: they go; team-b's stay.
    let after = apply("team-a", config(json!([]), "example.com/b", "b"), false)
        .await
        .unwrap();
    assert_eq!(names(&after), ["sidecar"]);
    assert_eq!(
        after.metadata.finalizers.clone().unwrap(),
        ["example.com/b"]
    );
    assert!(!after.metadata.labels.clone().unwrap().contains_key("a"));

    // A CRD's `x-kubernetes-list-type: map` list merges by its keys.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "routes.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "routes", "singular": "route", "kind": "Route"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "rules": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["host", "port"],
                        "items": {"type": "object", "required": ["host"], "properties": {
                            "host": {"type": "string"}, "port": {"type": "integer", "default": 80},
                            "backend": {"type": "string"}}}}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Route");
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client, "default", &ApiResource::from_gvk(&gvk));
    let route = |rules: serde_json::Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Route", "metadata": {"name": "r"},
            "spec": {"rules": rules}})
    };
    let mut tries = 0;
    loop {
        let applied = routes
            .patch(
                "r",
                &PatchParams::apply("a"),
                &Patch::Apply(route(json!([{"host": "a.example", "backend": "a"}]))),
            )
            .await;
        match applied {
            Ok(_) => break,
            Err(e) if api_code(&e) == 404 && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("apply a route: {e}"),
        }
    }
    let merged = routes
        .patch(
            "r",
            &PatchParams::apply("b"),
            &Patch::Apply(route(
                json!([{"host": "a.example", "port": 8080, "backend": "b"}]),
            )),
        )
        .await
        .expect("another key (host, port) is another element");
    let rules = merged.data["spec"]["rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 2, "{rules:?}");
    let b_rules = merged
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("b"))
        .and_then(|m| m.fields_v1)
        .unwrap()
        .0;
    assert!(
        b_rules["f:spec"]["f:rules"]
            .get("k:{\"host\":\"a.example\",\"port\":8080}")
            .is_some(),
        "{b_rules}"
    );
    server.shutdown().await.unwrap();
}
