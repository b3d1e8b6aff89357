//! Capstan: a Kubernetes reconciliation host whose controller logic runs as WebAssembly components.
//!
//! The host owns everything that touches the outside world; plugins hold the logic. See
//! `ARCHITECTURE.md` in the shared docs and the README.

mod bindings;
pub mod bus;
pub mod contract;
pub mod dispatch;
pub mod event;
pub mod informer;
pub mod plugin;
pub mod status;
