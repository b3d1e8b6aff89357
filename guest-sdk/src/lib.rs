//! Write Capstan controller plugins in idiomatic Rust.
//!
//! A plugin is a type implementing [`Plugin`] and [`Handler`], [`Reconciler`] or both, exported
//! with [`export!`], which names the roles: `export!(MyType: Handler)`,
//! `export!(MyType: Reconciler)` or `export!(MyType: Handler + Reconciler)`. No cargo feature
//! selects the world, so any number of plugins build in one `cargo build --workspace`.
//!
//! The contract's records and enums ([`Manifest`], [`ComponentHealth`], [`Condition`],
//! [`EventProcessStatus`], ...) are generated from `wit/` once, here, and are the types a plugin
//! uses; this crate adds their builders. Everything else is plain Rust: `fetch`, `plan`, `health`
//! and handlers are unit-testable natively with `cargo test`.
//!
//! ```
//! use capstan_sdk::k8s_openapi::api::core::v1::ConfigMap;
//! use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "0.1.0").watches::<ConfigMap>()
//!     }
//! }
//!
//! impl Handler for Hello {
//!     type Object = ConfigMap;
//!     fn added(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
//!         EventStatus::Completed
//!     }
//!     fn updated(_: ConfigMap, _: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
//!         EventStatus::Skip
//!     }
//!     fn deleted(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
//!         EventStatus::Skip
//!     }
//! }
//!
//! capstan_sdk::export!(Hello: Handler);
//! ```

pub mod cache;
pub mod conditions;
#[cfg(feature = "crd")]
pub mod crd;
pub mod glue;
pub mod health;
pub mod inspect;
pub mod log;
pub mod manifest;
pub mod object_kind;
pub mod plan;
pub mod pod_logs;
pub mod status;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;
#[doc(hidden)]
pub mod wit;

pub use cache::{Cache, Fetched};
pub use capstan_sdk_macro::export;
pub use conditions::{CleanupOutcome, Condition, ConditionStatus, Observability, StatusUpdate};
pub use health::{CategorizedError, ComponentHealth, Error, ErrorCategory, HealthState};
pub use k8s_openapi;
pub use manifest::{
    AccessRule, ChangeFilter, EventFilter, GroupVersionKind, Gvk, Manifest, PhaseTimeout,
    StatusMode, Verb,
};
pub use object_kind::ObjectKind;
pub use plan::{ObjectRef, Plan, PlanEntry};
pub use pod_logs::PodLogs;
pub use serde_json;
pub use status::{ChannelError, Delivery, EventProcessStatus, EventStatus, Message, StatusChannel};
/// The wit-bindgen the code `export!` expands to is generated with.
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

use serde::de::DeserializeOwned;

/// Every plugin describes itself.
pub trait Plugin {
    /// The plugin's manifest: name, version, kinds watched and owned, access asked for.
    fn manifest() -> Manifest;
}

/// An event handler (seed 000): called once per event of the kinds it watches.
pub trait Handler: Plugin {
    /// The typed object the events carry, e.g. `k8s_openapi::api::apps::v1::Deployment`. A
    /// k8s-openapi type or an [`ObjectKind`] makes the host refuse the plugin if it watches any
    /// other kind; `serde_json::Value` takes any kind.
    type Object: DeserializeOwned;

    /// An object was added.
    fn added(obj: Self::Object, status: &StatusChannel<'_>) -> EventStatus;

    /// An object was updated.
    fn updated(new: Self::Object, old: Self::Object, status: &StatusChannel<'_>) -> EventStatus;

    /// An object was deleted.
    fn deleted(obj: Self::Object, status: &StatusChannel<'_>) -> EventStatus;

    /// A status was sent (with `send` or `send_close`) on the channel of the event about `obj`.
    fn on_status(obj: &ObjectRef, status: EventProcessStatus) {
        let _ = (obj, status);
    }
}

/// A reconciler (seed 003): fetch, plan and health; the host applies, writes status and requeues.
///
/// One reconcile of one object runs on an instance of its own: the object is decoded once, `fetch`
/// runs first and its observation stays in the plugin for `health`, `plan` and `status`.
pub trait Reconciler: Plugin {
    /// The typed object reconciled (see [`Handler::Object`] for what its type tells the host).
    type Object: DeserializeOwned;
    /// What `fetch` observed, handed to `plan`, `health` and `status`; any type, since it never
    /// leaves the plugin.
    type Observation;

    /// Read what the reconcile needs from the host's caches.
    fn fetch(obj: &Self::Object, cache: &Cache) -> Result<Self::Observation, Error>;

    /// Plan the desired objects. Pure: no capability is available during this call.
    fn plan(obj: &Self::Object, observed: &Self::Observation) -> Result<Plan, Error>;

    /// The health of each component; the host turns it into conditions.
    fn health(obj: &Self::Object, observed: &Self::Observation) -> Vec<ComponentHealth>;

    /// Decorate or replace the computed status (`StatusMode::Decorate` / `Manual`).
    fn status(
        obj: &Self::Object,
        observed: &Self::Observation,
        computed: &serde_json::Value,
    ) -> StatusUpdate {
        let _ = (obj, observed, computed);
        StatusUpdate::new()
    }

    /// Clean up before the object is deleted (with [`Manifest::with_finalizer`]).
    fn cleanup(obj: &Self::Object) -> Result<CleanupOutcome, Error> {
        let _ = obj;
        Ok(CleanupOutcome::Done)
    }
}
