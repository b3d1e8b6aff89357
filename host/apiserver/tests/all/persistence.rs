//! A restart from the same state directory keeps every acknowledged write.

use crate::common;

use capstan_apiserver::ApiServer;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::json;

fn thing_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Thing"))
}

#[tokio::test]
async fn restart_keeps_writes_and_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let builder = || ApiServer::builder().state_dir(Some(dir.path().to_path_buf()));
    let (server, client) = common::start_with(builder()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["keep", "gone"] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": "1"}}))
                .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let patched = api.patch("keep", &PatchParams::apply("me"), &Patch::Apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"v": "2"}
    }))).await;
    assert!(patched.is_err(), "conflicts with the creating manager");
    let patched = api
        .patch(
            "keep",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })).unwrap();
    Api::<CustomResourceDefinition>::all(api.clone().into_client())
        .create(&PostParams::default(), &crd)
        .await
        .unwrap();
    let things: Api<DynamicObject> = Api::all_with(api.clone().into_client(), &thing_resource());
    let thing: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"x": 1}})).unwrap();
    let thing = things.create(&PostParams::default(), &thing).await.unwrap();
    let last_rv: u64 = thing.metadata.resource_version.unwrap().parse().unwrap();
    let _: u64 = patched.metadata.resource_version.unwrap().parse().unwrap();
    server.shutdown().await.unwrap();

    let (server, client) = common::start_with(builder()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let things: Api<DynamicObject> = Api::all_with(api.clone().into_client(), &thing_resource());
    assert_eq!(
        things.get("t").await.unwrap().data["spec"]["x"],
        1,
        "CRD kinds are served again after a restart"
    );
    let kept = api.get("keep").await.unwrap();
    assert_eq!(kept.data.unwrap()["v"], "2");
    assert!(api.get("gone").await.is_err());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "new"}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let rv: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv > last_rv, "the counter continues ({rv} after {last_rv})");
    server.shutdown().await.unwrap();
}
