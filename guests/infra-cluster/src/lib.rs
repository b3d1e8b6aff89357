//! A Cluster API style infrastructure provider for `InfraCluster` (examples.capstan.dev/v1alpha1),
//! following seed 004 (status management).
//!
//! An `InfraCluster` provides the infrastructure of a `Cluster`, which stands in for Cluster API's
//! Cluster (see `examples/infra-cluster.yaml`). The reconciler:
//!
//! 1. waits for its owner: the host takes no action until the object has an owner reference to a
//!    `Cluster` ([`Manifest::wait_for_owner`]); meanwhile its phase is `Pending`;
//! 2. creates the "VPC", here a ConfigMap `<name>-vpc` recording the region and the VPC id;
//! 3. resolves the control plane endpoint: its own `spec.controlPlaneEndpoint`, else the
//!    Cluster's; until one is known the object stays in phase `Creating`, which fails with
//!    `CreatingTimeout` after 15 minutes;
//! 4. propagates readiness and failure to the owner: `status.infrastructureReady`,
//!    `failureReason` and `failureMessage` of the Cluster;
//! 5. decorates the status the host computed with the fields Cluster API requires of an
//!    infrastructure provider: `ready`, `controlPlaneEndpoint`, `failureDomains`, plus `vpcId`;
//! 6. releases the infrastructure before the object goes: its finalizer holds the deletion until
//!    `cleanup` succeeds.
//!
//! The host does the rest: the conditions (`VpcReady`, `ControlPlaneEndpointReady`, `Ready`, ...),
//! `status.status`, `status.phase`, retries of transient errors and terminal failures.

use capstan_sdk::k8s_openapi::api::core::v1::ConfigMap;
use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use capstan_sdk::serde_json::{self, Value, json};
use capstan_sdk::{
    Cache, CleanupOutcome, ComponentHealth, Error, ErrorCategory, Fetched, Gvk, Manifest,
    ObjectKind, Plan, Plugin, Reconciler, StatusMode, StatusUpdate, Verb, health, log,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

const GROUP: &str = "examples.capstan.dev";
const VERSION: &str = "v1alpha1";

/// The owner kind, standing in for Cluster API's `Cluster`.
fn cluster_gvk() -> Gvk {
    Gvk::new(GROUP, VERSION, "Cluster")
}

/// The InfraCluster custom resource.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InfraCluster {
    /// Standard object metadata; the owner reference to the Cluster is in here.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    #[serde(default)]
    pub spec: InfraClusterSpec,
    /// The part of the status this reconciler reads back.
    #[serde(default)]
    pub status: Failure,
}

/// The desired infrastructure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfraClusterSpec {
    /// Region, such as `eu-west-1`.
    #[serde(default)]
    pub region: String,
    /// Where machines may be placed, such as `eu-west-1a`.
    #[serde(default)]
    pub failure_domains: Vec<String>,
    /// The API server endpoint, if this infrastructure provides its own.
    #[serde(default)]
    pub control_plane_endpoint: Option<Endpoint>,
}

/// An API server endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: i32,
}

/// Cluster API's failure fields: written by the host on a terminal failure, copied to the Cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Machine-readable reason, such as `CreatingTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// The owning Cluster, as far as this reconciler reads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cluster {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// The Cluster's spec.
    #[serde(default)]
    pub spec: ClusterSpec,
}

/// The Cluster's spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The endpoint the Cluster was given, used when the InfraCluster provides none.
    #[serde(default)]
    pub control_plane_endpoint: Option<Endpoint>,
}

impl ObjectKind for InfraCluster {
    /// The host refuses this plugin if it watches anything but InfraClusters.
    fn object_kind() -> Option<Gvk> {
        Some(Gvk::new(GROUP, VERSION, "InfraCluster"))
    }
}

/// What the reconciler observed: its owner and its VPC.
#[derive(Debug)]
pub struct Observed {
    /// The owning Cluster; `None` only without owner reference, which the host waits for.
    cluster: Option<Cluster>,
    /// The VPC record.
    vpc: Fetched<ConfigMap>,
}

impl Observed {
    /// The control plane endpoint: the InfraCluster's own, else the Cluster's.
    fn endpoint<'a>(&'a self, ic: &'a InfraCluster) -> Option<&'a Endpoint> {
        let clusters = self
            .cluster
            .as_ref()
            .map(|c| &c.spec.control_plane_endpoint);
        known(&ic.spec.control_plane_endpoint).or_else(|| known(clusters?))
    }

