//! Hot reload: watch the plugins directory and turn file changes into plugin events.
//!
//! Changes are debounced; only `*.wasm` files count (editor swap files, dotfiles and temporary
//! files are ignored). A new or changed file is validated and precompiled before it replaces
//! anything; a file that fails leaves the previous version serving and is listed as rejected.
//! Writers should write elsewhere and rename into the directory: a file caught half-written is
//! rejected as truncated and picked up again when the write completes.
//!
//! Files are read as [`super::read_plugin_file`] says (regular files, links inside the directory,
//! a size cap; a FIFO, device or directory named `*.wasm` is refused without being opened), so no
//! entry can block or stop the watch. Of two files declaring one plugin name, the one the
//! configuration binds to that name keeps it, else the one whose file name sorts first, whatever
//! the order they arrive in.

use super::cache::content_hash;
use super::file::FileError;
use super::instance::Plugin;
use super::registry::{PluginEvent, Registry};
use super::runtime::{LoadError, RejectReason, Runtime};
use crate::metrics::{Metrics, ReloadResult};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Errors starting the directory watch.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The watcher could not be set up.
    #[error("cannot watch plugins directory {path}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: notify::Error,
    },
    /// The directory could not be read.
    #[error("cannot read plugins directory {path}")]
    Read {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Turns the files of a plugins directory into loaded plugins, now and whenever they change.
#[derive(Clone)]
pub struct Reloader {
    runtime: Runtime,
    registry: Registry,
    dir: PathBuf,
    debounce: Duration,
    metrics: Option<Metrics>,
}

/// A file read and loaded, before the registry is touched.
enum Prepared {
    /// Nothing is there: unload.
    Gone,
    /// The content loaded already.
    Unchanged,
    /// Refused.
    Rejected(LoadError),
    /// A valid plugin.
    Ready(Plugin),
}

/// Keeps the directory watch alive; dropping it stops watching.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a path is a plugin file: `*.wasm`, not hidden, not an editor's or writer's temporary.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && !name.starts_with('#') && name.ends_with(".wasm")
}

/// Whether a path is the symbolic link a Kubernetes volume (ConfigMap, Secret, projected) swaps
/// to publish new contents at once: the kubelet's atomic writer writes a fresh `..<timestamp>`
/// directory and renames a `..data_tmp` link over `..data`, which every visible file links
/// through. Only dotted entries change, so a plugin file's own path raises no event.
fn is_volume_swap(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "..data")
}

/// What a watch event asks of the reloader.
enum Changed {
    /// One plugin file changed.
    File(PathBuf),
    /// The directory's contents may have changed all at once: sync every file.
    All,
}

/// Whether a watch event may have changed what a file holds (or whether it exists).
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind as K;
    use notify::event::ModifyKind as M;
    match kind {
        K::Create(_) | K::Remove(_) | K::Any => true,
        K::Modify(m) => !matches!(m, M::Metadata(_)),
        K::Access(_) | K::Other => false,
    }
}

impl Reloader {
    /// A reloader of `dir`, loading through `runtime` into `registry`.
    pub fn new(runtime: Runtime, registry: Registry, dir: impl Into<PathBuf>) -> Self {
        // One spelling of every path: the watcher reports absolute paths, so the scan must too.
        let dir = dir.into();
        let dir = std::fs::canonicalize(&dir)
            .or_else(|_| std::path::absolute(&dir))
            .unwrap_or(dir);
        Self {
            runtime,
            registry,
            dir,
            debounce: Duration::from_millis(200),
            metrics: None,
        }
    }

    /// Wait this long after the last change to a file before loading it. Default 200 ms.
    #[must_use]
    pub fn debounce(mut self, quiet: Duration) -> Self {
        self.debounce = quiet;
        self
    }

