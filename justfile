# Capstan tasks. The README's two commands are `just run` and `just test`.

guests := "target/examples/wasm32-wasip2/release"

# Add the wasm target (rustup does not add it on its own).
setup:
    rustup target add wasm32-wasip2

# Build the example plugins, all at once (each names its world in `export!`).
guests: setup
    cargo build --release --workspace --target wasm32-wasip2 --manifest-path guests/Cargo.toml --target-dir target/examples

# The example plugins where deploy/overlays/example-configmap takes them from (docs/DEPLOY.md).
deploy-plugins: guests
    cp {{guests}}/webapp.wasm {{guests}}/infra_cluster.wasm {{guests}}/deployment_handler.wasm deploy/overlays/example-configmap/plugins/

# The main job: the host with the example plugins against the embedded API server.
run: guests
    cargo run -p capstan -- run --plugins {{guests}} --manifests examples --kubeconfig-out target/capstan.kubeconfig

# Validate the example plugins.
check: guests
    cargo run -p capstan -- check {{guests}}

# Every test (the benchmarks are not built: `cargo test --benches` runs each once).
test: setup
    cargo test --workspace
    cargo test --manifest-path guests/Cargo.toml

# Lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks (release), recorded in docs/PERFORMANCE.md.
bench: setup
    cargo bench -p capstan
    cargo bench -p capstan-apiserver

# The embedded API server alone, with a kubeconfig for kubectl.
apiserver:
    cargo run -p capstan -- apiserver --kubeconfig-out /tmp/capstan.kubeconfig
