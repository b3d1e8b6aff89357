//! The host's configuration file: default sandbox limits, and per plugin limits, grants and access.
//!
//! Every plugin entry is bound to a file of the plugins directory (`file`) and/or a content
//! digest (`sha256`): it applies only to the plugin that declares its name *and* is that file.
//!
//! ```yaml
//! runtime:
//!   fuel: true              # meter fuel, so `fuel` limits take effect (costs every call)
//!   maxWasmStackKiB: 512    # runtime-wide
//!   maxPluginMiB: 64        # larger plugin files are refused
//!   compileTiers: tiered    # or optimized-only: one compile per plugin, no baseline tier
//! defaults:                 # every plugin
//!   callTimeoutMs: 5000
//!   memoryMiB: 64
//!   maxValueKiB: 4096
//!   tableElements: 20000
//!   fuel: 1000000000
//!   quarantine: { afterFailures: 5, initialBackoffMs: 5000, maxBackoffMs: 300000 }
//!   minRequeueAfterMs: 1000
//!   maxPlanEntries: 256
//!   maxConditions: 64
//!   maxStatusKiB: 256
//!   log: { kiBPerSecond: 64, burstKiB: 256, recordsPerSecond: 100, burstRecords: 500, maxRecordKiB: 16 }
//! plugins:
//!   webapp:
//!     file: webapp.wasm                   # required: file and/or sha256
//!     sha256: 3f1c…                       # optional: the file's content must also match
//!     limits: { callTimeoutMs: 2000 }     # over the defaults
//!     wasi:
//!       dirs: [{ host: /etc/webapp, guest: /config }]   # read-only unless `writable: true`
//!       env: { REGION: eu-west-1 }
//!     kubernetes:
//!       allow:                            # narrows what the manifest declares
//!         - { group: apps, version: v1, kind: Deployment, verbs: [get, list, watch, patch] }
//!       podLogs: false
//!     reconcile:
//!       prune: false
//!       phaseTimeoutsSeconds: { Creating: 600 }
//!       namespaces: [shared]              # besides the reconciled object's own ("*": all)
//!       clusterScoped: false              # cluster-scoped kinds it declares
//! ```

use crate::contract::{AccessRule, Gvk, Verb};
use crate::plugin::{
    Binding, GrantEntry, Limits, LogLimits, PluginSettings, QuarantinePolicy, WasiGrants,
    is_plugin_file,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("invalid configuration {path}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A plugin's WASI grant cannot be given.
    #[error("plugin {plugin}: invalid wasi grant")]
    Grant {
        /// Plugin.
        plugin: String,
        /// Cause.
        #[source]
        source: crate::plugin::WasiError,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Runtime-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeSection {
    /// Meter fuel.
    #[serde(default)]
    pub fuel: bool,
    /// Wasm stack per call, in KiB.
    pub max_wasm_stack_ki_b: Option<usize>,
    /// Largest plugin file read, in MiB (default 64).
    pub max_plugin_mi_b: Option<u64>,
    /// Baseline compiler first, then optimized (`tiered`, the default), or `optimized-only`.
    #[serde(default)]
    pub compile_tiers: crate::plugin::CompileTiers,
}

/// Limits as written in the file; unset fields keep the value underneath.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSection {
    /// Call deadline, ms.
    pub call_timeout_ms: Option<u64>,
    /// Memory, MiB.
    pub memory_mi_b: Option<usize>,
    /// Largest returned value, KiB.
    pub max_value_ki_b: Option<usize>,
    /// Table elements.
    pub table_elements: Option<usize>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Quarantine policy.
    pub quarantine: Option<QuarantineSection>,
    /// The shortest requeue-after honoured, ms (0: none).
    pub min_requeue_after_ms: Option<u64>,
    /// Entries one plan may hold.
    pub max_plan_entries: Option<usize>,
    /// Components of a health report, conditions of a status update.
    pub max_conditions: Option<usize>,
    /// Status text one call may hand back, KiB.
    pub max_status_ki_b: Option<usize>,
    /// Log output budget.
    pub log: Option<LogSection>,
}

/// A plugin's log budget as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogSection {
    /// KiB a second.
    pub ki_b_per_second: Option<u64>,
    /// KiB at once.
    pub burst_ki_b: Option<u64>,
    /// Records a second.
    pub records_per_second: Option<u64>,
    /// Records at once.
    pub burst_records: Option<u64>,
    /// The longest record, KiB.
    pub max_record_ki_b: Option<usize>,
}

impl LogSection {
    fn over(&self, base: LogLimits) -> LogLimits {
        let mut l = base;
        if let Some(v) = self.ki_b_per_second {
            l.bytes_per_second = v.saturating_mul(1024);
        }
        if let Some(v) = self.burst_ki_b {
            l.burst_bytes = v.saturating_mul(1024);
        }
        if let Some(v) = self.records_per_second {
            l.records_per_second = v;
        }
        if let Some(v) = self.burst_records {
            l.burst_records = v;
        }
        if let Some(v) = self.max_record_ki_b {
            l.max_record_bytes = v.saturating_mul(1024);
        }
        l
    }
}

/// Quarantine as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuarantineSection {
    /// Consecutive failures that quarantine.
    pub after_failures: Option<u32>,
    /// First backoff, ms.
    pub initial_backoff_ms: Option<u64>,
    /// Longest backoff, ms.
    pub max_backoff_ms: Option<u64>,
}

