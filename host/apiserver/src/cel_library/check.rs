//! The part of kube-apiserver's type check of a CRD rule that the `cel` crate (no checker) leaves
//! out and authors trip on most: selecting a field the schema does not declare, and operators
//! applied to values of the wrong types. On a cluster the
//! rule's `self` (and `oldSelf`, and the elements a comprehension binds) is typed from the schema
//! (`SchemaDeclType` in `k8s.io/apiserver/pkg/cel/common/schemas.go`), so `self.replica` for a
//! declared `replicas` fails to compile, `undefined field 'replica'`, and the CRD is refused.
//!
//! The typing follows Kubernetes: an object's fields are its properties, by their escaped names
//! (`cel.Escape`: `__dash__` for `-`, `__namespace__` for a reserved word, ...), and nothing else,
//! `x-kubernetes-preserve-unknown-fields` or not; an object with `additionalProperties` is a map
//! (any key); the root of a resource (the CRD's top schema, an `x-kubernetes-embedded-resource`)
//! also has `apiVersion`, `kind` and a `metadata` holding only `name` and `generateName`;
//! `x-kubernetes-int-or-string` is dynamic; a scalar or a list has no fields (`type 'list(string)'
//! does not support field selection`). Where the schema does not tell (a value a call
//! returns, a map's key), nothing is checked: this check refuses only what a cluster refuses.
//!
//! The operators are checked as cel-go's overload resolution does where both operands' types are
//! known here (a scalar of the schema, a literal, what an operator or a conversion returns): `==`
//! and `!=` take two values of one type (`self.replicas == 'three'`: `found no matching overload
//! for '_==_' applied to '(int, string)'`, and `null` only against a timestamp or a duration),
//! `<` and the other comparisons mix int, uint and double (Kubernetes turns on cel-go's cross-type
//! numeric comparisons) but nothing else, arithmetic takes one numeric type (or strings, bytes,
//! timestamps and durations as `common/stdlib` declares them), `!` a bool, `?:` a bool and two
//! values of one type, `size` a string or bytes (or a list or a map, not typed here), the string
//! tests (`startsWith`, `endsWith`, `contains`, `matches`) strings, and `&&`/`||` say `expected
//! type 'bool' but found 'int'` of an operand. A list, a map, an object and whatever
//! this check does not type is `dyn`, which matches every overload.

use super::escaping::property;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use serde_json::{Value, json};
use std::sync::LazyLock;

/// The schema of a string: `apiVersion` and `kind` of a resource root.
static STRING: LazyLock<Value> = LazyLock::new(|| json!({"type": "string"}));
/// `metadata` of a resource root, as `WithTypeAndObjectMeta` declares it.
static ROOT_METADATA: LazyLock<Value> = LazyLock::new(|| {
    json!({"type": "object", "properties": {
        "name": {"type": "string"}, "generateName": {"type": "string"}}})
});

/// The errors cel-go's checker reports for the field selections and the operators of `ast` (parsed
/// from `info.source`), `self` being a value of `this`; `root`: `this` is the root of a resource.
/// Each is formatted as cel-go displays it: `ERROR: <input>:LINE:COLUMN: undefined field 'NAME'`
/// (or `type 'int' does not support field selection`, `found no matching overload for '_==_'
/// applied to '(int, string)'`), the source line and a caret under the selection's dot or the
/// operator.
#[must_use]
pub fn type_errors(ast: &IdedExpr, info: &SourceInfo, this: &Value, root: bool) -> Vec<String> {
    let check = Check {
        this: Node { schema: this, root },
        info,
    };
    let mut found = Vec::new();
    check.visit(ast, &mut Vec::new(), &mut found);
    found.dedup();
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
        if s["type"] != "object" {
            // A scalar or a list has no fields (cel-go's `typeDoesNotSupportFieldSelection`). A
            // list of objects is not checked: a cluster names its element type uniquely per
            // compilation (`selfType<N>...`), so no message could match.
            return match type_name(s) {
                Some(name) => Err(Unselectable::NoFields(name)),
                None => Ok(None),
            };
        }
        if self.root {
            match field {
                "apiVersion" | "kind" => return Ok(Some(Node::of(&STRING))),
                "metadata" => return Ok(Some(Node::of(&ROOT_METADATA))),
                _ => {}
            }
        }
        if s["additionalProperties"].is_object() {
            return Ok(Some(Node::of(&s["additionalProperties"])));
        }
        property(s, field)
            .map(|schema| Some(Node::of(schema)))
            .ok_or(Unselectable::Undefined)
    }
}

