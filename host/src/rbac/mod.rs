//! Least-privilege RBAC for a Capstan install (`capstan rbac`): the host's own ServiceAccount and
//! roles, and per plugin a ServiceAccount with exactly what the host lets that plugin do, derived
//! from its manifest as the configuration narrows it.
//!
//! # The host
//!
//! The host runs as ServiceAccount `capstan` in namespace N ([`Identities`]). Whatever the plugins,
//! it creates and patches `events.k8s.io` Events (kube-runtime's `Recorder`: a create, then merge
//! patches of the series) in every namespace, and gets, creates and updates Leases in N. For the
//! plugins it watches (get, list, watch, cluster-wide: informers list every namespace) every kind a
//! handler watches and every kind a reconciler watches, owns or names in an access rule, and it may
//! `impersonate` the plugins' ServiceAccounts, by name, in N only: a Role, not a ClusterRole, for a
//! ClusterRole's `resourceNames` would match a ServiceAccount of that name in every namespace.
//!
//! # A plugin
//!
//! Each plugin gets ServiceAccount `capstan-plugin-<name>` in N; the host impersonates it for
//! every request on the plugin's behalf. The verbs are those of the requests the host makes for
//! what the effective manifest ([`crate::plugin::PluginSettings::narrow`]) declares, where the
//! reconcile's scope ([`crate::reconcile::Scope`]) lets it:
//!
//! - a watched kind (handler or reconciler): `get`, `list`, `watch`;
//! - the reconciled objects: `patch` on `<plural>/status` (the host writes the status), `patch` on
//!   the kind with a finalizer (added and removed by merge patch), and `update` on
//!   `<plural>/finalizers` when the plugin applies children, whose owner references set
//!   `blockOwnerDeletion` (the OwnerReferencesPermissionEnforcement admission plugin checks it);
//! - a kind it may read (watched, owned, or an access rule with `get` or `list`: the cache serves
//!   both either way): `get`, `list`, and `watch` when it watches or owns it or the rule names it;
//! - an owned kind: `get`, `list`, `watch`, `create`, `patch`, `delete` (server-side apply is a
//!   patch, and a patch that creates is authorized as `create` too), and `patch` on its status
//!   (a plan may apply a child's status);
//! - an access rule with `patch` or `create`: `get` (the plan check reads the target), `create`,
//!   `patch`, and `patch` on its status (status goes to children and owners); with `delete`:
//!   `get` and `delete`. `update` grants nothing: the host never updates for a plugin;
//! - pod logs, when granted: `get` on `pods` (the owner check) and `pods/log`.
//!
//! A `status` permission is written only for kinds that have the subresource (built-in kinds by
//! the Kubernetes API, custom kinds by their CRD; a kind known by neither is taken to have one).
//!
//! Where: the reconciled kinds in the namespaces of the plugin's event filter (every namespace
//! when it names none; a cluster-scoped kind only then, for a namespace filter never selects a
//! cluster-scoped object); everything else in those namespaces plus the ones the configuration
//! grants (`reconcile.namespaces`, `"*"` for all), and cluster-scoped kinds only with
//! `reconcile.clusterScoped`. Every namespace means a ClusterRole and a ClusterRoleBinding; a
//! list of namespaces means a Role and a RoleBinding in each, so the API server refuses the
//! plugin elsewhere, as the host does.

mod resources;
mod rules;

pub use resources::{Origin, Resource, Resources, ResourcesError};
pub use rules::{Action, Rules};

