//! LimitRanges (core v1): their defaults (`SetDefaults_LimitRangeItem`) and validation
//! (`ValidateLimitRange`), and the `LimitRanger` admission plugin, which gives a new Pod's
//! containers the default requests and limits of their namespace's Container ranges (noting it in
//! the `kubernetes.io/limit-ranger` annotation) and refuses a Pod outside a range's bounds.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::cluster::Inner;
use crate::error::FieldCause;
use crate::quantity::Quantity;

/// The storage key of LimitRanges.
pub const LIMIT_RANGES: &str = "limitranges";

/// The annotation naming what the plugin set.
const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The standard limit types.
const TYPES: [&str; 3] = ["Pod", "Container", "PersistentVolumeClaim"];

/// Why `LimitRanger` refuses a Pod: the messages of every bound it breaks (answered 403,
/// `pods "NAME" is forbidden: ...`, several in brackets as an aggregate error prints them).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", aggregate(.0))]
pub struct LimitError(pub Vec<String>);

/// `utilerrors.NewAggregate(...).Error()`: one message alone, several (repeats dropped) in
/// brackets.
fn aggregate(messages: &[String]) -> String {
    let mut seen: Vec<&String> = Vec::new();
    for m in messages {
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    match seen.as_slice() {
        [one] => (*one).clone(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `SetDefaults_LimitRangeItem`: for a Container item, the default limit from the max, the
/// default request from the default limit, then from the min.
pub(crate) fn defaults(object: &mut Value) {
    let Some(limits) = object
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in limits.iter_mut().filter(|i| i["type"] == "Container") {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let list = |item: &Map<String, Value>, key: &str| -> Map<String, Value> {
            item.get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut default = list(item, "default");
        let mut request = list(item, "defaultRequest");
        for (key, value) in list(item, "max") {
            default.entry(key).or_insert(value);
        }
        for (key, value) in &default {
            request.entry(key.clone()).or_insert(value.clone());
        }
        for (key, value) in list(item, "min") {
            request.entry(key).or_insert(value);
        }
        item.insert("default".into(), Value::Object(default));
        item.insert("defaultRequest".into(), Value::Object(request));
    }
}

/// A quantity as `Quantity.String` writes it (`1024Mi` is `1Gi`), or the text when it does not
/// parse.
fn canon(text: &str) -> String {
    Quantity::parse(text).map_or_else(
        |_| text.to_owned(),
        |q| q.canonical(crate::quantity::Format::of(text)),
    )
}

/// A quantity of a resource list, if it parses.
fn quantity(list: &Value, key: &str) -> Option<Quantity> {
    Quantity::parse(list[key].as_str()?).ok()
}

/// The main rules of `ValidateLimitRange`: each item's type (standard, or qualified) once, the
/// Pod type without defaults, a PVC type with a storage bound, and the order of min, default
/// request, default and max for each resource.
pub(crate) fn validate(object: &Value) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, item) in object["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("spec.limits[{i}]");
        let kind = item["type"].as_str().unwrap_or_default();
        if let Err(e) = crate::validation::qualified_name(kind) {
            errs.push(FieldCause::invalid(&format!("{path}.type"), kind, e));
        }
        if !kind.contains('/') && !TYPES.contains(&kind) {
            errs.push(FieldCause::invalid(
                &format!("{path}.type"),
                kind,
                "must be a standard limit type or fully qualified",
            ));
        }
        if seen.contains(&kind) {
            errs.push(FieldCause::duplicate(
                &format!("{path}.type"),
                &item["type"],
            ));
        }
        seen.push(kind);
        if kind == "Pod" {
            for key in ["default", "defaultRequest"] {
                if item[key].as_object().is_some_and(|m| !m.is_empty()) {
                    errs.push(FieldCause::forbidden(
                        &format!("{path}.{key}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        if kind == "PersistentVolumeClaim"
            && item["min"]["storage"].is_null()
            && item["max"]["storage"].is_null()
        {
            errs.push(FieldCause::required(
                &format!("{path}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let mut keys: Vec<&str> = [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ]
        .iter()
        .flat_map(|k| {
            item[*k]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(r, _)| r.as_str())
        })
        .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let q = |list: &str| quantity(&item[list], key);
            let text = |list: &str| canon(item[list][key].as_str().unwrap_or_default());
            let at = |list: &str| format!("{path}.{list}[{key}]");
            let (min, max, default, request) =
                (q("min"), q("max"), q("default"), q("defaultRequest"));
            let mut check = |ok: bool, list: &str, value: &str, message: String| {
                if !ok {
                    errs.push(FieldCause::invalid(&at(list), value, message));
                }
            };
            if let (Some(a), Some(b)) = (min, max) {
                check(
                    a <= b,
                    "min",
                    &text("min"),
                    format!(
                        "min value {} is greater than max value {}",
                        text("min"),
                        text("max")
                    ),
                );
            }
            if let (Some(a), Some(b)) = (min, request) {
                check(
                    a <= b,
                    "defaultRequest",
                    &text("defaultRequest"),
                    format!(
                        "min value {} is greater than default request value {}",
                        text("min"),
                        text("defaultRequest")
                    ),
                );
            }
            if let (Some(a), Some(b)) = (request, max) {
                check(
                    a <= b,
                    "defaultRequest",
                    &text("defaultRequest"),
                    format!(
                        "default request value {} is greater than max value {}",
                        text("defaultRequest"),
                        text("max")
                    ),
                );
            }
            if let (Some(a), Some(b)) = (request, default) {
                check(
                    a <= b,
                    "defaultRequest",
                    &text("defaultRequest"),
                    format!(
                        "default request value {} is greater than default limit value {}",
                        text("defaultRequest"),
                        text("default")
                    ),
                );
            }
            if let (Some(a), Some(b)) = (min, default) {
                check(
                    a <= b,
                    "default",
                    &text("min"),
                    format!(
                        "min value {} is greater than default value {}",
                        text("min"),
                        text("default")
                    ),
                );
            }
            if let (Some(a), Some(b)) = (default, max) {
                check(
                    a <= b,
                    "default",
                    &text("max"),
                    format!(
                        "default value {} is greater than max value {}",
                        text("default"),
                        text("max")
                    ),
                );
            }
            if let Some(ratio) = q("maxLimitRequestRatio") {
                check(
                    ratio >= Quantity::from_nanos(1_000_000_000),
                    "maxLimitRequestRatio",
                    &text("maxLimitRequestRatio"),
                    format!("ratio {} is less than 1", text("maxLimitRequestRatio")),
                );
            }
        }
    }
    errs
}

/// The Container defaults of a namespace's ranges: requests and limits by resource.
type Defaults = (BTreeMap<String, Value>, BTreeMap<String, Value>);

/// The `LimitRanger` plugin on a Pod being created in `namespace`: each range's Container
/// defaults merged into every container (and init container) that lacks them, then every bound
/// checked. Returns whether it changed the Pod.
///
/// # Errors
/// [`LimitError`] with the bounds the Pod breaks.
pub(crate) fn admit_pod(
    inner: &Inner,
    namespace: &str,
    pod: &mut Value,
) -> Result<bool, LimitError> {
    let ranges: Vec<Value> = inner
        .store
        .list(LIMIT_RANGES, Some(namespace), None)
        .map(|(_, r)| (**r).clone())
        .collect();
    let mut changed = false;
    for range in &ranges {
        let mut defaults: Defaults = (BTreeMap::new(), BTreeMap::new());
        for item in range["spec"]["limits"].as_array().into_iter().flatten() {
            if item["type"] != "Container" {
                continue;
            }
            for (key, value) in item["defaultRequest"].as_object().into_iter().flatten() {
                defaults.0.insert(key.clone(), value.clone());
            }
            for (key, value) in item["default"].as_object().into_iter().flatten() {
                defaults.1.insert(key.clone(), value.clone());
            }
        }
        changed |= merge(pod, &defaults);
    }
    let mut messages = Vec::new();
    for range in &ranges {
        for item in range["spec"]["limits"].as_array().into_iter().flatten() {
            match item["type"].as_str() {
                Some("Container") => {
                    for key in ["containers", "initContainers"] {
                        for container in pod["spec"][key].as_array().into_iter().flatten() {
                            let resources = &container["resources"];
                            bounds(
                                item,
                                "Container",
                                (&resources["requests"], &resources["limits"]),
                                &mut messages,
                            );
                        }
                    }
                }
                Some("Pod") => {
                    let (requests, limits) = pod_totals(pod);
                    bounds(item, "Pod", (&requests, &limits), &mut messages);
                }
                _ => {}
            }
        }
        if !messages.is_empty() {
            return Err(LimitError(messages));
        }
    }
    Ok(changed)
}

/// `mergePodResourceRequirements`: the defaults a container lacks, and the annotation saying so.
fn merge(pod: &mut Value, (requests, limits): &Defaults) -> bool {
    let mut notes: Vec<String> = Vec::new();
    for (key, kind) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod["spec"][key].as_array_mut() else {
            continue;
        };
        for container in containers {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            let resources = &mut container["resources"];
            if !resources.is_object() {
                *resources = json!({});
            }
            let mut fill = |list: &str, defaults: &BTreeMap<String, Value>| -> Vec<String> {
                let target = &mut resources[list];
                if !target.is_object() {
                    *target = json!({});
                }
                let mut set = Vec::new();
                for (resource, value) in defaults {
                    if target.get(resource).is_none() {
                        target[resource] = value.clone();
                        set.push(resource.clone());
                    }
                }
                if target.as_object().is_some_and(Map::is_empty)
                    && let Some(map) = resources.as_object_mut()
                {
                    map.remove(list);
                }
                set
            };
            let set_limits = fill("limits", limits);
            let set_requests = fill("requests", requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {kind} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {kind} {name}", set_limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return false;
    }
    let annotations = &mut pod["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    true
}

/// A Pod's requests and limits: the containers' summed, at least each init container's.
fn pod_totals(pod: &Value) -> (Value, Value) {
    let mut totals = (Map::new(), Map::new());
    for (index, list) in ["requests", "limits"].iter().enumerate() {
        // Each quantity a container of `key` names in `list`.
        let amounts = |key: &str| {
            pod["spec"][key]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["resources"][*list].as_object().into_iter().flatten())
                .filter_map(|(resource, value)| {
                    let q = value.as_str().and_then(|t| Quantity::parse(t).ok())?;
                    Some((resource.clone(), q))
                })
        };
        let mut sums: BTreeMap<String, Quantity> = BTreeMap::new();
        for (resource, q) in amounts("containers") {
            let sum = sums.entry(resource).or_insert(Quantity::from_nanos(0));
            *sum = Quantity::from_nanos(sum.nanos() + q.nanos());
        }
        for (resource, q) in amounts("initContainers") {
            let sum = sums.entry(resource).or_insert(Quantity::from_nanos(0));
            if q > *sum {
                *sum = q;
            }
        }
        let map = if index == 0 {
            &mut totals.0
        } else {
            &mut totals.1
        };
        for (resource, sum) in sums {
            map.insert(
                resource,
                json!(sum.canonical(crate::quantity::Format::DecimalSi)),
            );
        }
    }
    (Value::Object(totals.0), Value::Object(totals.1))
}

/// `minConstraint`, `maxConstraint` and `limitRequestRatioConstraint` of one item on a
/// container's or Pod's requests and limits.
fn bounds(
    item: &Value,
    kind: &str,
    (requests, limits): (&Value, &Value),
    messages: &mut Vec<String>,
) {
    let text = |list: &Value, key: &str| canon(list[key].as_str().unwrap_or_default());
    for (resource, min) in item["min"].as_object().into_iter().flatten() {
        let Some(bound) = min.as_str().and_then(|t| Quantity::parse(t).ok()) else {
            continue;
        };
        let min = canon(min.as_str().unwrap_or_default());
        match quantity(requests, resource) {
            None => messages.push(format!(
                "minimum {resource} usage per {kind} is {min}.  No request is specified"
            )),
            Some(request) if request < bound => messages.push(format!(
                "minimum {resource} usage per {kind} is {min}, but request is {}",
                text(requests, resource)
            )),
            Some(_) => {}
        }
        if let Some(limit) = quantity(limits, resource)
            && limit < bound
        {
            messages.push(format!(
                "minimum {resource} usage per {kind} is {min}, but limit is {}",
                text(limits, resource)
            ));
        }
    }
    for (resource, max) in item["max"].as_object().into_iter().flatten() {
        let Some(bound) = max.as_str().and_then(|t| Quantity::parse(t).ok()) else {
            continue;
        };
        let max = canon(max.as_str().unwrap_or_default());
        match quantity(limits, resource) {
            None => messages.push(format!(
                "maximum {resource} usage per {kind} is {max}.  No limit is specified"
            )),
            Some(limit) if limit > bound => messages.push(format!(
                "maximum {resource} usage per {kind} is {max}, but limit is {}",
                text(limits, resource)
            )),
            Some(_) => {}
        }
        if let Some(request) = quantity(requests, resource)
            && request > bound
        {
            messages.push(format!(
                "maximum {resource} usage per {kind} is {max}, but request is {}",
                text(requests, resource)
            ));
        }
    }
    for (resource, ratio) in item["maxLimitRequestRatio"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let Some(bound) = ratio.as_str().and_then(|t| Quantity::parse(t).ok()) else {
            continue;
        };
        let ratio = canon(ratio.as_str().unwrap_or_default());
        let request = quantity(requests, resource).filter(|q| q.nanos() > 0);
        let limit = quantity(limits, resource).filter(|q| q.nanos() > 0);
        match (request, limit) {
            (None, _) => messages.push(format!("{resource} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0")),
            (_, None) => messages.push(format!("{resource} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0")),
            (Some(request), Some(limit)) => {
                #[allow(clippy::cast_precision_loss)]
                let observed = limit.nanos() as f64 / request.nanos() as f64;
                #[allow(clippy::cast_precision_loss)]
                let allowed = bound.nanos() as f64 / 1e9;
                if observed > allowed {
                    messages.push(format!("{resource} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(errs: &[FieldCause]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_container_range_is_defaulted_from_its_bounds_and_checked_in_order() {
        let mut range = json!({"spec": {"limits": [{"type": "Container",
            "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]}});
        defaults(&mut range);
        let item = &range["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "1"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "1", "memory": "64Mi"})
        );
        assert!(validate(&range).is_empty());
        let bad = json!({"spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            {"type": "Container"},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Disk"},
        ]}});
        assert_eq!(
            texts(&validate(&bad)),
            [
                "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
                "spec.limits[1].type: Duplicate value: \"Container\"",
                "spec.limits[2].default: Forbidden: may not be specified when `type` is 'Pod'",
                "spec.limits[3].type: Invalid value: \"Disk\": must be a standard limit type or fully qualified",
            ]
        );
    }

    #[test]
    fn the_aggregate_drops_repeats_and_brackets_several() {
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}
