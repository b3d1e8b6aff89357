//! A Cluster API style infrastructure provider for `InfraCluster` (examples.capstan.dev/v1alpha1),
//! following seed 004 (status management).
//!
//! An `InfraCluster` provides the infrastructure of a `Cluster`, which stands in for Cluster API's
//! Cluster. Both are custom resources defined here by their Rust types (kube's
//! `#[derive(CustomResource)]`), from which their CRDs in `examples/infra-cluster.yaml` are
//! generated. The reconciler:
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

use capstan_sdk::crd::{CustomResource, JsonSchema};
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

// `#[derive(CustomResource)]` makes the `InfraCluster` and `Cluster` custom resources of their
// specs; their CRDs are `examples/infra-cluster.yaml`, generated (the test
// `the_example_crds_are_generated_from_the_types`).

/// What the user asks of an InfraCluster.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "examples.capstan.dev",
    version = "v1alpha1",
    kind = "InfraCluster",
    namespaced,
    doc = "The infrastructure of one Cluster (like Cluster API's infrastructure clusters).",
    status = "InfraClusterStatus",
    printcolumn = r#"{"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Endpoint", "type": "string", "jsonPath": ".status.controlPlaneEndpoint.host"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[kube(crates(
    kube_core = "capstan_sdk::crd::kube_core",
    k8s_openapi = "capstan_sdk::k8s_openapi",
    schemars = "capstan_sdk::crd::schemars",
    serde_json = "capstan_sdk::serde_json"
))]
#[schemars(crate = "capstan_sdk::crd::schemars")]
#[serde(rename_all = "camelCase")]
pub struct InfraClusterSpec {
    /// Region, such as `eu-west-1`: `^[a-z]{2}-[a-z]+-[0-9]$`, validated by the reconciler rather
    /// than by the schema, so that a bad region is a terminal invalid-spec failure (phase Failed,
    /// ConfigValid=False).
    pub region: String,
    /// Where machines may be placed, such as `eu-west-1a`.
    #[serde(default)]
    pub failure_domains: Vec<String>,
    /// The API server endpoint, if this infrastructure provides its own; without it, the
    /// Cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<Endpoint>,
}

/// An API server endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "capstan_sdk::crd::schemars")]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// The status of an InfraCluster. The host writes `status`, `phase`, `lastPhaseTransitionTime`,
/// `observedGeneration`, `conditions` and, on a terminal failure, `failureReason` and
/// `failureMessage` (kept untyped); the reconciler adds Cluster API's infrastructure fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(crate = "capstan_sdk::crd::schemars")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct InfraClusterStatus {
    /// Whether the infrastructure is ready: the host's computed status is `Ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// The terminal failure, if any.
    #[serde(flatten)]
    pub failure: Failure,
    /// Where machines may be placed, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_domains: Option<BTreeMap<String, FailureDomain>>,
    /// The control plane endpoint in use: the InfraCluster's own, else the Cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<Endpoint>,
    /// The id of the VPC, once it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
}

/// A failure domain, as Cluster API describes one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(crate = "capstan_sdk::crd::schemars")]
pub struct FailureDomain {
    /// Whether control plane machines may be placed there.
    pub control_plane: bool,
}

/// Cluster API's failure fields: written by the host on a terminal failure, copied to the Cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(crate = "capstan_sdk::crd::schemars")]
pub struct Failure {
    /// Machine-readable reason, such as `CreatingTimeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// The spec of a Cluster, the owner of an InfraCluster; the reconciler reads its endpoint.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "examples.capstan.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    doc = "A cluster, standing in for Cluster API's Cluster: the owner of an InfraCluster.",
    status = "ClusterStatus",
    printcolumn = r#"{"name": "Infrastructure Ready", "type": "boolean", "jsonPath": ".status.infrastructureReady"}"#,
    printcolumn = r#"{"name": "Failure", "type": "string", "jsonPath": ".status.failureReason"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[kube(crates(
    kube_core = "capstan_sdk::crd::kube_core",
    k8s_openapi = "capstan_sdk::k8s_openapi",
    schemars = "capstan_sdk::crd::schemars",
    serde_json = "capstan_sdk::serde_json"
))]
#[schemars(crate = "capstan_sdk::crd::schemars")]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The endpoint the Cluster was given, used when the InfraCluster provides none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<Endpoint>,
}

/// The status of a Cluster: what its InfraCluster reports (other fields are kept untyped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(crate = "capstan_sdk::crd::schemars")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ClusterStatus {
    /// Whether the infrastructure is ready: its VPC exists, an endpoint is known, nothing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure_ready: Option<bool>,
    /// The infrastructure's terminal failure, if any.
    #[serde(flatten)]
    pub failure: Failure,
}

/// The owner kind, standing in for Cluster API's `Cluster`.
fn cluster_gvk() -> Gvk {
    Gvk::of_custom::<Cluster>()
}