use crate::config::Config;
use crate::contract::{Gvk, Manifest, Verb, World};
use crate::identity::{HOST_SERVICE_ACCOUNT, Identities};
use crate::plugin::{Limits, LoadError, Plugin, Runtime, RuntimeConfig};
use crate::reconcile::{ALL_NAMESPACES, ScopeGrant};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Errors loading plugins for RBAC, or writing it.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// The plugin runtime could not start.
    #[error("cannot start the plugin runtime")]
    Runtime(#[from] crate::plugin::RuntimeError),
    /// The plugins directory could not be read.
    #[error("cannot read plugins directory {path}")]
    Plugins {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Plugin files were rejected: `capstan run` would not load them, and RBAC derived without
    /// them would not be what was meant.
    #[error("{} plugin file(s) rejected: {}", .0.len(), .0.iter().map(LoadError::one_line).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<LoadError>),
    /// An object could not be written as YAML.
    #[error("cannot write {object} as YAML")]
    Yaml {
        /// `Kind name` of the object.
        object: String,
        /// Cause.
        #[source]
        source: serde_saphyr::SerializeError,
    },
}

/// What the derivation needs to know of one plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginAccess {
    /// Its manifest name.
    pub name: String,
    /// Its version, for the comments.
    pub version: String,
    /// Its world: a handler, a reconciler, or both.
    pub world: World,
    /// Its effective manifest: as declared, narrowed by its configuration entry.
    pub manifest: Manifest,
    /// The namespaces and cluster-scoped kinds its configuration entry grants its reconciles.
    pub scope: ScopeGrant,
}

impl PluginAccess {
    /// What `plugin`, loaded with `config`'s grants, may do: its effective manifest, and the
    /// reconcile scope of the configuration entry bound to its file (as `capstan run` applies it;
    /// an entry that does not bind the file grants nothing).
    #[must_use]
    pub fn of(plugin: &Plugin, config: &Config) -> Self {
        let scope = plugin
            .grant()
            .bound_entry()
            .and_then(|entry| config.plugins.get(entry))
            .map(|p| p.reconcile.scope())
            .unwrap_or_default();
        Self {
            name: plugin.name().to_owned(),
            version: plugin.info().version.clone(),
            world: plugin.info().world,
            manifest: plugin.manifest().clone(),
            scope,
        }
    }
}

/// The plugins of `dir`, loaded as `capstan run` loads them with `config` (its limits, size cap
/// and grants; compiled through the precompiled cache in `cache_dir`, if given), and what each
/// may do.
///
/// # Errors
/// [`RbacError::Rejected`] when any file is rejected (with every reason);
/// [`RbacError::Plugins`] when the directory cannot be read; [`RbacError::Runtime`].
pub async fn plugins_in(
    dir: &Path,
    config: &Config,
    cache_dir: Option<&Path>,
) -> Result<Vec<PluginAccess>, RbacError> {
    let limits = config.default_limits(&Limits::default());
    let mut rc = RuntimeConfig::one_shot().limits(limits.clone());
    if let Some(bytes) = config.max_plugin_bytes() {
        rc = rc.max_plugin_bytes(bytes);
    }
    for entry in config.grant_entries(&limits) {
        rc = rc.grant(entry);
    }
    if let Some(cache) = cache_dir {
        rc = rc.cache_dir(cache);
    }
    let report = Runtime::new(rc)?
        .load_dir(dir)
        .await
        .map_err(|source| RbacError::Plugins {
            path: dir.to_owned(),
            source,
        })?;
    if !report.rejected.is_empty() {
        return Err(RbacError::Rejected(report.rejected));
    }
    Ok(report
        .plugins
        .iter()
        .map(|p| PluginAccess::of(p, config))
        .collect())
}

/// A set of namespaces: every one, or those named.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Namespaces {
    All,
    Only(BTreeSet<String>),
}

impl Namespaces {
    /// The namespaces an event filter names (none named: every one).
    fn selected(filter: &[String]) -> Self {
        if filter.is_empty() {
            Self::All
        } else {
            Self::Only(filter.iter().cloned().collect())
        }
    }

    /// The namespaces a configuration grants ([`ALL_NAMESPACES`]: every one).
    fn granted(grant: &BTreeSet<String>) -> Self {
        if grant.contains(ALL_NAMESPACES) {
            Self::All
        } else {
            Self::Only(grant.clone())
        }
    }

    fn union(&self, other: &Self) -> Self {
        match (self, other) {
            (Self::Only(a), Self::Only(b)) => Self::Only(a.union(b).cloned().collect()),
            _ => Self::All,
        }
    }

    fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }

    fn describe(&self) -> String {
        match self {
            Self::All => "every namespace".to_owned(),
            Self::Only(s) if s.is_empty() => "no namespace".to_owned(),
            Self::Only(s) => s.iter().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Where a kind's permissions apply: namespaced kinds in some namespaces, and cluster-scoped
/// kinds or not at all.
struct Reach<'a> {
    namespaces: &'a Namespaces,
    cluster_scoped: bool,
}

/// The permissions of one ServiceAccount: cluster-wide, and per namespace; with the reasons, per
/// resource, for the comments.
#[derive(Debug, Default)]
struct Grant {
    cluster: Rules,
    namespaced: BTreeMap<String, Rules>,
    reasons: BTreeMap<String, Vec<String>>,
}

impl Grant {
    /// Grant `actions` on `resource` (or its `subresource`) where `reach` says, for `why`.
    fn allow(
        &mut self,
        resource: &Resource,
        subresource: Option<&str>,
        reach: &Reach<'_>,
        actions: &[Action],
        why: &str,
    ) {
        let path = match subresource {
            Some("status") if !resource.status => return,
            Some(sub) => format!("{}/{sub}", resource.plural),
            None => resource.plural.clone(),
        };
        let granted = match (resource.namespaced, reach.namespaces) {
            (false, _) if !reach.cluster_scoped => false,
            (false, _) | (true, Namespaces::All) => {
                self.cluster.allow(&resource.group, &path, actions);
                true
            }
            (true, Namespaces::Only(set)) => {
                for ns in set {
                    self.namespaced.entry(ns.clone()).or_default().allow(
                        &resource.group,
                        &path,
                        actions,
                    );
                }
                !set.is_empty()
            }
        };
        if granted {
            let verbs: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            let line = format!("{why}: {} {path}", verbs.join(", "));
            let reasons = self.reasons.entry(group_resource(resource)).or_default();
            if !reasons.contains(&line) {
                reasons.push(line);
            }
        }
    }
}

/// `plural` or `plural.group`.
fn group_resource(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

const READ: [Action; 2] = [Action::Get, Action::List];
const WATCH: [Action; 3] = [Action::Get, Action::List, Action::Watch];
const OWN: [Action; 6] = [
    Action::Get,
    Action::List,
    Action::Watch,
    Action::Create,
    Action::Patch,
    Action::Delete,
];

/// What `plugin` may do, as [the module](self) derives it, with `resources` naming its kinds.
fn plugin_grant(plugin: &PluginAccess, resources: &Resources, notes: &mut Notes) -> Grant {
    let m = &plugin.manifest;
    let mut resolve = |gvk: &Gvk| {
        let r = resources.resolve(gvk);
        notes.note(gvk, &r);
        r
    };
    let selected = Namespaces::selected(&m.events.namespaces);
    let reconciled = Reach {
        namespaces: &selected,
        cluster_scoped: selected.is_all(),
    };
    let mut g = Grant::default();
    if plugin.world.handles() {
        for w in &m.watches {
            g.allow(&resolve(w), None, &reconciled, &WATCH, "handled");
        }
    }
    if !plugin.world.reconciles() {
        return g;
    }
    let watched: Vec<Resource> = m.watches.iter().map(&mut resolve).collect();
    // Where a reconcile may read and write: its object's namespace, and what the grant adds.
    let mut touched = Namespaces::granted(&plugin.scope.namespaces);
    if watched.iter().any(|w| w.namespaced) {
        touched = touched.union(&selected);
    }
    let scope = Reach {
        namespaces: &touched,
        cluster_scoped: plugin.scope.cluster_scoped,
    };
    let applies = |a: &crate::contract::AccessRule| {
        a.verbs
            .iter()
            .any(|v| matches!(v, Verb::Patch | Verb::Create))
    };
    let applies_children = !m.owns.is_empty() || m.access.iter().any(applies);
    for w in &watched {
        g.allow(w, None, &reconciled, &WATCH, "reconciled");
        g.allow(w, Some("status"), &reconciled, &[Action::Patch], "status");
        if m.finalizer {
            g.allow(w, None, &reconciled, &[Action::Patch], "finalizer");
        }
        if applies_children {
            g.allow(
                w,
                Some("finalizers"),
                &reconciled,
                &[Action::Update],
                "owner of children (blockOwnerDeletion)",
            );
        }
    }
    let named_watch = |gvk: &Gvk| {
        m.access
            .iter()
            .any(|a| &a.gvk == gvk && a.verbs.contains(&Verb::Watch))
    };
    let readable: BTreeSet<&Gvk> = m
        .watches
        .iter()
        .chain(&m.owns)
        .chain(m.access.iter().map(|a| &a.gvk))
        .filter(|gvk| m.may_read(gvk))
        .collect();
    for gvk in readable {
        let watch = m.watches.contains(gvk) || m.owns.contains(gvk) || named_watch(gvk);
        let actions: &[Action] = if watch { &WATCH } else { &READ };
        g.allow(&resolve(gvk), None, &scope, actions, "read");
    }
    for gvk in &m.owns {
        let r = resolve(gvk);
        g.allow(&r, None, &scope, &OWN, "owned");
        g.allow(&r, Some("status"), &scope, &[Action::Patch], "owned");
    }
    for a in &m.access {
        let r = resolve(&a.gvk);
        if applies(a) {
            let write = [Action::Get, Action::Create, Action::Patch];
            g.allow(&r, None, &scope, &write, "access (apply)");
            g.allow(
                &r,
                Some("status"),
                &scope,
                &[Action::Patch],
                "access (apply)",
            );
        }
        if a.verbs.contains(&Verb::Delete) {
            let delete = [Action::Get, Action::Delete];
            g.allow(&r, None, &scope, &delete, "access (delete)");
        }
    }
    if m.pod_logs {
        let pods = resolve(&Gvk::new("", "v1", "Pod"));
        g.allow(&pods, None, &scope, &[Action::Get], "pod logs");
        g.allow(&pods, Some("log"), &scope, &[Action::Get], "pod logs");
    }
    g
}

/// Kinds resolved without a built-in type or a CRD, for the comments.
#[derive(Debug, Default)]
struct Notes {
    guessed: BTreeMap<String, String>,
}

impl Notes {
    fn note(&mut self, gvk: &Gvk, r: &Resource) {
        if r.origin == Origin::Guessed {
            self.guessed.insert(gvk.to_string(), group_resource(r));
        }
    }
}

/// One YAML document: comment lines above it, and the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Comment lines, without the `#`.
    pub comments: Vec<String>,
    /// The object.
    pub object: Object,
}

/// An object `capstan rbac` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// A ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
    /// A Role.
    Role(Role),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
}

