//! The host's view of the `capstan:controller` contract: manifests, kinds, plans, health, conditions.

use serde::Serialize;

/// The contract version this host implements.
pub const CONTRACT_VERSION: ContractVersion = ContractVersion {
    major: 0,
    minor: 2,
    patch: 0,
};

/// The WIT package every plugin's exports belong to.
pub const PACKAGE: &str = "capstan:controller";

/// A semantic version of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ContractVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ContractVersion {
    /// Parse `MAJOR.MINOR.PATCH`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| p.parse::<u32>().ok());
        let v = Self {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(v)
    }

    /// Whether this host loads a plugin built against `plugin`: same major version and not newer
    /// (for 0.x, the same minor and not newer), so every earlier compatible contract keeps loading.
    pub fn accepts(&self, plugin: &ContractVersion) -> bool {
        let same_line =
            plugin.major == self.major && (self.major != 0 || plugin.minor == self.minor);
        same_line && plugin <= self
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Which world a plugin implements, told from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `handler-plugin`: event handlers.
    HandlerPlugin,
    /// `reconciler-plugin`: a reconciler.
    ReconcilerPlugin,
    /// `controller-plugin`: both.
    ControllerPlugin,
}

impl World {
    /// Whether the world exports `handler`.
    pub fn handles(self) -> bool {
        matches!(self, Self::HandlerPlugin | Self::ControllerPlugin)
    }

    /// Whether the world exports `reconciler`.
    pub fn reconciles(self) -> bool {
        matches!(self, Self::ReconcilerPlugin | Self::ControllerPlugin)
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HandlerPlugin => "handler-plugin",
            Self::ReconcilerPlugin => "reconciler-plugin",
            Self::ControllerPlugin => "controller-plugin",
        })
    }
}

pub use crate::bindings::capstan::controller::types::{
    AccessRule, CategorizedError, ChangeFilter, CleanupOutcome, ComponentHealth, Condition,
    ConditionStatus, ErrorCategory, EventFilter, EventProcessStatus, EventStatus,
    GroupVersionKind as Gvk, HealthState, Manifest, Message, ObjectRef, Observability,
    PhaseTimeout, PlanEntry, StatusMode, StatusUpdate, Verb,
};

impl Gvk {
    /// A GVK from its parts.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl std::fmt::Display for Gvk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.kind)
    }
}

impl ObjectRef {
    /// The reference of a typed object: `None` without `apiVersion`, `kind` or a name (what
    /// [`from_json`](Self::from_json) reads from the same object as JSON).
    pub fn of(obj: &kube::api::DynamicObject) -> Option<Self> {
        let types = obj.types.as_ref()?;
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        Some(Self {
            gvk: Gvk::new(group, version, &types.kind),
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone()?,
            uid: obj.metadata.uid.clone(),
        })
    }

    /// Read the reference of an object from its JSON (apiVersion, kind, metadata).
    pub fn from_json(obj: &serde_json::Value) -> Option<Self> {
        let s = |p: &str| obj.pointer(p).and_then(|v| v.as_str());
        let (group, version) = match s("/apiVersion")?.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", s("/apiVersion")?),
        };
        Some(Self {
            gvk: Gvk::new(group, version, s("/kind")?),
            namespace: s("/metadata/namespace").map(str::to_owned),
            name: s("/metadata/name")?.to_owned(),
            uid: s("/metadata/uid").map(str::to_owned),
        })
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.gvk.kind, ns, self.name),
            None => write!(f, "{} {}", self.gvk.kind, self.name),
        }
    }
}

impl Verb {
    /// The verb as Kubernetes RBAC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
        }
    }
}

impl AccessRule {
    /// `verbs` on objects of `gvk`.
    pub fn new(gvk: Gvk, verbs: Vec<Verb>) -> Self {
        Self { gvk, verbs }
    }
}

