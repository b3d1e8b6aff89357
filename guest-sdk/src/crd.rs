//! Custom resources from Rust types (feature `crd`): kube's `#[derive(CustomResource)]` with
//! schemars, built for wasm32-wasip2 as natively, and the CRD the type describes
//! (`CustomResourceExt::crd()`), so that a plugin's CRD YAML is generated from the type it decodes.
//!
//! The derive must be told where its crates are, through the SDK:
//!
//! ```
//! use capstan_sdk::crd::{CustomResource, CustomResourceExt, JsonSchema};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! #[kube(group = "examples.capstan.dev", version = "v1alpha1", kind = "Widget", namespaced)]
//! #[kube(crates(
//!     kube_core = "capstan_sdk::crd::kube_core",
//!     k8s_openapi = "capstan_sdk::k8s_openapi",
//!     schemars = "capstan_sdk::crd::schemars",
//!     serde_json = "capstan_sdk::serde_json"
//! ))]
//! #[schemars(crate = "capstan_sdk::crd::schemars")]
//! pub struct WidgetSpec {
//!     size: i32,
//! }
//!
//! assert_eq!(Widget::crd().spec.names.plural, "widgets");
//! assert_eq!(capstan_sdk::Gvk::of_custom::<Widget>().kind, "Widget");
//! ```

pub use kube_core;
pub use kube_core::CustomResourceExt;
pub use kube_derive::CustomResource;
pub use schemars;
pub use schemars::JsonSchema;

use crate::manifest::Gvk;

impl Gvk {
    /// The GVK of a custom resource type (one `#[derive(CustomResource)]` made).
    pub fn of_custom<K: kube_core::Resource<DynamicType = ()>>() -> Self {
        Self::new(&K::group(&()), &K::version(&()), &K::kind(&()))
    }
}