impl Object {
    /// `Kind namespace/name` or `Kind name`.
    #[must_use]
    pub fn describe(&self) -> String {
        let (kind, meta) = match self {
            Self::ServiceAccount(o) => ("ServiceAccount", &o.metadata),
            Self::ClusterRole(o) => ("ClusterRole", &o.metadata),
            Self::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
            Self::Role(o) => ("Role", &o.metadata),
            Self::RoleBinding(o) => ("RoleBinding", &o.metadata),
        };
        let name = meta.name.as_deref().unwrap_or_default();
        match &meta.namespace {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}

/// Derived RBAC: the documents `capstan rbac` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Rbac {
    documents: Vec<Document>,
}

/// Builds [`Rbac`]: the identities' namespace, how kinds resolve, the plugins, and which parts.
#[derive(Debug, Clone)]
#[must_use]
pub struct RbacBuilder {
    identities: Identities,
    resources: Resources,
    plugins: Vec<PluginAccess>,
    base: bool,
    manifests: Vec<DynamicObject>,
}

impl Rbac {
    /// A builder for the ServiceAccounts of `identities`.
    pub fn builder(identities: Identities) -> RbacBuilder {
        RbacBuilder {
            identities,
            resources: Resources::new(),
            plugins: Vec::new(),
            base: true,
            manifests: Vec::new(),
        }
    }

    /// The documents, in order.
    #[must_use]
    pub fn documents(&self) -> &[Document] {
        &self.documents
    }

    /// The objects, in order.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.documents.iter().map(|d| &d.object)
    }

