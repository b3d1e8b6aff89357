//! The cost bound kube-apiserver puts on a CRD's rules when the CRD is written
//! (`apiextensions-apiserver` `validation.go`, `StaticEstimatedCostLimit`): each rule's estimated
//! worst-case cost, times the number of times it can run (the sizes of the lists and maps above
//! it), must stay within the limit, or the CRD is refused with the rule's path. A rule that does
//! not compile is refused the same way (`compilation failed`): one that does not parse, or that
//! selects a field its schema does not declare ([`super::check`]).
//!
//! The estimate here is a lower bound of kube-apiserver's: one unit per call, selection and
//! comprehension step, a list or map with no `maxItems`/`maxProperties` as large as a 3 MiB
//! request can make it (the smallest element, 2 bytes and a comma). So what is refused here is
//! refused by a cluster; a rule a cluster refuses may pass here (a single pass over an unbounded
//! list); what it stops is the multiplying kind: comprehensions nested over unbounded lists.

use super::check::embedded;
use super::escaping::property;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::{Value, json};

use crate::error::FieldCause;

/// `StaticEstimatedCostLimit`: the most one rule may be estimated to cost.
pub const RULE_COST_LIMIT: f64 = 10_000_000.0;
/// `StaticEstimatedCRDCostLimit`: the most the rules of one version's schema may be estimated to
/// cost together.
pub const SCHEMA_COST_LIMIT: f64 = 100_000_000.0;
/// The most elements an unbounded list (or entries an unbounded map) can have in a request:
/// `(3 MiB - 2) / (2 + 1)`, kube-apiserver's estimate for its smallest elements.
const UNBOUNDED: f64 = 1_048_575.0;

/// The errors of the rules of every version of a CRD.
#[must_use]
pub fn crd_rule_errors(crd: &Value) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    for (i, version) in crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            let mut costs = Vec::new();
            // The top schema is a resource's root.
            walk(schema, &path, true, 1.0, &mut errs, &mut costs);
            over_schema_budget(&path, costs, &mut errs);
        }
    }
    errs
}

/// `TotalCost`'s verdict on the estimated costs of one schema's rules (each with its field):
/// past [`SCHEMA_COST_LIMIT`] together, the (at most) four most expensive of those that cost 1 % of
/// it or more are named, then the schema.
fn over_schema_budget(path: &str, mut costs: Vec<(String, f64)>, errs: &mut Vec<FieldCause>) {
    let total: f64 = costs.iter().map(|(_, cost)| cost).sum();
    if total <= SCHEMA_COST_LIMIT {
        return;
    }
    costs.retain(|(_, cost)| *cost >= SCHEMA_COST_LIMIT / 100.0);
    costs.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (field, _) in costs.iter().take(4) {
        errs.push(FieldCause::forbidden(
            field,
            "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 \
             schema",
        ));
    }
    errs.push(FieldCause::forbidden(
        path,
        &budget_message(
            "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
            total,
            SCHEMA_COST_LIMIT,
        ),
    ));
}

/// The errors of the rules of `schema` and below, and each rule's estimated cost by its field in
/// `costs`; `root`: `schema` is the root of a resource.
fn walk(
    schema: &Value,
    path: &str,
    root: bool,
    cardinality: f64,
    errs: &mut Vec<FieldCause>,
    costs: &mut Vec<(String, f64)>,
) {
    for (j, rule) in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(text) = rule["rule"].as_str() else {
            continue;
        };
        let field = format!("{path}.x-kubernetes-validations[{j}].rule");
        match super::env().parser().parse_with_source_info(text) {
            Err(e) => errs.push(FieldCause::invalid_value(
                &field,
                &json!(text),
                format!("compilation failed: {e}"),
            )),
            Ok((ast, info)) => {
                let undefined = super::check::type_errors(&ast, &info, schema, root);
                if !undefined.is_empty() {
                    errs.push(FieldCause::invalid_value(
                        &field,
                        &json!(text),
                        format!("compilation failed: {}", undefined.join("\n")),
                    ));
                    continue;
                }
                let cost = cardinality * Estimate { this: schema }.cost(&ast, &mut Vec::new());
                if cost > RULE_COST_LIMIT {
                    errs.push(FieldCause::forbidden(
                        &field,
                        &budget_message("estimated rule cost", cost, RULE_COST_LIMIT),
                    ));
                }
                costs.push((field, cost));
            }
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, sub) in properties {
            walk(
                sub,
                &format!("{path}.properties[{name}]"),
                embedded(sub),
                cardinality,
                errs,
                costs,
            );
        }
    }
    if schema["items"].is_object() {
        let n = cardinality * bound(schema, "maxItems");
        let items = &schema["items"];
        walk(
            items,
            &format!("{path}.items"),
            embedded(items),
            n,
            errs,
            costs,
        );
    }
    if schema["additionalProperties"].is_object() {
        let n = cardinality * bound(schema, "maxProperties");
        let values = &schema["additionalProperties"];
        walk(
            values,
            &format!("{path}.additionalProperties"),
            embedded(values),
            n,
            errs,
            costs,
        );
    }
}

