//! Label and field selectors for list, watch and deletecollection.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

/// A selector that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// The requirement is not understood.
    #[error("unable to parse requirement: {0:?}")]
    Syntax(String),
    /// A key or value breaks the label rules (`labels.NewRequirement`'s errors).
    #[error("unable to parse requirement: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(v), Some(x)) => v == x,
            (Op::Eq(_), None) => false,
            (Op::NotEq(v), x) => x != Some(v.as_str()),
            (Op::In(vs), Some(x)) => vs.iter().any(|v| v == x),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), x) => x.is_none_or(|x| !vs.iter().any(|v| v == x)),
            (Op::Exists, x) => x.is_some(),
            (Op::NotExists, x) => x.is_none(),
        }
    }
}

/// A parsed selector: a conjunction of requirements (empty matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn set_values(text: &str) -> Result<Vec<String>, SelectorError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Syntax(text.to_string()))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let err = || SelectorError::Syntax(part.to_string());
    let part = part.trim();
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(Requirement {
                key: key.into(),
                op: Op::NotExists,
            })
        } else {
            Err(err())
        };
    }
    let (key, op) = if let Some((k, v)) = part.split_once("!=") {
        (k, Op::NotEq(v.trim().into()))
    } else if let Some((k, v)) = part.split_once("==") {
        (k, Op::Eq(v.trim().into()))
    } else if let Some((k, v)) = part.split_once('=') {
        (k, Op::Eq(v.trim().into()))
    } else if let Some((k, v)) = part.split_once(" notin ") {
        (k, Op::NotIn(set_values(v)?))
    } else if let Some((k, v)) = part.split_once(" in ") {
        (k, Op::In(set_values(v)?))
    } else {
        (part, Op::Exists)
    };
    let key = key.trim();
    if !valid_key(key) {
        return Err(err());
    }
    Ok(Requirement {
        key: key.into(),
        op,
    })
}

impl Selector {
    /// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    ///
    /// # Errors
    /// [`SelectorError`] for unparseable requirements.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_top_level(text)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Parses a label selector: as [`Selector::parse`], each key a qualified name and each value a
    /// label value, as `labels.Parse` requires (a field selector's values are free).
    ///
    /// # Errors
    /// [`SelectorError`] for unparseable requirements, keys or values.
    pub fn parse_labels(text: &str) -> Result<Self, SelectorError> {
        let selector = Self::parse(text)?;
        for r in &selector.requirements {
            let values: &[String] = match &r.op {
                Op::Eq(v) | Op::NotEq(v) => std::slice::from_ref(v),
                Op::In(vs) | Op::NotIn(vs) => vs,
                Op::Exists | Op::NotExists => &[],
            };
            crate::validation::qualified_name(&r.key).map_err(|e| {
                SelectorError::Invalid(format!("key: Invalid value: {:?}: {e}", r.key))
            })?;
            for v in values {
                crate::validation::label_value(v).map_err(|e| {
                    SelectorError::Invalid(format!(
                        "values[0][{}]: Invalid value: {v:?}: {e}",
                        r.key
                    ))
                })?;
            }
        }
        Ok(selector)
    }

    /// The selector of a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`, as
    /// apimachinery's `LabelSelectorAsSelector`); an empty one matches everything.
    ///
    /// # Errors
    /// [`SelectorError`] for an unknown operator, an `In` or `NotIn` without values, or an
    /// `Exists` or `DoesNotExist` with values.
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                op: Op::Eq(value.clone()),
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            let bad =
                || SelectorError::Syntax(format!("{} {}", expression.key, expression.operator));
            let op = match expression.operator.as_str() {
                "In" if !values.is_empty() => Op::In(values),
                "NotIn" if !values.is_empty() => Op::NotIn(values),
                "Exists" if values.is_empty() => Op::Exists,
                "DoesNotExist" if values.is_empty() => Op::NotExists,
                _ => return Err(bad()),
            };
            requirements.push(Requirement {
                key: expression.key.clone(),
                op,
            });
        }
        Ok(Self { requirements })
    }

    /// The value `key` must equal (the first `key=value` or `key==value` requirement), as
    /// apimachinery's `RequiresExactMatch`.
    #[must_use]
    pub fn exact_match(&self, key: &str) -> Option<&str> {
        self.requirements.iter().find_map(|r| match &r.op {
            Op::Eq(v) if r.key == key => Some(v.as_str()),
            _ => None,
        })
    }

    /// The keys it constrains.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.key.as_str())
    }

    /// Whether every requirement is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The selector with each key `convert` maps renamed (a field label conversion: the key an
    /// API selects by, matched against the field the stored object holds it in).
    #[must_use]
    pub fn convert_keys(mut self, convert: impl Fn(&str) -> Option<&'static str>) -> Self {
        for r in &mut self.requirements {
            if let Some(stored) = convert(&r.key) {
                r.key = stored.to_owned();
            }
        }
        self
    }

    /// Whether `selector`, a `LabelSelector` as JSON, selects `object`'s labels; one that does not
    /// parse selects nothing (`LabelSelectorAsSelector` failing), an empty one everything.
    #[must_use]
    pub fn label_selector_selects(selector: &Value, object: &Value) -> bool {
        serde_json::from_value::<LabelSelector>(selector.clone())
            .ok()
            .and_then(|s| Self::from_label_selector(&s).ok())
            .is_some_and(|s| s.matches_labels(object))
    }

    /// Matches an object's `metadata.labels`.
    #[must_use]
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).and_then(Value::as_str)))
    }

    /// Matches fields addressed by dotted paths such as `metadata.name` (missing fields read as "").
    #[must_use]
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let (path, zero) = field_source(&r.key);
            let value = path.split('.').try_fold(object, |v, k| v.get(k));
            let text = match value {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => zero.to_owned(),
                Some(other) => other.to_string(),
            };
            r.matches(Some(text.as_str()))
        })
    }
}