/// The name cel-go's `FormatCELType` gives the type `SchemaDeclType` makes of `schema` (`int`,
/// `timestamp` for a date-time string, `list(string)`, `map(string, int)`), unless it is dynamic
/// or an object (or holds one).
fn type_name(schema: &Value) -> Option<String> {
    if let Type::Simple(name) = Type::of(schema) {
        return Some(name.to_owned());
    }
    if schema["x-kubernetes-int-or-string"] == true {
        return None;
    }
    match schema["type"].as_str()? {
        "array" => Some(format!("list({})", type_name(&schema["items"])?)),
        "object" if schema["additionalProperties"].is_object() => Some(format!(
            "map(string, {})",
            type_name(&schema["additionalProperties"])?
        )),
        _ => None,
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
    /// A scalar or a list, by its CEL type's name.
    NoFields(String),
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

    /// Where cel-go locates an error of `expr`: its first character, for a call the operator.
    fn offset(&self, expr: &IdedExpr) -> u32 {
        self.info.offset_for(expr.id).map_or(0, |(start, _)| start)
    }

    /// Checks `expr` and what it holds, pushing each error with its offset to `found`, and
    /// returns the type of its value, as far as this check knows it.
    fn visit(
        &self,
        expr: &'s IdedExpr,
        scope: &mut Scope<'s>,
        found: &mut Vec<(u32, String)>,
    ) -> Type {
        match &expr.expr {
            Expr::Select(select) => {
                let parent = self.typed(&select.operand, scope);
                self.visit(&select.operand, scope, found);
                let field = match parent.map(|p| p.field(&select.field)) {
                    Some(Err(why)) => {
                        found.push((
                            self.offset(expr),
                            match why {
                                Unselectable::Undefined => {
                                    format!("undefined field '{}'", select.field)
                                }
                                Unselectable::NoFields(name) => {
                                    format!("type '{name}' does not support field selection")
                                }
                            },
                        ));
                        Type::Dyn
                    }
                    Some(Ok(Some(node))) => Type::of(node.schema),
                    _ => Type::Dyn,
                };
                // `has(a.b)`: whether the field is set.
                if select.test {
                    Type::Simple("bool")
                } else {
                    field
                }
            }
            Expr::Ident(_) => self
                .typed(expr, scope)
                .map_or(Type::Dyn, |n| Type::of(n.schema)),
            Expr::Literal(literal) => Type::Simple(match literal {
                LiteralValue::Boolean(_) => "bool",
                LiteralValue::Bytes(_) => "bytes",
                LiteralValue::Double(_) => "double",
                LiteralValue::Int(_) => "int",
                LiteralValue::Null => "null",
                LiteralValue::String(_) => "string",
                LiteralValue::UInt(_) => "uint",
            }),
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
                Type::Dyn
            }
            Expr::Call(call) => {
                let target = call.target.as_ref().map(|t| self.visit(t, scope, found));
                let args: Vec<Type> = call
                    .args
                    .iter()
                    .map(|a| self.visit(a, scope, found))
                    .collect();
                if target.is_none()
                    && matches!(
                        call.func_name.as_str(),
                        operators::LOGICAL_AND | operators::LOGICAL_OR
                    )
                {
                    // cel-go names the operand, not the operator (`resolveOverload`).
                    for (arg, t) in call.args.iter().zip(&args) {
                        if let Type::Simple(name) = t
                            && *name != "bool"
                        {
                            found.push((
                                self.offset(arg),
                                format!("expected type 'bool' but found '{name}'"),
                            ));
                        }
                    }
                    return Type::Simple("bool");
                }
                let resolved = match target {
                    Some(target) => method(&call.func_name, target, &args),
                    None => overload(&call.func_name, &args),
                };
                match resolved {
                    Some(Ok(result)) => result,
                    Some(Err(())) => {
                        // `formatFunctionDeclType`: a receiver call is `target.(args)`.
                        let names: Vec<&str> = args.iter().map(|t| t.name()).collect();
                        let receiver = target.map_or(String::new(), |t| format!("{}.", t.name()));
                        found.push((
                            self.offset(expr),
                            format!(
                                "found no matching overload for '{}' applied to '{receiver}({})'",
                                call.func_name,
                                names.join(", ")
                            ),
                        ));
                        Type::Dyn
                    }
                    None => Type::returned(&call.func_name),
                }
            }
            Expr::List(list) => {
                for e in &list.elements {
                    self.visit(e, scope, found);
                }
                Type::Dyn
            }
            Expr::Map(map) => {
                self.entries(&map.entries, scope, found);
                Type::Dyn
            }
            Expr::Struct(s) => {
                self.entries(&s.entries, scope, found);
                Type::Dyn
            }
            Expr::Unspecified => Type::Dyn,
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
                EntryExpr::StructField(f) => {
                    self.visit(&f.value, scope, found);
                }
            }
        }
    }
}

