//! The part of kube-apiserver's type check of a CRD rule that the `cel` crate (no checker) leaves
//! out and authors trip on most: selecting a field the schema does not declare. On a cluster the
//! rule's `self` (and `oldSelf`, and the elements a comprehension binds) is typed from the schema
//! (`SchemaDeclType` in `k8s.io/apiserver/pkg/cel/common/schemas.go`), so `self.replica` for a
//! declared `replicas` fails to compile, `undefined field 'replica'`, and the CRD is refused.
//!
//! The typing follows Kubernetes: an object's fields are its properties, by their escaped names
//! (`cel.Escape`: `__dash__` for `-`, `__namespace__` for a reserved word, ...), and nothing else,
//! `x-kubernetes-preserve-unknown-fields` or not; an object with `additionalProperties` is a map
//! (any key); the root of a resource (the CRD's top schema, an `x-kubernetes-embedded-resource`)
//! also has `apiVersion`, `kind` and a `metadata` holding only `name` and `generateName`;
//! `x-kubernetes-int-or-string` is dynamic. Where the schema does not tell (a value a call
//! returns, a map's key), nothing is checked: this check refuses only what a cluster refuses.

use super::escaping::property;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, SourceInfo};
use serde_json::{Value, json};
use std::sync::LazyLock;

/// The schema of a string: `apiVersion` and `kind` of a resource root.
static STRING: LazyLock<Value> = LazyLock::new(|| json!({"type": "string"}));
/// `metadata` of a resource root, as `WithTypeAndObjectMeta` declares it.
static ROOT_METADATA: LazyLock<Value> = LazyLock::new(|| {
    json!({"type": "object", "properties": {
        "name": {"type": "string"}, "generateName": {"type": "string"}}})
});

/// The errors cel-go's checker reports for the field selections of `ast` (parsed from
/// `info.source`), `self` being a value of `this`; `root`: `this` is the root of a resource. Each
/// is formatted as cel-go displays it: `ERROR: <input>:LINE:COLUMN: undefined field 'NAME'` (or
/// `type 'int' does not support field selection`), the source line and a caret under the
/// selection's dot.
#[must_use]
pub fn undefined_fields(
    ast: &IdedExpr,
    info: &SourceInfo,
    this: &Value,
    root: bool,
) -> Vec<String> {
    let check = Check {
        this: Node { schema: this, root },
        info,
    };
    let mut found = Vec::new();
    check.visit(ast, &mut Vec::new(), &mut found);
    found.sort_by_key(|(offset, _)| *offset);
    found
        .into_iter()
        .map(|(offset, message)| display(&info.source, offset, &message))
        .collect()
}

/// A value typed by a schema.
#[derive(Clone, Copy)]
struct Node<'s> {
    schema: &'s Value,
    /// The root of a resource: `apiVersion`, `kind` and `metadata` are declared.
    root: bool,
}

impl<'s> Node<'s> {
    fn of(schema: &'s Value) -> Self {
        Self {
            schema,
            root: embedded(schema),
        }
    }

    /// The field `field` of this value: `Ok(None)` when the schema does not tell (a list, a
    /// dynamic value, a string of a format CEL types otherwise), the error cel-go reports when
    /// this is an object that does not declare it or a scalar.
    fn field(self, field: &str) -> Result<Option<Node<'s>>, Unselectable> {
        let s = self.schema;
        if s["x-kubernetes-int-or-string"] == true {
            return Ok(None);
        }
        // `SchemaDeclType`'s scalars, by the name cel-go's `FormatCELType` gives them (a string
        // of format byte, duration, date or date-time is typed otherwise: not checked here).
        let scalar = match s["type"].as_str() {
            Some("integer") => Some("int"),
            Some("number") => Some("double"),
            Some("boolean") => Some("bool"),
            Some("string") if s.get("format").is_none() => Some("string"),
            _ => None,
        };
        if let Some(name) = scalar {
            return Err(Unselectable::Scalar(name));
        }
        if self.root {
            match field {
                "apiVersion" | "kind" => return Ok(Some(Node::of(&STRING))),
                "metadata" => return Ok(Some(Node::of(&ROOT_METADATA))),
                _ => {}
            }
        }
        if s["type"] != "object" {
            return Ok(None);
        }
        if s["additionalProperties"].is_object() {
            return Ok(Some(Node::of(&s["additionalProperties"])));
        }
        property(s, field)
            .map(|schema| Some(Node::of(schema)))
            .ok_or(Unselectable::Undefined)
    }
}