    /// A multi-document YAML stream (what `kubectl apply -f` takes), each document under its
    /// comments.
    ///
    /// # Errors
    /// [`RbacError::Yaml`] when an object cannot be serialized.
    pub fn to_yaml(&self) -> Result<String, RbacError> {
        let mut out = String::new();
        for (i, d) in self.documents.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            for line in &d.comments {
                out.push('#');
                if !line.is_empty() {
                    out.push(' ');
                    out.push_str(line);
                }
                out.push('\n');
            }
            let yaml = serde_saphyr::to_string(&d.object).map_err(|source| RbacError::Yaml {
                object: d.object.describe(),
                source,
            })?;
            out.push_str(&yaml);
            if !yaml.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }
}

impl RbacBuilder {
    /// Resolve kinds with `resources` (built-in kinds only by default).
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Add a plugin.
    pub fn plugin(mut self, plugin: PluginAccess) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Whether to include the host's base: its ServiceAccount and what it needs whatever the
    /// plugins (Events, Leases). Default true; `deploy/base` installs it on its own.
    pub fn base(mut self, on: bool) -> Self {
        self.base = on;
        self
    }

    /// Let the host apply these objects (`capstan run --manifests`): `create` and `patch` of each,
    /// by name.
    pub fn applies(mut self, objects: Vec<DynamicObject>) -> Self {
        self.manifests = objects;
        self
    }

    /// Derive the RBAC.
    #[must_use]
    pub fn build(self) -> Rbac {
        let ids = &self.identities;
        let ns = ids.namespace();
        let mut notes = Notes::default();
        let mut docs = Vec::new();
        let mut plugins = self.plugins.clone();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        if self.base {
            docs.extend(self.host_base());
        }
        if !plugins.is_empty() || !self.manifests.is_empty() {
            docs.extend(self.host_for_plugins(&plugins, &mut notes));
        }
        for p in &plugins {
            let grant = plugin_grant(p, &self.resources, &mut notes);
            docs.extend(plugin_documents(ids, p, &grant));
        }
        if let Some(first) = docs.first_mut() {
            let mut header = vec![
                format!(
                    "Capstan RBAC (capstan rbac): the host runs as ServiceAccount {ns}/{HOST_SERVICE_ACCOUNT}; each plugin as {ns}/capstan-plugin-<name>,"
                ),
                "which the host impersonates for every request on the plugin's behalf. See docs/DEPLOY.md.".to_owned(),
            ];
            for (gvk, resource) in &notes.guessed {
                header.push(format!(
                    "GUESSED: {gvk} is neither a built-in kind nor defined by a CRD given with --manifests: its resource is taken to be {resource} (kube's pluralization), namespaced. Check it."
                ));
            }
            header.push(String::new());
            header.append(&mut first.comments);
            first.comments = header;
        }
        Rbac { documents: docs }
    }

    /// The host's ServiceAccount, and what it needs whatever the plugins: Events everywhere,
    /// Leases in its namespace.
    fn host_base(&self) -> Vec<Document> {
        let ids = &self.identities;
        let ns = ids.namespace();
        let mut events = Rules::new();
        events.allow("events.k8s.io", "events", &[Action::Create, Action::Patch]);
        // get, create, update: the leader's Lease and each replica's shard Lease; list: the
        // shard ring (`--sharding`), read by label.
        let mut leases = Rules::new();
        leases.allow(
            "coordination.k8s.io",
            "leases",
            &[Action::Get, Action::List, Action::Create, Action::Update],
        );
        let name = role_name(ns, HOST_SERVICE_ACCOUNT);
        let mut docs = vec![Document {
            comments: vec!["The host's own identity.".to_owned()],
            object: Object::ServiceAccount(service_account(ns, HOST_SERVICE_ACCOUNT, None)),
        }];
        docs.extend(cluster_role(
            &name,
            &events,
            ns,
            HOST_SERVICE_ACCOUNT,
            None,
            vec!["The host records Kubernetes Events about the objects it reconciles, in their namespaces.".to_owned()],
        ));
        docs.extend(role(
            &name,
            ns,
            &leases,
            ns,
            HOST_SERVICE_ACCOUNT,
            None,
            vec!["The host's Leases (leader election), in its own namespace.".to_owned()],
        ));
        docs
    }