impl Manifest {
    /// A manifest with a name and version that watches, owns and asks for nothing.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            watches: Vec::new(),
            owns: Vec::new(),
            access: Vec::new(),
            status_mode: StatusMode::Automatic,
            finalizer: false,
            pod_logs: false,
            observability: Observability::Info,
            phase_timeouts: Vec::new(),
            wait_for_owner: None,
            object_kind: None,
            events: EventFilter::default(),
        }
    }

    /// Whether the plugin may read (get/list) objects of `gvk`: kinds it watches or owns, or was granted.
    pub fn may_read(&self, gvk: &Gvk) -> bool {
        self.watches.contains(gvk)
            || self.owns.contains(gvk)
            || self.access.iter().any(|a| {
                &a.gvk == gvk && a.verbs.iter().any(|v| matches!(v, Verb::Get | Verb::List))
            })
    }

    /// The phase timeouts as durations, by phase name.
    pub fn phase_limits(&self) -> impl Iterator<Item = (String, std::time::Duration)> + '_ {
        self.phase_timeouts.iter().map(|t| {
            (
                t.phase.clone(),
                std::time::Duration::from_secs(u64::from(t.seconds)),
            )
        })
    }

    /// Check the manifest is usable: a DNS-label name, a version, at least one watched kind, and
    /// every kind it names (watched, owned, in an access rule, waited for as owner) a valid
    /// group, version and kind by Kubernetes' rules: kinds become request paths.
    pub fn validate(&self) -> Result<(), String> {
        use capstan_apiserver::validation;
        validation::dns1123_label(&self.name)
            .map_err(|e| format!("plugin name {:?} is not a DNS label: {e}", self.name))?;
        if self.version.is_empty() {
            return Err("plugin version is empty".into());
        }
        if self.watches.is_empty() {
            return Err("plugin watches no kind".into());
        }
        if let Some(kind) = &self.object_kind
            && let Some(other) = self.watches.iter().find(|w| *w != kind)
        {
            return Err(format!(
                "the plugin decodes objects as {kind} but watches {other}: it would fail on every object of that kind"
            ));
        }
        let kinds = self
            .watches
            .iter()
            .chain(&self.owns)
            .chain(self.access.iter().map(|a| &a.gvk))
            .chain(&self.wait_for_owner);
        for g in kinds {
            validation::group(&g.group)
                .map_err(|e| format!("kind {g}: group {:?}: {e}", g.group))?;
            validation::version(&g.version)
                .map_err(|e| format!("kind {g}: version {:?}: {e}", g.version))?;
            validation::kind(&g.kind).map_err(|e| format!("kind {g}: kind {:?}: {e}", g.kind))?;
        }
        Ok(())
    }
}

impl Default for EventFilter {
    /// Every change of every object: no namespace, no label selector, every update.
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            changes: ChangeFilter::All,
        }
    }
}

impl EventFilter {
    /// Whether the filter lets every change through (the default).
    pub fn is_everything(&self) -> bool {
        self.namespaces.is_empty()
            && self
                .label_selector
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
            && self.changes == ChangeFilter::All
    }
}

impl std::fmt::Display for EventFilter {
    /// `namespaces prod,staging; labels app=web; spec changes only`, or `every change`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_everything() {
            return f.write_str("every change");
        }
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            parts.push(format!("namespaces {}", self.namespaces.join(",")));
        }
        if let Some(selector) = self
            .label_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            parts.push(format!("labels {selector}"));
        }
        if self.changes == ChangeFilter::Spec {
            parts.push("spec changes only".to_owned());
        }
        f.write_str(&parts.join("; "))
    }
}

impl ErrorCategory {
    /// The category as a condition reason (CamelCase, as Kubernetes reasons are).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Infrastructure => "Infrastructure",
            Self::Auth => "Auth",
            Self::InvalidSpec => "InvalidSpec",
            Self::MissingUpstreamDependency => "MissingUpstreamDependency",
            Self::MissingDownstreamDependency => "MissingDownstreamDependency",
            Self::ResourceExhaustion => "ResourceExhaustion",
        }
    }
}

