//! The plugin registry: which plugins are loaded from which files, and which files were rejected.

use super::grant::GrantStatus;
use super::instance::Plugin;
use super::quarantine::PluginState;
use super::runtime::LoadError;
use super::wasi::DirGrant;
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
    /// Baseline (served while the optimized version compiles) or optimized.
    pub tier: super::Tier,
    /// Why the baseline compiler could not run it, if it was tried and failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_error: Option<String>,
    /// Running or degraded (quarantined).
    #[serde(flatten)]
    pub state: PluginState,
    /// The last rejected version of this file, if its newest version was refused.
    pub last_error: Option<String>,
    /// When it was loaded, seconds since the Unix epoch.
    pub loaded_at: u64,
    /// The configured grant it runs with, and whether its configuration entry applies.
    pub grant: GrantView,
    /// The effective manifest: the requested one narrowed by configuration; what the host enforces.
    pub effective_manifest: crate::contract::Manifest,
    /// The manifest as the plugin requested it (its `describe`), before configuration.
    pub requested_manifest: crate::contract::Manifest,
}

/// A plugin's grant as shown at `/plugins`: whether its configuration entry applies (and why not),
/// and what it is lent. Environment values are not shown, only their names.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    /// Whether the entry applies, which entry, and why not.
    #[serde(flatten)]
    pub status: GrantStatus,
    /// Directories lent through WASI.
    pub wasi_dirs: Vec<DirGrant>,
    /// Names of the environment variables set.
    pub env: Vec<String>,
    /// Call deadline, ms.
    pub call_timeout_ms: u128,
    /// Memory an instance may grow to, bytes.
    pub memory_bytes: usize,
    /// Fuel per call, if limited.
    pub fuel: Option<u64>,
}

impl GrantView {
    fn of(plugin: &Plugin) -> Self {
        let (wasi, limits) = (plugin.wasi(), plugin.limits());
        Self {
            status: plugin.grant().clone(),
            wasi_dirs: wasi.dirs.clone(),
            env: wasi.env.keys().cloned().collect(),
            call_timeout_ms: limits.call_timeout.as_millis(),
            memory_bytes: limits.memory_bytes,
            fuel: limits.fuel,
        }
    }
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
    /// Files refused because another file keeps the name they declare: the name.
    shadowed: BTreeMap<PathBuf, String>,
}

impl State {
    /// `name` is free again: the files that lost it, to be loaded again.
    fn freed(&mut self, name: &str) -> Vec<PathBuf> {
        let paths: Vec<PathBuf> = self
            .shadowed
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &paths {
            self.shadowed.remove(p);
        }
        paths
    }
}

/// Which of two files declaring the same plugin name keeps it, whatever the order they were
/// loaded in: the one the configuration binds to that name; between two bound or two unbound
/// files, the one whose file name sorts first. Returns whether `a` keeps it, and why.
pub(crate) fn keeps_name(a: (&Path, bool), b: (&Path, bool)) -> (bool, &'static str) {
    match (a.1, b.1) {
        (true, false) => (true, "the configuration binds the name to it"),
        (false, true) => (false, "the configuration binds the name to it"),
        _ => (
            (a.0.file_name(), a.0) < (b.0.file_name(), b.0),
            "its file name sorts first",
        ),
    }
}

