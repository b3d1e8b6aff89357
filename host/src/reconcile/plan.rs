//! A plugin's plan, checked before anything is sent. Every entry becomes a [`Step`] built only from
//! identifiers that follow Kubernetes' rules, in the reconciled object's scope, on objects the
//! plugin may touch: it applies its object's children (forcing fields only on children its object
//! controls), creates or updates objects its own field manager manages, deletes only children its
//! object controls and it created, and writes status only to its object, its children, or an owner
//! of its object. One bad entry refuses the whole plan: nothing of it is sent.

use super::access;
use super::apply::{self, controlled_by, managed_by, split_status};
use super::scope::Scope;
use super::world::World;
use crate::contract::{CategorizedError, ErrorCategory, Gvk, Manifest, ObjectRef, Verb};
use crate::plugin::Planned;
use capstan_apiserver::validation::{self, InvalidIdentifier, NameRule};
use kube::api::DynamicObject;
use serde_json::Value;

/// One request of a checked plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Server-side apply of `body` (everything but `status`) to `target`.
    Apply {
        /// The object.
        target: ObjectRef,
        /// What is applied; its `metadata.name` and `metadata.namespace` are the target's.
        body: Value,
        /// With the controller owner reference to the reconciled object.
        owned: bool,
        /// Take over fields other managers own: only on objects the reconciled object controls.
        force: bool,
    },
    /// Server-side apply of `body` (only `status`) through the status subresource.
    Status {
        /// The object.
        target: ObjectRef,
        /// The status apply.
        body: Value,
        /// Take over fields other managers own: only on the reconciled object and its children.
        force: bool,
    },
    /// Delete `target`, provided its uid is still `uid`.
    Delete {
        /// The object.
        target: ObjectRef,
        /// Its uid when checked (a delete precondition).
        uid: String,
    },
}

impl Step {
    /// The object this step is about.
    pub fn target(&self) -> &ObjectRef {
        match self {
            Self::Apply { target, .. }
            | Self::Status { target, .. }
            | Self::Delete { target, .. } => target,
        }
    }
}

/// Why a plan was refused; each names the entry (by index) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The entry is not a Kubernetes object the host can address.
    #[error("plan entry {index}: {message}")]
    Malformed {
        /// Position in the plan.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// An identifier breaks Kubernetes' rules.
    #[error("plan entry {index}: {field}: Invalid value {value:?}: {source}")]
    Identifier {
        /// Position in the plan.
        index: usize,
        /// The field, e.g. `metadata.namespace`.
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        #[source]
        source: InvalidIdentifier,
    },
    /// The entry sets metadata only the host may set.
    #[error("plan entry {index} ({target}): {field} is set by the host, not by a plan")]
    Reserved {
        /// Position in the plan.
        index: usize,
        /// The object.
        target: String,
        /// The field.
        field: &'static str,
    },
    /// The manifest (as the configuration narrows it) does not grant the verb on the kind.
    #[error("plan entry {index}: {message}")]
    Access {
        /// Position in the plan.
        index: usize,
        /// The access check's message.
        message: String,
    },
    /// The target lies outside the reconcile's scope.
    #[error("plan entry {index} ({target}): {reason}")]
    Scope {
        /// Position in the plan.
        index: usize,
        /// The object.
        target: String,
        /// Why.
        reason: String,
    },
    /// The target exists and is not the plugin's to change that way.
    #[error("plan entry {index} ({target}): {reason}")]
    Ownership {
        /// Position in the plan.
        index: usize,
        /// The object.
        target: String,
        /// Why.
        reason: String,
    },
    /// The check could not be made (the kind cannot be resolved, a read failed).
    #[error("plan entry {index}: {}", .error.message)]
    Unchecked {
        /// Position in the plan.
        index: usize,
        /// The failure, with its category.
        error: CategorizedError,
    },
}

impl Refusal {
    /// The error category: invalid entries are an invalid spec, a check that could not be made is
    /// whatever failed, everything else is an authorization refusal.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Malformed { .. } | Self::Identifier { .. } => ErrorCategory::InvalidSpec,
            Self::Unchecked { error, .. } => error.category,
            Self::Reserved { .. }
            | Self::Access { .. }
            | Self::Scope { .. }
            | Self::Ownership { .. } => ErrorCategory::Auth,
        }
    }
}

