//! A reconciler for `WebApp` that diagnoses the app's pods (tests/pod_logs.rs): it plans nothing
//! and reports one component per pod labelled `app=<webapp name>`, `Pod-<pod name>`, from the
//! pod's status and, for a failing pod, the tail of its failing container's log.
//!
//! Pod logs are a capability: the manifest asks for them ([`Manifest::with_pod_logs`]) and the
//! host lends the reader during `fetch` only, so `fetch` reads the log tails and keeps them in the
//! observation, and `health` categorizes them with [`inspect::pod_with_logs`]. A pod whose log
//! could not be read (the host refused, say) gets [`inspect::pod`], its message noting why.

use capstan_sdk::k8s_openapi::api::core::v1::Pod;
use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use capstan_sdk::{
    Cache, ComponentHealth, Error, Gvk, Manifest, Plan, Plugin, PodLogs, Reconciler, Verb, inspect,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The part of a WebApp this plugin reads.
#[derive(Debug, Deserialize)]
pub struct WebApp {
    /// Name and namespace: the pods are those labelled `app=<name>` in the namespace.
    pub metadata: ObjectMeta,
}

/// What `fetch` saw: the pods and, for each failing one, its log tail or why it is missing.
#[derive(Debug, Default)]
pub struct Observed {
    pods: Vec<Pod>,
    /// The last [`inspect::LOG_TAIL_LINES`] lines of the failing container's log, by pod name.
    logs: BTreeMap<String, String>,
    /// Why a failing pod's log could not be read, by pod name.
    log_errors: BTreeMap<String, String>,
}

/// The pod doctor.
pub struct PodDoctor;

impl Plugin for PodDoctor {
    fn manifest() -> Manifest {
        Manifest::new("pod-doctor", "0.1.0")
            .watches_gvk(Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"))
            .access(Gvk::of::<Pod>(), &[Verb::Get, Verb::List])
            .with_pod_logs()
    }
}

impl Reconciler for PodDoctor {
    type Object = WebApp;
    type Observation = Observed;

    fn fetch(app: &WebApp, cache: &Cache) -> Result<Observed, Error> {
        let app_name = app.metadata.name.as_deref().unwrap_or_default();
        let pods: Vec<Pod> = cache.list(
            app.metadata.namespace.as_deref(),
            Some(&format!("app={app_name}")),
        )?;
        let host = PodLogs::host();
        let mut observed = Observed::default();
        for pod in &pods {
            let (Some(container), Some(namespace), Some(name)) = (
                inspect::failing_container(pod),
                pod.metadata.namespace.as_deref(),
                pod.metadata.name.as_deref(),
            ) else {
                continue;
            };
            match host.read(
                namespace,
                name,
                Some(container),
                Some(inspect::LOG_TAIL_LINES),
            ) {
                Ok(text) => observed.logs.insert(name.to_owned(), text),
                Err(e) => observed.log_errors.insert(name.to_owned(), e.message),
            };
        }
        observed.pods = pods;
        Ok(observed)
    }

    fn plan(_: &WebApp, _: &Observed) -> Result<Plan, Error> {
        Ok(Plan::new())
    }

    fn health(app: &WebApp, observed: &Observed) -> Vec<ComponentHealth> {
        if observed.pods.is_empty() {
            let app_name = app.metadata.name.as_deref().unwrap_or_default();
            return vec![ComponentHealth::progressing(
                "Pods",
                "NoPods",
                format!("no pod labelled app={app_name} yet"),
            )];
        }
        observed
            .pods
            .iter()
            .map(|p| pod_health(p, observed))
            .collect()
    }
}

/// `Pod-<name>`: [`inspect::pod_with_logs`] over the log read in `fetch`, or [`inspect::pod`].
fn pod_health(pod: &Pod, observed: &Observed) -> ComponentHealth {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let component = format!("Pod-{name}");
    if let Some(text) = observed.logs.get(&name) {
        let logs = PodLogs::from_map(HashMap::from([((namespace, name), text.clone())]));
        return inspect::pod_with_logs(&component, Some(pod), &logs);
    }
    let mut health = inspect::pod(&component, Some(pod));
    if let Some(error) = observed.log_errors.get(&name) {
        health.message = format!("{}; log unavailable: {error}", health.message);
    }
    health
}

capstan_sdk::export!(PodDoctor: Reconciler);
