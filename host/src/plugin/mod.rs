//! Plugins: loading and validating components, the precompiled cache, instances, limits and calls.

mod cache;
mod capability;
mod convert;
mod host;
mod instance;
mod limits;
mod output;
mod runtime;
mod world;

pub use cache::{ArtifactCache, Origin, content_hash};
pub use capability::{CacheReader, Grants, PodLogReader};
pub use instance::{CallError, HandlerEvent, HandlerOutcome, Plugin, PluginInfo};
pub use limits::Limits;
pub use runtime::{
    LoadError, LoadReport, RejectReason, Runtime, RuntimeConfig, RuntimeError, wasm_files,
};
pub use world::{WorldError, detect};