/// The reconcile a plan is checked for: a controller's, or `capstan render`'s (only the
/// [`World`] differs).
pub(crate) struct Checker<'a> {
    /// What the checks read of the cluster.
    pub(crate) world: &'a dyn World,
    /// The plugin's name.
    pub(crate) plugin: &'a str,
    /// Its manifest, as the configuration narrows it.
    pub(crate) manifest: &'a Manifest,
    /// The reconciled object.
    pub(crate) owner: &'a DynamicObject,
    /// Its reference.
    pub(crate) owner_ref: &'a ObjectRef,
    /// Where the reconcile may write.
    pub(crate) scope: &'a Scope,
}

/// An entry's identifiers, checked: kind, namespace (as written) and name.
#[derive(Debug)]
struct Parsed {
    gvk: Gvk,
    namespace: Option<String>,
    name: String,
}

impl Parsed {
    /// How refusals name the object: `Kind namespace/name` or `Kind name`.
    fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.gvk.kind, self.name),
            None => format!("{} {}", self.gvk.kind, self.name),
        }
    }
}

fn identifier(
    index: usize,
    field: &'static str,
    value: &str,
    rule: impl Fn(&str) -> Result<(), InvalidIdentifier>,
) -> Result<(), Refusal> {
    rule(value).map_err(|source| Refusal::Identifier {
        index,
        field,
        value: value.to_owned(),
        source,
    })
}

fn parse_ref(index: usize, r: &ObjectRef) -> Result<Parsed, Refusal> {
    identifier(index, "gvk.group", &r.gvk.group, validation::group)?;
    identifier(index, "gvk.version", &r.gvk.version, validation::version)?;
    identifier(index, "gvk.kind", &r.gvk.kind, validation::kind)?;
    if let Some(ns) = &r.namespace {
        identifier(index, "namespace", ns, validation::dns1123_label)?;
    }
    let rule = NameRule::for_kind(&r.gvk.group, &r.gvk.kind);
    identifier(index, "name", &r.name, |n| rule.check(n))?;
    Ok(Parsed {
        gvk: r.gvk.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    })
}

fn parse_object(index: usize, obj: &Value) -> Result<Parsed, Refusal> {
    let malformed = |message: &str| Refusal::Malformed {
        index,
        message: message.to_owned(),
    };
    let text = |pointer: &str| -> Result<Option<&str>, Refusal> {
        match obj.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(malformed(&format!("{pointer} is not a string"))),
        }
    };
    if !obj.is_object() {
        return Err(malformed("the planned object is not a JSON object"));
    }
    let api_version = text("/apiVersion")?.ok_or_else(|| malformed("apiVersion is missing"))?;
    let kind = text("/kind")?.ok_or_else(|| malformed("kind is missing"))?;
    let name = text("/metadata/name")?.ok_or_else(|| malformed("metadata.name is missing"))?;
    let namespace = text("/metadata/namespace")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    identifier(index, "apiVersion", group, validation::group)?;
    identifier(index, "apiVersion", version, validation::version)?;
    identifier(index, "kind", kind, validation::kind)?;
    if let Some(ns) = namespace {
        identifier(index, "metadata.namespace", ns, validation::dns1123_label)?;
    }
    let rule = NameRule::for_kind(group, kind);
    identifier(index, "metadata.name", name, |n| rule.check(n))?;
    let target = format!("{kind} {name}");
    let meta = obj.get("metadata").and_then(Value::as_object);
    for field in ["ownerReferences", "managedFields", "deletionTimestamp"] {
        if meta.is_some_and(|m| m.contains_key(field)) {
            return Err(Refusal::Reserved {
                index,
                target,
                field: match field {
                    "ownerReferences" => "metadata.ownerReferences",
                    "managedFields" => "metadata.managedFields",
                    _ => "metadata.deletionTimestamp",
                },
            });
        }
    }
    if meta
        .and_then(|m| m.get("finalizers"))
        .is_some_and(|f| f.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(Refusal::Reserved {
            index,
            target,
            field: "metadata.finalizers",
        });
    }
    Ok(Parsed {
        gvk: Gvk::new(group, version, kind),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    })
}

