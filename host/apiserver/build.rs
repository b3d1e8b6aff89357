//! Compiles the vendored Kubernetes `generated.proto` files (`proto/`) into one descriptor set
//! with `protox` (pure Rust, no `protoc`), embedded by `src/proto_json.rs`.

use std::path::PathBuf;

/// The messages the server reads from protobuf bodies; their imports come along.
const FILES: &[&str] = &[
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/certificates/v1/generated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut set = protox::compile(FILES, ["proto"])?;
    for file in &mut set.file {
        // The comments are documentation, not needed to read messages.
        file.source_code_info = None;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.binpb");
    std::fs::write(out, prost::Message::encode_to_vec(&set))?;
    Ok(())
}
