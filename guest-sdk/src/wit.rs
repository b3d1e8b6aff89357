//! Bindings generated from `wit/` for the world the enabled features select; authors never use them.
#![allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]

#[cfg(all(feature = "handler", not(feature = "reconciler")))]
wit_bindgen::generate!({
    world: "handler-plugin",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "::capstan_sdk::wit",
});

#[cfg(all(feature = "reconciler", not(feature = "handler")))]
wit_bindgen::generate!({
    world: "reconciler-plugin",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "::capstan_sdk::wit",
});

#[cfg(all(feature = "handler", feature = "reconciler"))]
wit_bindgen::generate!({
    world: "controller-plugin",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "::capstan_sdk::wit",
});
