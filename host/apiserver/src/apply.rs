//! Server-side apply and `managedFields` tracking, as structured-merge-diff does them
//! (`sigs.k8s.io/structured-merge-diff` `merge.Updater`): an apply merges its configuration into
//! the live object — maps by key, lists of type `map` by their key fields and of type `set` by
//! value, atomic lists and maps whole (see [`crate::fieldtype`]) — and owns exactly the fields it
//! sets ([`FieldSet`], serialized as `FieldsV1`); it removes the fields it applied last time and no
//! longer applies unless another manager owns them; changing a field another manager owns is a
//! conflict, per field and per list element, unless forced. A non-apply write takes ownership of
//! what it adds or changes.
//!
//! Simplifications: maps are all treated as structs (a non-empty map inside a map of maps is not
//! marked as a member itself); duplicate list elements are merged as their first occurrence; a
//! `map` list with an element that has none of its keys is handled as atomic.

use std::collections::{HashMap, HashSet};

use itertools::{EitherOrBoth, Itertools};
use serde_json::{Map, Value, json};

use crate::error::FieldConflict;
use crate::fieldpath::{self, FieldSet, PathElement};
use crate::fieldtype::{ListType, Node};

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldScope {
    /// Everything.
    All,
    /// Everything but `.status` (main resource of a kind with a status subresource).
    NoStatus,
    /// Only `.status` (the status subresource).
    StatusOnly,
}

impl FieldScope {
    /// Keeps the paths of `set` this scope lets a write own.
    fn restrict_set(self, set: &mut FieldSet) {
        let status = |pe: &PathElement| matches!(pe, PathElement::Field(f) if f == "status");
        match self {
            Self::All => {}
            Self::NoStatus => set.retain_elements(|pe| !status(pe)),
            Self::StatusOnly => set.retain_elements(status),
        }
    }

    /// The part of an apply configuration this scope lets through (kube-apiserver resets the
    /// rest, as the resource's strategy does).
    fn restrict(self, mut config: Value) -> Value {
        if let Value::Object(map) = &mut config {
            match self {
                Self::All => {}
                Self::NoStatus => {
                    map.remove("status");
                }
                Self::StatusOnly => {
                    map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "status"));
                }
            }
        }
        config
    }
}

/// Server-side apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields set to different values.
    #[error("apply conflicts with other field managers")]
    Conflict(Vec<FieldConflict>),
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct ManagedEntry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// API version the manager used.
    pub api_version: String,
    /// Last change time.
    pub time: String,
    /// `status` or empty.
    pub subresource: String,
    /// Owned fields.
    fields: FieldSet,
    /// `fields` as the `fieldsV1` tree it was read from, while they are unchanged: most writes
    /// leave most entries alone, and encoding a set is a large part of a write's cost.
    encoded: Option<Value>,
}

impl ManagedEntry {
    /// The fields this manager owns.
    #[must_use]
    pub fn fields(&self) -> &FieldSet {
        &self.fields
    }

    /// Gives up the owned fields in `set`.
    fn remove_all(&mut self, set: &FieldSet) {
        if self.fields.remove_all(set) {
            self.encoded = None;
        }
    }

    /// Adds owned fields.
    fn union(&mut self, set: FieldSet) {
        if self.fields.union(set) {
            self.encoded = None;
        }
    }

    /// Replaces the owned fields.
    fn replace(&mut self, fields: FieldSet) {
        if self.fields != fields {
            self.fields = fields;
            self.encoded = None;
        }
    }
}

/// Who writes, how and when.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// Manager name.
    pub manager: &'a str,
    /// API version used.
    pub api_version: &'a str,
    /// `status` or empty.
    pub subresource: &'a str,
    /// RFC 3339 time.
    pub now: &'a str,
    /// Fields the write may touch.
    pub scope: FieldScope,
    /// The object's type: how its lists and maps merge.
    pub types: Node<'a>,
}

impl Writer<'_> {
    fn owns(&self, e: &ManagedEntry, operation: &str) -> bool {
        e.manager == self.manager && e.operation == operation && e.subresource == self.subresource
    }
}

/// The metadata fields no manager owns (kube-apiserver's `stripMeta`).
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Keeps the paths of `set` a manager can own within `scope`: not `apiVersion`, `kind` or
/// `metadata` themselves, nor the [`IGNORED_METADATA`].
fn keep_tracked(set: &mut FieldSet, scope: FieldScope) {
    for field in ["apiVersion", "kind", "metadata"] {
        set.remove_member(&PathElement::field(field));
    }
    set.edit_below(&PathElement::field("metadata"), |meta| {
        meta.retain_elements(
            |pe| !matches!(pe, PathElement::Field(f) if IGNORED_METADATA.contains(&f.as_str())),
        );
    });
    scope.restrict_set(set);
}

