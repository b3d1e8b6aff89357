# syntax=docker/dockerfile:1
#
# The Capstan host image: `docker build -t capstan:0.1.0 .` (docs/DEPLOY.md).
#
# The default target is the host: the `capstan` binary alone on distroless (glibc, CA
# certificates, no shell), as user 65532, with the arguments a pod runs it with. The
# `example-plugins` target is an image of the example plugins' `.wasm` files only, for an `image`
# volume (`docker build --target example-plugins -t capstan-example-plugins:0.1.0 .`).
#
# Pinned by exact tag; to pin by digest, replace each tag by its `@sha256:...` from
# `docker buildx imagetools inspect IMAGE:TAG`.

# The builder: the toolchain rust-toolchain.toml names, on the same Debian as the runtime (glibc).
FROM docker.io/library/rust:1.95.0-slim-bookworm AS builder
# The installed toolchain, whatever rust-toolchain.toml asks for on top (clippy, rustfmt): the
# build needs none of it, nor the network for it.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p capstan \
 && install -D -m 0755 target/release/capstan /out/capstan

# The example plugins, built as `just guests` builds them.
FROM builder AS example-plugins-build
RUN rustup target add wasm32-wasip2
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target/examples \
    cargo build --release --locked --workspace --target wasm32-wasip2 \
        --manifest-path guests/Cargo.toml --target-dir target/examples \
 && mkdir -p /out/plugins \
 && cp target/examples/wasm32-wasip2/release/*.wasm /out/plugins/

# Only the `.wasm` files, at the root: what an `image` volume mounts at /plugins.
FROM scratch AS example-plugins
COPY --from=example-plugins-build /out/plugins/ /

# The host.
FROM gcr.io/distroless/cc-debian12:nonroot AS host
COPY --from=builder /out/capstan /usr/local/bin/capstan
USER 65532:65532
EXPOSE 9090
# /plugins: the plugins volume (read-only). /var/cache/capstan: a writable volume (the root
# filesystem is read-only); the precompiled cache is a directory the host creates in it, for the
# host refuses a cache directory it does not own, and a volume's root belongs to root.
# /etc/capstan/config.yaml: the configuration (a ConfigMap). 0.0.0.0:9090: /healthz, /readyz,
# /metrics and /plugins, reachable from the kubelet and Prometheus.
ENTRYPOINT ["/usr/local/bin/capstan", "run", "--plugins", "/plugins", "--cache-dir", "/var/cache/capstan/precompiled", "--config", "/etc/capstan/config.yaml", "--http-listen", "0.0.0.0:9090"]
