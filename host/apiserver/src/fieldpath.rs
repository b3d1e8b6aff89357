//! Field paths and field sets as structured-merge-diff (`sigs.k8s.io/structured-merge-diff`'s
//! `fieldpath` package) defines them: a path is a list of elements — a field name, the key of an
//! element of a `map` list, the value of an element of a `set` list, or an index — and a set is
//! serialized in `managedFields` as `FieldsV1` (`f:name`, `k:{"name":"web"}`, `v:"a"`, `i:0`, with
//! `.` marking a node that is itself a member when it also has members below it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

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

/// A set of paths, shaped as structured-merge-diff's `fieldpath.Set`: the elements that end a
/// path here (`members`) and, per element, the set of paths continuing below it (`children`),
/// so a shared prefix is held and compared once. A path in the set is owned; a parent of an
/// owned path is not owned unless it is a member itself. No child set is ever empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

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

impl FieldSet {
    /// The empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set holds no path.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `element` as a member.
    pub fn insert_member(&mut self, element: PathElement) {
        self.members.insert(element);
    }

    /// Adds `element` as a member, and `below` as the paths continuing under it.
    pub fn insert_element(&mut self, element: PathElement, below: Self) {
        if below.is_empty() {
            self.members.insert(element);
        } else {
            self.members.insert(element.clone());
            self.insert_child(element, below);
        }
    }

    /// Adds `below` as paths continuing under `element` (not itself a member).
    pub fn insert_child(&mut self, element: PathElement, below: Self) {
        if below.is_empty() {
            return;
        }
        match self.children.get_mut(&element) {
            Some(child) => {
                child.union(below);
            }
            None => {
                self.children.insert(element, below);
            }
        }
    }

    /// Whether `path` is in the set.
    #[must_use]
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// The set of paths strictly below `prefix`, relative to it (`None` when there is none).
    #[must_use]
    pub fn below(&self, prefix: &[PathElement]) -> Option<&Self> {
        match prefix.split_first() {
            None => (!self.is_empty()).then_some(self),
            Some((first, rest)) => self.children.get(first)?.below(rest),
        }
    }

    /// Adds every path of `other`; whether the set grew.
    pub fn union(&mut self, other: Self) -> bool {
        let mut grew = false;
        for member in other.members {
            grew |= self.members.insert(member);
        }
        for (element, below) in other.children {
            match self.children.get_mut(&element) {
                Some(child) => grew |= child.union(below),
                None => {
                    self.children.insert(element, below);
                    grew = true;
                }
            }
        }
        grew
    }

    /// Removes every path of `other`; whether the set shrank.
    pub fn remove_all(&mut self, other: &Self) -> bool {
        let mut shrank = false;
        if self.members.len() <= other.members.len() {
            let before = self.members.len();
            self.members.retain(|m| !other.members.contains(m));
            shrank |= self.members.len() != before;
        } else {
            for member in &other.members {
                shrank |= self.members.remove(member);
            }
        }
        for (element, below) in &other.children {
            if let Some(child) = self.children.get_mut(element) {
                shrank |= child.remove_all(below);
                if child.is_empty() {
                    self.children.remove(element);
                }
            }
        }
        shrank
    }

