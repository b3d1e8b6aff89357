//! Embedded Kubernetes-compatible API server: serves the Kubernetes REST API in-process over HTTPS
//! with a bearer token, so the host, its tests and controller authors can use `kube::Client` and
//! `kubectl` with no cluster (an envtest that needs no binaries).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = capstan_apiserver::ApiServer::builder().build()?.start_loopback().await?;
//! let client = server.client()?;
//! # drop(client);
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod admission_policy;
mod api_services;
pub mod apply;
pub mod auth;
pub mod authz;
pub mod autoscaler_versions;
pub mod cel_library;
pub mod certificates;
pub mod client_certificates;
pub mod cluster;
mod component_statuses;
pub mod connection;
pub mod cron;
pub mod custom_resource_definitions;
pub mod discovery;
pub mod error;
pub mod event_versions;
pub mod fieldpath;
pub mod fieldtype;
pub mod format;
pub mod gc;
pub mod handler;
mod health;
mod kubernetes_service;
pub mod limit_ranges;
pub mod logs;
pub mod namespace;
pub mod patch;
pub mod path;
pub mod pattern;
pub mod persist;
pub mod pod_admission;
pub mod printers;
pub mod priority_classes;
pub mod proto_json;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod resource;
pub mod reviews;
pub mod root_ca;
mod runtime_classes;
pub mod scale;
pub mod schema;
pub mod selector;
pub mod server;
pub mod service_account_tokens;
pub mod service_accounts;
pub mod shard;
mod storage_protection;
pub mod store;
pub mod strategic;
mod strategy;
pub mod table;
pub mod tls;
pub mod tokenfile;
pub mod user;
pub mod validation;
pub mod verbs;
pub mod watch;
pub mod workloads;

pub use error::ApiError;
pub use server::{ApiServer, ApiServerBuilder, RunningServer, ServerError, kubeconfig_yaml};
