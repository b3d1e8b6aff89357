//! Field paths and field sets as structured-merge-diff (`sigs.k8s.io/structured-merge-diff`'s
//! `fieldpath` package) defines them: a path is a list of elements — a field name, the key of an
//! element of a `map` list, the value of an element of a `set` list, or an index — and a set is
//! serialized in `managedFields` as `FieldsV1` (`f:name`, `k:{"name":"web"}`, `v:"a"`, `i:0`, with
//! `.` marking a node that is itself a member when it also has members below it).

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;

use serde_json::{Map, Value};

/// One step of a [`FieldPath`]. Values are held as their JSON text (`"web"`, `80`), so elements
/// order and compare without parsing. The variants' order is structured-merge-diff's
/// `PathElement.Compare` order: fields, keys, values, indexes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map (`.name`, `f:name`).
    Field(String),
    /// An element of a `map` list, by its key fields sorted by name (`[name="web"]`).
    Key(Vec<(String, String)>),
    /// An element of a `set` list, by its value (`[="a"]`).
    Value(String),
    /// An element of a list by position (`[0]`).
    Index(usize),
}

/// A path from the object root.
pub type FieldPath = Vec<PathElement>;

/// A set of paths (structured-merge-diff's `fieldpath.Set`): a path in the set is owned; a
/// parent of an owned path is not owned unless in the set itself.
pub type FieldSet = BTreeSet<FieldPath>;

/// A field-path text cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FieldPathError {
    /// A `FieldsV1` key has no known `f:`, `k:`, `v:` or `i:` prefix.
    #[error("unknown path element {0:?}")]
    Unknown(String),
    /// A `k:` or `v:` element's JSON does not parse.
    #[error("malformed path element {text:?}")]
    Json {
        /// The element text.
        text: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// An `i:` element's index is not a number.
    #[error("malformed index in path element {0:?}")]
    Index(String),
}

impl PathElement {
    /// A field element.
    #[must_use]
    pub fn field(name: &str) -> Self {
        Self::Field(name.to_string())
    }

    /// The `FieldsV1` key of this element (`f:name`, `k:{"name":"web"}`, `v:"a"`, `i:0`).
    #[must_use]
    pub fn serialize(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(fields) => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{}:{value}", Value::String(name.clone())))
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            Self::Value(value) => format!("v:{value}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Reads a `FieldsV1` key.
    ///
    /// # Errors
    /// [`FieldPathError`] when the key is not a path element.
    pub fn deserialize(text: &str) -> Result<Self, FieldPathError> {
        let json = |body: &str| {
            serde_json::from_str::<Value>(body).map_err(|source| FieldPathError::Json {
                text: text.to_string(),
                source,
            })
        };
        if let Some(name) = text.strip_prefix("f:") {
            Ok(Self::Field(name.to_string()))
        } else if let Some(body) = text.strip_prefix("k:") {
            let Value::Object(map) = json(body)? else {
                return Err(FieldPathError::Unknown(text.to_string()));
            };
            let mut fields: Vec<(String, String)> =
                map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
            fields.sort();
            Ok(Self::Key(fields))
        } else if let Some(body) = text.strip_prefix("v:") {
            Ok(Self::Value(json(body)?.to_string()))
        } else if let Some(index) = text.strip_prefix("i:") {
            index
                .parse()
                .map(Self::Index)
                .map_err(|_| FieldPathError::Index(text.to_string()))
        } else {
            Err(FieldPathError::Unknown(text.to_string()))
        }
    }
}

impl fmt::Display for PathElement {
    /// As structured-merge-diff prints it in conflict messages: `.name`, `[name="web"]`,
    /// `[="a"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(fields) => {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", body.join(","))
            }
            Self::Value(value) => write!(f, "[={value}]"),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// The path as structured-merge-diff prints it: `.spec.containers[name="web"].image`.
#[must_use]
pub fn display(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Whether `set` holds `prefix` or a path below it.
#[must_use]
pub fn has_prefix(set: &FieldSet, prefix: &[PathElement]) -> bool {
    set.range::<[PathElement], _>((Bound::Included(prefix), Bound::Unbounded))
        .next()
        .is_some_and(|p| p.starts_with(prefix))
}

/// Whether `set` holds a path strictly below `prefix`.
#[must_use]
pub fn has_below(set: &FieldSet, prefix: &[PathElement]) -> bool {
    set.range::<[PathElement], _>((Bound::Excluded(prefix), Bound::Unbounded))
        .next()
        .is_some_and(|p| p.starts_with(prefix))
}

/// The `FieldsV1` tree of `set`.
#[must_use]
pub fn to_fields_v1(set: &FieldSet) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[PathElement]) {
        match path.split_first() {
            None => {
                node.insert(".".into(), Value::Object(Map::new()));
            }
            Some((first, rest)) => {
                let child = node
                    .entry(first.serialize())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(child) = child {
                    insert(child, rest);
                }
            }
        }
    }
    let mut root = Map::new();
    for path in set.iter().filter(|p| !p.is_empty()) {
        insert(&mut root, path);
    }
    fn tidy(map: &mut Map<String, Value>) {
        if map.len() == 1 && map.contains_key(".") {
            map.clear();
            return;
        }
        for (key, child) in map.iter_mut() {
            if key != "."
                && let Value::Object(child) = child
            {
                tidy(child);
            }
        }
    }
    tidy(&mut root);
    Value::Object(root)
}

/// The set a `FieldsV1` tree describes.
///
/// # Errors
/// [`FieldPathError`] for a key that is not a path element.
pub fn from_fields_v1(tree: &Value) -> Result<FieldSet, FieldPathError> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) -> Result<(), FieldPathError> {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    if k == "." {
                        out.insert(prefix.clone());
                    } else {
                        prefix.push(PathElement::deserialize(k)?);
                        walk(child, prefix, out)?;
                        prefix.pop();
                    }
                }
            }
            _ if !prefix.is_empty() => {
                out.insert(prefix.clone());
            }
            _ => {}
        }
        Ok(())
    }
    let mut out = FieldSet::new();
    walk(tree, &mut Vec::new(), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips_keys_values_and_members_with_children() {
        // As kube-apiserver writes it for `kubectl apply --server-side` of a Deployment.
        let tree = json!({
            "f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }
            }}}}
        });
        let set = from_fields_v1(&tree).unwrap();
        let container = vec![
            PathElement::field("spec"),
            PathElement::field("template"),
            PathElement::field("spec"),
            PathElement::field("containers"),
            PathElement::Key(vec![("name".into(), "\"web\"".into())]),
        ];
        assert!(set.contains(&container));
        assert_eq!(
            display(&container),
            ".spec.template.spec.containers[name=\"web\"]"
        );
        assert!(has_below(&set, &container));
        assert!(set.contains(&vec![
            PathElement::field("metadata"),
            PathElement::field("finalizers"),
            PathElement::Value("\"a/b\"".into()),
        ]));
        assert_eq!(to_fields_v1(&set), tree);
    }

    #[test]
    fn a_bad_element_is_an_error() {
        assert!(from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(from_fields_v1(&json!({"k:{": {}})).is_err());
    }
}
