//! The integration tests: real guests, the real host and its `capstan` binary, a real API server.
//! One binary (wasmtime, kube and the API server are linked once, and every test shares one pool
//! of test threads), one module a concern or a command.

mod support;

mod boundary;
mod cli;
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