/// The path element of `item`, an element of the list at `node` of type `list`; `None` when it
/// has none (an object in a set, a map element with none of the keys).
fn element_path(node: Node<'_>, list: ListType<'_>, item: &Value) -> Option<PathElement> {
    match list {
        ListType::Atomic => None,
        ListType::Set => match item {
            Value::Object(_) | Value::Array(_) | Value::Null => None,
            scalar => Some(PathElement::Value(scalar.to_string())),
        },
        ListType::Map(keys) => {
            let element = item.as_object()?;
            let mut fields: Vec<(String, String)> = keys
                .names()
                .filter_map(|k| {
                    let value = match element.get(k) {
                        Some(v) => v.to_string(),
                        None => node.key_default(k)?.to_string(),
                    };
                    Some((k.to_string(), value))
                })
                .collect();
            if fields.is_empty() {
                return None;
            }
            fields.sort();
            Some(PathElement::Key(fields))
        }
    }
}

/// The path elements of the list `items` at `node`, or `None` when it is handled whole.
fn element_paths(node: Node<'_>, items: &[Value]) -> Option<Vec<PathElement>> {
    let list = node.list_type();
    if matches!(list, ListType::Atomic) {
        return None;
    }
    items.iter().map(|i| element_path(node, list, i)).collect()
}

/// The fields `value` sets below itself (structured-merge-diff's `ToFieldSet`): scalars, atomic
/// lists and maps, empty maps and nulls; each element of a `set` or `map` list, and what it sets.
fn to_field_set(value: &Value, node: Node<'_>) -> FieldSet {
    match value {
        Value::Object(map) if !node.map_atomic() => {
            let mut set = FieldSet::new();
            for (k, v) in map {
                add_fields(&mut set, PathElement::Field(k.clone()), v, node.field(k));
            }
            set
        }
        Value::Array(items) => element_paths(node, items)
            .map(|elements| list_fields(node, &elements, items))
            .unwrap_or_default(),
        _ => FieldSet::new(),
    }
}

/// The fields of the list `items` (its elements `elements`) at `node`: each element, and what
/// it sets; an element that appears twice is owned whole.
fn list_fields(node: Node<'_>, elements: &[PathElement], items: &[Value]) -> FieldSet {
    let mut set = FieldSet::new();
    let mut seen = HashSet::new();
    let duplicates: HashSet<&PathElement> =
        elements.iter().filter(|pe| !seen.insert(*pe)).collect();
    for (pe, item) in elements.iter().zip(items) {
        let below = if duplicates.contains(pe) {
            FieldSet::new()
        } else {
            to_field_set(item, node.element())
        };
        set.insert_element(pe.clone(), below);
    }
    set
}

/// Adds to `set` the fields `value`, at its `element`, sets: the element itself when it is a
/// leaf (a scalar, `null`, an empty or atomic map, a list handled whole), else what is below it.
fn add_fields(set: &mut FieldSet, element: PathElement, value: &Value, node: Node<'_>) {
    match value {
        Value::Object(map) if !map.is_empty() && !node.map_atomic() => {
            set.insert_child(element, to_field_set(value, node));
        }
        Value::Array(items) => match element_paths(node, items) {
            Some(elements) => set.insert_child(element, list_fields(node, &elements, items)),
            None => set.insert_element(element, FieldSet::new()),
        },
        _ => set.insert_element(element, FieldSet::new()),
    }
}

/// `config` merged into `live` (structured-merge-diff's `Merge`): maps by key, `set` and `map`
/// lists by element, everything else replaced; a `null` in `config` removes the field. What
/// `config` replaces in `live` is never copied.
fn merge(live: Option<&Value>, config: Value, node: Node<'_>) -> Value {
    match config {
        Value::Object(c) if !node.map_atomic() => {
            let live = match live {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            };
            Value::Object(merge_map(live, c, node, None))
        }
        Value::Array(c) => {
            let l = match live {
                Some(Value::Array(l)) => l.as_slice(),
                _ => &[],
            };
            match (element_paths(node, l), element_paths(node, &c)) {
                (Some(lp), Some(cp)) => Value::Array(merge_list(l, &lp, c, &cp, node.element())),
                _ => Value::Array(c),
            }
        }
        other => other,
    }
}

/// The map `config` merged into `live`, with `stand_in`'s value read for its key of `live`.
/// `config`'s keys and values move into the result; only what `live` keeps is copied.
fn merge_map(
    live: Option<&Map<String, Value>>,
    config: Map<String, Value>,
    node: Node<'_>,
    stand_in: Option<(&str, &Value)>,
) -> Map<String, Value> {
    let live_of = |k: &str, lv| match stand_in {
        Some((key, value)) if key == k => value,
        _ => lv,
    };
    live.into_iter()
        .flatten()
        .merge_join_by(config, |(a, _), (b, _)| a.as_str().cmp(b.as_str()))
        .filter_map(|pair| match pair {
            EitherOrBoth::Left((k, lv)) => Some((k.clone(), live_of(k, lv).clone())),
            EitherOrBoth::Right((_, Value::Null)) | EitherOrBoth::Both(_, (_, Value::Null)) => None,
            EitherOrBoth::Right((k, cv)) => {
                let merged = merge(None, cv, node.field(&k));
                Some((k, merged))
            }
            EitherOrBoth::Both((_, lv), (k, cv)) => {
                let merged = merge(Some(live_of(&k, lv)), cv, node.field(&k));
                Some((k, merged))
            }
        })
        .collect()
}

