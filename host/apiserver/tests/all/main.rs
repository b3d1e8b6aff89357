//! The embedded API server's integration tests. One binary, one module a concern.

mod common;

mod authz;
mod bad_input;
mod differential;
mod kube_client;
mod kubectl;
mod persistence;
mod security;