impl LimitsSection {
    /// `base` with the fields set here replaced.
    pub fn over(&self, base: &Limits) -> Limits {
        let mut l = base.clone();
        if let Some(v) = self.call_timeout_ms {
            l.call_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.memory_mi_b {
            l.memory_bytes = v << 20;
        }
        if let Some(v) = self.max_value_ki_b {
            l.max_value_bytes = v << 10;
        }
        if let Some(v) = self.table_elements {
            l.table_elements = v;
        }
        if self.fuel.is_some() {
            l.fuel = self.fuel;
        }
        if let Some(q) = &self.quarantine {
            let p: &mut QuarantinePolicy = &mut l.quarantine;
            if let Some(v) = q.after_failures {
                p.after_failures = v;
            }
            if let Some(v) = q.initial_backoff_ms {
                p.initial_backoff = Duration::from_millis(v);
            }
            if let Some(v) = q.max_backoff_ms {
                p.max_backoff = Duration::from_millis(v);
            }
        }
        if let Some(v) = self.min_requeue_after_ms {
            l.min_requeue_after = Duration::from_millis(v);
        }
        if let Some(v) = self.max_plan_entries {
            l.max_plan_entries = v;
        }
        if let Some(v) = self.max_conditions {
            l.max_conditions = v;
        }
        if let Some(v) = self.max_status_ki_b {
            l.max_status_bytes = v.saturating_mul(1024);
        }
        if let Some(log) = &self.log {
            l.log = log.over(l.log);
        }
        l
    }

    /// The bounds on what a plugin returns or writes must let something through.
    fn check_cost_bounds(&self, name: &str) -> Result<(), ConfigError> {
        let zero = |v: Option<usize>| v == Some(0);
        if zero(self.max_conditions)
            || zero(self.max_status_ki_b)
            || zero(self.log.as_ref().and_then(|l| l.max_record_ki_b))
        {
            return Err(ConfigError::Invalid(format!(
                "{name}: maxConditions, maxStatusKiB and log.maxRecordKiB must be positive"
            )));
        }
        Ok(())
    }
}

/// One access rule as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// API group (empty for core).
    #[serde(default)]
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Verbs, lowercase.
    pub verbs: Vec<VerbName>,
}

/// A verb as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum VerbName {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl From<VerbName> for Verb {
    fn from(v: VerbName) -> Self {
        match v {
            VerbName::Get => Verb::Get,
            VerbName::List => Verb::List,
            VerbName::Watch => Verb::Watch,
            VerbName::Create => Verb::Create,
            VerbName::Update => Verb::Update,
            VerbName::Patch => Verb::Patch,
            VerbName::Delete => Verb::Delete,
        }
    }
}

/// Kubernetes access of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesSection {
    /// Rules narrowing the manifest; absent: as declared.
    pub allow: Option<Vec<RuleSection>>,
    /// Whether pod logs may be read.
    pub pod_logs: Option<bool>,
}