/// What installing a plugin did.
#[derive(Debug, Default)]
pub struct Installed {
    /// Plugin events, in order (a displaced plugin's `Unloaded` comes first).
    pub events: Vec<PluginEvent>,
    /// Files that lost their declared name to a plugin that no longer holds it: load them again.
    pub retry: Vec<PathBuf>,
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
    /// Another file declares the same plugin name and keeps it.
    #[error(
        "{}: a plugin named {name} is also declared by {}, which keeps the name ({rule})",
        loser.display(),
        winner.display()
    )]
    Duplicate {
        /// Plugin name.
        name: String,
        /// The file refused.
        loser: PathBuf,
        /// The file that keeps the name.
        winner: PathBuf,
        /// Why the winner wins.
        rule: &'static str,
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

    /// Put a freshly loaded plugin in place of whatever `path` held. When another file has a
    /// plugin of the same name, [`keeps_name`] decides: if the new one loses it is refused (and
    /// loaded again once the name is free); if it wins, the other is unloaded and recorded as
    /// refused, naming this file.
    pub fn install(&self, path: &Path, plugin: Plugin) -> Result<Installed, RegistryError> {
        let mut st = self.lock();
        let name = plugin.name().to_owned();
        let mut out = Installed::default();
        let rival = st
            .by_path
            .iter()
            .find(|(p, s)| p.as_path() != path && s.plugin.name() == name)
            .map(|(p, s)| (p.clone(), s.plugin.clone()));
        if let Some((other, held)) = rival {
            let (wins, rule) =
                keeps_name((path, plugin.grant().bound), (&other, held.grant().bound));
            if !wins {
                st.shadowed.insert(path.to_owned(), name.clone());
                return Err(RegistryError::Duplicate {
                    name,
                    loser: path.to_owned(),
                    winner: other,
                    rule,
                });
            }
            st.by_path.remove(&other);
            let e = RegistryError::Duplicate {
                name: name.clone(),
                loser: other.clone(),
                winner: path.to_owned(),
                rule,
            };
            tracing::warn!(plugin = %name, unloaded = %other.display(), kept = %path.display(), rule, "two files declare one plugin name: the other file is unloaded");
            st.rejected.insert(
                other.clone(),
                Rejection {
                    path: other.clone(),
                    reason: e.to_string(),
                    at: now(),
                },
            );
            st.shadowed.insert(other, name.clone());
            out.events.push(PluginEvent::Unloaded(held));
        }
        st.rejected.remove(path);
        st.shadowed.remove(path);
        let slot = Slot {
            plugin: plugin.clone(),
            loaded_at: now(),
            last_error: None,
        };
        out.events
            .push(match st.by_path.insert(path.to_owned(), slot) {
                Some(old) => {
                    if old.plugin.name() != name {
                        out.retry = st.freed(old.plugin.name());
                    }
                    PluginEvent::Replaced {
                        old: old.plugin,
                        new: plugin,
                    }
                }
                None => PluginEvent::Loaded(plugin),
            });
        Ok(out)
    }

    /// Put the optimized version of the plugin `path` holds in its place, if `path` still holds
    /// that very content on the baseline tier, and hand the replacement to `announce` before
    /// anything else can change `path`: a newer version installed meanwhile is never replaced
    /// by an older one, and its event is never overtaken. Returns whether it was put in place.
    pub fn upgrade(
        &self,
        path: &Path,
        optimized: Plugin,
        announce: impl FnOnce(PluginEvent),
    ) -> bool {
        let mut st = self.lock();
        let Some(slot) = st.by_path.get_mut(path) else {
            return false;
        };
        let held = slot.plugin.info();
        if held.hash != optimized.info().hash
            || held.tier != super::Tier::Baseline
            || held.name != optimized.info().name
        {
            return false;
        }
        let old = std::mem::replace(&mut slot.plugin, optimized.clone());
        announce(PluginEvent::Replaced {
            old,
            new: optimized,
        });
        true
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

    /// The file at `path` is the version already loaded again (content `hash`): forget its
    /// rejection. Does nothing unless `path` still holds that content: a file unloaded since it
    /// was read (another file took its name) keeps the rejection that says why.
    pub fn clear_rejection(&self, path: &Path, hash: &str) {
        let mut st = self.lock();
        let Some(slot) = st.by_path.get_mut(path) else {
            return;
        };
        if slot.plugin.info().hash != hash {
            return;
        }
        slot.last_error = None;
        st.rejected.remove(path);
    }

    /// Take the plugin of a removed file out. The files that lost its name to it are returned
    /// in `retry`, to be loaded again.
    pub fn remove(&self, path: &Path) -> Installed {
        let mut st = self.lock();
        st.rejected.remove(path);
        st.shadowed.remove(path);
        let mut out = Installed::default();
        if let Some(s) = st.by_path.remove(path) {
            out.retry = st.freed(s.plugin.name());
            out.events.push(PluginEvent::Unloaded(s.plugin));
        }
        out
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
                    tier: i.tier,
                    baseline_error: i.baseline_error.clone(),
                    state: s.plugin.state(),
                    last_error: s.last_error.clone(),
                    loaded_at: s.loaded_at,
                    grant: GrantView::of(&s.plugin),
                    effective_manifest: s.plugin.manifest().clone(),
                    requested_manifest: s.plugin.declared_manifest().clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_file_then_the_first_file_name_keeps_a_name() {
        let (a, b) = (Path::new("/p/a.wasm"), Path::new("/p/b.wasm"));
        assert!(keeps_name((b, true), (a, false)).0, "bound wins");
        assert!(!keeps_name((a, false), (b, true)).0);
        assert!(keeps_name((a, false), (b, false)).0, "first name wins");
        assert!(!keeps_name((b, false), (a, false)).0);
        assert!(keeps_name((a, true), (b, true)).0);
        for (x, y) in [(a, b), (b, a)] {
            for bx in [true, false] {
                for by in [true, false] {
                    assert_ne!(
                        keeps_name((x, bx), (y, by)).0,
                        keeps_name((y, by), (x, bx)).0,
                        "exactly one of two files keeps the name, whichever is asked first"
                    );
                }
            }
        }
    }
}
