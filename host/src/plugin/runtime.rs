//! The plugin runtime: an engine and linker per compilation tier, the epoch ticker, and loading
//! with validation.

use super::cache::{Origin, content_hash};
use super::embedded::{EmbeddedError, SECTION};
use super::file::{DEFAULT_MAX_PLUGIN_BYTES, FileError, read_plugin_file};
use super::grant::{GrantEntry, GrantTable};
use super::instance::{CallError, Plugin, PluginInfo};
use super::limits::Limits;
use super::tier::{CompileTiers, Tier, TierEngine, TierError, baseline_may_lack};
use super::world::{self, WorldError};
use crate::contract::World;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Errors creating the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The optimizing tier's engine, linker or cache could not be set up.
    #[error("cannot set up the plugin runtime")]
    Tier(#[from] TierError),
    /// The epoch ticker thread could not start.
    #[error("cannot start the epoch ticker")]
    Ticker(#[source] std::io::Error),
}

/// Why a plugin file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    /// The file was refused or could not be read.
    #[error("refused file")]
    File(#[from] FileError),
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file")]
    NotWasm,
    /// A core module rather than a component.
    #[error("a core WebAssembly module, not a component (build the plugin for wasm32-wasip2)")]
    CoreModule,
    /// Compilation failed (truncated or invalid component).
    #[error("invalid component: {0}")]
    Compile(String),
    /// Not a world of this contract, or an incompatible version.
    #[error(transparent)]
    World(#[from] WorldError),
    /// Imports the host does not provide.
    #[error("imports something the host does not provide: {0}")]
    Link(String),
    /// `describe` trapped, timed out or returned too much.
    #[error("describe failed")]
    Describe(#[source] CallError),
    /// The manifest is unusable.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// The manifest's event filter is unusable (too many namespaces, a selector that does not
    /// parse, ...).
    #[error("plugin {plugin}: invalid event filter")]
    EventFilter {
        /// The plugin's name.
        plugin: String,
        /// What is wrong with the filter.
        #[source]
        source: crate::informer::SelectionError,
    },
    /// Another file declares the same plugin name and keeps it.
    #[error("a plugin named {name} is also declared by {}, which keeps the name ({rule})", winner.display())]
    Duplicate {
        /// The name.
        name: String,
        /// The file that keeps it.
        winner: PathBuf,
        /// Why that one.
        rule: &'static str,
    },
    /// The manifest in the component's `capstan:manifest` section cannot be read.
    #[error("unreadable embedded manifest")]
    Embedded(#[source] EmbeddedError),
    /// The manifest in the component's `capstan:manifest` section is not what `describe` returns.
    #[error(
        "the embedded manifest ({SECTION} section) does not match what describe returns: re-embed it with `capstan annotate`"
    )]
    EmbeddedMismatch,
    /// The manifest does not match the world.
    #[error("world {world} does not match the manifest: {reason}")]
    WorldMismatch {
        /// The world.
        world: World,
        /// What does not match.
        reason: String,
    },
}

/// A plugin file that was rejected, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("plugin {path} rejected")]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub reason: RejectReason,
}

impl LoadError {
    /// `path: reason: cause…` on one line.
    pub fn one_line(&self) -> String {
        format!(
            "{}: {}",
            self.path.display(),
            crate::error_chain(&self.reason)
        )
    }
}

/// What loading a directory gave.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Plugins loaded.
    pub plugins: Vec<Plugin>,
    /// Files rejected, with reasons.
    pub rejected: Vec<LoadError>,
}

/// Runtime configuration.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    cache_dir: Option<PathBuf>,
    limits: Limits,
    epoch_tick: Duration,
    max_instances: u32,
    fuel: bool,
    epoch_interruption: bool,
    max_wasm_stack: usize,
    max_plugin_bytes: u64,
    grants: GrantTable,
    metrics: Option<crate::metrics::Metrics>,
    compile_tiers: CompileTiers,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            limits: Limits::default(),
            epoch_tick: Duration::from_millis(10),
            max_instances: 256,
            fuel: false,
            epoch_interruption: true,
            max_wasm_stack: 512 << 10,
            max_plugin_bytes: DEFAULT_MAX_PLUGIN_BYTES,
            grants: GrantTable::default(),
            metrics: None,
            compile_tiers: CompileTiers::OptimizedOnly,
        }
    }
}

