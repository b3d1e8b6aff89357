//! Plugins: loading and validating components, the precompiled cache, instances, limits and calls.

mod bounds;
mod cache;
mod capability;
mod embedded;
mod file;
mod grant;
mod host;
mod instance;
mod limits;
mod output;
mod quarantine;
mod registry;
mod reload;
mod runtime;
mod settings;
mod tier;
mod wasi;
mod world;

pub use bounds::BoundsError;
pub use cache::{ArtifactCache, CacheError, Origin, content_hash};
pub use capability::{CacheReader, Grants, KubePodLogs, PodLogReader};
pub use embedded::{
    EmbeddedError, SECTION as MANIFEST_SECTION, embed as embed_manifest, read as embedded_manifest,
};
pub use file::{DEFAULT_MAX_PLUGIN_BYTES, FileError, read_plugin_file};
pub use grant::{Binding, GrantEntry, GrantStatus, GrantTable};
pub use instance::{
    CallError, CheckedStatus, HandlerEvent, HandlerOutcome, Planned, Plugin, PluginInfo,
    Reconciliation,
};
pub use limits::Limits;
pub use output::{DROP_WARNING_INTERVAL, LogLimits};
pub use quarantine::{PluginState, QuarantinePolicy};
pub use registry::{
    GrantView, Installed, Loaded, PluginEvent, Registry, RegistryError, RegistryView, Rejection,
};
pub use reload::{ReloadError, Reloader, WatchHandle, is_plugin_file};
pub use runtime::{
    LoadError, LoadReport, RejectReason, Runtime, RuntimeConfig, RuntimeError, wasm_files,
};
pub use settings::{OWN_VERBS, PluginSettings, WATCH_VERBS};
pub use tier::{CompileTiers, Tier, TierError};
pub use wasi::{DirGrant, WasiError, WasiGrants};
pub use world::{WorldError, detect};
