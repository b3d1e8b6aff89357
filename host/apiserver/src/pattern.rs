//! The `pattern`s of custom resource schemas: compiled once and kept, since every write of a
//! custom resource checks its strings against them, and refused when a definition is written with
//! the messages of Go's `regexp` package, which kube-apiserver compiles them with.
//!
//! A pattern is Go's syntax, read with Go's meaning: `\Q...\E` quotes literal text, and the Perl
//! classes `\d`, `\w`, `\s` and the boundary `\b` are ASCII (Rust's `regex` makes them Unicode,
//! so `^\d+$` would accept Arabic-Indic digits that a cluster refuses).

use regex::Regex;
use regex_syntax::ast::{Ast, ErrorKind, Span};
use std::borrow::Cow;
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
    let re = compiled_unkept(pattern).ok()?;
    let mut kept = kept();
    if kept.len() >= KEPT {
        kept.clear();
    }
    kept.insert(pattern.to_owned(), re.clone());
    Some(re)
}

/// Whether `pattern` is in the cache.
#[cfg(test)]
pub(crate) fn kept(pattern: &str) -> bool {
    COMPILED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(pattern)
}

/// `pattern` compiled as Go reads it, and not kept: for a pattern a rule may read from the object
/// it checks (CEL's `self.code.matches(self.format)`), which whoever writes objects chooses, so
/// that keeping it would let any writer fill the cache with large automata.
///
/// # Errors
/// Why it does not compile, in Go's words where [`error`] knows them.
pub fn compiled_unkept(pattern: &str) -> Result<Regex, String> {
    Regex::new(&rust_syntax(pattern, true)).map_err(|_| {
        error(pattern)
            .unwrap_or_else(|| "error parsing regexp: invalid regular expression".to_owned())
    })
}

/// Why `pattern` does not compile, in the words of Go's `regexp.Compile` (`error parsing regexp:
/// missing argument to repetition operator: `+``); `None` when it compiles.
pub fn error(pattern: &str) -> Option<String> {
    // Read with Rust's Unicode classes, which are written as Go's, so that what an error quotes
    // is the definition's own text (but for `\Q...\E`, which Rust's parser lacks).
    let pattern = &*rust_syntax(pattern, false);
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

/// `pattern`, a Go regular expression, in the syntax of Rust's `regex` with the same meaning:
/// the text between `\Q` and `\E` (or the end) escaped, and, when `ascii` is set, `\d`, `\w`,
/// `\s`, their negations and `\b`, `\B` made ASCII as Go's are (RE2's `perl_groups`; `\s` is
/// `[\t\n\f\r ]`, without the vertical tab Rust's ASCII `\s` has).
fn rust_syntax(pattern: &str, ascii: bool) -> Cow<'_, str> {
    if !pattern.contains('\\') {
        return Cow::Borrowed(pattern);
    }
    const SPACE: &str = r"\t\n\x0C\r ";
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    // Inside a bracketed class, and whether a `]` would be its first member (a literal).
    let (mut class, mut first) = (false, false);
    while let Some(c) = chars.next() {
        let was_first = std::mem::take(&mut first);
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match (e, class, ascii) {
                    ('Q', false, _) => {
                        let mut literal = String::new();
                        while let Some(q) = chars.next() {
                            if q == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            literal.push(q);
                        }
                        out.push_str(&regex::escape(&literal));
                    }
                    ('d', false, true) => out.push_str("[0-9]"),
                    ('D', false, true) => out.push_str("[^0-9]"),
                    ('w', false, true) => out.push_str("[0-9A-Za-z_]"),
                    ('W', false, true) => out.push_str("[^0-9A-Za-z_]"),
                    ('b' | 'B', false, true) => {
                        out.push_str("(?-u:\\");
                        out.push(e);
                        out.push(')');
                    }
                    ('s', false, true) => out.push_str(&format!("[{SPACE}]")),
                    ('S', false, true) => out.push_str(&format!("[^{SPACE}]")),
                    ('d', true, true) => out.push_str("[:digit:]"),
                    ('D', true, true) => out.push_str("[:^digit:]"),
                    ('w', true, true) => out.push_str("[:word:]"),
                    ('W', true, true) => out.push_str("[:^word:]"),
                    ('s', true, true) => out.push_str(SPACE),
                    ('S', true, true) => out.push_str(&format!("[^{SPACE}]")),
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if !class => {
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                (class, first) = (true, true);
            }
            // A POSIX class (`[:alpha:]`) inside a bracket, copied whole.
            '[' if chars.peek() == Some(&':') => {
                out.push('[');
                while let Some(p) = chars.next() {
                    out.push(p);
                    if p == ':' && chars.peek() == Some(&']') {
                        chars.next();
                        out.push(']');
                        break;
                    }
                }
            }
            ']' if class && !was_first => {
                out.push(']');
                class = false;
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
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

    /// Each pattern compiles and matches its text, or not, as the case says.
    fn assert_matches(cases: &[(&str, &str, bool)]) {
        for &(pattern, text, matches) in cases {
            let re = compiled(pattern).unwrap_or_else(|| panic!("{pattern} compiles"));
            assert_eq!(re.is_match(text), matches, "{pattern} on {text:?}");
        }
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        // Go's regexp: \d is [0-9], \w is [0-9A-Za-z_], \s is [\t\n\f\r ], \b an ASCII
        // boundary; Rust's are Unicode.
        let cases: &[(&str, &str, bool)] = &[
            (r"^\d+$", "123", true),
            (r"^\d+$", "١٢٣", false),
            (r"^[\d]+$", "١٢٣", false),
            (r"^[^\d]+$", "١٢٣", true),
            (r"^\D+$", "١٢٣", true),
            (r"^[\D]+$", "123", false),
            (r"^\w+$", "a_9", true),
            (r"^\w+$", "é", false),
            (r"^[\w-]+$", "ab-c", true),
            (r"^[\w-]+$", "äb", false),
            (r"^\W$", "é", true),
            (r"^\s$", "\u{a0}", false),
            (r"^\s$", "\u{b}", false),
            (r"^\s$", "\u{c}", true),
            (r"^\S$", "\u{a0}", true),
            (r"^a[\s]b$", "a b", true),
            (r"^a[\S]b$", "a b", false),
            (r"\bé", "xé", true),
            (r"x\Bé", "xé", false),
            (r"^[[:alpha:]\d]+$", "ab1", true),
            (r"^[]\d]+$", "]1", true),
            (r"^\\d$", "\\d", true),
        ];
        assert_matches(cases);
    }

    #[test]
    fn quoted_text_is_literal() {
        let cases: &[(&str, &str, bool)] = &[
            (r"^\Q.*+\E$", ".*+", true),
            (r"^\Q.*+\E$", "abc", false),
            (r"^a\Q(b)\Ec+$", "a(b)cc", true),
            (r"^\Q[x]", "[x] and more", true),
            (r"^\Q\d\E$", r"\d", true),
        ];
        assert_matches(cases);
        assert_eq!(error(r"^\Q(\E$"), None);
    }
}
