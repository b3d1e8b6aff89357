//! The plugin manifest: what a plugin is, what it watches and owns, and what access it asks for.

/// The group, version and kind of a Kubernetes type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gvk {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
}

impl Gvk {
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

/// A Kubernetes API verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read one object.
    Get,
    /// List objects.
    List,
    /// Watch objects.
    Watch,
    /// Create objects.
    Create,
    /// Update objects.
    Update,
    /// Patch objects.
    Patch,
    /// Delete objects.
    Delete,
}

/// How the host writes the status of reconciled objects (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusMode {
    /// Conditions and `status.status` from component health only.
    #[default]
    Automatic,
    /// Automatic, then [`crate::Reconciler::status`] adds fields and conditions.
    Decorate,
    /// [`crate::Reconciler::status`] writes the whole status.
    Manual,
}

/// What a plugin is and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin name, unique in a host.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Kinds whose changes the plugin receives.
    pub watches: Vec<Gvk>,
    /// Kinds the plugin creates and owns.
    pub owns: Vec<Gvk>,
    /// Extra Kubernetes access, by kind.
    pub access: Vec<(Gvk, Vec<Verb>)>,
    /// How status is written.
    pub status_mode: StatusMode,
    /// Whether the plugin wants a finalizer and implements cleanup.
    pub finalizer: bool,
    /// Whether the plugin reads pod logs.
    pub pod_logs: bool,
    /// How transitions of the automatic conditions are reported.
    pub observability: crate::Observability,
    /// Phase timeouts (seed 004): past one, the object fails with `<Phase>Timeout`.
    pub phase_timeouts: Vec<(String, std::time::Duration)>,
    /// Leave objects alone until they have an owner reference of this kind (seed 004).
    pub wait_for_owner: Option<Gvk>,
}

impl Manifest {
    /// A manifest with a name and version, watching nothing yet.
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
        self.access.push((gvk, verbs.to_vec()));
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
    /// carry what health needs in the observation.
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

    /// Fail an object that stays in `phase` (as written to `status.phase`) longer than `limit`.
    #[must_use]
    pub fn phase_timeout(mut self, phase: &str, limit: std::time::Duration) -> Self {
        self.phase_timeouts.push((phase.to_owned(), limit));
        self
    }

    /// Take no action on an object until it has an owner reference of this kind.
    #[must_use]
    pub fn wait_for_owner(mut self, owner: Gvk) -> Self {
        self.wait_for_owner = Some(owner);
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
            .with_finalizer();
        assert_eq!(m.owns[0], Gvk::new("apps", "v1", "Deployment"));
        assert_eq!(m.owns[1].api_version(), "v1");
        assert_eq!(m.watches[0].api_version(), "examples.capstan.dev/v1alpha1");
        assert!(m.finalizer);
    }
}
