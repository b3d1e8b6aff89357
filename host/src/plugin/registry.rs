//! The plugin registry: which plugins are loaded from which files, and which files were rejected.

use super::instance::Plugin;
use super::quarantine::PluginState;
use super::runtime::LoadError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A change to the set of loaded plugins.
#[derive(Debug, Clone)]
pub enum PluginEvent {
    /// A plugin was loaded from a new file.
    Loaded(Plugin),
    /// A file changed and its new version replaced the old one.
    Replaced {
        /// The version that served until now; calls in flight finish on it.
        old: Plugin,
        /// The version that serves from now on.
        new: Plugin,
    },
    /// A file went away: its plugin serves no new calls.
    Unloaded(Plugin),
}

/// One rejected file, as shown at `/plugins`.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// The file.
    pub path: PathBuf,
    /// Why, on one line.
    pub reason: String,
    /// When, seconds since the Unix epoch.
    pub at: u64,
}

/// One loaded plugin, as shown at `/plugins`.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// World.
    pub world: crate::contract::World,
    /// SHA-256 of the file.
    pub hash: String,
    /// The file.
    pub path: PathBuf,
    /// Compiled, or from the precompiled cache.
    pub origin: super::Origin,
    /// Running or degraded (quarantined).
    #[serde(flatten)]
    pub state: PluginState,
    /// The last rejected version of this file, if its newest version was refused.
    pub last_error: Option<String>,
    /// When it was loaded, seconds since the Unix epoch.
    pub loaded_at: u64,
    /// The manifest in force (narrowed by configuration).
    pub manifest: crate::contract::Manifest,
}

/// What `/plugins` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryView {
    /// Loaded plugins, by name.
    pub loaded: Vec<Loaded>,
    /// Rejected files.
    pub rejected: Vec<Rejection>,
}

struct Slot {
    plugin: Plugin,
    loaded_at: u64,
    last_error: Option<String>,
}

#[derive(Default)]
struct State {
    by_path: BTreeMap<PathBuf, Slot>,
    rejected: BTreeMap<PathBuf, Rejection>,
}

/// The registry. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    state: Arc<Mutex<State>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the registry refused a plugin.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Another file already provides a plugin of that name.
    #[error("a plugin named {name} is already loaded from {other}")]
    Duplicate {
        /// Plugin name.
        name: String,
        /// The file that has it.
        other: PathBuf,
    },
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every plugin loaded now.
    pub fn plugins(&self) -> Vec<Plugin> {
        self.lock()
            .by_path
            .values()
            .map(|s| s.plugin.clone())
            .collect()
    }

    /// The plugin loaded from `path`.
    pub fn at(&self, path: &Path) -> Option<Plugin> {
        self.lock().by_path.get(path).map(|s| s.plugin.clone())
    }

    /// The plugin named `name`.
    pub fn named(&self, name: &str) -> Option<Plugin> {
        self.lock()
            .by_path
            .values()
            .find(|s| s.plugin.name() == name)
            .map(|s| s.plugin.clone())
    }

    /// Put a freshly loaded plugin in place of whatever `path` held. A plugin of the same name
    /// from another file is refused.
    pub fn install(&self, path: &Path, plugin: Plugin) -> Result<PluginEvent, RegistryError> {
        let mut st = self.lock();
        if let Some((other, _)) = st
            .by_path
            .iter()
            .find(|(p, s)| p.as_path() != path && s.plugin.name() == plugin.name())
        {
            return Err(RegistryError::Duplicate {
                name: plugin.name().to_owned(),
                other: other.clone(),
            });
        }
        st.rejected.remove(path);
        let slot = Slot {
            plugin: plugin.clone(),
            loaded_at: now(),
            last_error: None,
        };
        Ok(match st.by_path.insert(path.to_owned(), slot) {
            Some(old) => PluginEvent::Replaced {
                old: old.plugin,
                new: plugin,
            },
            None => PluginEvent::Loaded(plugin),
        })
    }

    /// Record a rejected file; a plugin it held keeps serving, with the error attached.
    pub fn reject(&self, error: &LoadError) {
        self.reject_line(&error.path, error.one_line());
    }

    /// Record a rejection given as a line.
    pub fn reject_line(&self, path: &Path, reason: String) {
        let mut st = self.lock();
        if let Some(slot) = st.by_path.get_mut(path) {
            slot.last_error = Some(reason.clone());
        }
        st.rejected.insert(
            path.to_owned(),
            Rejection {
                path: path.to_owned(),
                reason,
                at: now(),
            },
        );
    }

    /// The file at `path` is the version already loaded again: forget its rejection.
    pub fn clear_rejection(&self, path: &Path) {
        let mut st = self.lock();
        st.rejected.remove(path);
        if let Some(slot) = st.by_path.get_mut(path) {
            slot.last_error = None;
        }
    }

    /// Take the plugin of a removed file out.
    pub fn remove(&self, path: &Path) -> Option<PluginEvent> {
        let mut st = self.lock();
        st.rejected.remove(path);
        st.by_path
            .remove(path)
            .map(|s| PluginEvent::Unloaded(s.plugin))
    }

    /// The hash of the plugin loaded from `path`.
    pub fn hash_at(&self, path: &Path) -> Option<String> {
        self.lock()
            .by_path
            .get(path)
            .map(|s| s.plugin.info().hash.clone())
    }

    /// What `/plugins` shows.
    pub fn view(&self) -> RegistryView {
        let st = self.lock();
        let mut loaded: Vec<Loaded> = st
            .by_path
            .values()
            .map(|s| {
                let i = s.plugin.info();
                Loaded {
                    name: i.name.clone(),
                    version: i.version.clone(),
                    world: i.world,
                    hash: i.hash.clone(),
                    path: i.path.clone(),
                    origin: i.origin,
                    state: s.plugin.state(),
                    last_error: s.last_error.clone(),
                    loaded_at: s.loaded_at,
                    manifest: s.plugin.manifest().clone(),
                }
            })
            .collect();
        loaded.sort_by(|a, b| a.name.cmp(&b.name));
        RegistryView {
            loaded,
            rejected: st.rejected.values().cloned().collect(),
        }
    }
}
