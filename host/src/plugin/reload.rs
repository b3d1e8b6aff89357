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
use super::registry::{PluginEvent, Registry, keeps_name};
use super::runtime::{LoadError, RejectReason, Runtime};
use super::tier::Tier;
use crate::metrics::{Metrics, ReloadResult};
use futures::StreamExt;
use notify::{RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

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
    /// Where the swaps of baseline plugins for their optimized versions are announced; none:
    /// plugins stay on the tier they were loaded on.
    tier_up: Option<mpsc::UnboundedSender<PluginEvent>>,
    /// Optimizing compiles running in the background at once.
    optimizing: Arc<Semaphore>,
    /// Files read and compiled at once.
    parallel: usize,
}

/// Cores of this machine (1 if unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// A file read and loaded, before the registry is touched.
enum Prepared {
    /// Nothing is there: unload.
    Gone,
    /// The content loaded already, with its hash.
    Unchanged(String),
    /// Refused.
    Rejected(LoadError),
    /// A valid plugin.
    Ready(Plugin),
}

/// A file of a batch not yet applied to the registry.
enum Waiting {
    /// Being read and compiled; the plugin name its embedded manifest declares, if it has one
    /// (a plugin whose `describe` says otherwise is refused at load).
    Preparing(Option<String>),
    /// Prepared, since the instant given; held until no file still waiting could take its name.
    Held(Prepared, Instant),
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
    /// A file was renamed into place: it is complete, nothing to wait for.
    Complete(PathBuf),
    /// The directory's contents may have changed all at once: sync every file.
    All,
}

