//! Which configured grant a plugin file receives. A configuration entry is bound to a file of the
//! plugins directory and/or a content digest, never to the name a plugin declares: a plugin that
//! claims another plugin's name gets that plugin's grant only if it is that plugin's file.

use super::settings::PluginSettings;
use serde::Serialize;

/// What ties a configuration entry to plugin files: a bare file name in the plugins directory,
/// a SHA-256 of the file's content, or both (then both must match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// File name in the plugins directory, e.g. `webapp.wasm`.
    pub file: Option<String>,
    /// SHA-256 of the file's content, lowercase hex.
    pub sha256: Option<String>,
}

impl Binding {
    /// A binding to a file name.
    pub fn file(name: impl Into<String>) -> Self {
        Self {
            file: Some(name.into()),
            sha256: None,
        }
    }

    /// A binding to a content digest (hex, either case).
    pub fn sha256(hex: impl Into<String>) -> Self {
        Self {
            file: None,
            sha256: Some(hex.into().to_ascii_lowercase()),
        }
    }

    /// Whether it names neither a file nor a digest (and so binds nothing).
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.sha256.is_none()
    }

    /// Whether the file `file` with content digest `sha256` is the one bound: every part given
    /// must match, and at least one part must be given.
    pub fn matches(&self, file: &str, sha256: &str) -> bool {
        !self.is_empty()
            && self.file.as_deref().is_none_or(|f| f == file)
            && self
                .sha256
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(sha256))
    }

    /// Whether any part given names this file or digest (for messages about mismatches).
    fn touches(&self, file: &str, sha256: &str) -> bool {
        self.file.as_deref() == Some(file)
            || self
                .sha256
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(sha256))
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, &self.sha256) {
            (Some(file), Some(h)) => write!(f, "file {file} with sha256 {h}"),
            (Some(file), None) => write!(f, "file {file}"),
            (None, Some(h)) => write!(f, "sha256 {h}"),
            (None, None) => f.write_str("nothing"),
        }
    }
}

/// One configuration entry: the name it is written under, what it is bound to, what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    /// The plugin name the entry is for; the plugin must also declare it.
    pub name: String,
    /// The file and/or digest the entry is bound to.
    pub binding: Binding,
    /// What it grants.
    pub settings: PluginSettings,
}

/// Whether a loaded plugin runs with its configuration entry, as shown at `/plugins`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GrantStatus {
    /// The configuration entry applies: the plugin declares its name and is its bound file.
    pub bound: bool,
    /// The configuration entry concerned (applied, or refused), if any.
    pub entry: Option<String>,
    /// Why no configured grant applies, when an entry names this plugin or this file.
    pub reason: Option<String>,
}

impl GrantStatus {
    /// The entry applied, if the plugin is bound to one.
    pub fn bound_entry(&self) -> Option<&str> {
        self.entry.as_deref().filter(|_| self.bound)
    }
}

/// Every configuration entry, and the rule that picks the one a plugin file gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantTable {
    entries: Vec<GrantEntry>,
}

impl GrantTable {
    /// A table of `entries`.
    pub fn new(entries: Vec<GrantEntry>) -> Self {
        Self { entries }
    }

    /// Add an entry.
    pub fn push(&mut self, entry: GrantEntry) {
        self.entries.push(entry);
    }

    /// The entries.
    pub fn entries(&self) -> &[GrantEntry] {
        &self.entries
    }

    /// Whether the entry written under `name` could bind the file named `file` before its content
    /// is known: its binding names that file, or only a content digest (which any file may
    /// match). Only the file [`GrantTable::resolve`] binds gets the entry, so a file this says
    /// no to can never be bound to `name`.
    pub fn may_bind(&self, name: &str, file: &str) -> bool {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .is_some_and(|e| {
                !e.binding.is_empty() && e.binding.file.as_deref().is_none_or(|f| f == file)
            })
    }