impl RuntimeConfig {
    /// The configuration of a command that loads each plugin to call it once (`capstan check`,
    /// `render`, `rbac`, `annotate`): the baseline compiler's code, as `capstan run` first serves
    /// a new plugin, or an optimized artifact the cache already holds; nothing is compiled twice.
    #[must_use]
    pub fn one_shot() -> Self {
        Self {
            compile_tiers: CompileTiers::Tiered,
            ..Self::default()
        }
    }

    /// Keep precompiled components in `dir`, so a restart deserializes instead of compiling.
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Default limits for every plugin.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How often the epoch advances; the granularity of call deadlines. Default 10 ms.
    #[must_use]
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick;
        self
    }

    /// Instances that may exist at once across all plugins (pooling allocator slots). Default 256.
    #[must_use]
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n;
        self
    }

    /// Meter fuel, so [`Limits::fuel`] takes effect. Off by default: metering costs every call.
    #[must_use]
    pub fn fuel(mut self, on: bool) -> Self {
        self.fuel = on;
        self
    }

    /// Interrupt running wasm at its deadline (default). Turn off only to measure what it costs:
    /// without it a guest that never calls the host cannot be stopped.
    #[must_use]
    pub fn epoch_interruption(mut self, on: bool) -> Self {
        self.epoch_interruption = on;
        self
    }

    /// The wasm stack of every call, in bytes (runtime-wide: wasmtime sets it per engine).
    /// Default 512 KiB.
    #[must_use]
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// A configuration entry: settings (limits, WASI grants, Kubernetes access) for the plugin
    /// that declares `entry.name` and is the file `entry.binding` names. See [`GrantTable::resolve`].
    #[must_use]
    pub fn grant(mut self, entry: GrantEntry) -> Self {
        self.grants.push(entry);
        self
    }

    /// Refuse plugin files larger than this. Default 64 MiB.
    #[must_use]
    pub fn max_plugin_bytes(mut self, bytes: u64) -> Self {
        self.max_plugin_bytes = bytes;
        self
    }

    /// Record plugin call metrics here.
    #[must_use]
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Which compilers new plugins go through: [`CompileTiers::Tiered`], baseline first (served
    /// at once) and optimized after, as `capstan run` does unless configured otherwise; or
    /// [`CompileTiers::OptimizedOnly`], the default here, so that a runtime built in code (a
    /// benchmark of calls, a one-off load) runs optimized code. Tiering is off when fuel is
    /// metered (the compilers consume fuel differently: a budget must not change at a swap).
    #[must_use]
    pub fn compile_tiers(mut self, tiers: CompileTiers) -> Self {
        self.compile_tiers = tiers;
        self
    }
}

/// The plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// Cranelift: every plugin ends up here.
    optimized: TierEngine,
    /// Winch, when tiering is on: new plugins serve from it until their optimized version is in.
    baseline: Option<TierEngine>,
    limits: Limits,
    ticker: Arc<EpochTicker>,
    fuel: bool,
    max_plugin_bytes: u64,
    grants: GrantTable,
    metrics: Option<crate::metrics::Metrics>,
}

/// Bytes of a linear memory kept resident when its instance goes: a Rust guest's 1 MiB stack
/// comes first in its memory, and its heap after it.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;

/// Whether the kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7+). Without it, keeping memory
/// resident means `memset`ting all of it, which costs more than unmapping the pages.
fn pagemap_scan() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 7),
        _ => false,
    }
}

/// Bytes of a table kept resident when its instance goes.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Slots whose memory is decommitted together, in one batch of system calls.
const DECOMMIT_BATCH: usize = 16;

/// Keeps the epoch ticker thread running: held by the runtime and by every plugin it loaded, so
/// deadlines keep working as long as anything can run wasm. The thread stops when the last goes.
#[derive(Debug)]
pub(crate) struct EpochTicker;

