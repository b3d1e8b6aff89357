//! The on-disk cache of precompiled components, keyed by content hash and engine compatibility.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Errors of the precompiled cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory could not be created or written.
    #[error("cannot write precompiled cache {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The SHA-256 of a plugin's bytes, in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Precompiled components on disk. A hit deserializes in well under a millisecond instead of compiling.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Compiled now (and stored).
    Compiled,
    /// Deserialized from the cache.
    Cached,
}

impl ArtifactCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self {
            dir: dir.into(),
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// Load the component for `bytes` (whose hash is `hash`) from the cache, or compile and store it.
    ///
    /// A cache entry that fails to deserialize (truncated, foreign) is compiled again and replaced.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.path_for(hash);
        // Read into memory rather than mmap: a file truncated or replaced under a live mapping would
        // bring the host down with SIGBUS.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: files in the cache directory are written only by `store` below, from
            // `Engine::precompile_component` of an engine with the same compatibility hash (part of
            // the file name); the directory belongs to the host. A corrupt file fails to deserialize
            // (wasmtime checks the header and engine configuration) and is recompiled.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable precompiled artifact")
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = self.store(&path, &compiled) {
            tracing::warn!(error = %e, "precompiled artifact not cached");
        }
        // SAFETY: `compiled` was produced just now by `precompile_component` of this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, Origin::Compiled))
    }

    fn store(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_hex() {
        assert_eq!(content_hash(b"abc").len(), 64);
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
    }
}