    /// The paths of the set that are not in `other` (copying only what is kept).
    #[must_use]
    pub fn difference(&self, other: &Self) -> Self {
        let members = self
            .members
            .iter()
            .filter(|m| !other.members.contains(*m))
            .cloned()
            .collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, below)| {
                let kept = match other.children.get(element) {
                    Some(theirs) => below.difference(theirs),
                    None => below.clone(),
                };
                (!kept.is_empty()).then(|| (element.clone(), kept))
            })
            .collect();
        Self { members, children }
    }

    /// The paths in both sets.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        let (small, large) = if self.members.len() <= other.members.len() {
            (&self.members, &other.members)
        } else {
            (&other.members, &self.members)
        };
        let members = small
            .iter()
            .filter(|m| large.contains(*m))
            .cloned()
            .collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, below)| {
                let shared = below.intersection(other.children.get(element)?);
                (!shared.is_empty()).then(|| (element.clone(), shared))
            })
            .collect();
        Self { members, children }
    }

    /// Keeps, at the top level, the elements `keep` accepts (as members and with what is below
    /// them).
    pub fn retain_elements(&mut self, mut keep: impl FnMut(&PathElement) -> bool) {
        self.members.retain(&mut keep);
        self.children.retain(|element, _| keep(element));
    }

    /// Edits the set below `element` in place (dropping it if left empty).
    pub fn edit_below(&mut self, element: &PathElement, edit: impl FnOnce(&mut Self)) {
        if let Some(child) = self.children.get_mut(element) {
            edit(child);
            if child.is_empty() {
                self.children.remove(element);
            }
        }
    }

    /// Removes `element` as a member (what is below it stays).
    pub fn remove_member(&mut self, element: &PathElement) {
        self.members.remove(element);
    }

    /// Every path, in order (a path before the paths below it).
    #[must_use]
    pub fn paths(&self) -> Vec<FieldPath> {
        fn walk(set: &FieldSet, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
            fn member(prefix: &mut FieldPath, out: &mut Vec<FieldPath>, m: &PathElement) {
                prefix.push(m.clone());
                out.push(prefix.clone());
                prefix.pop();
            }
            let mut members = set.members.iter().peekable();
            for (element, below) in &set.children {
                while let Some(m) = members.next_if(|m| *m <= element) {
                    member(prefix, out, m);
                }
                prefix.push(element.clone());
                walk(below, prefix, out);
                prefix.pop();
            }
            for m in members {
                member(prefix, out, m);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// The `FieldsV1` tree of the set.
    #[must_use]
    pub fn to_fields_v1(&self) -> Value {
        fn tree(set: &FieldSet) -> Map<String, Value> {
            let mut map = Map::new();
            let mut members = set.members.iter().peekable();
            for (element, below) in &set.children {
                while let Some(m) = members.next_if(|m| *m < element) {
                    map.insert(m.serialize(), Value::Object(Map::new()));
                }
                let mut node = Map::new();
                if members.next_if(|m| *m == element).is_some() {
                    node.insert(".".into(), Value::Object(Map::new()));
                }
                node.extend(tree(below));
                map.insert(element.serialize(), Value::Object(node));
            }
            for m in members {
                map.insert(m.serialize(), Value::Object(Map::new()));
            }
            map
        }
        Value::Object(tree(self))
    }

    /// The set a `FieldsV1` tree describes.
    ///
    /// # Errors
    /// [`FieldPathError`] for a key that is not a path element.
    pub fn from_fields_v1(tree: &Value) -> Result<Self, FieldPathError> {
        fn read(map: &Map<String, Value>) -> Result<FieldSet, FieldPathError> {
            let mut set = FieldSet::new();
            for (key, child) in map {
                if key == "." {
                    continue;
                }
                let element = PathElement::deserialize(key)?;
                match child.as_object() {
                    Some(below) if !below.is_empty() => {
                        let below_set = read(below)?;
                        if below.contains_key(".") || below_set.is_empty() {
                            set.members.insert(element.clone());
                        }
                        set.insert_child(element, below_set);
                    }
                    _ => {
                        set.members.insert(element);
                    }
                }
            }
            Ok(set)
        }
        match tree.as_object() {
            Some(map) => read(map),
            None => Ok(Self::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        let set = FieldSet::from_fields_v1(&tree).unwrap();
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
        assert!(set.below(&container).is_some());
        assert!(set.contains(&[
            PathElement::field("metadata"),
            PathElement::field("finalizers"),
            PathElement::Value("\"a/b\"".into()),
        ]));
        assert_eq!(set.to_fields_v1(), tree);
    }

    /// Paths over a few elements of every kind, so sets share prefixes and members.
    fn path() -> impl Strategy<Value = FieldPath> {
        let element = prop_oneof![
            prop::sample::select(vec!["a", "b", "spec"]).prop_map(PathElement::field),
            prop::sample::select(vec!["\"web\"", "\"db\""])
                .prop_map(|v| PathElement::Key(vec![("name".into(), v.into())])),
            prop::sample::select(vec!["\"x\"", "1"]).prop_map(|v| PathElement::Value(v.into())),
            (0usize..2).prop_map(PathElement::Index),
        ];
        prop::collection::vec(element, 1..5)
    }

    impl FieldSet {
        /// Adds `path` (the empty path, the object itself, is never a member).
        pub fn insert(&mut self, path: &[PathElement]) {
            match path {
                [] => {}
                [last] => {
                    if !self.members.contains(last) {
                        self.members.insert(last.clone());
                    }
                }
                [first, rest @ ..] => match self.children.get_mut(first) {
                    Some(child) => child.insert(rest),
                    None => {
                        let mut child = Self::new();
                        child.insert(rest);
                        self.children.insert(first.clone(), child);
                    }
                },
            }
        }
    }

    fn trie(paths: &BTreeSet<FieldPath>) -> FieldSet {
        let mut set = FieldSet::new();
        for p in paths {
            set.insert(p);
        }
        set
    }

    proptest! {
        /// The tree-shaped set behaves as the plain set of whole paths it replaced.
        #[test]
        fn the_tree_is_the_set_of_its_paths(
            a in prop::collection::btree_set(path(), 0..12),
            b in prop::collection::btree_set(path(), 0..12),
            probe in path(),
        ) {
            let (ta, tb) = (trie(&a), trie(&b));
            prop_assert_eq!(ta.paths(), a.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(ta.is_empty(), a.is_empty());
            prop_assert_eq!(ta.contains(&probe), a.contains(&probe));
            prop_assert_eq!(
                ta.below(&probe).is_some(),
                a.iter().any(|p| p.len() > probe.len() && p.starts_with(&probe))
            );
            prop_assert_eq!(ta.difference(&tb).paths(), a.difference(&b).cloned().collect::<Vec<_>>());
            prop_assert_eq!(
                ta.intersection(&tb).paths(),
                a.intersection(&b).cloned().collect::<Vec<_>>()
            );
            let mut union = ta.clone();
            prop_assert_eq!(union.union(tb.clone()), !b.is_subset(&a));
            prop_assert_eq!(union.paths(), a.union(&b).cloned().collect::<Vec<_>>());
            let mut removed = ta.clone();
            prop_assert_eq!(removed.remove_all(&tb), !a.is_disjoint(&b));
            prop_assert_eq!(&removed, &ta.difference(&tb));
            prop_assert_eq!(ta == tb, a == b);
            let read = FieldSet::from_fields_v1(&ta.to_fields_v1()).unwrap();
            prop_assert_eq!(read, ta);
        }
    }

    #[test]
    fn a_bad_element_is_an_error() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:{": {}})).is_err());
    }
}
