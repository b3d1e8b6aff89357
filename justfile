# Capstan tasks. The README's two commands are `just run` and `just test`.

guests := "target/guests/wasm32-wasip2/release"

# Add the wasm target (rustup does not add it on its own).
setup:
    rustup target add wasm32-wasip2

# Build the example plugins.
guests: setup
    cargo build --release --target wasm32-wasip2 --manifest-path guests/Cargo.toml --target-dir target/guests

# The main job: validate the example plugins with the host.
run: guests
    cargo run -p capstan -- check {{guests}}/deployment_handler.wasm {{guests}}/webapp.wasm

# Every test.
test: setup
    cargo test --workspace --all-targets
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