/// What this check knows of a value's type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Type {
    /// A type without parameters, by the name cel-go's `FormatCELType` gives it: `int`, `uint`,
    /// `double`, `bool`, `string`, `bytes`, `null`, `timestamp`, `duration`.
    Simple(&'static str),
    /// Not known here (a list, a map, an object, `x-kubernetes-int-or-string`, what an unknown
    /// function returns): matches every overload, as `dyn` does in cel-go.
    Dyn,
}

impl Type {
    /// The type `SchemaDeclType` gives a value of `schema`, where it has no parameters.
    fn of(schema: &Value) -> Self {
        if schema["x-kubernetes-int-or-string"] == true {
            return Self::Dyn;
        }
        Self::Simple(match schema["type"].as_str() {
            Some("integer") => "int",
            Some("number") => "double",
            Some("boolean") => "bool",
            Some("string") => match schema["format"].as_str() {
                Some("byte") => "bytes",
                Some("duration") => "duration",
                Some("date" | "date-time") => "timestamp",
                _ => "string",
            },
            _ => return Self::Dyn,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Simple(name) => name,
            Self::Dyn => "dyn",
        }
    }

    /// What a call of the function `name` returns, for the standard functions whose result does
    /// not depend on their arguments' types.
    fn returned(name: &str) -> Self {
        Self::Simple(match name {
            "size" | "int" => "int",
            "uint" => "uint",
            "double" => "double",
            "string" => "string",
            "bytes" => "bytes",
            "bool" | "matches" | "startsWith" | "endsWith" | "contains" | operators::IN => "bool",
            "duration" => "duration",
            "timestamp" => "timestamp",
            _ => return Self::Dyn,
        })
    }
}

/// The standard library's overloads of the operator `name` (`common/stdlib` in cel-go) applied
/// to `args`: `None` when `name` is not an operator checked here, else the result's type or, when
/// no overload takes these types, `Err`. A `dyn` argument matches every overload.
fn overload(name: &str, args: &[Type]) -> Option<Result<Type, ()>> {
    use Type::{Dyn, Simple};
    const NUMBERS: [&str; 3] = ["int", "uint", "double"];
    let bool_ = Ok(Simple("bool"));
    Some(match (name, args) {
        (operators::EQUALS | operators::NOT_EQUALS, [a, b]) => match (a, b) {
            (Dyn, _) | (_, Dyn) => bool_,
            (Simple(a), Simple(b)) if a == b => bool_,
            // `isLegacyNullable`: null is assignable to timestamps and durations.
            (Simple("null"), Simple(t)) | (Simple(t), Simple("null"))
                if matches!(*t, "timestamp" | "duration") =>
            {
                bool_
            }
            _ => Err(()),
        },
        (
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS,
            [a, b],
        ) => match (a, b) {
            (Dyn, _) | (_, Dyn) => bool_,
            (Simple(a), Simple(b)) if a == b && *a != "null" => bool_,
            (Simple(a), Simple(b)) if NUMBERS.contains(a) && NUMBERS.contains(b) => bool_,
            _ => Err(()),
        },
        (operators::ADD, [a, b]) => match (a, b) {
            (Dyn, _) | (_, Dyn) => Ok(Dyn),
            (Simple("timestamp"), Simple("duration"))
            | (Simple("duration"), Simple("timestamp")) => Ok(Simple("timestamp")),
            (Simple(a), Simple(b))
                if a == b
                    && matches!(
                        *a,
                        "int" | "uint" | "double" | "string" | "bytes" | "duration"
                    ) =>
            {
                Ok(Simple(a))
            }
            _ => Err(()),
        },
        (operators::SUBSTRACT, [a, b]) => match (a, b) {
            (Dyn, _) | (_, Dyn) => Ok(Dyn),
            (Simple("timestamp"), Simple("timestamp")) => Ok(Simple("duration")),
            (Simple("timestamp"), Simple("duration")) => Ok(Simple("timestamp")),
            (Simple(a), Simple(b))
                if a == b && matches!(*a, "int" | "uint" | "double" | "duration") =>
            {
                Ok(Simple(a))
            }
            _ => Err(()),
        },
        (operators::MULTIPLY | operators::DIVIDE | operators::MODULO, [a, b]) => {
            let types: &[&str] = if name == operators::MODULO {
                &NUMBERS[..2]
            } else {
                &NUMBERS
            };
            match (a, b) {
                (Dyn, Dyn) => Ok(Dyn),
                (Dyn, Simple(t)) | (Simple(t), Dyn) if types.contains(t) => Ok(Simple(t)),
                (Simple(a), Simple(b)) if a == b && types.contains(a) => Ok(Simple(a)),
                _ => Err(()),
            }
        }
        (operators::LOGICAL_NOT, [a]) => match a {
            Dyn | Simple("bool") => bool_,
            _ => Err(()),
        },
        (operators::NEGATE, [a]) => match a {
            Dyn => Ok(Dyn),
            Simple(t @ ("int" | "double")) => Ok(Simple(t)),
            _ => Err(()),
        },
        (operators::CONDITIONAL, [c, a, b]) => match (c, a, b) {
            (Simple(c), _, _) if *c != "bool" => Err(()),
            (_, Dyn, _) | (_, _, Dyn) => Ok(Dyn),
            (_, Simple(a), Simple(b)) if a == b => Ok(Simple(a)),
            (_, Simple("null"), Simple(t)) | (_, Simple(t), Simple("null"))
                if matches!(*t, "timestamp" | "duration") =>
            {
                Ok(Simple(t))
            }
            _ => Err(()),
        },
        ("size", [a]) => match a {
            Dyn | Simple("string" | "bytes") => Ok(Simple("int")),
            _ => Err(()),
        },
        _ => return None,
    })
}

/// The standard library's overloads of the method `name` of `target` applied to `args`, for the
/// methods checked here (`size` and the string tests): as [`overload`].
fn method(name: &str, target: Type, args: &[Type]) -> Option<Result<Type, ()>> {
    use Type::{Dyn, Simple};
    let string = |t: &Type| matches!(t, Dyn | Simple("string"));
    Some(match (name, args) {
        ("size", []) => match target {
            Dyn | Simple("string" | "bytes") => Ok(Simple("int")),
            _ => Err(()),
        },
        ("startsWith" | "endsWith" | "contains" | "matches", [arg]) => {
            if string(&target) && string(arg) {
                Ok(Simple("bool"))
            } else {
                Err(())
            }
        }
        _ => return None,
    })
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
        type_errors(&ast, &info, this, root)
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
        // A string of a format CEL types as a timestamp, a list, a list of lists; not a list of
        // objects, whose type a cluster names uniquely per compilation.
        let when = json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "ports": {"type": "array", "items": {"type": "object"}}}});
        let found = errors(
            "self.at.x == 1 || self.tags.y == 1 || self.grid.z == 1 || self.ports.w == 1",
            &when,
            false,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains(":1:8: type 'timestamp' does not support field selection"));
        assert!(found[1].contains("type 'list(string)' does not support field selection"));
        assert!(found[2].contains("type 'list(list(int))' does not support field selection"));
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
    fn an_operator_without_an_overload_for_its_operands_is_refused_at_the_operator() {
        assert_eq!(
            errors("self.replicas == 'three'", &spec(), false),
            [
                "ERROR: <input>:1:15: found no matching overload for '_==_' applied to '(int, string)'\n | self.replicas == 'three'\n | ..............^"
            ]
        );
        let typed = json!({"type": "object", "properties": {
            "replicas": {"type": "integer"}, "ratio": {"type": "number"},
            "name": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
            "ttl": {"type": "string", "format": "duration"}, "on": {"type": "boolean"}}});
        for (rule, message) in [
            (
                "self.replicas == null",
                "1:15: found no matching overload for '_==_' applied to '(int, null)'",
            ),
            (
                "self.ratio != 1",
                "1:12: found no matching overload for '_!=_' applied to '(double, int)'",
            ),
            (
                "self.name + 1 == ''",
                "1:11: found no matching overload for '_+_' applied to '(string, int)'",
            ),
            (
                "self.name < 1",
                "1:11: found no matching overload for '_<_' applied to '(string, int)'",
            ),
            (
                "self.ratio % 2.0 == 0.0",
                "1:12: found no matching overload for '_%_' applied to '(double, double)'",
            ),
            (
                "!self.replicas",
                "1:1: found no matching overload for '!_' applied to '(int)'",
            ),
            (
                "-self.name == ''",
                "1:1: found no matching overload for '-_' applied to '(string)'",
            ),
            (
                "self.at - self.ttl == 1",
                "1:20: found no matching overload for '_==_' applied to '(timestamp, int)'",
            ),
            (
                "size(self.name) == 'a'",
                "1:17: found no matching overload for '_==_' applied to '(int, string)'",
            ),
            (
                "self.replicas && true",
                "1:5: expected type 'bool' but found 'int'",
            ),
            (
                "self.on || 'x'",
                "1:12: expected type 'bool' but found 'string'",
            ),
            (
                "self.replicas ? 1 : 2",
                "1:15: found no matching overload for '_?_:_' applied to '(int, int, int)'",
            ),
            (
                "(self.on ? 1 : 'a') == 1",
                "1:10: found no matching overload for '_?_:_' applied to '(bool, int, string)'",
            ),
            (
                "size(self.replicas) > 0",
                "1:5: found no matching overload for 'size' applied to '(int)'",
            ),
            (
                "self.replicas.size() > 0",
                "1:19: found no matching overload for 'size' applied to 'int.()'",
            ),
            (
                "self.name.startsWith(1)",
                "1:21: found no matching overload for 'startsWith' applied to 'string.(int)'",
            ),
            (
                "self.ratio.contains('a')",
                "1:20: found no matching overload for 'contains' applied to 'double.(string)'",
            ),
        ] {
            let found = errors(rule, &typed, false);
            assert_eq!(found.len(), 1, "{rule}: {found:?}");
            assert!(
                found[0].starts_with(&format!("ERROR: <input>:{message}\n")),
                "{rule}: {found:?}"
            );
        }
        // What a cluster accepts: mixed numeric comparisons, dyn (int-or-string, lists, maps,
        // unknown functions), null against a timestamp, the standard overloads.
        for rule in [
            "self.replicas > 1.5 && self.ratio <= 2 && 1u < self.replicas",
            "self.replicas == 1 && self.ratio == 1.0 && self.name == 'a' && self.on == true",
            "self.replicas + 1 > 0 && -self.replicas < 0 && self.replicas % 2 == 0",
            "self.name + 'a' != '' && self.name.size() > 0 && size(self.name) > 0",
            "self.at + self.ttl > self.at && self.at - self.at == self.ttl && self.at != null",
            "!has(self.replicas) || !self.on || self.replicas in [1, 2]",
            "self.ratio * 2.0 > 1.0 && double(self.replicas) / 2.0 > self.ratio",
            "int(self.name) == 1 && string(self.replicas) == '1'",
            "self.name.matches('a') == true && self.name.startsWith('a')",
            "self.on ? self.replicas > 0 : self.ratio > 0.0",
            "(self.on ? self.at : null) != null && (self.on ? 1 : 2) > 0",
            "self.name.contains('a') && self.name.endsWith(self.name) && self.name.size() == 1",
        ] {
            assert_eq!(errors(rule, &typed, false), Vec::<String>::new(), "{rule}");
        }
        for rule in [
            "self.size == 'a' || self.size == 1 || self.size > 2",
            "self.ports[0].port == 1 && self.labels.a == 'x' && self.labels['b'] == 'y'",
            "self.ports.size() == 2 && [1, 2] == [1] && self.ports.all(p, p.port > 0)",
        ] {
            assert_eq!(errors(rule, &spec(), false), Vec::<String>::new(), "{rule}");
        }
        // An operand that is already an error is not reported again.
        assert_eq!(errors("self.replica == 'a'", &spec(), false).len(), 1);
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
