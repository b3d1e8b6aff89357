//! The on-disk cache of precompiled components, keyed by content hash, compilation tier and
//! engine compatibility.
//!
//! A precompiled artifact is native code that is mapped and run without validation, so only
//! artifacts this host wrote are ever deserialized:
//!
//! - the directory is created `0700`; an existing one owned by another user is refused, one open
//!   to the group or others is set back to `0700` with a warning;
//! - a 32-byte random key lives in the directory (`key`, mode `0600`), created on first use;
//! - each artifact is stored with an HMAC-SHA256 under that key over the plugin's content hash,
//!   the engine key and the artifact, checked before `Component::deserialize`: a planted or
//!   altered artifact, or one written for another plugin and renamed, fails the check and is
//!   deleted and compiled again, with a warning.
//!
//! A component compiled on a miss is served at once; serializing, tagging and writing it (with
//! `fsync`) happen on a thread of their own, which a later load or removal of the same artifact
//! waits for.

use super::tier::Tier;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// Length of the key and of a tag.
const KEY_BYTES: usize = 32;

/// What a tag covers before the artifact: a domain and format version.
const DOMAIN: &[u8] = b"capstan precompiled component v1\0";

/// Errors of the precompiled cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory, its key or an artifact could not be created, read or written.
    #[error("cannot use precompiled cache path {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cache directory belongs to another user, who could plant native code in it.
    #[error(
        "precompiled cache directory {path} belongs to uid {owner}, not to this process (uid {uid}): refused; chown it or pass another --cache-dir"
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective user.
        uid: u32,
    },
    /// The cache path is not a directory.
    #[error("precompiled cache path {0} is not a directory")]
    NotADirectory(PathBuf),
    /// No random key could be made.
    #[error("cannot draw a random cache key")]
    Random(#[source] getrandom::Error),
}

/// The SHA-256 of a plugin's bytes, in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Feeds what a `Hash` implementation writes into SHA-256: a digest stable across Rust releases,
/// unlike `DefaultHasher`'s.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// The engine part of the cache key: SHA-256 of the compilation tier and the engine's precompile
/// compatibility hash. The tier is named even though the compiler settings already differ
/// between the tiers' engines, so that an artifact of one tier never has the other's name.
fn engine_key(engine: &Engine, tier: Tier) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    h.write(tier.as_str().as_bytes());
    h.write(b"\0");
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..16])
}