/// Reconcile settings of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileSection {
    /// Prune children no longer planned (default true).
    pub prune: Option<bool>,
    /// Phase timeouts over the manifest's, in seconds.
    #[serde(default)]
    pub phase_timeouts_seconds: BTreeMap<String, u64>,
    /// Namespaces the plugin may read and write in besides its object's (`"*"`: every one).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Whether the plugin may read and write the cluster-scoped kinds it declares.
    #[serde(default)]
    pub cluster_scoped: bool,
}

impl ReconcileSection {
    /// The scope granted beyond the reconciled object's namespace.
    pub fn scope(&self) -> crate::reconcile::ScopeGrant {
        crate::reconcile::ScopeGrant {
            namespaces: self.namespaces.iter().cloned().collect(),
            cluster_scoped: self.cluster_scoped,
        }
    }
}

/// One plugin's section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginSection {
    /// The plugin file this entry is bound to: a bare file name in the plugins directory.
    pub file: Option<String>,
    /// The SHA-256 (hex) the plugin file's content must have.
    pub sha256: Option<String>,
    /// Limits over the defaults.
    #[serde(default)]
    pub limits: LimitsSection,
    /// WASI grants.
    #[serde(default)]
    pub wasi: WasiGrants,
    /// Kubernetes access.
    #[serde(default)]
    pub kubernetes: KubernetesSection,
    /// Reconcile settings.
    #[serde(default)]
    pub reconcile: ReconcileSection,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Runtime-wide settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Limits of every plugin.
    #[serde(default)]
    pub defaults: LimitsSection,
    /// Per plugin, by manifest name; each entry bound to a file and/or digest.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSection>,
}

impl PluginSection {
    /// What the entry is bound to.
    pub fn binding(&self) -> Binding {
        Binding {
            file: self.file.clone(),
            sha256: self.sha256.as_ref().map(|h| h.to_ascii_lowercase()),
        }
    }