fn bound(schema: &Value, key: &str) -> f64 {
    schema[key].as_f64().unwrap_or(UNBOUNDED)
}

/// `getCostErrorMessage(what, cost, limit)`.
fn budget_message(what: &str, cost: f64, limit: f64) -> String {
    let factor = cost / limit;
    let factor = if factor > 100.0 {
        "more than 100x".to_owned()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding \
         maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// A rule's estimate, `self` being a value of `this` schema.
struct Estimate<'s> {
    this: &'s Value,
}

/// The variables a comprehension binds, with the schema of their values when known.
type Scope<'s> = Vec<(String, Option<&'s Value>)>;

impl<'s> Estimate<'s> {
    /// The schema of the value `expr` stands for, when it is `self`, a bound variable, or a
    /// field of one.
    fn schema_of(&self, expr: &IdedExpr, scope: &Scope<'s>) -> Option<&'s Value> {
        match &expr.expr {
            Expr::Ident(name) if name == "self" || name == "oldSelf" => Some(self.this),
            Expr::Ident(name) => scope.iter().rev().find(|(v, _)| v == name)?.1,
            Expr::Select(select) if !select.test => {
                let parent = self.schema_of(&select.operand, scope)?;
                property(parent, &select.field)
                    .or_else(|| Some(&parent["additionalProperties"]).filter(|a| a.is_object()))
            }
            _ => None,
        }
    }

    /// How many elements the list (or entries the map) `expr` stands for can have.
    fn size(&self, expr: &IdedExpr, scope: &Scope<'s>) -> f64 {
        if let Some(schema) = self.schema_of(expr, scope) {
            return match schema["type"].as_str() {
                Some("array") => bound(schema, "maxItems"),
                Some("object") if !schema["additionalProperties"].is_object() => {
                    schema["properties"]
                        .as_object()
                        .map_or(UNBOUNDED, |p| p.len() as f64)
                }
                _ => bound(schema, "maxProperties"),
            };
        }
        match &expr.expr {
            Expr::List(list) => list.elements.len() as f64,
            Expr::Map(map) => map.entries.len() as f64,
            // `map` and `filter` give at most as many elements as they walk.
            Expr::Comprehension(c) => self.size(&c.iter_range, scope),
            _ => UNBOUNDED,
        }
    }

    fn cost(&self, expr: &IdedExpr, scope: &mut Scope<'s>) -> f64 {
        match &expr.expr {
            Expr::Comprehension(c) => {
                let range = self.cost(&c.iter_range, scope);
                let steps = self.size(&c.iter_range, scope);
                let element = self
                    .schema_of(&c.iter_range, scope)
                    .filter(|s| s["type"] == "array")
                    .map(|s| &s["items"]);
                let init = self.cost(&c.accu_init, scope);
                let depth = scope.len();
                scope.push((c.iter_var.clone(), element));
                if let Some(second) = &c.iter_var2 {
                    scope.push((second.clone(), None));
                }
                scope.push((c.accu_var.clone(), None));
                let body = self.cost(&c.loop_cond, scope) + self.cost(&c.loop_step, scope);
                let result = self.cost(&c.result, scope);
                scope.truncate(depth);
                range + init + steps * (1.0 + body) + result
            }
            Expr::Call(call) => {
                let target = call.target.as_ref().map_or(0.0, |t| self.cost(t, scope));
                let args: f64 = call.args.iter().map(|a| self.cost(a, scope)).sum();
                1.0 + target + args
            }
            Expr::Select(select) => 1.0 + self.cost(&select.operand, scope),
            Expr::List(list) => {
                1.0 + list
                    .elements
                    .iter()
                    .map(|e| self.cost(e, scope))
                    .sum::<f64>()
            }
            Expr::Map(map) => 1.0 + self.entries(&map.entries, scope),
            Expr::Struct(s) => 1.0 + self.entries(&s.entries, scope),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 1.0,
        }
    }

    fn entries(&self, entries: &[cel::common::ast::IdedEntryExpr], scope: &mut Scope<'s>) -> f64 {
        entries
            .iter()
            .map(|e| match &e.expr {
                EntryExpr::MapEntry(m) => self.cost(&m.key, scope) + self.cost(&m.value, scope),
                EntryExpr::StructField(f) => self.cost(&f.value, scope),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(rule: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["x-kubernetes-validations"] = json!([{"rule": rule}]);
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": spec}}}}]}})
    }

    fn unbounded() -> Value {
        json!({"type": "object", "properties": {
            "a": {"type": "array", "items": {"type": "string"}},
            "b": {"type": "array", "items": {"type": "string"}}}})
    }

    #[test]
    fn nested_comprehensions_over_unbounded_lists_are_refused_with_the_rule_path() {
        let errs = crd_rule_errors(&crd("self.a.all(x, self.b.exists(y, x == y))", unbounded()));
        // The rule, then the schema's total it also breaks: the rule as a contributor, the schema.
        assert_eq!(errs.len(), 3, "{errs:?}");
        let rule = "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule";
        let text = format!("{:?}", errs[0]);
        assert!(text.contains(rule), "{text}");
        assert!(
            text.contains("estimated rule cost exceeds budget by factor of more than 100x"),
            "{text}"
        );
        let text = format!("{:?}", errs[1]);
        assert!(
            text.contains(rule) && text.contains("contributed to"),
            "{text}"
        );
        let text = format!("{:?}", errs[2]);
        assert!(
            text.contains("\"spec.versions[0].schema.openAPIV3Schema\"")
                && text.contains(
                    "x-kubernetes-validations estimated rule cost total for entire \
                    OpenAPIv3 schema exceeds budget by factor of more than 100x"
                ),
            "{text}"
        );
    }

    #[test]
    fn rules_each_within_budget_can_break_the_schemas_total() {
        // Eleven rules at 9.5 % of the schema's limit, one at 0.5 %: 105 %.
        let mut costs: Vec<(String, f64)> =
            (0..11).map(|i| (format!("r{i}"), 9_500_000.0)).collect();
        costs.insert(3, ("cheap".to_owned(), 500_000.0));
        costs[5].1 = 9_600_000.0;
        let mut errs = Vec::new();
        over_schema_budget("s", costs, &mut errs);
        let text: Vec<String> = errs.iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(errs.len(), 5, "{text:?}");
        // The most expensive first, four of them, none under 1 % of the limit.
        assert!(text[0].contains("\"r4\""), "{text:?}");
        assert!(
            text[..4]
                .iter()
                .all(|t| t.contains("contributed to") && !t.contains("cheap"))
        );
        assert!(
            text[4].contains("exceeds budget by factor of 1.051000x"),
            "{text:?}"
        );
        let mut errs = Vec::new();
        over_schema_budget("s", vec![("a".to_owned(), 100_000_000.0)], &mut errs);
        assert!(errs.is_empty(), "at the limit is within it");
    }

    #[test]
    fn bounds_a_single_pass_and_literals_pass() {
        let mut bounded = unbounded();
        bounded["properties"]["a"]["maxItems"] = json!(100);
        bounded["properties"]["b"]["maxItems"] = json!(100);
        for rule in [
            "self.a.all(x, self.b.exists(y, x == y))",
            "self.a.all(x, x != '')",
            "[1, 2, 3].all(x, [4, 5].exists(y, x < y))",
            "self.a.map(x, x).all(y, y != '')",
        ] {
            assert!(
                crd_rule_errors(&crd(rule, bounded.clone())).is_empty(),
                "{rule}"
            );
        }
        assert!(crd_rule_errors(&crd("self.a.all(x, x != '')", unbounded())).is_empty());
        // Lists named by their escaped names are bounded by their own maxItems.
        let dashed = json!({"type": "object", "properties": {
            "a-1": {"type": "array", "maxItems": 100, "items": {"type": "string"}},
            "b-1": {"type": "array", "maxItems": 100, "items": {"type": "string"}}}});
        let rule = "self.a__dash__1.all(x, self.b__dash__1.exists(y, x == y))";
        assert!(crd_rule_errors(&crd(rule, dashed)).is_empty(), "{rule}");
    }

    #[test]
    fn a_rule_under_an_unbounded_list_runs_once_per_element() {
        // Each item's rule walks the item's own unbounded list: a million items times a million.
        let spec = json!({"type": "array", "items": {"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}}},
            "x-kubernetes-validations": [{"rule": "self.tags.all(t, t != '')"}]}});
        let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": spec}}}}]}});
        let errs = crd_rule_errors(&crd);
        assert_eq!(
            errs.len(),
            3,
            "the rule, as a contributor, the schema: {errs:?}"
        );
        assert!(
            format!("{:?}", errs[0])
                .contains("properties[spec].items.x-kubernetes-validations[0].rule")
        );
    }

    #[test]
    fn a_rule_selecting_an_undeclared_field_does_not_compile() {
        let errs = crd_rule_errors(&crd("self.c.size() > 0", unbounded()));
        assert_eq!(errs.len(), 1, "{errs:?}");
        let text = format!("{:?}", errs[0]);
        assert!(
            text.contains("properties[spec].x-kubernetes-validations[0].rule"),
            "{text}"
        );
        assert!(
            text.contains("compilation failed: ERROR: <input>:1:5: undefined field 'c'"),
            "{text}"
        );
        // At the root, `metadata` holds only `name` and `generateName`.
        let root = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object", "x-kubernetes-validations": [
                {"rule": "self.metadata.name.startsWith('a')"},
                {"rule": "self.metadata.namespace == 'x'"}]}}}]}});
        let errs = crd_rule_errors(&root);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            format!("{errs:?}").contains("x-kubernetes-validations[1].rule"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_rule_that_does_not_parse_is_refused() {
        let errs = crd_rule_errors(&crd("self.a ==", unbounded()));
        assert!(
            format!("{errs:?}").contains("compilation failed"),
            "{errs:?}"
        );
    }
}