    /// The id of the VPC, once it exists.
    fn vpc_id(&self) -> Option<&str> {
        self.vpc
            .found()?
            .data
            .as_ref()?
            .get("vpcId")
            .map(String::as_str)
    }
}

/// The InfraCluster reconciler.
pub struct InfraClusterReconciler;

impl Plugin for InfraClusterReconciler {
    fn manifest() -> Manifest {
        Manifest::new("infra-cluster", "0.1.0")
            .watches_gvk(Gvk::new(GROUP, VERSION, "InfraCluster"))
            .owns::<ConfigMap>()
            // Read the owner, and server-side apply its status.
            .access(cluster_gvk(), &[Verb::Get, Verb::List, Verb::Patch])
            .wait_for_owner(cluster_gvk())
            .phase_timeout("Creating", Duration::from_secs(15 * 60))
            .status_mode(StatusMode::Decorate)
            // Infrastructure outlives nothing: release it before the object goes.
            .with_finalizer()
    }
}

impl Reconciler for InfraClusterReconciler {
    type Object = InfraCluster;
    type Observation = Observed;

    /// Read the owner Cluster and the VPC. An invalid region is terminal (invalid spec); an owner
    /// missing from the cache is transient (infrastructure): the cache has not caught up yet.
    fn fetch(ic: &InfraCluster, cache: &Cache) -> Result<Observed, Error> {
        validate_region(&ic.spec.region)?;
        let ns = ic.metadata.namespace.as_deref();
        let cluster = match owner_name(ic) {
            None => None,
            Some(name) => {
                let raw = cache.get_raw(&cluster_gvk(), ns, name)?.ok_or_else(|| {
                    Error::infrastructure(format!("owner Cluster {name} is not in the cache yet"))
                })?;
                Some(serde_json::from_value(raw).map_err(|e| {
                    Error::infrastructure(format!("cannot decode Cluster {name}: {e}"))
                })?)
            }
        };
        Ok(Observed {
            cluster,
            vpc: cache.get(ns, &vpc_name(ic)),
        })
    }

    /// The VPC (owned, collected with the InfraCluster) and the owner's status, applied without
    /// owner reference through the Cluster's status subresource.
    fn plan(ic: &InfraCluster, observed: &Observed) -> Result<Plan, Error> {
        let mut plan = Plan::new();
        plan.apply(&vpc(ic))?;
        if let Some(cluster) = &observed.cluster {
            plan.apply_without_owner_ref(&cluster_status(ic, cluster, observed))?;
        }
        Ok(plan)
    }

    /// `Vpc` is ready once it exists; `ControlPlaneEndpoint` once an endpoint is known.
    fn health(ic: &InfraCluster, observed: &Observed) -> Vec<ComponentHealth> {
        vec![
            observed.vpc.inspect(|v| health::exists("Vpc", v)),
            endpoint_health(ic, observed),
        ]
    }

    /// Add Cluster API's infrastructure fields to the status the host computed.
    fn status(ic: &InfraCluster, observed: &Observed, computed: &Value) -> StatusUpdate {
        let domains: serde_json::Map<_, _> = ic
            .spec
            .failure_domains
            .iter()
            .map(|d| (d.clone(), json!({"controlPlane": true})))
            .collect();
        let mut fields = json!({
            "ready": computed["status"] == "Ready",
            "failureDomains": domains,
        });
        if let Some(endpoint) = observed.endpoint(ic) {
            fields["controlPlaneEndpoint"] = json!(endpoint);
        }
        if let Some(id) = observed.vpc_id() {
            fields["vpcId"] = json!(id);
        }
        for field in ["failureReason", "failureMessage"] {
            if let Some(value) = computed.get(field).filter(|v| !v.is_null()) {
                fields[field] = value.clone();
            }
        }
        StatusUpdate::new().with_fields(&fields)
    }

    /// Release the infrastructure before the InfraCluster goes; the host then removes its
    /// finalizer. (The VPC record is owned, so Kubernetes collects it; a real provider would
    /// delete its cloud resources here and answer `RequeueAfter` while they go.)
    fn cleanup(ic: &InfraCluster) -> Result<CleanupOutcome, Error> {
        let name = ic.metadata.name.as_deref().unwrap_or_default();
        log::info("infrastructure released", &[("infracluster", name)]);
        Ok(CleanupOutcome::Done)
    }
}