/// Whether `schema` is the root of an embedded resource (`x-kubernetes-embedded-resource`).
pub(super) fn embedded(schema: &Value) -> bool {
    schema["x-kubernetes-embedded-resource"] == true
}

/// Why a field cannot be selected, as cel-go's checker says it.
enum Unselectable {
    /// An object that does not declare the field.
    Undefined,
    /// A scalar, by its CEL type's name.
    Scalar(&'static str),
}

/// The variables comprehensions bind, with what types them when the schema does.
type Scope<'s> = Vec<(&'s str, Option<Node<'s>>)>;

struct Check<'s> {
    this: Node<'s>,
    info: &'s SourceInfo,
}

impl<'s> Check<'s> {
    /// What `expr` is typed as, when it is `self`, `oldSelf`, a bound variable or a field of one.
    fn typed(&self, expr: &'s IdedExpr, scope: &Scope<'s>) -> Option<Node<'s>> {
        match &expr.expr {
            Expr::Ident(name) if name == "self" || name == "oldSelf" => Some(self.this),
            Expr::Ident(name) => scope.iter().rev().find(|(v, _)| v == name)?.1,
            Expr::Select(select) if !select.test => self
                .typed(&select.operand, scope)?
                .field(&select.field)
                .ok()
                .flatten(),
            _ => None,
        }
    }

    fn visit(&self, expr: &'s IdedExpr, scope: &mut Scope<'s>, found: &mut Vec<(u32, String)>) {
        match &expr.expr {
            Expr::Select(select) => {
                if let Some(parent) = self.typed(&select.operand, scope)
                    && let Err(why) = parent.field(&select.field)
                {
                    let offset = self.info.offset_for(expr.id).map_or(0, |(start, _)| start);
                    found.push((
                        offset,
                        match why {
                            Unselectable::Undefined => {
                                format!("undefined field '{}'", select.field)
                            }
                            Unselectable::Scalar(name) => {
                                format!("type '{name}' does not support field selection")
                            }
                        },
                    ));
                }
                self.visit(&select.operand, scope, found);
            }
            Expr::Comprehension(c) => {
                self.visit(&c.iter_range, scope, found);
                self.visit(&c.accu_init, scope, found);
                let element = self
                    .typed(&c.iter_range, scope)
                    .filter(|n| n.schema["type"] == "array")
                    .map(|n| Node::of(&n.schema["items"]));
                let depth = scope.len();
                scope.push((c.iter_var.as_str(), element));
                if let Some(second) = &c.iter_var2 {
                    scope.push((second.as_str(), None));
                }
                scope.push((c.accu_var.as_str(), None));
                self.visit(&c.loop_cond, scope, found);
                self.visit(&c.loop_step, scope, found);
                self.visit(&c.result, scope, found);
                scope.truncate(depth);
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.visit(target, scope, found);
                }
                for arg in &call.args {
                    self.visit(arg, scope, found);
                }
            }
            Expr::List(list) => {
                for e in &list.elements {
                    self.visit(e, scope, found);
                }
            }
            Expr::Map(map) => self.entries(&map.entries, scope, found),
            Expr::Struct(s) => self.entries(&s.entries, scope, found),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn entries(
        &self,
        entries: &'s [cel::common::ast::IdedEntryExpr],
        scope: &mut Scope<'s>,
        found: &mut Vec<(u32, String)>,
    ) {
        for e in entries {
            match &e.expr {
                EntryExpr::MapEntry(m) => {
                    self.visit(&m.key, scope, found);
                    self.visit(&m.value, scope, found);
                }
                EntryExpr::StructField(f) => self.visit(&f.value, scope, found),
            }
        }
    }
}