    /// Count reloads here.
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The registry plugins are loaded into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Bring the registry in line with the directory now: load new and changed files, unload
    /// plugins whose file is gone. Returns the events, in the order they happened.
    pub async fn scan(&self) -> Result<Vec<PluginEvent>, ReloadError> {
        let present = super::wasm_files(&self.dir).map_err(|source| ReloadError::Read {
            path: self.dir.clone(),
            source,
        })?;
        let mut paths: BTreeSet<PathBuf> = present.into_iter().collect();
        paths.extend(self.loaded());
        Ok(self.sync_all(paths).await)
    }

    /// The files of the loaded plugins.
    fn loaded(&self) -> impl Iterator<Item = PathBuf> {
        self.registry
            .plugins()
            .into_iter()
            .map(|p| p.info().path.clone())
    }

    /// Every file a sync of the whole directory covers: the `*.wasm` files present (a directory
    /// that cannot be read is logged and counts as empty: loaded plugins stay until their file is
    /// seen gone) and the loaded plugins' files.
    fn tracked(&self) -> BTreeSet<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = match super::wasm_files(&self.dir) {
            Ok(present) => present.into_iter().collect(),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list the plugins directory");
                BTreeSet::new()
            }
        };
        paths.extend(self.loaded());
        paths
    }

    /// Bring one file's plugin in line with the file: load it if new or changed, unload it if
    /// gone, leave it if unchanged. A file that fails validation is recorded as rejected and the
    /// version loaded before keeps serving.
    pub async fn sync(&self, path: &Path) -> Vec<PluginEvent> {
        self.sync_all([path.to_owned()]).await
    }

    /// [`Reloader::sync`] for several files at once. The outcome does not depend on the order
    /// files are named or arrive in: removals are applied first, then plugins bound by the
    /// configuration to their declared name, then the rest by file name; of two files declaring
    /// one name, the registry keeps the one [`super::Registry::install`] says, and a file that
    /// lost its name is loaded again once the name is free.
    pub async fn sync_all(&self, paths: impl IntoIterator<Item = PathBuf>) -> Vec<PluginEvent> {
        let mut events = Vec::new();
        let mut work: BTreeSet<PathBuf> = paths.into_iter().collect();
        while !work.is_empty() {
            let mut prepared = Vec::new();
            for path in std::mem::take(&mut work) {
                let started = Instant::now();
                let p = self.prepare(&path).await;
                prepared.push((path, p, started));
            }
            prepared.sort_by_key(|(path, p, _)| {
                let rank = match p {
                    Prepared::Gone => 0,
                    Prepared::Ready(plugin) if plugin.grant().bound => 1,
                    _ => 2,
                };
                (rank, path.file_name().map(ToOwned::to_owned))
            });
            for (path, p, started) in prepared {
                let (done, retry) = self.commit(&path, p, started);
                events.extend(done);
                work.extend(retry);
            }
        }
        events
    }

    /// Read and load a file, without touching the registry.
    async fn prepare(&self, path: &Path) -> Prepared {
        let bytes = match self.runtime.read(&self.dir, path).await {
            Ok(b) => b,
            Err(FileError::NotFound) => return Prepared::Gone,
            Err(e) => {
                return Prepared::Rejected(LoadError {
                    path: path.to_owned(),
                    reason: RejectReason::File(e),
                });
            }
        };
        if self.registry.hash_at(path).as_deref() == Some(content_hash(&bytes).as_str()) {
            return Prepared::Unchanged;
        }
        match self.runtime.load_bytes(path, bytes).await {
            Ok(p) => Prepared::Ready(p),
            Err(reason) => Prepared::Rejected(LoadError {
                path: path.to_owned(),
                reason,
            }),
        }
    }

    /// Apply a prepared file to the registry: the events, and the files to load again.
    fn commit(
        &self,
        path: &Path,
        prepared: Prepared,
        started: Instant,
    ) -> (Vec<PluginEvent>, Vec<PathBuf>) {
        match prepared {
            Prepared::Gone => {
                let out = self.registry.remove(path);
                for e in &out.events {
                    if let PluginEvent::Unloaded(p) = e {
                        tracing::info!(plugin = p.name(), path = %path.display(), "plugin file removed: unloading");
                        self.count(ReloadResult::Unloaded, None);
                    }
                }
                (out.events, out.retry)
            }
            Prepared::Unchanged => {
                self.registry.clear_rejection(path);
                (Vec::new(), Vec::new())
            }
            Prepared::Rejected(error) => {
                self.rejected(error);
                (Vec::new(), Vec::new())
            }
            Prepared::Ready(plugin) => match self.registry.install(path, plugin) {
                Ok(out) => {
                    let elapsed = started.elapsed();
                    for event in &out.events {
                        match event {
                            PluginEvent::Loaded(p) => {
                                let i = p.info();
                                tracing::info!(plugin = %i.name, version = %i.version, world = %i.world, hash = %&i.hash[..12], origin = ?i.origin, elapsed_ms = elapsed.as_millis() as u64, "plugin loaded");
                            }
                            PluginEvent::Replaced { old, new } => {
                                let i = new.info();
                                tracing::info!(plugin = %i.name, from = %old.info().version, to = %i.version, hash = %&i.hash[..12], origin = ?i.origin, elapsed_ms = elapsed.as_millis() as u64, "plugin replaced");
                            }
                            PluginEvent::Unloaded(_) => {}
                        }
                    }
                    self.count(ReloadResult::Swapped, Some(elapsed));
                    (out.events, out.retry)
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), reason = %e, "plugin rejected");
                    self.registry.reject_line(path, e.to_string());
                    self.count(ReloadResult::Rejected, None);
                    (Vec::new(), Vec::new())
                }
            },
        }
    }

    fn rejected(&self, error: LoadError) {
        tracing::error!(reason = %error.one_line(), "plugin rejected; the version loaded before (if any) keeps serving");
        self.registry.reject(&error);
        self.count(ReloadResult::Rejected, None);
    }

    fn count(&self, result: ReloadResult, elapsed: Option<Duration>) {
        if let Some(m) = &self.metrics {
            m.reload(result, elapsed);
        }
    }

    /// Watch the directory: each debounced change is synced and its event sent to `events`.
    /// Start the watch before [`Reloader::scan`] so no change falls between the two.
    pub fn watch(
        &self,
        events: mpsc::UnboundedSender<PluginEvent>,
    ) -> Result<WatchHandle, ReloadError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Changed>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                // Reading a file (as a sync does) raises access events: only content, name and
                // existence changes count, or every sync would trigger the next.
                Ok(event) if changes_content(&event.kind) => {
                    for path in event.paths {
                        if is_plugin_file(&path) {
                            let _ = tx.send(Changed::File(path));
                        } else if is_volume_swap(&path) {
                            let _ = tx.send(Changed::All);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "plugins directory watch error"),
            })
            .map_err(|source| ReloadError::Watch {
                path: self.dir.clone(),
                source,
            })?;
        watcher
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .map_err(|source| ReloadError::Watch {
                path: self.dir.clone(),
                source,
            })?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut pending = BTreeSet::new();
            while let Some(first) = rx.recv().await {
                let mut all = false;
                let mut note = |c: Changed| match c {
                    Changed::File(p) => {
                        pending.insert(p);
                    }
                    Changed::All => all = true,
                };
                note(first);
                // Quiet period: every further change restarts it.
                loop {
                    match tokio::time::timeout(this.debounce, rx.recv()).await {
                        Ok(Some(c)) => note(c),
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                if all {
                    // Unchanged files are left as they are: a sync compares content hashes.
                    pending.extend(this.tracked());
                }
                for event in this.sync_all(std::mem::take(&mut pending)).await {
                    if events.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(WatchHandle {
            _watcher: watcher,
            task,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plugin_files_count() {
        assert!(is_plugin_file(Path::new("/p/webapp.wasm")));
        for p in [
            "/p/.webapp.wasm.swp",
            "/p/webapp.wasm~",
            "/p/.webapp.wasm",
            "/p/webapp.wasm.tmp",
            "/p/webapp.wasm.part",
            "/p/#webapp.wasm#",
            "/p/notes.txt",
        ] {
            assert!(!is_plugin_file(Path::new(p)), "{p}");
        }
    }
}