capstan_sdk::export!(InfraClusterReconciler: Reconciler);

/// An endpoint counts once it has a host.
fn known(endpoint: &Option<Endpoint>) -> Option<&Endpoint> {
    endpoint.as_ref().filter(|e| !e.host.is_empty())
}

/// The name of the owner reference of kind Cluster, if any.
fn owner_name(ic: &InfraCluster) -> Option<&str> {
    let api_version = cluster_gvk().api_version();
    ic.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Cluster" && o.api_version == api_version)
        .map(|o| o.name.as_str())
}

/// A region is `^[a-z]{2}-[a-z]+-[0-9]$`, such as `eu-west-1`.
fn validate_region(region: &str) -> Result<(), Error> {
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let valid = match region.split('-').collect::<Vec<_>>()[..] {
        [area, place, n] => {
            area.len() == 2
                && letters(area)
                && letters(place)
                && n.len() == 1
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_spec(format!(
            "spec.region {region:?} is not a region like eu-west-1"
        )))
    }
}

fn vpc_name(ic: &InfraCluster) -> String {
    format!("{}-vpc", ic.metadata.name.as_deref().unwrap_or_default())
}

/// The VPC id: `vpc-` and 8 hex digits of the FNV-1a hash of `namespace/name`, so it is stable.
fn vpc_id_of(ic: &InfraCluster) -> String {
    let key = format!(
        "{}/{}",
        ic.metadata.namespace.as_deref().unwrap_or_default(),
        ic.metadata.name.as_deref().unwrap_or_default()
    );
    let hash = key.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("vpc-{hash:08x}")
}

/// The VPC record: a ConfigMap standing in for a cloud VPC.
fn vpc(ic: &InfraCluster) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(vpc_name(ic)),
            namespace: ic.metadata.namespace.clone(),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("region".to_owned(), ic.spec.region.clone()),
            ("vpcId".to_owned(), vpc_id_of(ic)),
        ])),
        ..Default::default()
    }
}

/// The owner's status: infrastructure is ready once the VPC exists, an endpoint is known and
/// nothing failed; a terminal failure the host wrote on the InfraCluster is copied over.
fn cluster_status(ic: &InfraCluster, cluster: &Cluster, observed: &Observed) -> Value {
    let ready = observed.vpc.found().is_some()
        && observed.endpoint(ic).is_some()
        && ic.status.failure_reason.is_none();
    let mut status = json!(ic.status);
    status["infrastructureReady"] = json!(ready);
    json!({
        "apiVersion": cluster_gvk().api_version(),
        "kind": "Cluster",
        "metadata": {"name": cluster.metadata.name, "namespace": cluster.metadata.namespace},
        "status": status,
    })
}

