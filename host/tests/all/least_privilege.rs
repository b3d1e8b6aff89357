//! Least privilege enforced twice: the embedded API server authorizes with RBAC, the RBAC is what
//! `capstan rbac` derives from the plugins, the host runs as its own ServiceAccount and acts for
//! each plugin as the plugin's ServiceAccount. Every example plugin works with exactly that; a
//! permission taken out of a plugin's role is refused by the API server (the host's own checks
//! allow it) and the object says so.
#![allow(clippy::unwrap_used)]

use crate::support::{eventually_within, guest, root, tempdir};
use capstan::identity::{Identities, Impersonation};
use capstan::runner::{RunConfig, run_with_listener};
use capstan_apiserver::authz::Mode;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::ApiResource;
use std::time::Duration;

const NAMESPACE: &str = "capstan-system";
const HOST_TOKEN: &str = "host-service-account-token";

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", kind),
            plural,
        ),
    )
}

/// The host's `/metrics` text.
async fn metrics(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// The condition `type` of `object`'s status, as (status, message).
fn condition(object: &DynamicObject, type_: &str) -> Option<(String, String)> {
    object
        .data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_plugin_acts_with_its_own_rbac_and_the_api_server_refuses_the_rest() {
    let identities = Identities::new(NAMESPACE);
    let server = capstan_apiserver::ApiServer::builder()
        .authorization(Mode::Rbac)
        .token_user(
            HOST_TOKEN,
            capstan_apiserver::user::named(
                &identities.host_user(),
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:capstan-system",
                ],
            ),
        )
        .build()
        .unwrap()
        .start_loopback()
        .await
        .unwrap();
    let admin = server.client().unwrap();

    // The example plugins, their CRDs (with the sample objects), and the RBAC `capstan rbac`
    // derives for them, applied by the cluster's admin.
    let plugins = tempdir();
    for g in ["webapp", "infra-cluster", "deployment-handler"] {
        std::fs::copy(guest(g), plugins.path().join(format!("{g}.wasm"))).unwrap();
    }
    let manifests = tempdir();
    for f in ["webapp-crd.yaml", "infra-cluster.yaml"] {
        std::fs::copy(root().join("examples").join(f), manifests.path().join(f)).unwrap();
    }
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();
    let objects = capstan::manifests::read_dir(manifests.path()).unwrap();
    let config = capstan::config::Config::default();
    let mut rbac = capstan::rbac::Rbac::builder(identities.clone()).resources(
        capstan::rbac::Resources::new()
            .with_crds_in(&objects)
            .unwrap(),
    );
    for p in capstan::rbac::plugins_in(plugins.path(), &config, None)
        .await
        .unwrap()
    {
        rbac = rbac.plugin(p);
    }
    let rbac_dir = tempdir();
    std::fs::write(
        rbac_dir.path().join("rbac.yaml"),
        rbac.build().to_yaml().unwrap(),
    )
    .unwrap();
    capstan::manifests::apply_dir(&admin, rbac_dir.path())
        .await
        .unwrap();
    capstan::manifests::apply_dir(&admin, manifests.path())
        .await
        .unwrap();

    // The host: its own ServiceAccount's token, impersonating each plugin's ServiceAccount.
    let host_config = server.kube_config_with_token(HOST_TOKEN).unwrap();
    let host = kube::Client::try_from(host_config.clone()).unwrap();
    let mut run = RunConfig::new(plugins.path());
    run.impersonation = Some(Impersonation::new(host_config, identities.clone()));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_at = http.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run_with_listener(run, host, Some(http), async {
        let _ = stopped.await;
    }));

    // Every example works with exactly what was derived: the WebApp's children are applied and
    // its status written as the webapp plugin; the InfraCluster's status (waiting for its owner)
    // as the infra-cluster plugin.
    let webapps = api(&admin, "WebApp", "webapps");
    let infra = api(&admin, "InfraCluster", "infraclusters");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    eventually_within(Duration::from_secs(60), "shop reconciled", async || {
        services.get_opt("shop").await.ok()??;
        deployments.get_opt("shop").await.ok()??;
        let shop = webapps.get_opt("shop").await.ok()??;
        (condition(&shop, "ServiceReady")?.0 == "True"
            && condition(&shop, "AuthValid")?.0 == "True")
            .then_some(())
    })
    .await;
    eventually_within(
        Duration::from_secs(30),
        "the InfraCluster's status",
        async || {
            let demo = infra.get_opt("demo").await.ok()??;
            demo.data.pointer("/status/conditions").map(|_| ())
        },
    )
    .await;

    // The handler got the Deployment's events (it makes no request of its own).
    eventually_within(Duration::from_secs(30), "deployment-handler called", async || {
        let metrics = metrics(metrics_at).await?;
        metrics
            .contains(r#"capstan_plugin_calls_total{plugin="deployment-handler",export="added",outcome="ok"}"#)
            .then_some(())
    })
    .await;

    // Take Services out of the webapp plugin's role: its manifest still grants them, so the host
    // lets the plan through, and the API server refuses it.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let role_name = format!(
        "{NAMESPACE}:{}",
        identities.plugin_service_account("webapp")
    );
    let mut role = roles.get(&role_name).await.unwrap();
    let before = role.rules.as_ref().map_or(0, Vec::len);
    role.rules = role.rules.map(|rules| {
        rules
            .into_iter()
            .filter(|r| !r.resources.iter().flatten().any(|res| res == "services"))
            .collect()
    });
    assert!(
        role.rules.as_ref().map_or(0, Vec::len) < before,
        "the derived role grants Services: {role:?}"
    );
    role.metadata.managed_fields = None;
    roles
        .replace(&role_name, &PostParams::default(), &role)
        .await
        .unwrap();
    let blocked: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": "blocked", "namespace": "default"},
        "spec": {"image": "nginx:1.27", "port": 80},
    }))
    .unwrap();
    webapps
        .create(&PostParams::default(), &blocked)
        .await
        .unwrap();
    let message = eventually_within(
        Duration::from_secs(60),
        "AuthValid=False on the blocked WebApp",
        async || {
            let o = webapps.get_opt("blocked").await.ok()??;
            let (status, message) = condition(&o, "AuthValid")?;
            (status == "False").then_some(message)
        },
    )
    .await;
    // The API server's refusal, naming the plugin's identity, the verb and the resource (the
    // plan checker's live read of the Service is the first request refused).
    let user = identities.plugin_user("webapp");
    assert!(
        message.contains(&format!(r#"User "{user}" cannot get resource "services" in API group "" in the namespace "default""#)),
        "{message}"
    );
    // A refused plan applies nothing: neither the Service nor the Deployment.
    assert!(services.get_opt("blocked").await.unwrap().is_none());
    assert!(deployments.get_opt("blocked").await.unwrap().is_none());

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    server.shutdown().await.unwrap();
}