/// This process's effective user id.
fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Precompiled components on disk. A hit deserializes in well under a millisecond instead of compiling.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    key: [u8; KEY_BYTES],
    /// Artifacts being written, by content hash.
    storing: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
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
    /// A cache in `dir` for components compiled by `engine` on `tier`: creates the directory (`0700`) and
    /// its key if needed, and checks who owns them.
    ///
    /// # Errors
    /// [`CacheError`] when the directory cannot be created, is not a directory, belongs to
    /// another user, or the key cannot be read or made.
    pub fn open(dir: impl Into<PathBuf>, engine: &Engine, tier: Tier) -> Result<Self, CacheError> {
        let dir = dir.into();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        let meta = std::fs::metadata(&dir).map_err(io(&dir))?;
        if !meta.is_dir() {
            return Err(CacheError::NotADirectory(dir));
        }
        let uid = euid();
        if meta.uid() != uid {
            return Err(CacheError::ForeignOwner {
                path: dir,
                owner: meta.uid(),
                uid,
            });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "precompiled cache directory was open to other users: set to 0700");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&dir))?;
        }
        let key = load_or_create_key(&dir)?;
        remove_stale_temporaries(&dir);
        Ok(Self {
            engine_key: engine_key(engine, tier),
            dir,
            key,
            storing: Arc::default(),
        })
    }

    /// Wait until every artifact being written is written: before the engine goes.
    pub fn flush(&self) {
        let writing: Vec<JoinHandle<()>> = self.storing().drain().map(|(_, w)| w).collect();
        writing.into_iter().for_each(written);
    }

    /// Wait until the artifact of `hash` being written, if any, is written.
    fn settled(&self, hash: &str) {
        let writing = self.storing().remove(hash);
        writing.into_iter().for_each(written);
    }

    /// The artifacts being written, by content hash.
    fn storing(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.storing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    fn mac(&self, hash: &str) -> HmacSha256 {
        // A key of any length is accepted by HMAC.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(DOMAIN);
        mac.update(hash.as_bytes());
        mac.update(b"\0");
        mac.update(self.engine_key.as_bytes());
        mac.update(b"\0");
        mac
    }

    /// The artifact inside `stored` if its tag is this host's, for the plugin of hash `hash`.
    fn verified<'a>(&self, hash: &str, stored: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, artifact) = stored.split_at_checked(KEY_BYTES)?;
        let mut mac = self.mac(hash);
        mac.update(artifact);
        mac.verify_slice(tag).ok().map(|()| artifact)
    }

    /// The cached component of the plugin whose hash is `hash`, if there is a usable one.
    ///
    /// An artifact whose tag does not verify (planted, altered, written for another plugin or
    /// under another key) is deleted, with a warning; one that fails to deserialize is skipped.
    pub fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        self.settled(hash);
        let path = self.path_for(hash);
        // Read into memory rather than mmap: a file truncated or replaced under a live mapping would
        // bring the host down with SIGBUS.
        let stored = read_regular(&path)?;
        let Some(artifact) = self.verified(hash, &stored) else {
            tracing::warn!(path = %path.display(), "precompiled artifact not written by this host for this plugin (tag mismatch): deleted, compiling");
            let _ = std::fs::remove_file(&path);
            return None;
        };
        // SAFETY: the artifact's tag verified under this host's secret key, over this plugin's
        // content hash and this engine's key (tier and compatibility hash): it is exactly what
        // `store` below wrote from `Engine::precompile_component` of a compatible engine
        // (wasmtime checks the header and engine configuration again).
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable precompiled artifact");
                None
            }
        }
    }

    /// Delete the artifact of the plugin whose hash is `hash`, if there is one.
    pub fn remove(&self, hash: &str) {
        self.settled(hash);
        let _ = std::fs::remove_file(self.path_for(hash));
    }

    /// Load the component for `bytes` (whose hash is `hash`) from the cache, or compile it and
    /// store it from a thread of its own ([`ArtifactCache::flush`] waits for that).
    ///
    /// An artifact whose tag does not verify (planted, altered, written for another plugin or
    /// under another key) is deleted and compiled again; so is one that fails to deserialize.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        if let Some(component) = self.load(engine, hash) {
            return Ok((component, Origin::Cached));
        }
        let component = super::tier::apart(|| Component::new(engine, bytes))?;
        // Stored off the critical path: for an 18 MB Python component, tagging and writing its
        // 45 MB artifact took ≈ 0.1 s, and deserializing it again 20 ms (docs/PERFORMANCE.md).
        let (cache, stored, key) = (self.clone(), component.clone(), hash.to_owned());
        let store = move || {
            let written = stored
                .serialize()
                .map_err(|e| tracing::warn!(error = %e, "precompiled artifact not serialized"))
                .ok()
                .map(|artifact| cache.store(&cache.path_for(&key), &key, &artifact));
            if let Some(Err(e)) = written {
                tracing::warn!(error = %crate::error_chain(&e), "precompiled artifact not cached");
            }
        };
        match std::thread::Builder::new()
            .name("capstan-cache-store".into())
            .spawn(store)
        {
            Ok(writing) => {
                let mut storing = self.storing();
                storing.retain(|_, w| !w.is_finished());
                storing.insert(hash.to_owned(), writing);
            }
            Err(e) => {
                tracing::warn!(error = %e, "precompiled artifact not cached: no thread to write it")
            }
        }
        Ok((component, Origin::Compiled))
    }

    fn store(&self, path: &Path, hash: &str, artifact: &[u8]) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: path.to_owned(),
            source,
        };
        let mut mac = self.mac(hash);
        mac.update(artifact);
        let tag = mac.finalize().into_bytes();
        let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), fastrand::u64(..)));
        let written = (|| {
            let mut f = create_private(&tmp)?;
            f.write_all(&tag)?;
            f.write_all(artifact)?;
            f.sync_data()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

/// Wait for `writing` to end.
fn written(writing: JoinHandle<()>) {
    if writing.join().is_err() {
        tracing::warn!("writing a precompiled artifact panicked");
    }
}

/// Delete the temporary files of artifacts whose writing stopped (the process ended first) more
/// than an hour ago; a younger one may be another host's, still writing.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if name.to_string_lossy().contains(".tmp") && stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The whole of a regular file, not following a final symbolic link; `None` if there is none.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The cache key in `dir/key`: used if it is a regular file of 32 bytes, mode 0600, owned by this
/// user; otherwise replaced by a new random one (every artifact is then compiled again).
fn load_or_create_key(dir: &Path) -> Result<[u8; KEY_BYTES], CacheError> {
    let path = dir.join("key");
    let io = |source| CacheError::Io {
        path: path.clone(),
        source,
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        let meta = f.metadata().map_err(io)?;
        let mut key = [0u8; KEY_BYTES];
        let usable = meta.is_file()
            && meta.uid() == euid()
            && meta.mode() & 0o077 == 0
            && meta.len() == KEY_BYTES as u64
            && f.read_exact(&mut key).is_ok();
        if usable {
            return Ok(key);
        }
        tracing::warn!(path = %path.display(), "precompiled cache key unusable (not a 32-byte 0600 file of this user): replaced; every plugin is compiled again");
        if meta.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io)?;
        } else {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(CacheError::Random)?;
    // Write beside it, then link into place: the link fails if another process made a key
    // meanwhile, and then that key is used.
    let tmp = dir.join(format!(
        ".key.tmp{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let made = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, &path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match made {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(io)?;
            f.read_exact(&mut key).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// A new file only its owner may read or write, never through a symlink.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
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

    #[test]
    fn the_engine_key_is_a_sha256_of_the_compatibility_hash() {
        let engine = Engine::default();
        let key = engine_key(&engine, Tier::Optimized);
        assert_eq!(key.len(), 32);
        assert_eq!(
            key,
            engine_key(&Engine::default(), Tier::Optimized),
            "same configuration"
        );
        assert_ne!(key, engine_key(&engine, Tier::Baseline), "another tier");
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true);
        let other = Engine::new(&cfg).unwrap();
        assert_ne!(
            key,
            engine_key(&other, Tier::Optimized),
            "another configuration"
        );
    }

    #[test]
    fn the_directory_and_key_are_private_and_the_key_persists() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a").join("precompiled");
        let engine = Engine::default();
        let cache = ArtifactCache::open(&dir, &engine, Tier::Optimized).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("key")), 0o600);
        assert_eq!(
            ArtifactCache::open(&dir, &engine, Tier::Optimized)
                .unwrap()
                .key,
            cache.key
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ArtifactCache::open(&dir, &engine, Tier::Optimized).unwrap();
        assert_eq!(mode(&dir), 0o700, "fixed");
        std::fs::set_permissions(dir.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = ArtifactCache::open(&dir, &engine, Tier::Optimized).unwrap();
        assert_ne!(again.key, cache.key, "a key others could read is replaced");
    }

    #[test]
    fn tags_bind_the_artifact_to_the_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), &Engine::default(), Tier::Optimized).unwrap();
        let mut mac = cache.mac("aa");
        mac.update(b"code");
        let mut stored = mac.finalize().into_bytes().to_vec();
        stored.extend_from_slice(b"code");
        assert_eq!(cache.verified("aa", &stored), Some(&b"code"[..]));
        assert_eq!(cache.verified("bb", &stored), None, "another plugin's");
        let mut altered = stored.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(cache.verified("aa", &altered), None, "altered");
        assert_eq!(cache.verified("aa", b"short"), None);
    }
}