/// The keys of two maps in order, each with its value in either (a sorted merge, no lookups).
fn join<'a>(
    l: Option<&'a Map<String, Value>>,
    r: Option<&'a Map<String, Value>>,
) -> impl Iterator<Item = (&'a String, Option<&'a Value>, Option<&'a Value>)> {
    l.into_iter()
        .flatten()
        .merge_join_by(r.into_iter().flatten(), |(a, _), (b, _)| a.cmp(b))
        .map(|pair| match pair {
            EitherOrBoth::Both((k, l), (_, r)) => (k, Some(l), Some(r)),
            EitherOrBoth::Left((k, l)) => (k, Some(l), None),
            EitherOrBoth::Right((k, r)) => (k, None, Some(r)),
        })
}

/// `config` merged into `live` (or into an empty object on create-on-apply), the live
/// `metadata.managedFields`, read apart, left out.
fn merge_root(live: Option<&Value>, config: Value, node: Node<'_>) -> Value {
    let (l, c) = match (live, config) {
        (Some(Value::Object(l)), Value::Object(c)) => (l, c),
        (_, config) => return merge(Some(&json!({"metadata": {}})), config, node),
    };
    let meta = l.get("metadata").and_then(Value::as_object).map(|m| {
        Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "managedFields")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    });
    let stand_in = meta.as_ref().map(|m| ("metadata", m));
    Value::Object(merge_map(Some(l), c, node, stand_in))
}