    /// What the host needs for these plugins: informers on their kinds, impersonation of their
    /// ServiceAccounts; and applying the manifests, if asked.
    fn host_for_plugins(&self, plugins: &[PluginAccess], notes: &mut Notes) -> Vec<Document> {
        let ns = self.identities.namespace();
        let mut informers = Rules::new();
        for p in plugins {
            let m = &p.manifest;
            let mut kinds: Vec<&Gvk> = Vec::new();
            if p.world.handles() {
                kinds.extend(&m.watches);
            }
            if p.world.reconciles() {
                kinds.extend(m.watches.iter().chain(&m.owns));
                kinds.extend(m.access.iter().map(|a| &a.gvk));
            }
            for gvk in kinds {
                let r = self.resources.resolve(gvk);
                notes.note(gvk, &r);
                informers.allow(&r.group, &r.plural, &WATCH);
            }
        }
        let mut docs = Vec::new();
        let watch_name = format!("{}:watch", role_name(ns, HOST_SERVICE_ACCOUNT));
        docs.extend(cluster_role(
            &watch_name,
            &informers,
            ns,
            HOST_SERVICE_ACCOUNT,
            None,
            vec!["The host's informers: every kind its plugins watch, own or read, in every namespace.".to_owned()],
        ));
        let accounts: Vec<String> = plugins
            .iter()
            .map(|p| self.identities.plugin_service_account(&p.name))
            .collect();
        let mut impersonate = Rules::new();
        if !accounts.is_empty() {
            // Never without names: an impersonate rule without resourceNames is every account.
            let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
            impersonate.allow_named("", "serviceaccounts", &names, &[Action::Impersonate]);
        }
        let impersonate_name = format!("{}:impersonate", role_name(ns, HOST_SERVICE_ACCOUNT));
        docs.extend(role(
            &impersonate_name,
            ns,
            &impersonate,
            ns,
            HOST_SERVICE_ACCOUNT,
            None,
            vec!["The host acts as each plugin's ServiceAccount, and only as those, only in its own namespace.".to_owned()],
        ));
        docs.extend(self.host_manifests(notes));
        docs
    }

    /// Server-side apply (`create`, `patch`) of each object of `--manifests`, by name.
    fn host_manifests(&self, notes: &mut Notes) -> Vec<Document> {
        let ns = self.identities.namespace();
        let mut cluster = Rules::new();
        let mut namespaced: BTreeMap<String, Rules> = BTreeMap::new();
        for obj in &self.manifests {
            let (Some(types), Some(name)) = (&obj.types, &obj.metadata.name) else {
                continue;
            };
            let (group, version) = types
                .api_version
                .split_once('/')
                .unwrap_or(("", &types.api_version));
            let gvk = Gvk::new(group, version, &types.kind);
            let r = self.resources.resolve(&gvk);
            notes.note(&gvk, &r);
            let actions = [Action::Create, Action::Patch];
            if r.namespaced {
                // As `capstan run --manifests` applies it: in `default` when it names none.
                let at = obj.metadata.namespace.as_deref().unwrap_or("default");
                namespaced.entry(at.to_owned()).or_default().allow_named(
                    &r.group,
                    &r.plural,
                    &[name],
                    &actions,
                );
            } else {
                cluster.allow_named(&r.group, &r.plural, &[name], &actions);
            }
        }
        let name = format!("{}:manifests", role_name(ns, HOST_SERVICE_ACCOUNT));
        let why =
            || vec!["The host applies the objects of --manifests at start, by name.".to_owned()];
        let mut docs = cluster_role(&name, &cluster, ns, HOST_SERVICE_ACCOUNT, None, why());
        for (at, rules) in &namespaced {
            docs.extend(role(
                &name,
                at,
                rules,
                ns,
                HOST_SERVICE_ACCOUNT,
                None,
                why(),
            ));
        }
        docs
    }
}

/// The name of a role or binding for ServiceAccount `account` of namespace `ns`: `<ns>:<account>`,
/// so that two installs in two namespaces never share a cluster-wide name.
fn role_name(ns: &str, account: &str) -> String {
    format!("{ns}:{account}")
}

fn labels(plugin: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([("app.kubernetes.io/part-of".to_owned(), "capstan".to_owned())]);
    if let Some(p) = plugin {
        l.insert("capstan.dev/plugin".to_owned(), p.to_owned());
    }
    l
}