/// Where a selectable field's value comes from, and what it reads when the object leaves it out:
/// the `*ToSelectableFields` functions format Go's zero value (`strconv.FormatBool`, `Itoa`), and
/// a Job's `status.successful` is its `status.succeeded`.
fn field_source(key: &str) -> (&str, &'static str) {
    match key {
        "spec.hostNetwork" | "spec.unschedulable" => (key, "false"),
        "status.replicas" => (key, "0"),
        "status.successful" => ("status.succeeded", "0"),
        _ => (key, ""),
    }
}

/// A `metav1.LabelSelector` (as JSON) as `metav1.LabelSelectorAsSelector(s).String()` prints it:
/// requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`.
#[must_use]
pub fn label_selector_text(selector: &Value) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    for (k, v) in selector["matchLabels"].as_object().into_iter().flatten() {
        parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_owned(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        };
        parts.push((key.to_owned(), text));
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// The fields a field selector may name for a kind, as kube-apiserver's field label conversion
/// functions accept them (`pkg/apis/*/v1/conversion.go`): `metadata.name` and
/// `metadata.namespace` for every kind, and a few more for some.
#[must_use]
pub fn supported_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Secret") => &["metadata.name", "metadata.namespace", "type"],
        ("", "Namespace") => &["metadata.name", "status.phase"],
        ("", "Node") => &["metadata.name", "spec.unschedulable"],
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &["metadata.name", "spec.signerName"]
        }
        ("", "Event") => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        // `AddFieldLabelConversionsForEvent` (`crate::event_versions::field_label`).
        ("events.k8s.io", "Event") => &[
            "metadata.name",
            "metadata.namespace",
            "reason",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reportingController",
            "type",
        ],
        ("apps", "ReplicaSet") => &["metadata.name", "metadata.namespace", "status.replicas"],
        ("batch", "Job") => &["metadata.name", "metadata.namespace", "status.successful"],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

/// Refuses a field selector that names a field the kind cannot be selected by (a custom resource
/// also by its version's `selectableFields`), as kube-apiserver does (400 `field label not
/// supported: spec.foo`).
///
/// # Errors
/// The message, for the first unsupported field.
pub fn check_fields(
    selector: &Selector,
    info: &crate::resource::ResourceInfo,
) -> Result<(), String> {
    let supported = supported_fields(&info.group, &info.kind);
    let selectable =
        |k: &str| supported.contains(&k) || info.selectable_fields.iter().any(|f| f == k);
    match selector.keys().find(|k| !selectable(k)) {
        Some(key) => Err(format!("field label not supported: {key}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_name_only_the_kinds_selectable_fields() {
        let ok = Selector::parse("metadata.name=a,metadata.namespace!=b").unwrap();
        let registry = crate::resource::Registry::default();
        let info = |plural: &str| registry.lookup("", "v1", plural).expect("served");
        assert!(check_fields(&ok, &info("configmaps")).is_ok());
        let phase = Selector::parse("status.phase=Running").unwrap();
        assert!(check_fields(&phase, &info("pods")).is_ok());
        assert_eq!(
            check_fields(&phase, &info("configmaps")),
            Err("field label not supported: status.phase".into())
        );
        assert!(check_fields(&Selector::parse("type=Opaque").unwrap(), &info("secrets")).is_ok());
    }
    use serde_json::json;

    #[test]
    fn label_operators() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing!=x", true),
            ("app=web,tier in (back)", false),
            ("", true),
        ] {
            assert_eq!(
                Selector::parse(sel).unwrap().matches_labels(&obj),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn field_selector() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert!(
            Selector::parse("metadata.name=a,metadata.namespace!=x")
                .unwrap()
                .matches_fields(&obj)
        );
        assert!(
            !Selector::parse("metadata.name=b")
                .unwrap()
                .matches_fields(&obj)
        );
    }

    #[test]
    fn label_selector_objects() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let obj = json!({"metadata": {"labels": {"agg": "true", "tier": "a"}}});
        let sel = |s: LabelSelector| {
            Selector::from_label_selector(&s)
                .unwrap()
                .matches_labels(&obj)
        };
        assert!(sel(LabelSelector::default()));
        assert!(sel(LabelSelector {
            match_labels: Some([("agg".to_owned(), "true".to_owned())].into()),
            ..LabelSelector::default()
        }));
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
            ..LabelSelector::default()
        };
        assert!(sel(expr("In", &["a", "b"])));
        assert!(!sel(expr("NotIn", &["a"])));
        assert!(sel(expr("Exists", &[])));
        assert!(!sel(expr("DoesNotExist", &[])));
        assert!(Selector::from_label_selector(&expr("In", &[])).is_err());
        assert!(Selector::from_label_selector(&expr("Gt", &["1"])).is_err());
    }

    #[test]
    fn exact_matches() {
        let s = Selector::parse("metadata.name=a,metadata.namespace!=b").unwrap();
        assert_eq!(s.exact_match("metadata.name"), Some("a"));
        assert_eq!(s.exact_match("metadata.namespace"), None);
        assert_eq!(
            Selector::parse("metadata.name==c")
                .unwrap()
                .exact_match("metadata.name"),
            Some("c")
        );
    }

    #[test]
    fn bad_selector() {
        assert!(Selector::parse("a in b").is_err());
        assert!(Selector::parse("=x").is_err());
    }
}