/// The elements of `live` and `config` merged, in structured-merge-diff's order: shared
/// elements in `config`'s order, live-only elements where they were, new ones after the shared
/// element they follow in `config`.
fn merge_list<'a>(
    live: &'a [Value],
    live_paths: &[PathElement],
    config: Vec<Value>,
    config_paths: &[PathElement],
    element: Node<'a>,
) -> Vec<Value> {
    fn index(paths: &[PathElement]) -> (Vec<usize>, HashMap<&PathElement, usize>) {
        let mut order = Vec::with_capacity(paths.len());
        let mut seen = HashMap::with_capacity(paths.len());
        for (i, pe) in paths.iter().enumerate() {
            if !seen.contains_key(pe) {
                seen.insert(pe, i);
                order.push(i);
            }
        }
        (order, seen)
    }
    let (l_order, l_seen) = index(live_paths);
    let (r_order, r_seen) = index(config_paths);
    let mut live: Vec<Option<&Value>> = live.iter().map(Some).collect();
    // Each configured element moves into the result once, at its first key.
    let mut config: Vec<Option<Value>> = config.into_iter().map(Some).collect();
    let mut shared = r_order
        .iter()
        .map(|&i| &config_paths[i])
        .filter(|pe| l_seen.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_config: HashSet<&PathElement> = HashSet::new();
    let mut out = Vec::with_capacity(l_order.len().max(r_order.len()));
    let (mut li, mut ri) = (0, 0);
    let take_live = |live: &mut Vec<Option<&'a Value>>, pe: &PathElement| {
        l_seen.get(pe).and_then(|&i| live[i].take())
    };
    while li < l_order.len() || ri < r_order.len() {
        let before = (li, ri);
        if li < l_order.len() && ri < r_order.len() {
            let lpe = &live_paths[l_order[li]];
            let rpe = &config_paths[r_order[ri]];
            if lpe == rpe {
                merged_config.insert(rpe);
                let old = take_live(&mut live, lpe);
                if let Some(c) = config[r_order[ri]].take() {
                    out.push(merge(old, c, element));
                }
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r_seen.contains_key(lpe) && next_shared.is_some_and(|n| n != lpe) {
                li += 1;
                continue;
            }
        }
        if li < l_order.len() {
            let lpe = &live_paths[l_order[li]];
            if !r_seen.contains_key(lpe) {
                if let Some(v) = live[l_order[li]].take() {
                    out.push(v.clone());
                }
                li += 1;
                continue;
            } else if merged_config.contains(lpe) {
                li += 1;
            }
        }
        if ri < r_order.len() {
            let rpe = &config_paths[r_order[ri]];
            merged_config.insert(rpe);
            let old = take_live(&mut live, rpe);
            if let Some(c) = config[r_order[ri]].take() {
                out.push(merge(old, c, element));
            }
            ri += 1;
            if next_shared == Some(rpe) {
                next_shared = shared.next();
            }
        }
        if (li, ri) == before {
            li += 1;
        }
    }
    out
}

/// What changed from one object to another (structured-merge-diff's `Comparison`).
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

/// Where a compared value sits in its parent, borrowed until a change needs it owned.
#[derive(Clone, Copy)]
enum At<'a> {
    Field(&'a str),
    Element(&'a PathElement),
}

impl At<'_> {
    fn owned(self) -> PathElement {
        match self {
            Self::Field(name) => PathElement::field(name),
            Self::Element(element) => element.clone(),
        }
    }
}

impl Comparison {
    /// Adds `below`, what changed under `at`.
    fn nest(&mut self, at: At<'_>, below: Self) {
        for (mine, theirs) in [
            (&mut self.added, below.added),
            (&mut self.modified, below.modified),
            (&mut self.removed, below.removed),
        ] {
            if !theirs.is_empty() {
                mine.insert_child(at.owned(), theirs);
            }
        }
    }
}

/// Records in `cmp` how the value at `at` changed from `l` to `r`; a value that did not
/// change costs no allocation. `zl` and `zr` say whether the typed object on each side has the
/// value even where the JSON lacks it (it is in the zero value of the struct holding it, see
/// [`Node::in_zero_value`]): such a value is never added or removed, only changed.
fn compare_at<'a>(
    at: At<'_>,
    (l, zl): (Option<&'a Value>, bool),
    (r, zr): (Option<&'a Value>, bool),
    node: Node<'a>,
    cmp: &mut Comparison,
) {
    let mut below = Comparison::default();
    if !compare_below((l, zl), (r, zr), node, &mut below) {
        // Go's zero value of the field's type.
        let zero = |v: &Value| match v {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(text) => text.is_empty(),
            Value::Bool(b) => !b,
        };
        match (l, r) {
            // The typed side holds the zero value the JSON lacks.
            (None, Some(b)) if zl && !zero(b) => cmp.modified.insert_member(at.owned()),
            (Some(a), None) if zr && !zero(a) => cmp.modified.insert_member(at.owned()),
            (None, Some(_)) if zl => {}
            (Some(_), None) if zr => {}
            (None, Some(_)) => cmp.added.insert_member(at.owned()),
            (Some(_), None) => cmp.removed.insert_member(at.owned()),
            (Some(a), Some(b)) if a != b => cmp.modified.insert_member(at.owned()),
            _ => {}
        }
        return;
    }
    cmp.nest(at, below);
    match (l, r) {
        (None, _) if !zl => cmp.added.insert_member(at.owned()),
        (_, None) if !zr => cmp.removed.insert_member(at.owned()),
        _ => {}
    }
}

/// Records in `cmp` what changed below a value from `l` to `r`, when both are maps or lists
/// merged by element; `false` when the value is a leaf, compared whole. `zl` and `zr` as in
/// [`compare_at`].
fn compare_below<'a>(
    (l, zl): (Option<&'a Value>, bool),
    (r, zr): (Option<&'a Value>, bool),
    node: Node<'a>,
    cmp: &mut Comparison,
) -> bool {
    let map = |v: Option<&'a Value>| match v {
        None => Some(None),
        Some(Value::Object(m)) => Some(Some(m)),
        Some(_) => None,
    };
    let list = |v: Option<&'a Value>| match v {
        None => Some(&[][..]),
        Some(Value::Array(items)) => Some(items.as_slice()),
        Some(_) => None,
    };
    // Whether each side's typed object has this value, so a field in its zero value too.
    let (has_l, has_r) = (l.is_some() || zl, r.is_some() || zr);
    if let (Some(lm), Some(rm)) = (map(l), map(r)) {
        let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
        if empty || node.map_atomic() {
            return false;
        }
        for (k, l, r) in join(lm, rm) {
            let child = node.field(k);
            let zero = child.in_zero_value();
            compare_at(
                At::Field(k),
                (l, has_l && zero),
                (r, has_r && zero),
                child,
                cmp,
            );
        }
        true
    } else if let (Some(ll), Some(rl)) = (list(l), list(r)) {
        let paths = (element_paths(node, ll), element_paths(node, rl));
        let (Some(lp), Some(rp)) = paths else {
            return false;
        };
        if ll.is_empty() && rl.is_empty() {
            return false;
        }
        let mut l_items: HashMap<&PathElement, &Value> = HashMap::new();
        let mut r_items: HashMap<&PathElement, &Value> = HashMap::new();
        let mut all = Vec::new();
        for (pe, item) in lp.iter().zip(ll) {
            if !l_items.contains_key(pe) {
                l_items.insert(pe, item);
                all.push(pe);
            }
        }
        for (pe, item) in rp.iter().zip(rl) {
            if !r_items.contains_key(pe) {
                r_items.insert(pe, item);
                if !l_items.contains_key(pe) {
                    all.push(pe);
                }
            }
        }
        for pe in all {
            // No element is in a zero value.
            compare_at(
                At::Element(pe),
                (l_items.get(pe).copied(), false),
                (r_items.get(pe).copied(), false),
                node.element(),
                cmp,
            );
        }
        true
    } else {
        false
    }
}

/// `value` without the fields of `set`, a set of paths below it (structured-merge-diff's
/// `RemoveItems`); a map or list left empty by the removal is removed too (`None`).
fn remove_items(value: Value, set: &FieldSet, node: Node<'_>) -> Option<Value> {
    let kept = |pe: &PathElement, v: Value, node: Node<'_>| {
        let path = std::slice::from_ref(pe);
        if set.contains(path) {
            None
        } else if let Some(below) = set.below(path) {
            remove_items(v, below, node)
        } else {
            Some(v)
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() && !node.map_atomic() => {
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(v) = kept(&PathElement::Field(k.clone()), v, node.field(&k)) {
                    out.insert(k, v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) if !items.is_empty() => {
            let Some(elements) = element_paths(node, &items) else {
                return Some(Value::Array(items));
            };
            let out: Vec<Value> = elements
                .iter()
                .zip(items)
                .filter_map(|(pe, item)| kept(pe, item, node.element()))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other),
    }
}

/// Reads `metadata.managedFields` (an entry whose `fieldsV1` does not parse owns nothing).
#[must_use]
pub fn read_managed(object: &Value) -> Vec<ManagedEntry> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let Some(entries) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let fields = FieldSet::from_fields_v1(&e["fieldsV1"]);
            ManagedEntry {
                manager: text(&e["manager"]),
                operation: text(&e["operation"]),
                api_version: text(&e["apiVersion"]),
                time: text(&e["time"]),
                subresource: text(&e["subresource"]),
                // Only the tree is copied, and only when it parsed.
                encoded: fields.is_ok().then(|| e.get("fieldsV1").cloned()).flatten(),
                fields: fields.unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes `metadata.managedFields` (entries with no fields are dropped).
pub fn write_managed(object: &mut Value, entries: Vec<ManagedEntry>) {
    // A list of its own, exactly as long as it needs: collected from `entries.into_iter()`, the
    // list would reuse the entries' larger allocation in place and keep it for the life of the
    // stored object (≈ 800 bytes for one entry).
    let mut list = Vec::with_capacity(entries.iter().filter(|e| !e.fields.is_empty()).count());
    for e in entries.into_iter().filter(|e| !e.fields.is_empty()) {
        let fields_v1 = e.encoded.unwrap_or_else(|| e.fields.to_fields_v1());
        // Built by moving the parts in (`json!` would copy the field tree).
        let mut map = serde_json::Map::new();
        map.insert("manager".into(), Value::String(e.manager));
        map.insert("operation".into(), Value::String(e.operation));
        map.insert("apiVersion".into(), Value::String(e.api_version));
        map.insert("time".into(), Value::String(e.time));
        map.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        map.insert("fieldsV1".into(), fields_v1);
        if !e.subresource.is_empty() {
            map.insert("subresource".into(), Value::String(e.subresource));
        }
        list.push(Value::Object(map));
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn entry<'e>(
    entries: &'e mut Vec<ManagedEntry>,
    writer: &Writer<'_>,
    operation: &str,
) -> &'e mut ManagedEntry {
    let index = match entries.iter().position(|e| writer.owns(e, operation)) {
        Some(i) => i,
        None => {
            entries.push(ManagedEntry {
                manager: writer.manager.to_string(),
                operation: operation.to_string(),
                api_version: writer.api_version.to_string(),
                time: writer.now.to_string(),
                subresource: writer.subresource.to_string(),
                fields: FieldSet::new(),
                encoded: None,
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[index];
    e.api_version = writer.api_version.to_string();
    e.time = writer.now.to_string();
    e
}

/// What changed from `old` (absent on create) to `new`, within `scope`.
fn changes(old: Option<&Value>, new: &Value, writer: &Writer<'_>) -> Comparison {
    let mut cmp = Comparison::default();
    // Both sides are typed objects: a create is compared with the kind's zero value.
    compare_below((old, true), (Some(new), true), writer.types, &mut cmp);
    keep_tracked(&mut cmp.added, writer.scope);
    keep_tracked(&mut cmp.modified, writer.scope);
    keep_tracked(&mut cmp.removed, writer.scope);
    cmp
}

/// Applies the configuration `applied` for `writer` over `live` (or over an empty object on
/// create-on-apply) and returns the merged object with its `managedFields` updated. Server-owned
/// metadata is left for the caller to fix.
///
/// # Errors
/// [`ApplyError::Conflict`] when the apply changes fields other managers own and `force` is off.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: Value,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, ApplyError> {
    let config = writer.scope.restrict(applied);
    let mut entries = live.map(read_managed).unwrap_or_default();
    let mut set = to_field_set(&config, writer.types);
    let mut merged = merge_root(live, config, writer.types);
    keep_tracked(&mut set, writer.scope);
    // What this manager applied last time and no longer applies goes, unless another owns it.
    if let Some(last) = entries.iter().find(|e| writer.owns(e, "Apply")) {
        let mut doomed = last.fields.difference(&set);
        for other in entries.iter().filter(|e| !writer.owns(e, "Apply")) {
            doomed.remove_all(&other.fields);
        }
        if !doomed.is_empty() {
            merged = remove_items(merged, &doomed, writer.types).unwrap_or_else(|| json!({}));
        }
    }
    let cmp = changes(live, &merged, writer);
    let mut clashes = cmp.modified.clone();
    clashes.union(cmp.added.clone());
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| !writer.owns(e, "Apply")) {
        if force {
            e.remove_all(&clashes);
        } else {
            conflicts.extend(e.fields.intersection(&clashes).paths().iter().map(|p| {
                FieldConflict {
                    manager: e.manager.clone(),
                    field: fieldpath::display(p),
                    update_api_version: (e.operation == "Update").then(|| e.api_version.clone()),
                    subresource: e.subresource.clone(),
                }
            }));
        }
        e.remove_all(&cmp.removed);
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflict(conflicts));
    }
    entry(&mut entries, writer, "Apply").replace(set);
    write_managed(&mut merged, entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `writer` in `new`'s `managedFields`
/// (structured-merge-diff's `Update`): the writer takes the fields it added or changed from
/// other managers; removed fields leave every set.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer<'_>) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let cmp = changes(old, new, writer);
    for e in &mut entries {
        e.remove_all(&cmp.removed);
        if !writer.owns(e, "Update") {
            e.remove_all(&cmp.modified);
            e.remove_all(&cmp.added);
        }
    }
    if !cmp.modified.is_empty() || !cmp.added.is_empty() {
        let mine = entry(&mut entries, writer, "Update");
        mine.union(cmp.modified);
        mine.union(cmp.added);
    }
    write_managed(new, entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        writer_for(manager, "ConfigMap")
    }

    fn writer_for<'a>(manager: &'a str, kind: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            now: "2025-01-01T00:00:00Z",
            scope: FieldScope::NoStatus,
            types: Node::builtin(kind),
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": containers}}}})
    }

    fn managers(object: &Value) -> Vec<(String, Value)> {
        object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap().to_string(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn maps_iterate_in_key_order() {
        // `join` merges two maps' keys in one pass: it needs serde_json's map sorted (no
        // `preserve_order` feature anywhere in the build).
        let mut map = Map::new();
        map.insert("b".into(), json!(1));
        map.insert("a".into(), json!(2));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_stored_managed_fields_list_takes_no_more_room_than_its_entries() {
        // Every stored object keeps this list for its life: one entry must not hold room for more.
        let mut object = cm(json!({"x": "1"}));
        record_update(None, &mut object, &writer("a"));
        let list = object["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!((list.len(), list.capacity()), (1, 1));
        let mut changed = cm(json!({"x": "2"}));
        record_update(Some(&object), &mut changed, &writer("b"));
        let list = changed["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(
            (list.len(), list.capacity()),
            (2, 2),
            "a keeps `data`, b takes x"
        );
    }

    #[test]
    fn two_managers_conflict_then_force() {
        let a = server_side_apply(None, cm(json!({"x": "1"})), &writer("a"), false).unwrap();
        let err =
            server_side_apply(Some(&a), cm(json!({"x": "2"})), &writer("b"), false).unwrap_err();
        let ApplyError::Conflict(conflicts) = err;
        assert_eq!(conflicts[0].field, ".data.x");
        // Same value: shared ownership, no conflict.
        let shared = server_side_apply(
            Some(&a),
            cm(json!({"x": "1", "y": "b"})),
            &writer("b"),
            false,
        )
        .unwrap();
        assert_eq!(shared["data"], json!({"x": "1", "y": "b"}));
        let forced =
            server_side_apply(Some(&a), cm(json!({"x": "2"})), &writer("b"), true).unwrap();
        assert_eq!(forced["data"]["x"], "2");
        let names: Vec<_> = managers(&forced).into_iter().map(|(m, _)| m).collect();
        assert_eq!(names, vec!["b"]);
    }

    #[test]
    fn dropped_fields_are_removed_unless_shared() {
        let a =
            server_side_apply(None, cm(json!({"x": "1", "y": "2"})), &writer("a"), false).unwrap();
        let a2 = server_side_apply(Some(&a), cm(json!({"x": "1"})), &writer("a"), false).unwrap();
        assert_eq!(a2["data"], json!({"x": "1"}));
        let b = server_side_apply(Some(&a2), cm(json!({"x": "1"})), &writer("b"), false).unwrap();
        let a3 = server_side_apply(Some(&b), cm(json!({"z": "3"})), &writer("a"), false).unwrap();
        assert_eq!(a3["data"], json!({"x": "1", "z": "3"}));
    }

    #[test]
    fn managed_fields_are_reencoded_exactly_when_they_change() {
        let a =
            server_side_apply(None, cm(json!({"x": "1", "y": "2"})), &writer("a"), false).unwrap();
        let b = server_side_apply(Some(&a), cm(json!({"z": "3"})), &writer("b"), false).unwrap();
        // b's apply left a's fields alone: its tree is carried over as read.
        assert_eq!(managers(&b)[0], managers(&a)[0]);
        // A forced apply takes y from a: a's tree is encoded again, without y.
        let c = server_side_apply(Some(&b), cm(json!({"y": "9"})), &writer("c"), true).unwrap();
        let entries = read_managed(&c);
        assert_eq!(entries[0].manager, "a");
        assert_eq!(managers(&c)[0].1, json!({"f:data": {"f:x": {}}}));
        for e in &entries {
            let written = e.encoded.as_ref().expect("read back");
            assert_eq!(*written, e.fields().to_fields_v1());
        }
    }

    /// A create is compared with the kind's zero value, as kube-apiserver's field manager compares
    /// it with `New()`: the structs held by value and the lists Go always serializes are never
    /// members (`.`), what is optional is; as the managedFields of a DaemonSet created on a
    /// cluster show (`f:spec`, `f:template`, `f:containers`, `f:updateStrategy` bare,
    /// `f:labels`, the container element and `f:rollingUpdate` with `.`).
    #[test]
    fn a_create_is_compared_with_the_zero_value_of_its_kind() {
        let mut set = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "labels": {"app": "agent"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "busybox", "resources": {}}]}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}});
        record_update(None, &mut set, &writer_for("kubectl-create", "DaemonSet"));
        assert_eq!(
            managers(&set)[0].1,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {
                            ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}
                        }}}
                    },
                    "f:updateStrategy": {
                        "f:rollingUpdate": {".": {}, "f:maxUnavailable": {}},
                        "f:type": {}
                    }
                }
            })
        );
        // The status a controller writes next: `status` is a struct held by value, in the stored
        // object's typed form whether or not its JSON has one; its optional list is a member; a
        // count Go serializes when zero and left at zero is not the writer's.
        let mut written = set.clone();
        written["status"] =
            json!({"numberReady": 1, "numberMisscheduled": 0, "conditions": [{"type": "A"}]});
        let status_writer = Writer {
            manager: "kube-controller-manager",
            subresource: "status",
            scope: FieldScope::StatusOnly,
            ..writer_for("kube-controller-manager", "DaemonSet")
        };
        record_update(Some(&set), &mut written, &status_writer);
        assert_eq!(
            managers(&written)[1].1,
            json!({"f:status": {
                "f:conditions": {".": {}, "k:{\"type\":\"A\"}": {".": {}, "f:type": {}}},
                "f:numberReady": {}
            }})
        );
        // A custom resource is unstructured: its zero value is empty, every map a member.
        let mut custom = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"size": 1}});
        let schema = json!({"type": "object"});
        let custom_writer = Writer {
            types: Node::custom("Widget", &schema),
            ..writer_for("kubectl-create", "Widget")
        };
        record_update(None, &mut custom, &custom_writer);
        assert_eq!(
            managers(&custom)[0].1,
            json!({"f:spec": {".": {}, "f:size": {}}})
        );
    }

    #[test]
    fn update_takes_ownership() {
        let a = server_side_apply(None, cm(json!({"x": "1"})), &writer("a"), false).unwrap();
        let mut updated = a.clone();
        updated["data"]["x"] = json!("9");
        record_update(Some(&a), &mut updated, &writer("kubectl-edit"));
        let entries = read_managed(&updated);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].operation, "Update");
        // Now "a" no longer owns x, so dropping it from its config keeps the field.
        let a2 =
            server_side_apply(Some(&updated), cm(json!({"w": "1"})), &writer("a"), false).unwrap();
        assert_eq!(a2["data"]["x"], "9");
    }

    #[test]
    fn containers_merge_by_name_and_are_owned_per_element() {
        let d = "Deployment";
        let a = server_side_apply(
            None,
            deployment(
                json!([{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}]),
            ),
            &writer_for("a", d),
            false,
        )
        .unwrap();
        // As the Kubernetes documentation shows an applied Deployment's managedFields: the
        // element keyed by name, a member itself (`.`) with the fields under it; a port keyed by
        // containerPort and the defaulted protocol.
        assert_eq!(
            managers(&a)[0].1,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
            }}}}}})
        );
        let b = server_side_apply(
            Some(&a),
            deployment(json!([{"name": "sidecar", "image": "envoy:1"}])),
            &writer_for("b", d),
            false,
        )
        .unwrap();
        let names: Vec<&str> = b["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "sidecar"]);
        // The same field of the same container, another value: a conflict on that field only.
        let err = server_side_apply(
            Some(&b),
            deployment(json!([{"name": "web", "image": "nginx:2"}])),
            &writer_for("b", d),
            false,
        )
        .unwrap_err();
        let ApplyError::Conflict(conflicts) = err;
        let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [".spec.template.spec.containers[name=\"web\"].image"]
        );
        assert_eq!(conflicts[0].manager, "a");
        // Forced: b takes the image, a keeps the rest of its container.
        let forced = server_side_apply(
            Some(&b),
            deployment(json!([{"name": "web", "image": "nginx:2"}, {"name": "sidecar", "image": "envoy:1"}])),
            &writer_for("b", d),
            true,
        )
        .unwrap();
        let web = &forced["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(web["image"], "nginx:2");
        assert_eq!(web["ports"][0]["containerPort"], 80);
        // a drops its container: it stays, as b owns it too (its name and image).
        let a_drops = server_side_apply(
            Some(&forced),
            deployment(json!([])),
            &writer_for("a", d),
            false,
        )
        .unwrap();
        let containers = a_drops["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        assert!(
            containers[0].get("ports").is_none(),
            "a's port goes: {containers:?}"
        );
        // b drops the sidecar, which only b owns: it goes.
        let b_drops = server_side_apply(
            Some(&a_drops),
            deployment(json!([{"name": "web", "image": "nginx:2"}])),
            &writer_for("b", d),
            false,
        )
        .unwrap();
        let containers = b_drops["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "web");
    }

    #[test]
    fn finalizers_are_a_set_and_labels_a_granular_map() {
        let with = |finalizers: Value, labels: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "finalizers": finalizers, "labels": labels}})
        };
        let a = server_side_apply(
            None,
            with(json!(["x/a"]), json!({"a": "1"})),
            &writer("a"),
            false,
        )
        .unwrap();
        let b = server_side_apply(
            Some(&a),
            with(json!(["x/b"]), json!({"b": "2"})),
            &writer("b"),
            false,
        )
        .unwrap();
        assert_eq!(b["metadata"]["finalizers"], json!(["x/a", "x/b"]));
        assert_eq!(b["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            managers(&b)[1].1,
            json!({"f:metadata": {"f:finalizers": {"v:\"x/b\"": {}}, "f:labels": {"f:b": {}}}})
        );
        let a2 =
            server_side_apply(Some(&b), with(json!([]), json!({})), &writer("a"), false).unwrap();
        assert_eq!(a2["metadata"]["finalizers"], json!(["x/b"]));
        assert_eq!(a2["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn atomic_lists_and_maps_are_owned_whole() {
        let d = "Deployment";
        let with = |args: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "args": args}]}}}})
        };
        let a = server_side_apply(None, with(json!(["-a"])), &writer_for("a", d), false).unwrap();
        let spec = &managers(&a)[0].1["f:spec"];
        assert_eq!(spec["f:selector"], json!({}));
        assert_eq!(
            spec["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:args"],
            json!({})
        );
        let err = server_side_apply(Some(&a), with(json!(["-b"])), &writer_for("b", d), false)
            .unwrap_err();
        let ApplyError::Conflict(conflicts) = err;
        let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [".spec.template.spec.containers[name=\"web\"].args"]
        );
    }

    #[test]
    fn an_update_owns_what_it_adds_and_changes_per_element() {
        let d = "Deployment";
        let a = server_side_apply(
            None,
            deployment(json!([{"name": "web", "image": "nginx:1"}])),
            &writer_for("a", d),
            false,
        )
        .unwrap();
        let mut edited = a.clone();
        edited["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "web", "image": "nginx:2"}, {"name": "debug", "image": "busybox"}]);
        record_update(Some(&a), &mut edited, &writer_for("kubectl-edit", d));
        let owned = managers(&edited);
        assert_eq!(
            owned[1].1,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"debug\"}": {".": {}, "f:image": {}, "f:name": {}},
                "k:{\"name\":\"web\"}": {"f:image": {}}
            }}}}})
        );
        // a lost the image, kept the element and its name.
        assert_eq!(
            owned[0].1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"],
            json!({".": {}, "f:name": {}})
        );
    }

    #[test]
    fn merged_list_order_follows_the_configuration() {
        let node = Node::builtin("Deployment")
            .field("spec")
            .field("template")
            .field("spec")
            .field("containers");
        let live = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
        let config = json!([{"name": "c"}, {"name": "new"}, {"name": "a"}]);
        let merged = merge(Some(&live), config, node);
        let names: Vec<&str> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        // structured-merge-diff: shared elements in the configuration's order, a new element
        // after the one it follows there, a live-only element where it was.
        assert_eq!(names, ["b", "c", "new", "a"]);
    }
}