/// Whether a watch event renamed a file to its path `path`: a file renamed into place is
/// complete (the writer wrote it elsewhere first), so it need not wait out the debounce.
fn renamed_to(kind: &notify::EventKind, paths: &[PathBuf], path: &Path) -> bool {
    use notify::EventKind as K;
    use notify::event::{ModifyKind as M, RenameMode as R};
    match kind {
        K::Modify(M::Name(R::To)) => true,
        K::Modify(M::Name(R::Both)) => paths.last().is_some_and(|p| p == path),
        _ => false,
    }
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
            tier_up: None,
            optimizing: Arc::new(Semaphore::new((cores() / 2).max(1))),
            parallel: cores(),
        }
    }

    /// Compile each plugin loaded on the baseline tier by [`Reloader::scan`] or the watch with
    /// the optimizing compiler in the background (half the cores' worth at once, at least one)
    /// and swap it in, announcing the swap as a [`PluginEvent::Replaced`] on `events` (after the
    /// events of the load itself: for a scan, apply what it returns before reading `events`).
    #[must_use]
    pub fn tier_up(mut self, events: mpsc::UnboundedSender<PluginEvent>) -> Self {
        self.tier_up = Some(events);
        self
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
        let mut events = Vec::new();
        self.scan_each(|done| events.extend(done)).await?;
        Ok(events)
    }

    /// [`Reloader::scan`], sending each plugin's events to `events` as soon as the plugin is
    /// ready (see [`Reloader::sync_all`] for when a plugin waits for another file), so a host
    /// starting with several new plugins serves each as it compiles. `events` is dropped when
    /// the scan is done.
    pub async fn scan_into(
        &self,
        events: mpsc::UnboundedSender<PluginEvent>,
    ) -> Result<(), ReloadError> {
        self.scan_each(|done| {
            for event in done {
                let _ = events.send(event);
            }
        })
        .await
    }

    async fn scan_each(&self, emit: impl FnMut(Vec<PluginEvent>)) -> Result<(), ReloadError> {
        let present = super::wasm_files(&self.dir).map_err(|source| ReloadError::Read {
            path: self.dir.clone(),
            source,
        })?;
        let mut paths: BTreeSet<PathBuf> = present.into_iter().collect();
        paths.extend(self.loaded());
        self.sync_each(paths, emit).await;
        Ok(())
    }

    /// Start the optimizing compile of every plugin `events` put in place on the baseline tier.
    fn optimize(&self, events: &[PluginEvent]) {
        let Some(sink) = &self.tier_up else {
            return;
        };
        for event in events {
            let (PluginEvent::Loaded(p) | PluginEvent::Replaced { new: p, .. }) = event else {
                continue;
            };
            if p.info().tier != Tier::Baseline {
                continue;
            }
            let (this, sink) = (self.clone(), sink.clone());
            let (path, hash) = (p.info().path.clone(), p.info().hash.clone());
            tokio::spawn(async move { this.optimize_one(&path, &hash, &sink).await });
        }
    }

    /// Compile the file `path` (if it still holds the content of hash `hash` and its plugin is
    /// still on the baseline tier) with the optimizing compiler and swap it in.
    async fn optimize_one(
        &self,
        path: &Path,
        hash: &str,
        sink: &mpsc::UnboundedSender<PluginEvent>,
    ) {
        let Ok(_permit) = self.optimizing.acquire().await else {
            return;
        };
        let serving = |p: Plugin| p.info().hash == hash && p.info().tier == Tier::Baseline;
        if !self.registry.at(path).is_some_and(serving) {
            return;
        }
        // Read again rather than keep every new file's bytes: a file changed since is left to
        // the watch, which loads the new content.
        let Ok(bytes) = self.runtime.read(&self.dir, path).await else {
            return;
        };
        if content_hash(&bytes) != hash {
            return;
        }
        let started = Instant::now();
        match self.runtime.load_optimized(path, bytes).await {
            Ok(optimized) => {
                let swapped = self.registry.upgrade(path, optimized, |event| {
                    if let PluginEvent::Replaced { new, .. } = &event {
                        tracing::info!(plugin = new.name(), version = %new.info().version, hash = %&hash[..12.min(hash.len())], origin = ?new.info().origin, elapsed_ms = started.elapsed().as_millis() as u64, "plugin optimized: the optimizing compiler's version swapped in");
                    }
                    let _ = sink.send(event);
                });
                if swapped {
                    self.count(ReloadResult::Swapped, Some(started.elapsed()));
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), reason = %crate::error_chain(&e), "the optimizing compiler failed: the plugin keeps running on the baseline tier");
            }
        }
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
    /// files are named or arrive in: of two files declaring one name, the registry keeps the one
    /// [`super::Registry::install`] says, and a file that lost its name is loaded again once the
    /// name is free.
    ///
    /// Files are read and compiled in parallel, a core's worth at once, smallest first, and each
    /// is applied to the registry as soon as it is ready, unless a file of the batch not yet
    /// applied could take its plugin's name from it: then it waits for that file, so a plugin
    /// that loses its name never runs, not even while another file compiles. A file still
    /// compiling could take the name when it may declare it (it carries no embedded manifest,
    /// or one with that name, or its plugin holds the name now) and would keep it by the rule
    /// of [`super::registry::keeps_name`] (bound by the configuration, else sorting first).
    /// Plugins that embed their manifest (`capstan annotate`) or that the configuration binds
    /// are therefore never held back by a slower file.
    pub async fn sync_all(&self, paths: impl IntoIterator<Item = PathBuf>) -> Vec<PluginEvent> {
        let mut events = Vec::new();
        self.sync_each(paths, |done| events.extend(done)).await;
        events
    }

    /// [`Reloader::sync_all`], handing each applied file's events to `emit`, then starting the
    /// optimizing compile of the plugins the batch put in place on the baseline tier (after
    /// the batch, so that it takes no processor from a plugin still waiting to serve).
    async fn sync_each(
        &self,
        paths: impl IntoIterator<Item = PathBuf>,
        mut emit: impl FnMut(Vec<PluginEvent>),
    ) {
        let mut work: BTreeSet<PathBuf> = paths.into_iter().collect();
        while !work.is_empty() {
            let batch = std::mem::take(&mut work);
            let (mut waiting, order) = self.declared(batch).await;
            let mut applied = Vec::new();
            let mut prepared = futures::stream::iter(order)
                .map(|path| async move {
                    let started = Instant::now();
                    let p = self.prepare(&path).await;
                    (path, p, started)
                })
                .buffer_unordered(self.parallel);
            while let Some((path, p, started)) = prepared.next().await {
                waiting.insert(path, Waiting::Held(p, started));
                while let Some(path) = self.releasable(&waiting) {
                    let Some(Waiting::Held(p, started)) = waiting.remove(&path) else {
                        continue;
                    };
                    let (done, retry) = self.commit(&path, p, started);
                    work.extend(retry);
                    emit(done.clone());
                    applied.extend(done);
                }
            }
            self.optimize(&applied);
        }
    }

    /// Every file of a batch, waiting to be prepared, with the plugin name its embedded manifest
    /// declares; and the order to prepare them in, smallest first (so the quick compiles serve
    /// while the long ones run). Files are read only when the batch has several: one alone
    /// waits for nothing.
    async fn declared(
        &self,
        batch: BTreeSet<PathBuf>,
    ) -> (BTreeMap<PathBuf, Waiting>, Vec<PathBuf>) {
        let unknown = |batch: BTreeSet<PathBuf>| {
            let waiting = batch
                .iter()
                .map(|path| (path.clone(), Waiting::Preparing(None)))
                .collect();
            (waiting, batch.into_iter().collect())
        };
        if batch.len() < 2 {
            return unknown(batch);
        }
        let (dir, cap, paths) = (
            self.dir.clone(),
            self.runtime.max_plugin_bytes(),
            batch.clone(),
        );
        let read = move || {
            let mut files: Vec<(Option<usize>, PathBuf, Option<String>)> = paths
                .into_iter()
                .map(|path| match super::read_plugin_file(&dir, &path, cap) {
                    Ok(bytes) => {
                        let name = super::embedded::read(&bytes).ok().flatten().map(|m| m.name);
                        (Some(bytes.len()), path, name)
                    }
                    Err(_) => (None, path, None),
                })
                .collect();
            // Unreadable files first: they are quick to refuse or unload.
            files.sort_by_key(|(len, path, _)| (*len, path.clone()));
            files
        };
        let Ok(files) = tokio::task::spawn_blocking(read).await else {
            return unknown(batch);
        };
        let order = files.iter().map(|(_, path, _)| path.clone()).collect();
        let waiting = files
            .into_iter()
            .map(|(_, path, name)| (path, Waiting::Preparing(name)))
            .collect();
        (waiting, order)
    }

    /// The next prepared file that may be applied now: of those no file still waiting could
    /// take the name from, the first in the order a batch is applied in (removals, then plugins
    /// the configuration binds, then the rest by file name).
    fn releasable(&self, waiting: &BTreeMap<PathBuf, Waiting>) -> Option<PathBuf> {
        let rank = |path: &Path, p: &Prepared| {
            let rank = match p {
                Prepared::Gone => 0,
                Prepared::Ready(plugin) if plugin.grant().bound => 1,
                _ => 2,
            };
            (rank, path.file_name().map(ToOwned::to_owned))
        };
        waiting
            .iter()
            .filter_map(|(path, w)| match w {
                Waiting::Held(p, _) => Some((rank(path, p), path)),
                Waiting::Preparing(_) => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|(_, path)| path)
            .find(|path| match &waiting[*path] {
                Waiting::Held(Prepared::Ready(plugin), _) => !self.contested(path, plugin, waiting),
                _ => true,
            })
            .cloned()
    }

    /// Whether a file of `waiting` other than `path` could take the name of `plugin` (prepared
    /// from `path`) from it, by [`keeps_name`].
    fn contested(
        &self,
        path: &Path,
        plugin: &Plugin,
        waiting: &BTreeMap<PathBuf, Waiting>,
    ) -> bool {
        let name = plugin.name();
        let mine = (path, plugin.grant().bound);
        waiting.iter().any(|(other, w)| {
            if other == path {
                return false;
            }
            let bound = match w {
                Waiting::Held(Prepared::Ready(rival), _) if rival.name() == name => {
                    rival.grant().bound
                }
                Waiting::Held(..) => return false,
                Waiting::Preparing(declared) => {
                    let holds = self.registry.at(other).is_some_and(|p| p.name() == name);
                    if !holds && declared.as_deref().is_some_and(|d| d != name) {
                        return false;
                    }
                    let file = other.file_name().map(|f| f.to_string_lossy());
                    file.is_some_and(|f| self.runtime.grants().may_bind(name, &f))
                }
            };
            keeps_name((other, bound), mine).0
        })
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
        let hash = content_hash(&bytes);
        if self.registry.hash_at(path).as_deref() == Some(hash.as_str()) {
            return Prepared::Unchanged(hash);
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
            Prepared::Unchanged(hash) => {
                self.registry.clear_rejection(path, &hash);
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
                    for path in &event.paths {
                        if is_plugin_file(path) {
                            let _ = tx.send(if renamed_to(&event.kind, &event.paths, path) {
                                Changed::Complete(path.clone())
                            } else {
                                Changed::File(path.clone())
                            });
                        } else if is_volume_swap(path) {
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
                // Whether the change needs no quiet period.
                let mut note = |c: Changed| match c {
                    Changed::File(p) => {
                        pending.insert(p);
                        false
                    }
                    Changed::Complete(p) => {
                        pending.insert(p);
                        true
                    }
                    Changed::All => {
                        all = true;
                        true
                    }
                };
                let mut settled = note(first);
                while let Ok(c) = rx.try_recv() {
                    settled &= note(c);
                }
                // Quiet period, unless every change was a file renamed into place (or a volume
                // swap, which is atomic too): every further change restarts it.
                while !settled {
                    match tokio::time::timeout(this.debounce, rx.recv()).await {
                        Ok(Some(c)) => {
                            note(c);
                        }
                        Ok(None) => return,
                        Err(_) => settled = true,
                    }
                }
                if all {
                    // Unchanged files are left as they are: a sync compares content hashes.
                    pending.extend(this.tracked());
                }
                let mut open = true;
                this.sync_each(std::mem::take(&mut pending), |done| {
                    for event in done {
                        open &= events.send(event).is_ok();
                    }
                })
                .await;
                if !open {
                    return;
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
