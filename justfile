# Capstan tasks. The README's two commands are `just run` and `just test`.

guests := "target/examples/wasm32-wasip2/release"

# Add the wasm target (rustup does not add it on its own).
setup:
    rustup target add wasm32-wasip2

# Build the example plugins, all at once (each names its world in `export!`).
guests: setup
    cargo build --release --workspace --target wasm32-wasip2 --manifest-path guests/Cargo.toml --target-dir target/examples

# The example plugins that fit in a ConfigMap (1 MiB), where deploy/overlays/example-configmap
# takes them from (docs/DEPLOY.md). Fails if one has outgrown the limit.
deploy-plugins: guests
    for f in infra_cluster deployment_handler; do \
        test $(stat -c %s {{guests}}/$f.wasm) -le 1048576 || { echo "$f.wasm is over 1 MiB: it cannot be a ConfigMap" >&2; exit 1; }; \
        cp {{guests}}/$f.wasm deploy/overlays/example-configmap/plugins/; \
    done

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