impl ComponentHealth {
    /// When the plugin asked to be reconciled again, as a duration.
    pub fn requeue_delay(&self) -> Option<std::time::Duration> {
        self.requeue_after
            .map(|s| std::time::Duration::from_secs(u64::from(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility() {
        let host = ContractVersion {
            major: 0,
            minor: 1,
            patch: 2,
        };
        assert!(host.accepts(&ContractVersion {
            major: 0,
            minor: 1,
            patch: 0
        }));
        assert!(!host.accepts(&ContractVersion {
            major: 0,
            minor: 1,
            patch: 3
        }));
        assert!(!host.accepts(&ContractVersion {
            major: 0,
            minor: 2,
            patch: 0
        }));
        let host1 = ContractVersion {
            major: 1,
            minor: 3,
            patch: 0,
        };
        assert!(host1.accepts(&ContractVersion {
            major: 1,
            minor: 0,
            patch: 9
        }));
        assert!(!host1.accepts(&ContractVersion {
            major: 2,
            minor: 0,
            patch: 0
        }));
        assert_eq!(
            ContractVersion::parse("0.1.0"),
            Some(ContractVersion {
                major: 0,
                minor: 1,
                patch: 0
            })
        );
        assert_eq!(ContractVersion::parse("0.1"), None);
    }

    #[test]
    fn object_ref_from_json() {
        let r = ObjectRef::from_json(&serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "namespace": "ns"}
        }))
        .unwrap();
        assert_eq!(r.gvk, Gvk::new("apps", "v1", "Deployment"));
        assert_eq!(r.to_string(), "Deployment ns/a");
    }

    #[test]
    fn object_ref_of_a_typed_object_is_what_its_json_gives() {
        for json in [
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "a", "namespace": "ns", "uid": "u-1"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        ] {
            let typed: kube::api::DynamicObject = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(ObjectRef::of(&typed), ObjectRef::from_json(&json), "{json}");
        }
    }

    #[test]
    fn manifest_validation() {
        let mut m = Manifest {
            name: "web".into(),
            version: "1".into(),
            watches: vec![Gvk::new("", "v1", "ConfigMap")],
            owns: vec![],
            access: vec![],
            status_mode: StatusMode::Automatic,
            finalizer: false,
            pod_logs: false,
            observability: crate::contract::Observability::Info,
            phase_timeouts: vec![],
            wait_for_owner: None,
            object_kind: None,
            events: EventFilter::default(),
        };
        assert!(m.validate().is_ok());
        assert!(m.may_read(&Gvk::new("", "v1", "ConfigMap")));
        assert!(!m.may_read(&Gvk::new("", "v1", "Secret")));
        m.name = "Web_App".into();
        assert!(m.validate().unwrap_err().contains("DNS label"));
        m.name = "web".into();
        m.access = vec![AccessRule {
            gvk: Gvk::new("apps/../..", "v1", "Secret"),
            verbs: vec![Verb::Get],
        }];
        assert!(
            m.validate().unwrap_err().contains("group"),
            "kinds become paths"
        );
        m.access = vec![];
        m.owns = vec![Gvk::new("", "v1/x", "ConfigMap")];
        assert!(m.validate().unwrap_err().contains("version"));
        m.owns = vec![];
        m.wait_for_owner = Some(Gvk::new("x.dev", "v1", "Clu ster"));
        assert!(m.validate().unwrap_err().contains("kind"));
        m.wait_for_owner = None;
        m.object_kind = Some(Gvk::new("", "v1", "ConfigMap"));
        assert!(m.validate().is_ok(), "decodes what it watches");
        m.object_kind = Some(Gvk::new("apps", "v1", "Deployment"));
        let e = m.validate().unwrap_err();
        assert!(
            e.contains("decodes objects as apps/v1/Deployment but watches v1/ConfigMap"),
            "{e}"
        );
    }

    #[test]
    fn event_filter_display() {
        let mut f = EventFilter::default();
        assert!(f.is_everything());
        assert_eq!(f.to_string(), "every change");
        f.namespaces = vec!["prod".into(), "staging".into()];
        f.label_selector = Some("app=web".into());
        f.changes = ChangeFilter::Spec;
        assert!(!f.is_everything());
        assert_eq!(
            f.to_string(),
            "namespaces prod,staging; labels app=web; spec changes only"
        );
    }
}