    /// The settings a plugin that declares `declared`, loaded from the file named `file` with
    /// content digest `sha256`, runs with, and why. The entry written under the declared name
    /// applies only when its binding matches the file; otherwise the plugin gets the default
    /// settings (no WASI grant, default limits, its manifest as declared).
    pub fn resolve(
        &self,
        declared: &str,
        file: &str,
        sha256: &str,
    ) -> (PluginSettings, GrantStatus) {
        if let Some(e) = self.entries.iter().find(|e| e.name == declared) {
            if e.binding.matches(file, sha256) {
                let status = GrantStatus {
                    bound: true,
                    entry: Some(e.name.clone()),
                    reason: None,
                };
                return (e.settings.clone(), status);
            }
            let status = GrantStatus {
                bound: false,
                entry: Some(e.name.clone()),
                reason: Some(format!(
                    "configuration entry {} is bound to {}, not to file {file} with sha256 {sha256}: no configured grant applies",
                    e.name, e.binding
                )),
            };
            return (PluginSettings::default(), status);
        }
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.binding.touches(file, sha256))
        {
            let status = GrantStatus {
                bound: false,
                entry: Some(e.name.clone()),
                reason: Some(format!(
                    "file {file} is bound to configuration entry {}, but the plugin declares the name {declared}: no configured grant applies",
                    e.name
                )),
            };
            return (PluginSettings::default(), status);
        }
        (PluginSettings::default(), GrantStatus::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{DirGrant, WasiGrants};

    const REAL: &str = "aa11";
    const OTHER: &str = "bb22";

    fn granting() -> PluginSettings {
        PluginSettings {
            wasi: WasiGrants {
                dirs: vec![DirGrant {
                    host: "/etc/webapp".into(),
                    guest: "/config".into(),
                    writable: false,
                }],
                env: [("REGION".to_owned(), "eu".to_owned())].into(),
            },
            ..PluginSettings::default()
        }
    }

    fn table(binding: Binding) -> GrantTable {
        GrantTable::new(vec![GrantEntry {
            name: "webapp".into(),
            binding,
            settings: granting(),
        }])
    }

    #[test]
    fn the_bound_file_gets_the_grant() {
        let (s, st) = table(Binding::file("webapp.wasm")).resolve("webapp", "webapp.wasm", REAL);
        assert_eq!(s, granting());
        assert!(st.bound);
        assert_eq!(st.bound_entry(), Some("webapp"));
        let (s, st) = table(Binding::sha256("AA11")).resolve("webapp", "renamed.wasm", REAL);
        assert_eq!(s, granting(), "a digest binding follows the content");
        assert!(st.bound);
    }

    #[test]
    fn an_impostor_declaring_the_name_gets_nothing() {
        let (s, st) = table(Binding::file("webapp.wasm")).resolve("webapp", "evil.wasm", OTHER);
        assert_eq!(s, PluginSettings::default());
        assert!(!st.bound);
        assert_eq!(st.bound_entry(), None);
        let reason = st.reason.unwrap();
        assert!(
            reason.contains("bound to file webapp.wasm") && reason.contains("evil.wasm"),
            "{reason}"
        );
        let both = Binding {
            file: Some("webapp.wasm".into()),
            sha256: Some(REAL.into()),
        };
        let (s, st) = table(both).resolve("webapp", "webapp.wasm", OTHER);
        assert_eq!(s, PluginSettings::default(), "right file, other content");
        assert!(!st.bound);
    }

    #[test]
    fn the_bound_file_declaring_another_name_gets_nothing() {
        let (s, st) = table(Binding::file("webapp.wasm")).resolve("other", "webapp.wasm", REAL);
        assert_eq!(s, PluginSettings::default());
        assert!(!st.bound);
        assert_eq!(st.entry.as_deref(), Some("webapp"));
        assert!(
            st.reason.unwrap().contains("declares the name other"),
            "names the declared name"
        );
    }

    #[test]
    fn a_file_may_be_bound_only_by_an_entry_naming_it_or_a_digest_alone() {
        let by_file = table(Binding::file("webapp.wasm"));
        assert!(by_file.may_bind("webapp", "webapp.wasm"));
        assert!(!by_file.may_bind("webapp", "evil.wasm"));
        assert!(
            !by_file.may_bind("other", "webapp.wasm"),
            "no entry of that name"
        );
        assert!(
            table(Binding::sha256(REAL)).may_bind("webapp", "renamed.wasm"),
            "any file may hold the digest"
        );
        assert!(!table(Binding::default()).may_bind("webapp", "webapp.wasm"));
    }

    #[test]
    fn unconfigured_plugins_get_the_defaults_quietly() {
        let (s, st) = table(Binding::file("webapp.wasm")).resolve("echo", "echo.wasm", OTHER);
        assert_eq!(s, PluginSettings::default());
        assert_eq!(st, GrantStatus::default());
        assert!(
            !Binding::default().matches("x.wasm", REAL),
            "an empty binding binds nothing"
        );
    }
}
