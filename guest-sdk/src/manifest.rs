//! The plugin manifest: what a plugin is, what it watches and owns, and what access it asks for.
//!
//! The types are the contract's own (generated from `wit/`); this module adds their builders.

pub use crate::wit::capstan::controller::types::{
    AccessRule, ChangeFilter, EventFilter, GroupVersionKind, Manifest, PhaseTimeout, StatusMode,
    Verb,
};
use std::time::Duration;

/// The short name of [`GroupVersionKind`].
pub type Gvk = GroupVersionKind;

impl GroupVersionKind {
    /// A GVK from its three parts.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The GVK of a k8s-openapi type (or any type implementing [`k8s_openapi::Resource`]).
    pub fn of<K: k8s_openapi::Resource>() -> Self {
        Self::new(K::GROUP, K::VERSION, K::KIND)
    }

    /// `group/version`, or `version` for the core group, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl Default for StatusMode {
    /// [`StatusMode::Automatic`].
    fn default() -> Self {
        Self::Automatic
    }
}

impl Default for ChangeFilter {
    /// [`ChangeFilter::All`].
    fn default() -> Self {
        Self::All
    }
}

impl Default for EventFilter {
    /// Every change of every object: all namespaces, no label selector, every update.
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            changes: ChangeFilter::All,
        }
    }
}