/// Either the InfraCluster provides its own endpoint or it uses the Cluster's; until then it waits.
/// The Cluster is not watched, so ask to be reconciled again to see it change.
fn endpoint_health(ic: &InfraCluster, observed: &Observed) -> ComponentHealth {
    const COMPONENT: &str = "ControlPlaneEndpoint";
    let own = known(&ic.spec.control_plane_endpoint).is_some();
    match observed.endpoint(ic) {
        Some(e) => ComponentHealth::ready(
            COMPONENT,
            if own { "Provided" } else { "FromCluster" },
            format!("{}:{}", e.host, e.port),
        ),
        None => ComponentHealth::progressing(
            COMPONENT,
            "WaitingForEndpoint",
            "neither spec.controlPlaneEndpoint nor the Cluster's is set",
        )
        .with_error(Error::new(
            ErrorCategory::MissingDownstreamDependency,
            "no control plane endpoint yet",
        ))
        .requeue_after(Duration::from_secs(30)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use capstan_sdk::{HealthState, PhaseTimeout};

    fn infra(endpoint: Option<Endpoint>) -> InfraCluster {
        InfraCluster {
            metadata: ObjectMeta {
                name: Some("demo".into()),
                namespace: Some("default".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "examples.capstan.dev/v1alpha1".into(),
                    kind: "Cluster".into(),
                    name: "demo".into(),
                    uid: "0000-1111".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: InfraClusterSpec {
                region: "eu-west-1".into(),
                failure_domains: vec!["eu-west-1a".into(), "eu-west-1b".into()],
                control_plane_endpoint: endpoint,
            },
            status: Failure::default(),
        }
    }

    fn endpoint(host: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            port: 6443,
        }
    }

    fn cluster(endpoint: Option<&str>) -> Value {
        let mut c = json!({
            "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "demo", "namespace": "default"}, "spec": {}
        });
        if let Some(host) = endpoint {
            c["spec"]["controlPlaneEndpoint"] = json!({"host": host, "port": 6443});
        }
        c
    }

    fn vpc_configmap(ic: &InfraCluster) -> Value {
        serde_json::to_value(vpc(ic)).unwrap()
    }

    fn observe(ic: &InfraCluster, objects: Vec<Value>) -> Observed {
        InfraClusterReconciler::fetch(ic, &Cache::from_objects(objects)).unwrap()
    }

    fn endpoint_of(ic: &InfraCluster, observed: &Observed) -> ComponentHealth {
        InfraClusterReconciler::health(ic, observed).remove(1)
    }

    #[test]
    fn plans_the_vpc_and_the_owner_status() {
        let ic = infra(None);
        let observed = observe(&ic, vec![cluster(Some("10.0.0.1"))]);
        let plan = InfraClusterReconciler::plan(&ic, &observed).unwrap();
        let applied: Vec<_> = plan.applied().collect();
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[0]["kind"], "ConfigMap");
        assert_eq!(applied[0]["metadata"]["name"], "demo-vpc");
        assert_eq!(applied[0]["data"]["region"], "eu-west-1");
        let id = applied[0]["data"]["vpcId"].as_str().unwrap();
        assert!(id.starts_with("vpc-") && id.len() == 12, "{id}");
        assert_eq!(id, vpc_id_of(&ic), "the id is deterministic");
        assert_eq!(applied[1]["kind"], "Cluster");
        assert_eq!(applied[1]["metadata"]["name"], "demo");
        // The VPC is not in the cache yet: the infrastructure is not ready.
        assert_eq!(applied[1]["status"], json!({"infrastructureReady": false}));
        assert!(matches!(
            plan.entries()[1],
            capstan_sdk::PlanEntry::ApplyWithoutOwnerRef(_)
        ));
    }

    #[test]
    fn owner_is_ready_once_the_vpc_exists_and_an_endpoint_is_known() {
        let ic = infra(None);
        let observed = observe(&ic, vec![cluster(Some("10.0.0.1")), vpc_configmap(&ic)]);
        let plan = InfraClusterReconciler::plan(&ic, &observed).unwrap();
        let status = &plan.applied().nth(1).unwrap()["status"];
        assert_eq!(status, &json!({"infrastructureReady": true}));

        let observed = observe(&ic, vec![cluster(None), vpc_configmap(&ic)]);
        let plan = InfraClusterReconciler::plan(&ic, &observed).unwrap();
        let status = &plan.applied().nth(1).unwrap()["status"];
        assert_eq!(status["infrastructureReady"], false);
    }

    #[test]
    fn a_terminal_failure_is_propagated_to_the_owner() {
        let mut ic = infra(Some(endpoint("10.0.0.2")));
        ic.status.failure_reason = Some("CreatingTimeout".into());
        ic.status.failure_message = Some("phase Creating lasted over 15m".into());
        let observed = observe(&ic, vec![cluster(None), vpc_configmap(&ic)]);
        let plan = InfraClusterReconciler::plan(&ic, &observed).unwrap();
        let status = &plan.applied().nth(1).unwrap()["status"];
        assert_eq!(
            status,
            &json!({
                "infrastructureReady": false,
                "failureReason": "CreatingTimeout",
                "failureMessage": "phase Creating lasted over 15m",
            })
        );
    }

    #[test]
    fn vpc_is_progressing_until_it_exists() {
        let ic = infra(None);
        let missing = &InfraClusterReconciler::health(&ic, &observe(&ic, vec![cluster(None)]))[0];
        assert_eq!(
            (missing.component.as_str(), missing.state),
            ("Vpc", HealthState::Progressing)
        );
        assert_eq!(
            missing.errors[0].category,
            ErrorCategory::MissingDownstreamDependency
        );
        let observed = observe(&ic, vec![cluster(None), vpc_configmap(&ic)]);
        assert_eq!(
            InfraClusterReconciler::health(&ic, &observed)[0].state,
            HealthState::Ready
        );
    }

    #[test]
    fn endpoint_is_the_own_one_first_then_the_clusters() {
        let own = infra(Some(endpoint("10.0.0.2")));
        let h = endpoint_of(&own, &observe(&own, vec![cluster(Some("10.0.0.1"))]));
        assert_eq!(
            (h.state, h.reason.as_str()),
            (HealthState::Ready, "Provided")
        );
        assert_eq!(h.message, "10.0.0.2:6443");

        let ic = infra(None);
        let h = endpoint_of(&ic, &observe(&ic, vec![cluster(Some("10.0.0.1"))]));
        assert_eq!(
            (h.state, h.reason.as_str()),
            (HealthState::Ready, "FromCluster")
        );
        assert_eq!(h.message, "10.0.0.1:6443");
    }

    #[test]
    fn without_any_endpoint_it_waits() {
        let ic = infra(Some(endpoint(""))); // An endpoint without host does not count.
        let h = endpoint_of(&ic, &observe(&ic, vec![cluster(None)]));
        assert_eq!(
            (h.state, h.reason.as_str()),
            (HealthState::Progressing, "WaitingForEndpoint")
        );
        assert_eq!(
            h.errors[0].category,
            ErrorCategory::MissingDownstreamDependency
        );
        assert_eq!(h.requeue_after, Some(30));
    }

    #[test]
    fn decorates_the_computed_status() {
        let ic = infra(None);
        let observed = observe(&ic, vec![cluster(Some("10.0.0.1")), vpc_configmap(&ic)]);
        let computed = json!({"status": "Ready", "phase": "Ready", "conditions": []});
        let update = InfraClusterReconciler::status(&ic, &observed, &computed);
        assert_eq!(
            update.fields_json(),
            json!({
                "ready": true,
                "failureDomains": {
                    "eu-west-1a": {"controlPlane": true},
                    "eu-west-1b": {"controlPlane": true},
                },
                "controlPlaneEndpoint": {"host": "10.0.0.1", "port": 6443},
                "vpcId": vpc_id_of(&ic),
            })
        );
        assert!(
            update.conditions.is_empty(),
            "the host already has VpcReady"
        );
    }

    #[test]
    fn decorates_a_failure() {
        let ic = infra(None);
        let observed = observe(&ic, vec![cluster(None)]);
        let computed = json!({
            "status": "Failed", "phase": "Failed",
            "failureReason": "CreatingTimeout", "failureMessage": "too long",
        });
        let fields = InfraClusterReconciler::status(&ic, &observed, &computed).fields_json();
        assert_eq!(fields["ready"], false);
        assert_eq!(fields["failureReason"], "CreatingTimeout");
        assert_eq!(fields["failureMessage"], "too long");
        assert!(fields.get("controlPlaneEndpoint").is_none() && fields.get("vpcId").is_none());
    }

    #[test]
    fn region_is_validated() {
        for good in ["eu-west-1", "us-east-2", "ap-southeast-9"] {
            assert!(validate_region(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "eu-west",
            "EU-west-1",
            "eu-west-10",
            "eur-west-1",
            "eu--1",
            "eu-west-a",
            "eu-west-1-b",
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
        let mut ic = infra(None);
        ic.spec.region = "mars".into();
        let err = InfraClusterReconciler::fetch(&ic, &Cache::from_objects(vec![])).unwrap_err();
        assert_eq!(err.category, ErrorCategory::InvalidSpec);
    }

    #[test]
    fn an_owner_missing_from_the_cache_is_transient() {
        let ic = infra(None);
        let err = InfraClusterReconciler::fetch(&ic, &Cache::from_objects(vec![])).unwrap_err();
        assert_eq!(err.category, ErrorCategory::Infrastructure);
        assert!(err.message.contains("demo"), "{err}");
    }

    #[test]
    fn manifest_waits_for_the_cluster() {
        let m = InfraClusterReconciler::manifest();
        assert_eq!(m.wait_for_owner, Some(cluster_gvk()));
        assert_eq!(m.status_mode, StatusMode::Decorate);
        assert_eq!(
            m.phase_timeouts,
            vec![PhaseTimeout {
                phase: "Creating".to_owned(),
                seconds: 900
            }]
        );
    }
}
