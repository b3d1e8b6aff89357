//! The integration tests: real guests, real host, real API server. One binary (wasmtime, kube and
//! the API server are linked once), one module a concern.

mod boundary;
mod cost;
mod deploy;
mod dispatch;
mod handler_calls;
mod hostile;
mod isolation;
mod leader;
mod least_privilege;
mod plugin_runtime;
mod pod_logs;
mod polyglot;
mod reconcile;
mod reload;
mod run;
mod sandbox;
mod tier;
