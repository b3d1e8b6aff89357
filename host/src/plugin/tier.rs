//! Compilation tiers: a new plugin is compiled first by wasmtime's baseline compiler (Winch),
//! which compiles in a single pass and serves at once, then by its optimizing compiler
//! (Cranelift) in the background, and the optimized version is swapped in.
//!
//! The compiler is an engine setting, so each tier has an [`Engine`] (and a [`Linker`] of its
//! own, since a linker belongs to one engine) built from one [`Config`] that differs only in the
//! strategy: the same limits, stack, epoch interruption and pooling allocator, so a plugin behaves
//! the same on either tier. With fuel metered every plugin runs optimized only: the two compilers
//! consume fuel differently, and a plugin's fuel budget must not change meaning at a tier swap.

use super::cache::{ArtifactCache, CacheError, Origin};
use super::host::HostState;
use crate::bindings;
use std::path::PathBuf;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Strategy};

/// Errors building a tier's engine.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The engine could not be configured.
    #[error("cannot configure the {tier} wasm engine: {reason}")]
    Engine {
        /// The tier.
        tier: Tier,
        /// What wasmtime said.
        reason: String,
    },
    /// The host imports could not be added to the linker.
    #[error("cannot set up the {tier} linker: {reason}")]
    Linker {
        /// The tier.
        tier: Tier,
        /// What wasmtime said.
        reason: String,
    },
    /// The precompiled cache cannot be used safely.
    #[error("cannot use the precompiled cache")]
    Cache(#[from] CacheError),
}

/// Which compiler produced a loaded plugin's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Winch, wasmtime's single-pass compiler: compiles many times faster, runs slower. A
    /// plugin on this tier is swapped for its optimized version once that is compiled.
    Baseline,
    /// Cranelift, wasmtime's optimizing compiler.
    Optimized,
}

impl Tier {
    /// The name shown at `/plugins`, in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Optimized => "optimized",
        }
    }

    fn strategy(self) -> Strategy {
        match self {
            Self::Baseline => Strategy::Winch,
            Self::Optimized => Strategy::Cranelift,
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which tiers new plugins are compiled with.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum CompileTiers {
    /// Baseline first, serving at once, then optimized in the background (default).
    #[default]
    Tiered,
    /// Optimized only: one compile per plugin, served once it is done.
    OptimizedOnly,
}

/// Run `compile` on a thread pool of its own, one thread a core. wasmtime compiles a component's
/// functions in parallel on the current rayon pool, by default one global pool whose threads
/// finish the functions of the compile they started before they take another's: a small plugin
/// compiled beside a large one waited for the whole of the large one (a 1.1 MB plugin beside a
/// 12 MB one: 0.7–1.3 s instead of 0.2 s). Pools of their own share the cores fairly.
pub(crate) fn apart<T: Send>(compile: impl FnOnce() -> T + Send) -> T {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    match rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .thread_name(|i| format!("capstan-compile-{i}"))
        .build()
    {
        Ok(pool) => pool.install(compile),
        Err(e) => {
            tracing::debug!(error = %e, "no thread pool of its own for a compile: the shared one");
            compile()
        }
    }
}

/// One tier's engine, its linker of the host's imports, and its precompiled cache.
pub(crate) struct TierEngine {
    pub(crate) tier: Tier,
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    cache: Option<ArtifactCache>,
}

impl TierEngine {
    /// The engine of `tier` from `config` (everything but the strategy), with the host's imports
    /// linked, caching in `cache_dir` if given.
    pub(crate) fn new(
        tier: Tier,
        config: &Config,
        cache_dir: Option<&PathBuf>,
    ) -> Result<Self, TierError> {
        let mut cfg = config.clone();
        cfg.strategy(tier.strategy());
        let engine = Engine::new(&cfg).map_err(|e| TierError::Engine {
            tier,
            reason: format!("{e:#}"),
        })?;
        let linker_error = |e: wasmtime::Error| TierError::Linker {
            tier,
            reason: format!("{e:#}"),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(linker_error)?;
        bindings::ControllerPlugin::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(linker_error)?;
        let cache = cache_dir
            .map(|dir| ArtifactCache::open(dir, &engine, tier))
            .transpose()?;
        Ok(Self {
            tier,
            engine,
            linker,
            cache,
        })
    }

    /// The component for `bytes` (of content hash `hash`): from this tier's cache, or compiled
    /// (and stored).
    pub(crate) fn compile(
        &self,
        hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, hash, bytes),
            None => apart(|| Component::new(&self.engine, bytes)).map(|c| (c, Origin::Compiled)),
        }
    }

    /// Wait until this tier's artifacts still being written are written.
    pub(crate) fn flush(&self) {
        if let Some(cache) = &self.cache {
            cache.flush();
        }
    }

    /// The component of content hash `hash` if this tier's cache has it; never compiles.
    pub(crate) fn cached(&self, hash: &str) -> Option<Component> {
        self.cache.as_ref()?.load(&self.engine, hash)
    }

    /// Drop this tier's cached artifact of `hash`, if any: it will not be read again.
    pub(crate) fn forget(&self, hash: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(hash);
        }
    }
}

impl Drop for TierEngine {
    /// The artifacts still being written are finished, so a restart finds them.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Whether a failure on the baseline tier may be the baseline compiler's own (a feature Winch
/// lacks), so that the optimizing compiler should be tried: compile, link and call failures.
/// Anything else (not a component, a manifest or world the host refuses) is the plugin's and
/// would fail on either tier.
pub(crate) fn baseline_may_lack(reason: &super::RejectReason) -> bool {
    use super::RejectReason as R;
    matches!(reason, R::Compile(_) | R::Link(_) | R::Describe(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiers_engines_differ_only_in_the_compiler() {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true).epoch_interruption(true);
        let base = TierEngine::new(Tier::Baseline, &cfg, None).unwrap();
        let opt = TierEngine::new(Tier::Optimized, &cfg, None).unwrap();
        // An artifact of one tier is refused by the other's engine (wasmtime checks the
        // compiler settings recorded in the artifact).
        let path = capstan_test_artifacts::path("echo-handler").unwrap();
        let bytes = std::fs::read(path).unwrap();
        let artifact = base.engine.precompile_component(&bytes).unwrap();
        // SAFETY: a valid artifact of the baseline engine, offered to the optimized one.
        assert!(unsafe { Component::deserialize(&opt.engine, &artifact) }.is_err());
        // SAFETY: the artifact of this very engine.
        assert!(unsafe { Component::deserialize(&base.engine, &artifact) }.is_ok());
    }
}
