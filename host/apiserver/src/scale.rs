//! The `/scale` subresource (`autoscaling/v1` `Scale`) of the built-in workloads and of CRDs that
//! declare `subresources.scale`: what `kubectl scale` and autoscalers read and write. A write of the
//! Scale changes only the object's replicas field, as kube-apiserver's scale REST does.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::resource::{ResourceInfo, ScalePaths};
use crate::table::eval_path;

/// The Scale of `object`, whose kind has the scale `paths`.
#[must_use]
pub fn of(paths: &ScalePaths, object: &Value) -> Value {
    let replicas = |path: &str| eval_path(object, path).and_then(Value::as_i64).unwrap_or(0);
    let selector = match &paths.label_selector {
        Some(path) => eval_path(object, path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        None if paths.selector_is_map => crate::selector::label_selector_text(
            &json!({"matchLabels": object["spec"]["selector"]}),
        ),
        None => crate::selector::label_selector_text(&object["spec"]["selector"]),
    };
    let meta = &object["metadata"];
    let mut metadata = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(key) {
            metadata.insert(key.into(), v.clone());
        }
    }
    let mut status = json!({"replicas": replicas(&paths.status_replicas)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas(&paths.spec_replicas)},
        "status": status,
    })
}

/// The replicas a Scale written by a client asks for.
///
/// # Errors
/// [`ApiError::Invalid`] (on `Scale.autoscaling`) when `spec.replicas` is missing or negative.
pub fn wanted_replicas(scale: &Value, name: &str) -> Result<i64, ApiError> {
    let invalid = |cause| ApiError::Invalid {
        kind: "Scale".into(),
        group: "autoscaling".into(),
        name: name.to_owned(),
        causes: vec![cause],
    };
    match scale["spec"]["replicas"].as_i64() {
        Some(n) if n >= 0 => Ok(n),
        Some(n) => Err(invalid(crate::error::FieldCause::invalid_value(
            "spec.replicas",
            &json!(n),
            "must be greater than or equal to 0",
        ))),
        None => Err(invalid(crate::error::FieldCause::required(
            "spec.replicas",
            "",
        ))),
    }
}

/// `object` with its replicas field (`paths.spec_replicas`, a dotted path) set to `replicas`.
#[must_use]
pub fn with_replicas(paths: &ScalePaths, object: &Value, replicas: i64) -> Value {
    let mut out = object.clone();
    let keys: Vec<&str> = paths
        .spec_replicas
        .trim_start_matches('.')
        .split('.')
        .filter(|k| !k.is_empty())
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return out;
    };
    let mut cur = &mut out;
    for key in parents {
        if !cur.get(*key).is_some_and(Value::is_object) {
            cur[*key] = json!({});
        }
        cur = &mut cur[*key];
    }
    cur[*last] = json!(replicas);
    out
}

/// The scale paths of `info`, or the answer for a kind without `/scale`.
///
/// # Errors
/// [`ApiError::UnknownResource`] when the kind has no scale subresource.
pub fn paths(info: &ResourceInfo) -> Result<&ScalePaths, ApiError> {
    info.scale.as_ref().ok_or(ApiError::UnknownResource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployments_scale_and_its_selector_text() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7",
                "labels": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "web", "app": "shop"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "canary", "operator": "DoesNotExist"}]}},
            "status": {"replicas": 2}});
        let scale = of(&ScalePaths::workload_for_tests(), &d);
        assert_eq!(
            scale,
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
                "spec": {"replicas": 3},
                "status": {"replicas": 2, "selector": "app=shop,!canary,env in (dev,prod),tier=web"}})
        );
        let scaled = with_replicas(&ScalePaths::workload_for_tests(), &d, 5);
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert_eq!(scaled["spec"]["selector"], d["spec"]["selector"]);
        assert!(wanted_replicas(&json!({"spec": {"replicas": -1}}), "web").is_err());
    }
}
