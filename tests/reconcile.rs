//! The reconcile loop end to end against the embedded API server: WebApp -> Deployment + Service,
//! owner references, conditions from health, drift correction, recreation, invalid specs, deletion.
#![allow(clippy::unwrap_used)]

use capstan::informer::Informers;
use capstan::plugin::{Runtime, RuntimeConfig};
use capstan::reconcile::{Controller, ControllerConfig};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::time::Duration;

fn webapps(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
        "webapps",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webapp_is_reconciled_into_a_deployment_and_a_service() {
    let server = capstan_apiserver::ApiServer::builder()
        .build()
        .unwrap()
        .start_loopback()
        .await
        .unwrap();
    let client = server.client().unwrap();
    // The CRD and a WebApp named `shop`, from examples/.
    capstan::manifests::apply_dir(&client, &capstan_tests::root().join("examples"))
        .await
        .unwrap();
    let plugin = Runtime::new(RuntimeConfig::default())
        .unwrap()
        .load(&capstan_tests::guest("webapp"))
        .await
        .unwrap();
    let informers = Informers::new(client.clone());
    let controller = Controller::start(
        plugin,
        &informers,
        client.clone(),
        ControllerConfig::default(),
    )
    .await
    .unwrap();

    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    let services: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
    );
    let app = webapps(&client).get("shop").await.unwrap();
    let uid = app.metadata.uid.clone().unwrap();

    let dep = eventually("the deployment", async || {
        deployments.get_opt("shop").await.unwrap()
    })
    .await;
    let owner = &dep.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("WebApp", uid.as_str(), Some(true))
    );
    assert_eq!(dep.data["spec"]["replicas"], 2);
    let managers: Vec<_> = dep
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"capstan-webapp".to_owned()),
        "{managers:?}"
    );
    eventually("the service", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;

    // No deployment controller runs here: the Deployment has no available replicas yet. An early
    // reconcile may run before the Service reaches the cache; the Service's own change requeues the
    // WebApp, so the status converges to Service ready, Deployment not.
    let status = eventually("a progressing status with the service ready", async || {
        let o = serde_json::to_value(webapps(&client).get("shop").await.unwrap()).unwrap();
        let converged = o.pointer("/status/status") == Some(&json!("Progressing"))
            && condition(&o, "ServiceReady").is_some_and(|c| c["status"] == "True");
        converged.then_some(o)
    })
    .await;
    assert_eq!(
        condition(&status, "DeploymentReady").unwrap()["status"],
        "False"
    );
    assert_eq!(
        condition(&status, "ServiceReady").unwrap()["status"],
        "True"
    );
    assert_eq!(condition(&status, "Ready").unwrap()["status"], "False");
    assert_eq!(condition(&status, "ConfigValid").unwrap()["status"], "True");
    assert_eq!(status["status"]["observedGeneration"], 1);
    let service_since = condition(&status, "ServiceReady").unwrap()["lastTransitionTime"].clone();

    // Play the deployment controller: replicas become available; the owner is requeued.
    let ready = json!({"status": {"replicas": 2, "availableReplicas": 2, "updatedReplicas": 2, "readyReplicas": 2}});
    deployments
        .patch_status("shop", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    let status = eventually("a ready status", async || {
        let o = serde_json::to_value(webapps(&client).get("shop").await.unwrap()).unwrap();
        (o.pointer("/status/status") == Some(&json!("Ready"))).then_some(o)
    })
    .await;
    assert_eq!(condition(&status, "Ready").unwrap()["status"], "True");
    assert_eq!(
        condition(&status, "ServiceReady").unwrap()["lastTransitionTime"],
        service_since,
        "unchanged status keeps its transition time"
    );

    // A spec change reaches the child.
    webapps(&client)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually("replicas 3", async || {
        (deployments.get("shop").await.unwrap().data["spec"]["replicas"] == 3).then_some(())
    })
    .await;

    // Drift on the child is corrected.
    deployments
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    eventually("drift corrected", async || {
        (deployments.get("shop").await.unwrap().data["spec"]["replicas"] == 3).then_some(())
    })
    .await;

    // A child deleted by hand comes back.
    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the service recreated", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;

    // An invalid spec fails the resource with ConfigValid=False.
    webapps(&client)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"port": 0}})),
        )
        .await
        .unwrap();
    let failed = eventually("a failed status", async || {
        let o = serde_json::to_value(webapps(&client).get("shop").await.unwrap()).unwrap();
        (o.pointer("/status/status") == Some(&json!("Failed"))).then_some(o)
    })
    .await;
    assert_eq!(
        condition(&failed, "ConfigValid").unwrap()["status"],
        "False"
    );

    // Deleting the WebApp takes its children with it (garbage collection through owner references).
    webapps(&client)
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    eventually("children collected", async || {
        (deployments.get_opt("shop").await.unwrap().is_none()
            && services.get_opt("shop").await.unwrap().is_none())
        .then_some(())
    })
    .await;

    controller.shutdown(Duration::from_secs(5)).await;
    server.shutdown().await.unwrap();
}
