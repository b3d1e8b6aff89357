//! Write Capstan controller plugins in idiomatic Rust.
//!
//! A plugin is a type implementing [`Plugin`] and [`Handler`] (feature `handler`), [`Reconciler`]
//! (feature `reconciler`), or both, exported with [`export!`]. Everything here is plain Rust:
//! `plan`, `health` and handlers are unit-testable natively with `cargo test`.
//!
//! ```ignore
//! struct Hello;
//! impl capstan_sdk::Plugin for Hello {
//!     fn manifest() -> capstan_sdk::Manifest {
//!         capstan_sdk::Manifest::new("hello", "0.1.0").watches::<capstan_sdk::k8s_openapi::api::core::v1::ConfigMap>()
//!     }
//! }
//! ```

pub mod cache;
pub mod conditions;
#[cfg(any(feature = "handler", feature = "reconciler"))]
pub mod glue;
pub mod health;
pub mod inspect;
pub mod log;
pub mod manifest;
pub mod plan;
pub mod pod_logs;
pub mod status;
#[doc(hidden)]
pub mod wit;

pub use cache::{Cache, Fetched};
pub use conditions::{Cleanup, Condition, ConditionStatus, Observability, StatusUpdate};
pub use health::{ComponentHealth, Error, ErrorCategory, HealthState};
pub use k8s_openapi;
pub use manifest::{Gvk, Manifest, StatusMode, Verb};
pub use plan::{ObjectRef, Plan, PlanEntry};
pub use pod_logs::PodLogs;
pub use serde_json;
pub use status::{ChannelError, Delivery, EventProcessStatus, EventStatus, StatusChannel};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every plugin describes itself.
pub trait Plugin {
    /// The plugin's manifest: name, version, kinds watched and owned, access asked for.
    fn manifest() -> Manifest;
}

/// An event handler (seed 000): called once per event of the kinds it watches.
pub trait Handler: Plugin {
    /// The typed object the events carry, e.g. `k8s_openapi::api::apps::v1::Deployment`.
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
pub trait Reconciler: Plugin {
    /// The typed object reconciled.
    type Object: DeserializeOwned;
    /// What `fetch` observed, handed to `plan`, `health` and `status`.
    type Observation: Serialize + DeserializeOwned;

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
        StatusUpdate::default()
    }

    /// Clean up before the object is deleted (with [`Manifest::with_finalizer`]).
    fn cleanup(obj: &Self::Object) -> Result<Cleanup, Error> {
        let _ = obj;
        Ok(Cleanup::Done)
    }
}

/// Export a plugin type as the component's implementation.
///
/// ```ignore
/// capstan_sdk::export!(MyController);
/// ```
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        // Exports exist only in the component; native builds (unit tests, benchmarks) call the
        // plugin type directly.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __CapstanExports = $crate::glue::Exports<$ty>;
    $crate::wit::__export_world!(__CapstanExports with_types_in $crate::wit);
        };
    };
}