impl Manifest {
    /// A manifest with a name and version, watching nothing yet.
    ///
    /// `object_kind` is left `None`: the SDK fills it from the plugin's `Object` type when the
    /// host asks for the manifest.
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
            observability: crate::Observability::Info,
            phase_timeouts: Vec::new(),
            wait_for_owner: None,
            object_kind: None,
            events: EventFilter::default(),
        }
    }

    /// Watch a k8s-openapi kind.
    #[must_use]
    pub fn watches<K: k8s_openapi::Resource>(mut self) -> Self {
        self.watches.push(Gvk::of::<K>());
        self
    }

    /// Watch a kind given by its GVK (for custom resources).
    #[must_use]
    pub fn watches_gvk(mut self, gvk: Gvk) -> Self {
        self.watches.push(gvk);
        self
    }

    /// Own a k8s-openapi kind: the plugin applies objects of it, and their changes requeue the owner.
    #[must_use]
    pub fn owns<K: k8s_openapi::Resource>(mut self) -> Self {
        self.owns.push(Gvk::of::<K>());
        self
    }

    /// Own a kind given by its GVK.
    #[must_use]
    pub fn owns_gvk(mut self, gvk: Gvk) -> Self {
        self.owns.push(gvk);
        self
    }

    /// Ask for access to a kind beyond reading what the plugin watches and owns.
    #[must_use]
    pub fn access(mut self, gvk: Gvk, verbs: &[Verb]) -> Self {
        self.access.push(AccessRule {
            gvk,
            verbs: verbs.to_vec(),
        });
        self
    }

    /// Choose how status is written.
    #[must_use]
    pub fn status_mode(mut self, mode: StatusMode) -> Self {
        self.status_mode = mode;
        self
    }

    /// Ask for a finalizer: the host calls [`crate::Reconciler::cleanup`] before the object goes.
    #[must_use]
    pub fn with_finalizer(mut self) -> Self {
        self.finalizer = true;
        self
    }

    /// Ask to read pod logs (through [`crate::PodLogs`]) in `fetch`, the phase with capabilities;
    /// keep what health needs in the observation.
    #[must_use]
    pub fn with_pod_logs(mut self) -> Self {
        self.pod_logs = true;
        self
    }

    /// How transitions of the automatic conditions are reported (default: info, on transitions).
    #[must_use]
    pub fn observability(mut self, o: crate::Observability) -> Self {
        self.observability = o;
        self
    }

    /// Fail an object that stays in `phase` (as written to `status.phase`) longer than `limit`
    /// (whole seconds; longer than `u32::MAX` seconds is `u32::MAX`).
    #[must_use]
    pub fn phase_timeout(mut self, phase: &str, limit: Duration) -> Self {
        self.phase_timeouts.push(PhaseTimeout {
            phase: phase.to_owned(),
            seconds: u32::try_from(limit.as_secs()).unwrap_or(u32::MAX),
        });
        self
    }

    /// Take no action on an object until it has an owner reference of this kind.
    #[must_use]
    pub fn wait_for_owner(mut self, owner: Gvk) -> Self {
        self.wait_for_owner = Some(owner);
        self
    }

    /// Receive changes of objects in these namespaces only (added to any named before; at most
    /// 64 in all). Objects of cluster-scoped kinds then never reach the plugin.
    ///
    /// ```
    /// # use capstan_sdk::{k8s_openapi::api::apps::v1::Deployment, Manifest};
    /// let m = Manifest::new("web", "1").watches::<Deployment>().in_namespaces(["prod", "staging"]);
    /// ```
    #[must_use]
    pub fn in_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.events
            .namespaces
            .extend(namespaces.into_iter().map(Into::into));
        self
    }

    /// Receive changes of objects whose labels match `selector`, a Kubernetes label selector in
    /// its string form (at most 4 KiB). An object whose labels stop matching arrives as
    /// `deleted`, one that starts matching as `added`; a selector that does not parse makes the
    /// host refuse the plugin at load.
    ///
    /// ```
    /// # use capstan_sdk::{k8s_openapi::api::apps::v1::Deployment, Manifest};
    /// let m = Manifest::new("web", "1").watches::<Deployment>().with_label_selector("app=web,tier!=db");
    /// ```
    #[must_use]
    pub fn with_label_selector(mut self, selector: &str) -> Self {
        self.events.label_selector = Some(selector.to_owned());
        self
    }

    /// Receive updates only when the object's generation changed (its spec), or its deletion,
    /// finalizers, owner references, labels or annotations did: no status-only write. Reconcilers
    /// are always filtered this way.
    ///
    /// ```
    /// # use capstan_sdk::{k8s_openapi::api::apps::v1::Deployment, Manifest};
    /// let m = Manifest::new("web", "1").watches::<Deployment>().spec_changes_only();
    /// ```
    #[must_use]
    pub fn spec_changes_only(mut self) -> Self {
        self.events.changes = ChangeFilter::Spec;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;

    #[test]
    fn builder_collects_kinds() {
        let m = Manifest::new("web", "1.0.0")
            .watches_gvk(Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"))
            .owns::<Deployment>()
            .owns::<Service>()
            .access(Gvk::of::<Service>(), &[Verb::Get, Verb::Delete])
            .phase_timeout("Creating", Duration::from_secs(90))
            .with_finalizer();
        assert_eq!(m.owns[0], Gvk::new("apps", "v1", "Deployment"));
        assert_eq!(m.owns[1].api_version(), "v1");
        assert_eq!(m.watches[0].api_version(), "examples.capstan.dev/v1alpha1");
        assert_eq!(m.access[0].verbs, vec![Verb::Get, Verb::Delete]);
        assert_eq!(m.phase_timeouts[0].seconds, 90);
        assert!(m.finalizer);
        assert_eq!(m.object_kind, None);
    }

    #[test]
    fn event_filter_builders() {
        let m = Manifest::new("web", "1.0.0").watches::<Deployment>();
        assert_eq!(m.events, EventFilter::default());
        let m = m
            .in_namespaces(["prod"])
            .in_namespaces(vec![String::from("staging")])
            .with_label_selector("app=web,tier!=db")
            .spec_changes_only();
        assert_eq!(m.events.namespaces, ["prod", "staging"]);
        assert_eq!(m.events.label_selector.as_deref(), Some("app=web,tier!=db"));
        assert_eq!(m.events.changes, ChangeFilter::Spec);
    }

    #[test]
    fn huge_phase_timeouts_saturate() {
        let m = Manifest::new("web", "1.0.0").phase_timeout("Creating", Duration::MAX);
        assert_eq!(m.phase_timeouts[0].seconds, u32::MAX);
    }
}