fn meta(name: &str, namespace: Option<&str>, plugin: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(plugin)),
        ..ObjectMeta::default()
    }
}

fn service_account(ns: &str, name: &str, plugin: Option<&str>) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, Some(ns), plugin),
        // The host impersonates it; no pod needs its token.
        automount_service_account_token: plugin.map(|_| false),
        ..ServiceAccount::default()
    }
}

fn subject(ns: &str, account: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: account.to_owned(),
        namespace: Some(ns.to_owned()),
        api_group: None,
    }
}

/// A ClusterRole with `rules` and its binding to `account` in `ns`; nothing when `rules` is empty.
fn cluster_role(
    name: &str,
    rules: &Rules,
    ns: &str,
    account: &str,
    plugin: Option<&str>,
    comments: Vec<String>,
) -> Vec<Document> {
    if rules.is_empty() {
        return Vec::new();
    }
    vec![
        Document {
            comments,
            object: Object::ClusterRole(ClusterRole {
                metadata: meta(name, None, plugin),
                rules: Some(rules.policy_rules()),
                aggregation_rule: None,
            }),
        },
        Document {
            comments: Vec::new(),
            object: Object::ClusterRoleBinding(ClusterRoleBinding {
                metadata: meta(name, None, plugin),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_owned(),
                    kind: "ClusterRole".to_owned(),
                    name: name.to_owned(),
                },
                subjects: Some(vec![subject(ns, account)]),
            }),
        },
    ]
}

/// A Role in `at` with `rules` and its binding to `account` in `ns`; nothing when `rules` is empty.
fn role(
    name: &str,
    at: &str,
    rules: &Rules,
    ns: &str,
    account: &str,
    plugin: Option<&str>,
    comments: Vec<String>,
) -> Vec<Document> {
    if rules.is_empty() {
        return Vec::new();
    }
    vec![
        Document {
            comments,
            object: Object::Role(Role {
                metadata: meta(name, Some(at), plugin),
                rules: Some(rules.policy_rules()),
            }),
        },
        Document {
            comments: Vec::new(),
            object: Object::RoleBinding(RoleBinding {
                metadata: meta(name, Some(at), plugin),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_owned(),
                    kind: "Role".to_owned(),
                    name: name.to_owned(),
                },
                subjects: Some(vec![subject(ns, account)]),
            }),
        },
    ]
}

/// A plugin's ServiceAccount, ClusterRole and Roles, and their bindings.
fn plugin_documents(ids: &Identities, p: &PluginAccess, grant: &Grant) -> Vec<Document> {
    let ns = ids.namespace();
    let account = ids.plugin_service_account(&p.name);
    let name = role_name(ns, &account);
    let m = &p.manifest;
    let mut comments = vec![format!(
        "Plugin {} {} ({}): the host impersonates {} for every request on its behalf.",
        p.name,
        p.version,
        p.world,
        ids.plugin_user(&p.name)
    )];
    let selected = Namespaces::selected(&m.events.namespaces);
    comments.push(format!(
        "Objects it handles or reconciles: {}.",
        selected.describe()
    ));
    if p.world.reconciles() {
        let granted = Namespaces::granted(&p.scope.namespaces);
        comments.push(format!(
            "Namespaces the configuration grants beyond each object's own: {}; cluster-scoped kinds: {}.",
            granted.describe(),
            if p.scope.cluster_scoped { "granted" } else { "not granted" }
        ));
    }
    for (resource, reasons) in &grant.reasons {
        comments.push(format!("  {resource}: {}", reasons.join("; ")));
    }
    if grant.reasons.is_empty() {
        comments.push("  Nothing: the host makes no request on its behalf.".to_owned());
    }
    let mut docs = vec![Document {
        comments,
        object: Object::ServiceAccount(service_account(ns, &account, Some(&p.name))),
    }];
    docs.extend(cluster_role(
        &name,
        &grant.cluster,
        ns,
        &account,
        Some(&p.name),
        Vec::new(),
    ));
    for (at, rules) in &grant.namespaced {
        docs.extend(role(
            &name,
            at,
            rules,
            ns,
            &account,
            Some(&p.name),
            Vec::new(),
        ));
    }
    docs
}

#[cfg(test)]
mod tests;