/// cel-go's `Error.ToDisplayString`: the message at the character `offset` of `source`, its line
/// (tabs as spaces) and a caret under the character, `.` for each one before it (full-width for
/// characters of more than one byte).
fn display(source: &str, offset: u32, message: &str) -> String {
    let offset = offset as usize;
    let (mut line, mut column, mut start) = (1, 0, 0);
    for (i, (at, c)) in source.char_indices().enumerate() {
        if i == offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 0;
            start = at + 1;
        } else {
            column += 1;
        }
    }
    let snippet = source[start..]
        .lines()
        .next()
        .unwrap_or("")
        .replace('\t', " ");
    let mut caret = String::new();
    let mut chars = snippet.chars();
    for c in chars.by_ref().take(column) {
        caret.push(if c.len_utf8() > 1 { '\u{FF0E}' } else { '.' });
    }
    caret.push(match chars.next() {
        Some(c) if c.len_utf8() > 1 => '\u{FF3E}',
        _ => '^',
    });
    format!(
        "ERROR: <input>:{line}:{}: {message}\n | {snippet}\n | {caret}",
        column + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(rule: &str, this: &Value, root: bool) -> Vec<String> {
        let (ast, info) = super::super::env()
            .parser()
            .parse_with_source_info(rule)
            .unwrap();
        undefined_fields(&ast, &info, this, root)
    }

    fn spec() -> Value {
        json!({"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "x-name": {"type": "string"},
            "namespace": {"type": "string"},
            "ports": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "size": {"x-kubernetes-int-or-string": true},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    }

    #[test]
    fn a_misspelt_field_is_undefined_with_cel_gos_position_and_caret() {
        assert_eq!(
            errors("self.replica > 0", &spec(), false),
            ["ERROR: <input>:1:5: undefined field 'replica'\n | self.replica > 0\n | ....^"]
        );
        // Each one, in the order of the source; in has(), oldSelf and a list's elements too.
        let found = errors(
            "has(self.image) && oldSelf.replcas == 1 && self.ports.all(p, p.prot > 0)",
            &spec(),
            false,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("undefined field 'image'"), "{found:?}");
        assert!(
            found[1].contains(":1:27: undefined field 'replcas'"),
            "{found:?}"
        );
        assert!(
            found[2].contains(":1:63: undefined field 'prot'"),
            "{found:?}"
        );
    }

    #[test]
    fn declared_escaped_map_dynamic_and_root_fields_pass() {
        for rule in [
            "self.replicas > 0 && self.ports.all(p, p.port > 0)",
            "self.x__dash__name != '' && self.__namespace__ != ''",
            "self.labels.anything == 'x' && self.labels.all(k, k != '')",
            "self.size.whatever == 1",
            "self.template.kind == 'Pod' && self.template.metadata.name != ''",
            "[1, 2].all(x, x > 0) && {'a': 1}.a == 1",
            "self.ports.map(p, p).all(q, q.anything > 0)",
        ] {
            assert!(errors(rule, &spec(), false).is_empty(), "{rule}");
        }
        assert!(errors("self.metadata.name != '' && self.kind != ''", &spec(), true).is_empty());
    }

    #[test]
    fn a_scalar_has_no_fields() {
        assert_eq!(
            errors("self.replicas.value > 0", &spec(), false),
            [
                "ERROR: <input>:1:14: type 'int' does not support field selection\n | self.replicas.value > 0\n | .............^"
            ]
        );
        let found = errors(
            "self.kind.x == '' || self.metadata.name.y == ''",
            &spec(),
            true,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .all(|e| e.contains("type 'string' does not support field selection"))
        );
        // A string of a format CEL types as a timestamp, and a list, are not checked.
        let when = json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"}, "tags": {"type": "array", "items": {"type": "string"}}}});
        assert!(errors("self.at.x == 1 || self.tags.y == 1", &when, false).is_empty());
    }

    #[test]
    fn unknown_fields_are_undefined_preserved_or_not_and_root_metadata_has_two_fields() {
        assert_eq!(errors("self.extra.anything == 1", &spec(), false).len(), 1);
        assert_eq!(errors("self.template.spec == 1", &spec(), false).len(), 1);
        let found = errors("self.metadata.labels.size() > 0", &spec(), true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("undefined field 'labels'"), "{found:?}");
        // Not a resource root: no metadata unless declared.
        assert_eq!(errors("self.metadata.name == ''", &spec(), false).len(), 1);
    }

    #[test]
    fn the_caret_counts_characters_on_the_line_of_the_error() {
        assert_eq!(
            display("a &&\n\tself.x", 10, "m"),
            "ERROR: <input>:2:6: m\n |  self.x\n | .....^"
        );
        assert_eq!(
            display("'é'.x", 3, "m"),
            "ERROR: <input>:1:4: m\n | 'é'.x\n | .\u{FF0E}.^"
        );
    }
}