impl Runtime {
    /// Create the engines (pooling allocator, epoch interruption) of the tiers in use, their
    /// linkers and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances;
        // The pool's memory slots must fit the largest memory any plugin may grow to.
        let memory = config
            .grants
            .entries()
            .iter()
            .filter_map(|e| e.settings.limits.as_ref().map(|l| l.memory_bytes))
            .chain([config.limits.memory_bytes])
            .max()
            .unwrap_or(config.limits.memory_bytes);
        pool.total_component_instances(n)
            .total_core_instances(n * 2)
            .total_memories(n)
            .total_tables(n * 2)
            .total_stacks(n)
            .max_memory_size(memory)
            // Every reconcile and every event gets a fresh instance, so resetting a slot is on
            // the hot path: keep the pages an instance dirtied resident and reset only those
            // (PAGEMAP_SCAN on Linux 6.7+, else memset of the low addresses) instead of
            // unmapping them and faulting them in again; see docs/PERFORMANCE.md.
            .linear_memory_keep_resident(if pagemap_scan() {
                KEEP_RESIDENT_MEMORY
            } else {
                0
            })
            .table_keep_resident(KEEP_RESIDENT_TABLE)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(config.epoch_interruption)
            .concurrency_support(false)
            .consume_fuel(config.fuel)
            .max_wasm_stack(config.max_wasm_stack)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let cache_dir = config.cache_dir.as_ref();
        let optimized = TierEngine::new(Tier::Optimized, &cfg, cache_dir)?;
        let baseline = match config.compile_tiers {
            CompileTiers::OptimizedOnly => None,
            CompileTiers::Tiered if config.fuel => {
                tracing::info!(
                    "fuel is metered: plugins are compiled by the optimizing compiler only (the compilers consume fuel differently: a fuel budget must mean the same on every tier)"
                );
                None
            }
            CompileTiers::Tiered => match TierEngine::new(Tier::Baseline, &cfg, cache_dir) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "baseline compiler unavailable: plugins are compiled by the optimizing compiler only");
                    None
                }
            },
        };
        let ticker = Arc::new(EpochTicker);
        let engines: Vec<Engine> = std::iter::once(&optimized)
            .chain(baseline.as_ref())
            .map(|t| t.engine.clone())
            .collect();
        let (alive, tick) = (Arc::downgrade(&ticker), config.epoch_tick);
        std::thread::Builder::new()
            .name("capstan-epoch".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(tick);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(RuntimeError::Ticker)?;
        Ok(Self {
            inner: Arc::new(Inner {
                optimized,
                baseline,
                limits: config.limits,
                ticker,
                fuel: config.fuel,
                max_plugin_bytes: config.max_plugin_bytes,
                grants: config.grants,
                metrics: config.metrics,
            }),
        })
    }

    /// Wait until the compiled components still being written to the precompiled cache are on
    /// disk (they are written off the loading path); blocks.
    pub fn flush_cache(&self) {
        self.inner.optimized.flush();
        if let Some(baseline) = &self.inner.baseline {
            baseline.flush();
        }
    }

    /// The engine of the optimizing compiler, which every plugin ends up on.
    pub fn engine(&self) -> &Engine {
        &self.inner.optimized.engine
    }

    /// Whether new plugins are served from the baseline compiler first.
    pub fn tiered(&self) -> bool {
        self.inner.baseline.is_some()
    }

    /// Default limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The largest plugin file read.
    pub fn max_plugin_bytes(&self) -> u64 {
        self.inner.max_plugin_bytes
    }

    /// The configuration entries and the rule that binds them to files.
    pub(crate) fn grants(&self) -> &GrantTable {
        &self.inner.grants
    }

    /// Read a plugin file of the directory `dir` as [`read_plugin_file`] does (regular files and
    /// links to them inside `dir` only, at most [`Runtime::max_plugin_bytes`]), off the async
    /// threads.
    pub async fn read(&self, dir: &Path, path: &Path) -> Result<Vec<u8>, FileError> {
        let (dir, path, cap) = (dir.to_owned(), path.to_owned(), self.max_plugin_bytes());
        tokio::task::spawn_blocking(move || read_plugin_file(&dir, &path, cap))
            .await
            .map_err(|e| FileError::Io(std::io::Error::other(e)))?
    }

    /// Load and validate one plugin file (a link must stay inside the file's directory).
    pub async fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let err = |reason| LoadError {
            path: path.to_owned(),
            reason,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let bytes = self
            .read(dir, path)
            .await
            .map_err(|e| err(RejectReason::File(e)))?;
        self.load_bytes(path, bytes).await.map_err(err)
    }

    /// Load and validate a plugin from its bytes; `path` names it in messages, and its file name
    /// (with the content's digest) decides which configuration entry applies.
    ///
    /// With tiering on, an optimized artifact in the cache is used at once; else the plugin is
    /// compiled by the baseline compiler and served from it (see [`Runtime::load_optimized`] for
    /// the second step). If the baseline compiler cannot compile or run it, the optimizing
    /// compiler is used, and the plugin's info says why.
    pub async fn load_bytes(&self, path: &Path, bytes: Vec<u8>) -> Result<Plugin, RejectReason> {
        check_header(&bytes)?;
        let hash = content_hash(&bytes);
        let bytes: Arc<[u8]> = bytes.into();
        if self.inner.baseline.is_none() {
            return self.load_on(Tier::Optimized, path, hash, bytes, None).await;
        }
        let this = self.clone();
        let lookup = hash.clone();
        let cached = tokio::task::spawn_blocking(move || this.inner.optimized.cached(&lookup))
            .await
            .ok()
            .flatten();
        if let Some(component) = cached {
            let (embedded, _) = self.embedded(bytes).await?;
            return self
                .validate(
                    Tier::Optimized,
                    path,
                    hash,
                    component,
                    Origin::Cached,
                    embedded,
                    None,
                )
                .await;
        }
        match self
            .load_on(Tier::Baseline, path, hash.clone(), bytes.clone(), None)
            .await
        {
            Err(reason) if baseline_may_lack(&reason) => {
                let why = crate::error_chain(&reason);
                tracing::warn!(file = %path.display(), reason = %why, "the baseline compiler cannot run this plugin: compiling it optimized");
                self.load_on(Tier::Optimized, path, hash, bytes, Some(why))
                    .await
            }
            loaded => loaded,
        }
    }

    /// [`Runtime::load_bytes`] on the optimizing compiler only: the second step of tiering.
    pub async fn load_optimized(
        &self,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<Plugin, RejectReason> {
        check_header(&bytes)?;
        let hash = content_hash(&bytes);
        let plugin = self
            .load_on(Tier::Optimized, path, hash.clone(), bytes.into(), None)
            .await?;
        if let Some(baseline) = &self.inner.baseline {
            // The optimized artifact is read first from now on: the baseline one is dead weight.
            baseline.forget(&hash);
        }
        Ok(plugin)
    }

    /// The manifest embedded in `bytes`, if any, read off the async threads; and the bytes back.
    async fn embedded(
        &self,
        bytes: Arc<[u8]>,
    ) -> Result<(Option<crate::contract::Manifest>, Arc<[u8]>), RejectReason> {
        tokio::task::spawn_blocking(move || {
            let m = super::embedded::read(&bytes).map_err(RejectReason::Embedded)?;
            Ok((m, bytes))
        })
        .await
        .map_err(|e| RejectReason::Compile(format!("compiler task failed: {e}")))?
    }

    /// Compile (or take from the cache) on `tier`, then validate.
    async fn load_on(
        &self,
        tier: Tier,
        path: &Path,
        hash: String,
        bytes: Arc<[u8]>,
        baseline_error: Option<String>,
    ) -> Result<Plugin, RejectReason> {
        let this = self.clone();
        let compile_hash = hash.clone();
        let (component, origin, embedded) = tokio::task::spawn_blocking(move || {
            let (component, origin) = this
                .tier(tier)
                .compile(&compile_hash, &bytes)
                .map_err(|e| RejectReason::Compile(format!("{e:#}")))?;
            // Read once the bytes are known to be a valid component.
            let embedded = super::embedded::read(&bytes).map_err(RejectReason::Embedded)?;
            Ok::<_, RejectReason>((component, origin, embedded))
        })
        .await
        .map_err(|e| RejectReason::Compile(format!("compiler task failed: {e}")))??;
        self.validate(
            tier,
            path,
            hash,
            component,
            origin,
            embedded,
            baseline_error,
        )
        .await
    }

    fn tier(&self, tier: Tier) -> &TierEngine {
        match (tier, &self.inner.baseline) {
            (Tier::Baseline, Some(b)) => b,
            _ => &self.inner.optimized,
        }
    }

    /// Link a compiled component, run its `describe`, check its manifest and apply its
    /// configuration entry.
    #[allow(clippy::too_many_arguments)]
    async fn validate(
        &self,
        tier: Tier,
        path: &Path,
        hash: String,
        component: Component,
        origin: Origin,
        embedded: Option<crate::contract::Manifest>,
        baseline_error: Option<String>,
    ) -> Result<Plugin, RejectReason> {
        let engine = self.tier(tier);
        let (world, contract) = world::detect(&component, &engine.engine)?;
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RejectReason::Link(format!("{e:#}")))?;
        let info = PluginInfo {
            name: String::new(),
            version: String::new(),
            world,
            contract,
            hash,
            path: path.to_owned(),
            origin,
            tier: engine.tier,
            baseline_error,
        };
        let plugin = Plugin::new(
            pre,
            info,
            self.inner.limits.clone(),
            self.inner.ticker.clone(),
            self.inner.fuel,
        )
        .await?;
        if embedded.is_some_and(|m| &m != plugin.declared_manifest()) {
            return Err(RejectReason::EmbeddedMismatch);
        }
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (settings, grant) =
            self.inner
                .grants
                .resolve(plugin.name(), &file, &plugin.info().hash);
        if let Some(reason) = &grant.reason {
            tracing::warn!(plugin = plugin.name(), file = %path.display(), reason = %reason, "configuration entry not bound to this plugin file: it runs with the defaults");
        }
        Ok(plugin.configure_with(&settings, grant, self.inner.metrics.clone()))
    }

    /// Load every plugin file in `dir` (see [`wasm_files`]). Rejected files do not stop the
    /// others; of two plugins with one name, the one [the registry's rule](super::Registry::install)
    /// picks is kept and the other rejected.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<LoadReport> {
        let mut report = LoadReport::default();
        for path in wasm_files(dir)? {
            match self.load(&path).await {
                Ok(p) => report.plugins.push(p),
                Err(e) => report.rejected.push(e),
            }
        }
        let mut kept: Vec<Plugin> = Vec::new();
        for p in std::mem::take(&mut report.plugins) {
            let Some(i) = kept.iter().position(|q| q.name() == p.name()) else {
                kept.push(p);
                continue;
            };
            let (wins, rule) = super::registry::keeps_name(
                (p.info().path.as_path(), p.grant().bound),
                (kept[i].info().path.as_path(), kept[i].grant().bound),
            );
            let (winner, loser) = if wins {
                (p.clone(), std::mem::replace(&mut kept[i], p))
            } else {
                (kept[i].clone(), p)
            };
            report.rejected.push(LoadError {
                path: loser.info().path.clone(),
                reason: RejectReason::Duplicate {
                    name: loser.name().to_owned(),
                    winner: winner.info().path.clone(),
                    rule,
                },
            });
        }
        report.plugins = kept;
        Ok(report)
    }
}

/// The plugin files directly in `dir` ([`super::is_plugin_file`]: `*.wasm`, not hidden or
/// temporary), sorted by name: whatever they are, so that a directory, FIFO or link named
/// `*.wasm` is reported rather than skipped.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| super::is_plugin_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The first 8 bytes tell a component (`\0asm` + version 0x0d, layer 1) from a core module.
fn check_header(bytes: &[u8]) -> Result<(), RejectReason> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(RejectReason::CoreModule),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ => Err(RejectReason::NotWasm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_kinds_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(RejectReason::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(RejectReason::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(check_header(b"\0as"), Err(RejectReason::NotWasm)));
    }
}
