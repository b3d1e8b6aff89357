//! Host bindings generated from `wit/`: the only place that calls `bindgen!`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "controller-plugin",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "capstan:controller/status-channel.status-sender": crate::status::StatusSender,
    },
});
