//! A DaemonSet's template generation, which apps/v1 carries in the
//! `deprecated.daemonset.template.generation` annotation: the internal `spec.templateGeneration`
//! that `daemonSetStrategy` keeps (1 on create, one more for each new template, never the
//! client's on update) and the conversion to apps/v1 writes back on every DaemonSet.

use serde_json::{Value, json};

use super::Refusal;
use super::validate::Change;

/// The annotation (`appsv1.DeprecatedTemplateGeneration`).
pub(crate) const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// The template generation an object's annotation holds, if it has one: `Err` with Go's
/// `strconv.ParseInt` message when it is not an integer.
pub(crate) fn template_generation(object: &Value) -> Result<Option<i64>, String> {
    match object["metadata"]["annotations"][TEMPLATE_GENERATION].as_str() {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("strconv.ParseInt: parsing {text:?}: invalid syntax")),
    }
}

/// Sets the annotation of `object` being created (`old` None) or updated, as the conversion from
/// apps/v1, `PrepareForCreate`/`PrepareForUpdate` and the conversion back do it: a create keeps a
/// client's generation of at least 1, an update of the spec takes the stored one and adds one
/// when the template changed, an update of the status keeps the stored one.
///
/// # Errors
/// A [`Refusal::Decode`] when the annotation of the body is not an integer (the conversion from
/// apps/v1 fails).
pub(super) fn prepare(
    old: Option<&Value>,
    object: &mut Value,
    change: Change,
) -> Result<(), Refusal> {
    let given = template_generation(object).map_err(|e| {
        Refusal::Decode(format!(
            "DaemonSet in version \"v1\" cannot be handled as a DaemonSet: {e}"
        ))
    })?;
    let generation = match old {
        None => given.unwrap_or(0).max(1),
        Some(old) => {
            let stored = template_generation(old).ok().flatten().unwrap_or(0);
            if change == Change::Object && old["spec"]["template"] != object["spec"]["template"] {
                stored + 1
            } else {
                stored
            }
        }
    };
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[TEMPLATE_GENERATION] = json!(generation.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(image: &str, annotation: Option<&str>) -> Value {
        let mut set = json!({"metadata": {"name": "agent"},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": image}]}}}});
        if let Some(value) = annotation {
            set["metadata"]["annotations"] = json!({TEMPLATE_GENERATION: value});
        }
        set
    }

    fn generation(object: &Value) -> &str {
        object["metadata"]["annotations"][TEMPLATE_GENERATION]
            .as_str()
            .unwrap()
    }

    #[test]
    fn a_new_template_takes_the_next_generation_whatever_the_client_says() {
        let mut created = set("a:1", None);
        prepare(None, &mut created, Change::Object).unwrap();
        assert_eq!(generation(&created), "1");
        let mut chosen = set("a:1", Some("7"));
        prepare(None, &mut chosen, Change::Object).unwrap();
        assert_eq!(
            generation(&chosen),
            "7",
            "a create keeps a client's generation"
        );
        let mut low = set("a:1", Some("-3"));
        prepare(None, &mut low, Change::Object).unwrap();
        assert_eq!(generation(&low), "1");

        let mut relabelled = set("a:1", Some("40"));
        relabelled["metadata"]["labels"] = json!({"x": "y"});
        prepare(Some(&created), &mut relabelled, Change::Object).unwrap();
        assert_eq!(
            generation(&relabelled),
            "1",
            "an update never takes the client's"
        );
        let mut rolled = set("a:2", None);
        prepare(Some(&created), &mut rolled, Change::Object).unwrap();
        assert_eq!(generation(&rolled), "2");
        let mut status = set("a:3", Some("9"));
        prepare(Some(&rolled), &mut status, Change::Status).unwrap();
        assert_eq!(
            generation(&status),
            "2",
            "a status write keeps the stored one"
        );
    }

    #[test]
    fn an_annotation_that_is_not_an_integer_does_not_decode() {
        let mut bad = set("a:1", Some("two"));
        let Err(Refusal::Decode(message)) = prepare(None, &mut bad, Change::Object) else {
            panic!("accepted");
        };
        assert!(message.ends_with(r#"strconv.ParseInt: parsing "two": invalid syntax"#));
    }
}