impl Checker<'_> {
    /// Check every entry; the steps in plan order, or every refusal.
    pub(crate) async fn check(&self, entries: Vec<Planned>) -> Result<Vec<Step>, Vec<Refusal>> {
        let mut steps = Vec::with_capacity(entries.len());
        let mut refusals = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            match self.entry(index, entry).await {
                Ok(s) => steps.extend(s),
                Err(r) => refusals.push(r),
            }
        }
        if refusals.is_empty() {
            Ok(steps)
        } else {
            Err(refusals)
        }
    }

    async fn entry(&self, index: usize, entry: Planned) -> Result<Vec<Step>, Refusal> {
        let (parsed, verb) = match &entry {
            Planned::Apply(v) | Planned::ApplyWithoutOwnerRef(v) => {
                (parse_object(index, v)?, Verb::Patch)
            }
            Planned::Delete(r) => (parse_ref(index, r)?, Verb::Delete),
        };
        access::check(
            self.plugin,
            self.manifest,
            verb,
            &parsed.gvk,
            &parsed.display(),
        )
        .map_err(|e| Refusal::Access {
            index,
            message: e.message,
        })?;
        let namespaced = self
            .world
            .namespaced(&parsed.gvk)
            .await
            .map_err(|error| Refusal::Unchecked { index, error })?;
        let namespace = if namespaced {
            parsed.namespace.clone().or_else(|| self.scope.home.clone())
        } else {
            None
        };
        let target = ObjectRef {
            gvk: parsed.gvk,
            namespace,
            name: parsed.name,
            uid: None,
        };
        let is_self = target.gvk == self.owner_ref.gvk
            && target.namespace == self.owner_ref.namespace
            && target.name == self.owner_ref.name;
        // The object's own status is always in scope; everything else must be.
        let status_only = matches!(&entry, Planned::Apply(v) | Planned::ApplyWithoutOwnerRef(v)
            if apply::status_only(v));
        if !(is_self && status_only)
            && let Some(reason) = self.scope.refusal(namespaced, target.namespace.as_deref())
        {
            return Err(Refusal::Scope {
                index,
                target: target.to_string(),
                reason,
            });
        }
        // Kubernetes has no owner references across namespaces, nor from a cluster-scoped
        // object to a namespaced owner: the garbage collector would delete such a child.
        if matches!(entry, Planned::Apply(_))
            && !is_self
            && target.namespace != self.owner_ref.namespace
        {
            return Err(Refusal::Scope {
                index,
                target: target.to_string(),
                reason: format!(
                    "an owner reference cannot point from it to {} (not in the same namespace): use applyWithoutOwnerRef",
                    self.owner_ref
                ),
            });
        }
        let ownership = |reason: String| Refusal::Ownership {
            index,
            target: target.to_string(),
            reason,
        };
        let managed = matches!(entry, Planned::Delete(_) | Planned::ApplyWithoutOwnerRef(_));
        let existing = self
            .world
            .existing(&target, managed)
            .await
            .map_err(|error| Refusal::Unchecked { index, error })?;
        let owner_uid = self.owner.metadata.uid.as_deref().unwrap_or_default();
        let controlled = existing
            .as_ref()
            .is_some_and(|o| !owner_uid.is_empty() && controlled_by(o, owner_uid));
        let (obj, owned) = match entry {
            Planned::Delete(_) => {
                let Some(existing) = existing else {
                    return Ok(Vec::new());
                };
                if !controlled {
                    return Err(ownership(format!(
                        "it may delete only objects {} controls",
                        self.owner_ref
                    )));
                }
                if !managed_by(&existing, self.world.field_manager()) {
                    return Err(ownership(format!(
                        "it may delete only objects it created (field manager {})",
                        self.world.field_manager()
                    )));
                }
                let uid = existing.metadata.uid.clone().unwrap_or_default();
                return Ok(vec![Step::Delete { target, uid }]);
            }
            Planned::Apply(v) => (v, true),
            Planned::ApplyWithoutOwnerRef(v) => (v, false),
        };
        let set_identity = |mut v: Value| {
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("name".into(), Value::String(target.name.clone()));
                match &target.namespace {
                    Some(ns) => meta.insert("namespace".into(), Value::String(ns.clone())),
                    None => meta.remove("namespace"),
                };
            }
            v
        };
        let (main, status) = split_status(obj);
        let mut steps = Vec::new();
        if let Some(main) = main {
            if is_self {
                return Err(ownership(
                    "a plan may change only the status of the reconciled object".into(),
                ));
            }
            let force = match (&existing, owned) {
                (None, _) => false,
                (Some(_), true) if controlled => true,
                (Some(_), true) => {
                    return Err(ownership(format!(
                        "it exists and {} does not control it: a plan never adopts an object",
                        self.owner_ref
                    )));
                }
                (Some(e), false) if managed_by(e, self.world.field_manager()) => false,
                (Some(_), false) => {
                    return Err(ownership(format!(
                        "it exists and field manager {} never applied it: a plan updates only objects it created",
                        self.world.field_manager()
                    )));
                }
            };
            steps.push(Step::Apply {
                target: target.clone(),
                body: set_identity(main),
                owned,
                force,
            });
        }
        if let Some(status) = status {
            // A child this entry creates with the owner reference is the object's child too.
            let child = controlled || (owned && !steps.is_empty());
            let force = is_self || child;
            if !force && !self.is_owner(&target) {
                return Err(ownership(format!(
                    "status goes only to {}, its children, or its owners",
                    self.owner_ref
                )));
            }
            if existing.is_none() && steps.is_empty() {
                return Err(ownership(
                    "its status cannot be written: it does not exist".into(),
                ));
            }
            let body = set_identity(status);
            steps.push(Step::Status {
                target,
                body,
                force,
            });
        }
        Ok(steps)
    }

    /// Whether `target` is one of the reconciled object's owners (in its namespace): where seed 004
    /// propagates status.
    fn is_owner(&self, target: &ObjectRef) -> bool {
        target.namespace == self.owner_ref.namespace
            && self
                .owner
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| {
                    let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                    o.kind == target.gvk.kind && group == target.gvk.group && o.name == target.name
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(r: Refusal) -> &'static str {
        match r {
            Refusal::Identifier { field, .. } | Refusal::Reserved { field, .. } => field,
            other => panic!("unexpected refusal {other}"),
        }
    }

    #[test]
    fn objects_with_bad_identifiers_are_refused_naming_the_field() {
        let cm = |meta: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta});
        let parsed = parse_object(0, &cm(json!({"name": "a", "namespace": "ns"}))).unwrap();
        assert_eq!(
            (
                parsed.gvk,
                parsed.namespace.as_deref(),
                parsed.name.as_str()
            ),
            (Gvk::new("", "v1", "ConfigMap"), Some("ns"), "a")
        );
        for (meta, field) in [
            (json!({"name": "a/b"}), "metadata.name"),
            (json!({"name": ""}), "metadata.name"),
            (json!({"name": "x?y"}), "metadata.name"),
            (
                json!({"name": "a", "namespace": "team-b/secrets"}),
                "metadata.namespace",
            ),
            (json!({"name": "a", "namespace": ""}), "metadata.namespace"),
            (
                json!({"name": "a", "finalizers": ["x/y"]}),
                "metadata.finalizers",
            ),
            (
                json!({"name": "a", "ownerReferences": []}),
                "metadata.ownerReferences",
            ),
            (
                json!({"name": "a", "managedFields": []}),
                "metadata.managedFields",
            ),
        ] {
            let r = parse_object(3, &cm(meta.clone())).unwrap_err();
            assert!(r.to_string().starts_with("plan entry 3"), "{r}");
            assert_eq!(field_of(r), field, "{meta}");
        }
        let r = parse_object(
            0,
            &json!({"apiVersion": "v1/../../x", "kind": "ConfigMap",
            "metadata": {"name": "a"}}),
        )
        .unwrap_err();
        assert_eq!(field_of(r), "apiVersion");
        let r = parse_object(
            0,
            &json!({"apiVersion": "v1", "kind": "Config/Map",
            "metadata": {"name": "a"}}),
        )
        .unwrap_err();
        assert_eq!(field_of(r), "kind");
        assert!(matches!(
            parse_object(
                0,
                &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 5}})
            ),
            Err(Refusal::Malformed { .. })
        ));
        assert!(matches!(
            parse_object(0, &json!("text")),
            Err(Refusal::Malformed { .. })
        ));
    }

    #[test]
    fn references_are_checked_like_objects() {
        let r = |ns: Option<&str>, name: &str| ObjectRef {
            gvk: Gvk::new("apps", "v1", "Deployment"),
            namespace: ns.map(str::to_owned),
            name: name.into(),
            uid: None,
        };
        assert!(parse_ref(0, &r(Some("ns"), "web")).is_ok());
        assert_eq!(
            field_of(parse_ref(0, &r(Some("a/b"), "web")).unwrap_err()),
            "namespace"
        );
        assert_eq!(field_of(parse_ref(0, &r(None, "..")).unwrap_err()), "name");
        assert_eq!(field_of(parse_ref(0, &r(None, "/")).unwrap_err()), "name");
    }

    #[test]
    fn refusals_are_invalid_spec_or_auth() {
        let malformed = Refusal::Malformed {
            index: 0,
            message: "x".into(),
        };
        assert_eq!(malformed.category(), ErrorCategory::InvalidSpec);
        let scope = Refusal::Scope {
            index: 0,
            target: "ConfigMap b/x".into(),
            reason: "outside".into(),
        };
        assert_eq!(scope.category(), ErrorCategory::Auth);
    }
}