impl ObjectKind for InfraCluster {
    /// The host refuses this plugin if it watches anything but InfraClusters.
    fn object_kind() -> Option<Gvk> {
        Some(Gvk::of_custom::<InfraCluster>())
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
            .watches_gvk(Gvk::of_custom::<InfraCluster>())
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
        // The host writes these as strings (and the schema types them so).
        let computed_text = |field: &str| computed.get(field)?.as_str().map(str::to_owned);
        let control_plane = FailureDomain {
            control_plane: true,
        };
        let fields = InfraClusterStatus {
            ready: Some(computed["status"] == "Ready"),
            failure: Failure {
                failure_reason: computed_text("failureReason"),
                failure_message: computed_text("failureMessage"),
            },
            failure_domains: Some(
                ic.spec
                    .failure_domains
                    .iter()
                    .map(|d| (d.clone(), control_plane.clone()))
                    .collect(),
            ),
            control_plane_endpoint: observed.endpoint(ic).cloned(),
            vpc_id: observed.vpc_id().map(str::to_owned),
        };
        StatusUpdate::new().with_fields(&json!(fields))
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
    let failure = ic
        .status
        .as_ref()
        .map(|s| s.failure.clone())
        .unwrap_or_default();
    let ready = observed.vpc.found().is_some()
        && observed.endpoint(ic).is_some()
        && failure.failure_reason.is_none();
    let status = ClusterStatus {
        infrastructure_ready: Some(ready),
        failure,
    };
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
            status: None,
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

    /// The comments of `examples/infra-cluster.yaml`: before the CRDs, before the sample
    /// Cluster, before the sample InfraCluster.
    const HEADER: &str = r"# Generated from the Cluster and InfraCluster types of guests/infra-cluster (do not edit by
# hand: UPDATE_EXPECT=1 cargo test --manifest-path guests/Cargo.toml -p infra-cluster).
# The custom resources of the infra-cluster example, a Cluster API style infrastructure provider
# (seed 004):
#   - Cluster stands in for Cluster API's Cluster; the infra-cluster reconciler only reads its
#     spec.controlPlaneEndpoint and writes its status (infrastructureReady, failureReason,
#     failureMessage).
#   - InfraCluster is the infrastructure of one Cluster (like CAPTCluster). Its status is written by
#     the host (status, phase, conditions, observedGeneration, failureReason/failureMessage on a
#     terminal failure) and decorated by the reconciler (ready, controlPlaneEndpoint,
#     failureDomains, vpcId).
";
    const CLUSTER_NOTE: &str = r"# Remove spec.controlPlaneEndpoint (and give the InfraCluster none) to see the InfraCluster wait
# in phase Creating (ControlPlaneEndpointReady=False, WaitingForEndpoint) and fail with
# CreatingTimeout after 15m.
";
    const INFRA_CLUSTER_NOTE: &str = r"# The owner reference to the Cluster is not part of this sample: a real one needs the Cluster's
# uid, known only once the Cluster exists. Whoever creates the Cluster sets it (Cluster API's
# Cluster controller does; in the tests, the test sets it with the Cluster's uid):
#   metadata:
#     ownerReferences:
#       - apiVersion: examples.capstan.dev/v1alpha1
#         kind: Cluster
#         name: demo
#         uid: <the uid of Cluster demo>
# With this sample alone the InfraCluster stays in phase Pending, waiting for its owner.
";

    fn yaml(value: &impl Serialize) -> String {
        serde_saphyr::to_string(value).unwrap()
    }

    /// `examples/infra-cluster.yaml`: the CRDs of [`Cluster`] and [`InfraCluster`], then a
    /// sample `demo` of each. Fails when the file and the types drift apart; `UPDATE_EXPECT=1
    /// cargo test --manifest-path guests/Cargo.toml -p infra-cluster` regenerates it.
    #[test]
    fn the_example_crds_are_generated_from_the_types() {
        use capstan_sdk::crd::CustomResourceExt;
        let mut cluster = Cluster::new(
            "demo",
            ClusterSpec {
                control_plane_endpoint: Some(endpoint("10.0.0.1")),
            },
        );
        cluster.metadata.namespace = Some("default".into());
        let mut infra_cluster = infra(None);
        infra_cluster.metadata.owner_references = None;
        let file = [
            HEADER,
            &yaml(&Cluster::crd()),
            "---\n",
            &yaml(&InfraCluster::crd()),
            "---\n",
            CLUSTER_NOTE,
            &yaml(&cluster),
            "---\n",
            INFRA_CLUSTER_NOTE,
            &yaml(&infra_cluster),
        ]
        .concat();
        expect_test::expect_file![concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/infra-cluster.yaml"
        )]
        .assert_eq(&file);
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
        ic.status = Some(InfraClusterStatus {
            failure: Failure {
                failure_reason: Some("CreatingTimeout".into()),
                failure_message: Some("phase Creating lasted over 15m".into()),
            },
            ..Default::default()
        });
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
