//! The guest components the tests and benchmarks run, built once per `cargo test` by this crate's
//! build script (see `build.rs`) and named here by path.
//!
//! Each guest has a constant named after its package (`deployment-handler` is
//! [`DEPLOYMENT_HANDLER`]); [`GUESTS`] lists them all and [`path`] finds one by package name.

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/paths.rs"));

/// The component built from the guest package `name` (as its `Cargo.toml` names it), if there is
/// such a guest.
#[must_use]
pub fn path(name: &str) -> Option<&'static Path> {
    GUESTS
        .iter()
        .find(|(package, _)| *package == name)
        .map(|(_, path)| Path::new(*path))
}

/// Why the guest package `name` (Python or JavaScript) was not built, if it was skipped for want
/// of its toolchain (never with `CAPSTAN_REQUIRE_TOOLCHAINS=1`: the build fails instead).
#[must_use]
pub fn skipped(name: &str) -> Option<&'static str> {
    SKIPPED
        .iter()
        .find(|(package, _)| *package == name)
        .map(|(_, reason)| *reason)
}
