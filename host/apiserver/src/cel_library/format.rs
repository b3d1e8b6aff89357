//! Kubernetes' format library for CEL (`k8s.io/apiserver/pkg/cel/library/format.go`):
//! `format.named(name)` (an optional format) and `format.dns1123Label()`, `dns1123Subdomain()`,
//! `dns1035Label()`, `qualifiedName()`, their `...Prefix()` forms (a trailing `-` allowed, as in
//! `generateName`), `labelValue()`, `uri()`, `uuid()`, `byte()`, `date()`, `datetime()`; on a
//! format, `validate(s)` is `optional.none()` when `s` is valid, else the list of what is wrong.
//! The name rules give apimachinery's messages; `uri`, `uuid`, `byte`, `date` and `datetime` are
//! checked as the CRD `format`s are ([`crate::format`]), with a message of their own.

use cel::common::types::{CelList, CelOptional, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{take, text};
use crate::validation;

const FORMAT: Type = Type::new_unspecified_type("kubernetes.NamedFormat");
static FORMAT_TYPE: Type = FORMAT;

/// One function per named format (`format.dns1123Label()`, ...): a CEL function is a plain `fn`,
/// so each name gets its own.
macro_rules! named_formats {
    ($($function:ident => $name:literal),* $(,)?) => {
        $(
            fn $function<'b, 'v>(
                _args: Vec<CowVal<'b, 'v>>,
            ) -> Result<CowVal<'b, 'v>, ExecutionError> {
                Ok(CowVal::owned(Format($name)))
            }
        )*
        /// The library's names of the formats, with the function that gives each.
        const NAMES: &[(&str, cel::common::functions::Function)] = &[$(($name, $function)),*];
    };
}

named_formats! {
    dns1123_label => "dns1123Label",
    dns1123_subdomain => "dns1123Subdomain",
    dns1035_label => "dns1035Label",
    qualified_name => "qualifiedName",
    dns1123_label_prefix => "dns1123LabelPrefix",
    dns1123_subdomain_prefix => "dns1123SubdomainPrefix",
    dns1035_label_prefix => "dns1035LabelPrefix",
    label_value => "labelValue",
    uri => "uri",
    uuid => "uuid",
    byte => "byte",
    date => "date",
    datetime => "datetime",
}

/// A named format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format(&'static str);

opaque!(Format, FORMAT_TYPE);

impl Format {
    /// What is wrong with `s` in this format (empty when it is valid).
    fn errors(self, s: &str) -> Vec<String> {
        let name = |r: Result<(), validation::InvalidIdentifier>| {
            r.err().map(|e| e.to_string()).into_iter().collect()
        };
        let masked = || validation::mask_trailing_dash(s);
        match self.0 {
            "dns1123Label" => name(validation::dns1123_label(s)),
            "dns1123Subdomain" => name(validation::dns1123_subdomain(s)),
            "dns1035Label" => name(validation::dns1035_label(s)),
            "qualifiedName" => name(validation::qualified_name(s)),
            "dns1123LabelPrefix" => name(validation::dns1123_label(&masked())),
            "dns1123SubdomainPrefix" => name(validation::dns1123_subdomain(&masked())),
            "dns1035LabelPrefix" => name(validation::dns1035_label(&masked())),
            "labelValue" => name(validation::label_value(s)),
            other => {
                if crate::format::valid(other, s) {
                    Vec::new()
                } else {
                    vec![format!("does not match the {other} format")]
                }
            }
        }
    }
}

/// Registers the library on `env`.
pub(super) fn declare(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("format.named", "format_named", vec![STRING_TYPE], named)?;
    for (name, function) in NAMES {
        env.add_overload(
            &format!("format.{name}"),
            &format!("format_{name}"),
            vec![],
            *function,
        )?;
    }
    env.add_member_overload(
        "validate",
        "format_validate",
        FORMAT,
        vec![STRING_TYPE],
        validate,
    )?;
    Ok(())
}

fn named<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let wanted = text(s.as_ref(), "format.named")?;
    Ok(CowVal::owned(
        match NAMES.iter().find(|(n, _)| *n == wanted) {
            Some((n, _)) => CelOptional::of(Box::new(Format(n))),
            None => CelOptional::none(),
        },
    ))
}

fn validate<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [f, s] = take(args)?;
    let format = f
        .as_ref()
        .downcast_ref::<Format>()
        .ok_or_else(|| ExecutionError::function_error("validate", "expects a format"))?;
    let errors = format.errors(text(s.as_ref(), "validate")?);
    Ok(CowVal::owned(if errors.is_empty() {
        CelOptional::none()
    } else {
        let list: Vec<Box<dyn Val>> = errors
            .into_iter()
            .map(|e| Box::new(CelString::from(e)) as Box<dyn Val>)
            .collect();
        CelOptional::of(Box::new(CelList::from(list)))
    }))
}
