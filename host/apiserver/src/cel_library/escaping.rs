//! The names object properties have in CEL (`k8s.io/apiserver/pkg/cel/escaping.go`): a property
//! `x-name` is `self.x__dash__name` in a rule, `namespace` is `self.__namespace__`.

use serde_json::Value;

/// CEL's reserved words, which a property name is escaped from as `__word__`.
pub(crate) const RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// `cel.Escape`: the name property `name` has in CEL, `None` when it has none (it starts with a
/// digit, or holds a character outside `[a-zA-Z0-9_./-]`).
#[must_use]
pub fn escape(name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = &rest[2..];
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// The property of the object schema `schema` that a rule's field selection `field` names: by its
/// name in CEL, or as the property is written.
#[must_use]
pub fn property<'s>(schema: &'s Value, field: &str) -> Option<&'s Value> {
    schema["properties"]
        .as_object()?
        .iter()
        .find(|(name, _)| *name == field || escape(name).as_deref() == Some(field))
        .map(|(_, property)| property)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_follows_kubernetes() {
        assert_eq!(escape("replicas").as_deref(), Some("replicas"));
        assert_eq!(escape("x-name").as_deref(), Some("x__dash__name"));
        assert_eq!(escape("a.b/c").as_deref(), Some("a__dot__b__slash__c"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("1st"), None);
        assert_eq!(escape("a b"), None);
    }

    #[test]
    fn a_property_is_found_by_its_name_in_cel() {
        let schema = serde_json::json!({"properties": {"x-name": {"type": "string"}, "a": {}}});
        assert_eq!(
            property(&schema, "x__dash__name"),
            Some(&schema["properties"]["x-name"])
        );
        assert_eq!(property(&schema, "a"), Some(&schema["properties"]["a"]));
        assert_eq!(property(&schema, "b"), None);
        assert_eq!(property(&serde_json::json!({"type": "string"}), "a"), None);
    }
}
