//! Capstan: a Kubernetes reconciliation host whose controller logic runs as WebAssembly components.
//!
//! The host owns everything that touches the outside world; plugins hold the logic. See
//! `ARCHITECTURE.md` in the shared docs and the README.

mod bindings;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod contract;
pub mod dispatch;
pub mod event;
pub mod identity;
pub mod informer;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod plugin;
pub mod rate;
pub mod rbac;
pub mod reconcile;
pub mod render;
pub mod runner;
pub mod scaffold;
pub mod shard;
pub mod status;

/// An error and its sources on one line: `error: cause: cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
