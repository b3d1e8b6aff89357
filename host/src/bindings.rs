//! Host bindings generated from `wit/`: the only place that calls `bindgen!`. The generated
//! records and enums are the host's contract types (`crate::contract` re-exports them).
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "controller-plugin",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [
        PartialEq,
        Eq,
        Hash,
        PartialOrd,
        Ord,
        serde::Serialize,
        serde::Deserialize,
    ],
    with: {
        "capstan:controller/status-channel.status-sender": crate::status::StatusSender,
    },
});