    /// Check the binding: present, a bare plugin file name, a SHA-256 in hex.
    fn check_binding(&self, name: &str) -> Result<(), ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(format!("plugins.{name}: {why}")));
        if self.file.is_none() && self.sha256.is_none() {
            return invalid(
                "the entry must be bound to its plugin: give `file` (a file name in the plugins directory) and/or `sha256` (of the file's content)".into(),
            );
        }
        if let Some(f) = &self.file {
            let bare = !f.contains('/') && !f.contains('\\') && f != "." && f != "..";
            if !bare || !is_plugin_file(Path::new(f)) {
                return invalid(format!(
                    "file {f:?} must be a bare file name in the plugins directory, ending in .wasm, not hidden"
                ));
            }
        }
        if let Some(h) = &self.sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return invalid(format!("sha256 {h:?} must be 64 hex digits"));
        }
        Ok(())
    }
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::read(path)?;
        config.check()?;
        Ok(config)
    }

    /// Read a configuration file for what it says of Kubernetes access alone (`capstan rbac`,
    /// which runs where the file's WASI directories need not exist): its WASI grants are dropped,
    /// everything else is checked as [`Config::load`] checks it.
    pub fn load_for_access(path: &Path) -> Result<Self, ConfigError> {
        let mut config = Self::read(path)?;
        for p in config.plugins.values_mut() {
            p.wasi = WasiGrants::default();
        }
        config.check()?;
        Ok(config)
    }

    /// Read and parse a configuration file, unchecked.
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parse configuration text.
    pub fn parse(text: &str) -> Result<Self, serde_saphyr::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(text)
    }

    /// Check values a parser cannot: every entry is bound to a file or digest (no two to the same
    /// one), granted directories exist, limits are positive.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut files: BTreeMap<&str, &str> = BTreeMap::new();
        let mut digests: BTreeMap<String, &str> = BTreeMap::new();
        for (name, p) in &self.plugins {
            p.check_binding(name)?;
            if let Some(f) = &p.file
                && let Some(other) = files.insert(f, name)
            {
                return Err(ConfigError::Invalid(format!(
                    "plugins.{other} and plugins.{name} are both bound to file {f}"
                )));
            }
            if let Some(h) = &p.sha256
                && let Some(other) = digests.insert(h.to_ascii_lowercase(), name)
            {
                return Err(ConfigError::Invalid(format!(
                    "plugins.{other} and plugins.{name} are both bound to sha256 {h}"
                )));
            }
            p.wasi.check().map_err(|source| ConfigError::Grant {
                plugin: name.clone(),
                source,
            })?;
        }
        for (name, p) in &self.plugins {
            for ns in &p.reconcile.namespaces {
                if ns != crate::reconcile::ALL_NAMESPACES
                    && let Err(e) = capstan_apiserver::validation::dns1123_label(ns)
                {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: reconcile.namespaces: {ns:?}: {e}"
                    )));
                }
            }
        }
        if self.runtime.max_plugin_mi_b == Some(0) {
            return Err(ConfigError::Invalid(
                "runtime.maxPluginMiB must be positive".into(),
            ));
        }
        for (name, l) in std::iter::once(("defaults", &self.defaults))
            .chain(self.plugins.iter().map(|(n, p)| (n.as_str(), &p.limits)))
        {
            if l.call_timeout_ms == Some(0) || l.memory_mi_b == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "{name}: callTimeoutMs and memoryMiB must be positive"
                )));
            }
            l.check_cost_bounds(name)?;
        }
        Ok(())
    }

    /// Limits of every plugin: the defaults section over `base`.
    pub fn default_limits(&self, base: &Limits) -> Limits {
        self.defaults.over(base)
    }

    /// The largest plugin file read, in bytes, if configured.
    pub fn max_plugin_bytes(&self) -> Option<u64> {
        self.runtime
            .max_plugin_mi_b
            .map(|mib| mib.saturating_mul(1 << 20))
    }

    /// Each configured plugin's entry: its binding and settings, with limits over `defaults`.
    pub fn grant_entries(&self, defaults: &Limits) -> Vec<GrantEntry> {
        self.plugins
            .iter()
            .map(|(name, p)| {
                let settings = PluginSettings {
                    limits: Some(p.limits.over(defaults)),
                    wasi: p.wasi.clone(),
                    allow: p.kubernetes.allow.as_ref().map(|rules| {
                        rules
                            .iter()
                            .map(|r| AccessRule {
                                gvk: Gvk::new(&r.group, &r.version, &r.kind),
                                verbs: r.verbs.iter().map(|v| Verb::from(*v)).collect(),
                            })
                            .collect()
                    }),
                    pod_logs: p.kubernetes.pod_logs,
                };
                GrantEntry {
                    name: name.clone(),
                    binding: p.binding(),
                    settings,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
runtime: { fuel: true, maxWasmStackKiB: 256, maxPluginMiB: 16 }
defaults: { callTimeoutMs: 2000, memoryMiB: 32 }
plugins:
  webapp:
    file: webapp.wasm
    limits: { memoryMiB: 128, fuel: 1000, quarantine: { afterFailures: 2 } }
    wasi: { dirs: [{ host: ".", guest: /config }], env: { A: b } }
    kubernetes:
      allow: [{ group: apps, version: v1, kind: Deployment, verbs: [get, patch] }]
      podLogs: false
    reconcile: { prune: false, phaseTimeoutsSeconds: { Creating: 60 } }
"#;

    #[test]
    fn a_full_file_parses_and_layers_limits() {
        let c = Config::parse(EXAMPLE).unwrap();
        c.check().unwrap();
        assert!(c.runtime.fuel);
        let defaults = c.default_limits(&Limits::default());
        assert_eq!(defaults.call_timeout, Duration::from_secs(2));
        assert_eq!(defaults.memory_bytes, 32 << 20);
        assert_eq!(c.max_plugin_bytes(), Some(16 << 20));
        let entries = c.grant_entries(&defaults);
        let (name, s) = (&entries[0].name, &entries[0].settings);
        assert_eq!(name, "webapp");
        assert_eq!(entries[0].binding, Binding::file("webapp.wasm"));
        let l = s.limits.as_ref().unwrap();
        assert_eq!(l.memory_bytes, 128 << 20);
        assert_eq!(l.call_timeout, Duration::from_secs(2), "from the defaults");
        assert_eq!(l.fuel, Some(1000));
        assert_eq!(l.quarantine.after_failures, 2);
        assert_eq!(s.wasi.dirs[0].guest, "/config");
        assert!(!s.wasi.dirs[0].writable, "read-only by default");
        assert_eq!(
            s.allow.as_ref().unwrap()[0],
            AccessRule::new(
                Gvk::new("apps", "v1", "Deployment"),
                vec![Verb::Get, Verb::Patch]
            )
        );
        assert_eq!(s.pod_logs, Some(false));
        assert_eq!(c.plugins["webapp"].reconcile.prune, Some(false));
    }

    #[test]
    fn cost_bounds_layer_like_other_limits() {
        let c = Config::parse(
            r#"
defaults:
  minRequeueAfterMs: 2000
  maxPlanEntries: 100
  log: { kiBPerSecond: 8, maxRecordKiB: 4 }
plugins:
  webapp:
    file: webapp.wasm
    limits: { maxConditions: 16, maxStatusKiB: 64, log: { burstRecords: 10 } }
"#,
        )
        .unwrap();
        c.check().unwrap();
        let defaults = c.default_limits(&Limits::default());
        assert_eq!(defaults.min_requeue_after, Duration::from_secs(2));
        assert_eq!(defaults.max_plan_entries, 100);
        assert_eq!(defaults.max_conditions, 64, "unset: the built-in default");
        let entry = &c.grant_entries(&defaults)[0];
        let l = entry.settings.limits.as_ref().unwrap();
        assert_eq!(l.max_conditions, 16);
        assert_eq!(l.max_status_bytes, 64 << 10);
        assert_eq!(l.max_plan_entries, 100, "from the defaults");
        assert_eq!(l.log.bytes_per_second, 8 << 10, "from the defaults");
        assert_eq!(l.log.max_record_bytes, 4 << 10);
        assert_eq!(l.log.burst_records, 10);
        assert_eq!(l.log.burst_bytes, LogLimits::default().burst_bytes);
        for bad in [
            "defaults: { maxConditions: 0 }",
            "plugins: { a: { file: a.wasm, limits: { maxStatusKiB: 0 } } }",
            "defaults: { log: { maxRecordKiB: 0 } }",
        ] {
            assert!(Config::parse(bad).unwrap().check().is_err(), "{bad}");
        }
        assert!(Config::parse("defaults: { log: { kibPerSecond: 1 } }").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::parse("defaults: { callTimeoutMS: 5 }").is_err());
        assert!(Config::parse("plugins: { a: { wasi: { dirs: [{ host: /x }] } } }").is_err());
        let c = Config::parse("defaults: { memoryMiB: 0 }").unwrap();
        assert!(c.check().is_err());
        let c = Config::parse(
            "plugins: { a: { file: a.wasm, wasi: { dirs: [{ host: /does/not/exist, guest: /x }] } } }",
        )
        .unwrap();
        let e = c.check().unwrap_err();
        assert!(crate::error_chain(&e).contains("/does/not/exist"), "{e}");
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn every_entry_is_bound_to_a_file_or_digest() {
        let check = |text: &str| Config::parse(text).unwrap().check();
        let e = check("plugins: { a: { limits: { memoryMiB: 8 } } }").unwrap_err();
        assert!(
            e.to_string().contains("plugins.a: the entry must be bound"),
            "{e}"
        );
        for bad in [
            "../a.wasm",
            "/p/a.wasm",
            "sub/a.wasm",
            ".a.wasm",
            "a.txt",
            "..",
        ] {
            let e = check(&format!("plugins: {{ a: {{ file: {bad:?} }} }}")).unwrap_err();
            assert!(e.to_string().contains("bare file name"), "{bad}: {e}");
        }
        let e = check("plugins: { a: { sha256: abc } }").unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let e = check("plugins: { a: { file: x.wasm }, b: { file: x.wasm } }").unwrap_err();
        assert!(e.to_string().contains("both bound to file x.wasm"), "{e}");
        let h = "AB".repeat(32);
        check(&format!("plugins: {{ a: {{ sha256: {h} }} }}")).unwrap();
        let c = Config::parse(&format!("plugins: {{ a: {{ sha256: {h} }} }}")).unwrap();
        assert_eq!(
            c.plugins["a"].binding(),
            Binding::sha256("ab".repeat(32)),
            "digests compare in lowercase"
        );
        assert!(check("runtime: { maxPluginMiB: 0 }").is_err());
    }
}
