//! PriorityClasses (`scheduling.k8s.io/v1`) as kube-apiserver keeps them: the two system classes
//! every server holds (created at start, as the `scheduling/bootstrap-system-priority-classes`
//! post-start hook does, and never deleted), what their registry strategy checks, the `Priority`
//! admission plugin's one-global-default rule, and the lookups the plugin's pod half
//! ([`crate::pod_admission`]) makes.

use serde_json::{Value, json};

use crate::cluster::{Inner, new_uid, now};
use crate::error::FieldCause;
use crate::store::StoreError;

/// The storage key of PriorityClasses.
pub const RESOURCE: &str = "priorityclasses.scheduling.k8s.io";
/// The preemption policy a class that names none gets, and a pod with no class and no default
/// class (`PreemptLowerPriority`).
pub const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";
/// The preemption policies a class may name (`ValidatePreemptionPolicy`).
const PREEMPTION_POLICIES: [&str; 2] = [PREEMPT_LOWER_PRIORITY, "Never"];
/// Names with this prefix are the system classes' alone (`SystemPriorityClassPrefix`).
const SYSTEM_PREFIX: &str = "system-";
/// The highest value a class outside the system ones may have (`HighestUserDefinablePriority`).
const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// The system classes (`SystemPriorityClasses`): name, value, description.
const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Why a PriorityClass write or delete is refused (answered 403, `priorityclasses.scheduling.k8s.io
/// "NAME" is forbidden: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClassError {
    /// Another class already is the global default (the `Priority` plugin's `validatePriorityClass`).
    #[error("PriorityClass {0} is already marked as default. Only one default can exist")]
    SecondDefault(String),
    /// A system class cannot be deleted (the registry's `Delete`).
    #[error("this is a system priority class and cannot be deleted")]
    SystemClass,
}

/// What a pod takes from a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// The class's name.
    pub name: String,
    /// Its priority.
    pub value: i64,
    /// Its preemption policy, if it names one.
    pub preemption_policy: Option<String>,
}

impl Class {
    fn of(object: &Value) -> Self {
        Self {
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            value: object["value"].as_i64().unwrap_or(0),
            preemption_policy: object["preemptionPolicy"].as_str().map(str::to_owned),
        }
    }
}

/// Creates each system class the store lacks.
///
/// # Errors
/// [`StoreError`] when a write is not durable.
pub fn bootstrap(inner: &mut Inner) -> Result<(), StoreError> {
    for (name, value, description) in SYSTEM_CLASSES {
        let key = (String::new(), name.to_owned());
        if inner.store.get(RESOURCE, &key).is_some() {
            continue;
        }
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name, "uid": new_uid(), "creationTimestamp": now()},
            "value": value,
            "description": description,
            "preemptionPolicy": PREEMPT_LOWER_PRIORITY,
        });
        inner.store.put(RESOURCE, key, class)?;
    }
    Ok(())
}

/// The class named `name`.
#[must_use]
pub fn get(inner: &Inner, name: &str) -> Option<Class> {
    inner
        .store
        .get(RESOURCE, &(String::new(), name.to_owned()))
        .map(|c| Class::of(c))
}

/// The global default class: of several (a race can make them), the lowest value
/// (`getDefaultPriorityClass`).
#[must_use]
pub fn global_default(inner: &Inner) -> Option<Class> {
    inner
        .store
        .list(RESOURCE, None, None)
        .filter(|(_, c)| c["globalDefault"] == true)
        .map(|(_, c)| Class::of(c))
        .min_by_key(|c| c.value)
}

/// `SetDefaults_PriorityClass`: a class without a preemption policy gets `PreemptLowerPriority`.
pub(crate) fn default(class: &mut Value) {
    if let Some(map) = class.as_object_mut()
        && map.get("preemptionPolicy").is_none_or(Value::is_null)
    {
        map.insert("preemptionPolicy".into(), json!(PREEMPT_LOWER_PRIORITY));
    }
}

/// `ValidatePriorityClass`, and `ValidatePriorityClassUpdate` against `old`.
pub(crate) fn validate(class: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let name = class["metadata"]["name"].as_str().unwrap_or_default();
    let value = class["value"].as_i64().unwrap_or(0);
    if name.starts_with(SYSTEM_PREFIX) {
        if let Err(why) = known_system_class(name, value, class["globalDefault"] == true) {
            errs.push(FieldCause::forbidden(
                "metadata.name",
                &format!(
                    "priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE {
        errs.push(FieldCause::forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"
            ),
        ));
    }
    let policy = &class["preemptionPolicy"];
    match policy.as_str() {
        Some("") => errs.push(FieldCause::required("preemptionPolicy", "")),
        Some(p) if PREEMPTION_POLICIES.contains(&p) => {}
        None if policy.is_null() => {}
        _ => errs.push(FieldCause::not_supported(
            "preemptionPolicy",
            policy,
            &PREEMPTION_POLICIES,
        )),
    }
    if let Some(old) = old {
        if class["value"] != old["value"] {
            errs.push(FieldCause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if *policy != old["preemptionPolicy"] {
            errs.push(FieldCause::invalid_value(
                "preemptionPolicy",
                policy,
                "field is immutable",
            ));
        }
    }
}

/// `IsKnownSystemPriorityClass`: a `system-` name must be one of the system classes, as they are.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((_, known, _)) = SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if value != *known {
        return Err(format!("value of {name} PriorityClass must be {known}"));
    }
    if global_default {
        return Err(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    Ok(())
}

/// The `Priority` plugin on a class being created (`old` None) or updated: only one class may be
/// the global default; the default itself may be written again.
///
/// # Errors
/// [`ClassError::SecondDefault`] naming the class that already is.
pub fn admit(inner: &Inner, class: &Value, old: Option<&Value>) -> Result<(), ClassError> {
    if class["globalDefault"] != true {
        return Ok(());
    }
    match global_default(inner) {
        Some(default) if old.is_none() || default.name != class["metadata"]["name"] => {
            Err(ClassError::SecondDefault(default.name))
        }
        _ => Ok(()),
    }
}

/// The registry's `Delete`: a system class stays.
///
/// # Errors
/// [`ClassError::SystemClass`] for a system class.
pub fn check_delete(name: &str) -> Result<(), ClassError> {
    if SYSTEM_CLASSES.iter().any(|(n, _, _)| *n == name) {
        Err(ClassError::SystemClass)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;

    fn class(name: &str, value: i64) -> Value {
        json!({"metadata": {"name": name}, "value": value})
    }

    #[test]
    fn a_new_server_holds_the_system_classes_and_no_default() {
        let cluster = Cluster::open(None, 10).unwrap();
        let inner = cluster.lock();
        let node = get(&inner, "system-node-critical").unwrap();
        assert_eq!(node.value, 2_000_001_000);
        assert_eq!(
            node.preemption_policy.as_deref(),
            Some(PREEMPT_LOWER_PRIORITY)
        );
        assert_eq!(
            get(&inner, "system-cluster-critical").unwrap().value,
            2_000_000_000
        );
        assert_eq!(global_default(&inner), None);
    }

    #[test]
    fn system_names_and_values_are_reserved() {
        let mut errs = Vec::new();
        validate(&class("system-mine", 5), None, &mut errs);
        validate(&class("system-node-critical", 7), None, &mut errs);
        validate(&class("high", 1_000_000_001), None, &mut errs);
        let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class",
                "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000",
                "Forbidden: maximum allowed value of a user defined priority is 1000000000",
            ]
        );
        let mut errs = Vec::new();
        validate(
            &class("system-node-critical", 2_000_001_000),
            None,
            &mut errs,
        );
        validate(&class("high", 1_000_000_000), None, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let mut old = class("p", 5);
        default(&mut old);
        let mut new = class("p", 6);
        new["preemptionPolicy"] = json!("Never");
        let mut errs = Vec::new();
        validate(&new, Some(&old), &mut errs);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["value", "preemptionPolicy"]);
    }

    #[test]
    fn only_one_class_is_the_default() {
        let cluster = Cluster::open(None, 10).unwrap();
        let mut inner = cluster.lock();
        let mut first = class("first", 10);
        first["globalDefault"] = json!(true);
        inner
            .store
            .put(RESOURCE, (String::new(), "first".into()), first.clone())
            .unwrap();
        let mut second = class("second", 20);
        second["globalDefault"] = json!(true);
        assert_eq!(
            admit(&inner, &second, None),
            Err(ClassError::SecondDefault("first".into()))
        );
        assert_eq!(
            admit(&inner, &second, Some(&class("second", 20))),
            Err(ClassError::SecondDefault("first".into()))
        );
        assert_eq!(admit(&inner, &first, Some(&first)), Ok(()));
        assert_eq!(admit(&inner, &class("third", 1), None), Ok(()));
        assert_eq!(global_default(&inner).unwrap().name, "first");
    }
}
