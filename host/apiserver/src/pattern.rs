//! The `pattern`s of custom resource schemas: compiled once and kept, since every write of a
//! custom resource checks its strings against them, and refused when a definition is written with
//! the messages of Go's `regexp` package, which kube-apiserver compiles them with.

use regex::Regex;
use regex_syntax::ast::{Ast, ErrorKind, Span};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

/// Patterns kept compiled; past this many the cache starts again (definitions are few, but
/// whoever may write them must not grow it without bound).
const KEPT: usize = 1024;

static COMPILED: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Mutex::default);

/// `pattern` compiled, from the cache when it was compiled before; `None` when it does not compile.
pub fn compiled(pattern: &str) -> Option<Regex> {
    let kept = || COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(re) = kept().get(pattern) {
        return Some(re.clone());
    }
    // Compiled without the lock: other writes do not wait for it.
    let re = Regex::new(pattern).ok()?;
    let mut kept = kept();
    if kept.len() >= KEPT {
        kept.clear();
    }
    kept.insert(pattern.to_owned(), re.clone());
    Some(re)
}

/// Why `pattern` does not compile, in the words of Go's `regexp.Compile` (`error parsing regexp:
/// missing argument to repetition operator: `+``); `None` when it compiles.
pub fn error(pattern: &str) -> Option<String> {
    let rust = match Regex::new(pattern) {
        Ok(_) => {
            // Perl syntax, which Go follows here, does not stack repetition operators.
            let ast = regex_syntax::ast::parse::Parser::new()
                .parse(pattern)
                .ok()?;
            let stacked = stacked_repetition(&ast)?;
            let expr = pattern.get(stacked.start.offset..stacked.end.offset)?;
            return Some(format!(
                "error parsing regexp: invalid nested repetition operator: `{expr}`"
            ));
        }
        Err(e) => e,
    };
    let Err(e) = regex_syntax::ast::parse::Parser::new().parse(pattern) else {
        // The syntax is fine; what fails is beyond it (an unknown Unicode class, the size).
        return Some(format!("error parsing regexp: {rust}"));
    };
    let (start, end) = (e.span().start.offset, e.span().end.offset);
    let at = pattern.get(start..end).unwrap_or(pattern);
    let (code, expr) = match e.kind() {
        // The operator, which the span (empty) only points at.
        ErrorKind::RepetitionMissing => {
            let rest = pattern.get(start..).unwrap_or_default();
            let len = match rest.strip_prefix('{') {
                Some(count) => count.find('}').map_or(1, |i| i + 2),
                None => rest.chars().next().map_or(0, char::len_utf8),
            };
            ("missing argument to repetition operator", &rest[..len])
        }
        ErrorKind::GroupUnclosed => ("missing closing )", pattern),
        ErrorKind::GroupUnopened => ("unexpected )", pattern),
        ErrorKind::ClassUnclosed => ("missing closing ]", pattern.get(start..).unwrap_or(at)),
        ErrorKind::ClassRangeInvalid => ("invalid character class range", at),
        ErrorKind::RepetitionCountInvalid => ("invalid repeat count", at),
        ErrorKind::EscapeUnrecognized
        | ErrorKind::EscapeUnexpectedEof
        | ErrorKind::UnsupportedBackreference
        | ErrorKind::ClassEscapeInvalid => ("invalid escape sequence", at),
        ErrorKind::UnsupportedLookAround
        | ErrorKind::FlagUnrecognized
        | ErrorKind::GroupNameInvalid
        | ErrorKind::GroupNameEmpty => ("invalid or unsupported Perl syntax", at),
        _ => return Some(format!("error parsing regexp: {rust}")),
    };
    Some(format!("error parsing regexp: {code}: `{expr}`"))
}

/// The span of the first repetition operator applied to another (`a**`, `a+?*`): both
/// operators, as Go's `ErrInvalidRepeatOp` quotes them.
fn stacked_repetition(ast: &Ast) -> Option<Span> {
    match ast {
        Ast::Repetition(rep) => match &*rep.ast {
            Ast::Repetition(inner) => Some(Span::new(inner.op.span.start, rep.op.span.end)),
            other => stacked_repetition(other),
        },
        Ast::Group(group) => stacked_repetition(&group.ast),
        Ast::Alternation(alternation) => alternation.asts.iter().find_map(stacked_repetition),
        Ast::Concat(concat) => concat.asts.iter().find_map(stacked_repetition),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_gos() {
        // Go's own messages (regexp/syntax), and the one kube-apiserver's CRD tests expect.
        for (pattern, message) in [
            ("+", "missing argument to repetition operator: `+`"),
            ("a(b", "missing closing ): `a(b`"),
            ("a)b", "unexpected ): `a)b`"),
            ("a[bc", "missing closing ]: `[bc`"),
            ("[z-a]", "invalid character class range: `z-a`"),
            (r"\q", r"invalid escape sequence: `\q`"),
            ("a{2,1}", "invalid repeat count: `{2,1}`"),
            ("x|*", "missing argument to repetition operator: `*`"),
            ("a**", "invalid nested repetition operator: `**`"),
            ("(a+?*)", "invalid nested repetition operator: `+?*`"),
        ] {
            assert_eq!(
                error(pattern).as_deref(),
                Some(format!("error parsing regexp: {message}").as_str()),
                "{pattern}"
            );
        }
        assert_eq!(error("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), None);
        assert!(error("(?=a)").is_some_and(|e| e.contains("invalid or unsupported Perl syntax")));
    }

    #[test]
    fn a_pattern_is_compiled_once() {
        let a = compiled("^x+$").expect("compiles");
        let b = compiled("^x+$").expect("compiles");
        assert!(a.is_match("xx") && b.is_match("xxx"));
        assert!(COMPILED.lock().unwrap().contains_key("^x+$"));
        assert!(compiled("(").is_none());
    }
}
