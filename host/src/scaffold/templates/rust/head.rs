//! {{name}}: {{kind_description}}.
//!
//! Build: `cargo build --release --target wasm32-wasip2`; test natively: `cargo test`.

use capstan_sdk::k8s_openapi::api::core::v1::ConfigMap;
