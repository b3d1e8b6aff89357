//! The kind a plugin decodes its objects as, told to the host in the manifest's `object-kind` so
//! that a plugin typed for one kind is refused at load if it watches another.
//!
//! `export!` finds it from the plugin's `Object` type: [`ObjectKind`] when the type implements it
//! (custom resources), else the kind of a [`k8s_openapi::Resource`] (every k8s-openapi type), else
//! `None`, meaning "any kind" (`serde_json::Value`, or a struct that only reads `metadata`).

use crate::manifest::Gvk;

/// The kind of a custom resource type: implement it for a CRD struct that is the `Object` of a
/// handler or reconciler, so the host refuses the plugin if it watches any other kind.
///
/// ```
/// use capstan_sdk::{Gvk, ObjectKind};
///
/// #[derive(serde::Deserialize)]
/// struct WebApp {}
///
/// impl ObjectKind for WebApp {
///     fn object_kind() -> Option<Gvk> {
///         Some(Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"))
///     }
/// }
/// assert_eq!(capstan_sdk::__object_kind!(WebApp).unwrap().kind, "WebApp");
/// ```
pub trait ObjectKind {
    /// The one kind this type decodes, or `None` for any kind.
    fn object_kind() -> Option<Gvk>;
}

/// Autoref specialization: the first of [`probe::ByObjectKind`], [`probe::ByResource`] and
/// [`probe::ByAny`] that applies to a concrete type wins (see [`crate::__object_kind`]).
#[doc(hidden)]
pub mod probe {
    use super::ObjectKind;
    use crate::manifest::Gvk;
    use std::marker::PhantomData;

    /// A value standing for the type `T`.
    pub struct Probe<T>(PhantomData<fn() -> T>);

    impl<T> Probe<T> {
        /// The probe of `T`.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Self(PhantomData)
        }
    }

    /// First choice: the type says its kind.
    pub trait ByObjectKind {
        /// The kind.
        fn object_kind(&self) -> Option<Gvk>;
    }

    impl<T: ObjectKind> ByObjectKind for &&Probe<T> {
        fn object_kind(&self) -> Option<Gvk> {
            T::object_kind()
        }
    }

    /// Second choice: a k8s-openapi type.
    pub trait ByResource {
        /// The kind.
        fn object_kind(&self) -> Option<Gvk>;
    }

    impl<T: k8s_openapi::Resource> ByResource for &Probe<T> {
        fn object_kind(&self) -> Option<Gvk> {
            Some(Gvk::of::<T>())
        }
    }

    /// Last choice: any kind.
    pub trait ByAny {
        /// `None`.
        fn object_kind(&self) -> Option<Gvk>;
    }

    impl<T> ByAny for Probe<T> {
        fn object_kind(&self) -> Option<Gvk> {
            None
        }
    }
}

/// The kind a concrete type decodes (see the module docs); used by `export!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __object_kind {
    ($ty:ty) => {{
        #[allow(unused_imports)]
        use $crate::object_kind::probe::{ByAny as _, ByObjectKind as _, ByResource as _};
        (&&&$crate::object_kind::probe::Probe::<$ty>::new()).object_kind()
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    struct Custom;
    impl ObjectKind for Custom {
        fn object_kind() -> Option<Gvk> {
            Some(Gvk::new("test.capstan.dev", "v1", "Custom"))
        }
    }

    struct MetadataOnly;

    #[test]
    fn declared_then_k8s_openapi_then_any() {
        assert_eq!(
            crate::__object_kind!(Custom),
            Some(Gvk::new("test.capstan.dev", "v1", "Custom"))
        );
        assert_eq!(
            crate::__object_kind!(Deployment),
            Some(Gvk::new("apps", "v1", "Deployment"))
        );
        assert_eq!(crate::__object_kind!(serde_json::Value), None);
        assert_eq!(crate::__object_kind!(MetadataOnly), None);
    }
}
