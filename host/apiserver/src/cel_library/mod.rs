//! The CEL environment of CRD validation rules: cel's standard library with the libraries
//! Kubernetes adds to it for every rule (`k8s.io/apiserver/pkg/cel/environment/base.go`, the
//! parts a CRD rule can use): cel-go's strings extension at version 2 and sets extension, and
//! Kubernetes' own lists, regex, quantity, IP, CIDR, URL and format libraries
//! (`k8s.io/apiserver/pkg/cel/library`).

/// `Val` for a library's own value type `$t` of CEL type `$type`, equal to values of its own type
/// only; with `as_comparer` ordered by its `Comparer`, with `as_indexer` its fields selected
/// through its `Indexer`.
macro_rules! opaque {
    ($t:ty, $type:ident) => {
        opaque!(@impl $t, $type, {});
    };
    ($t:ty, $type:ident, as_comparer) => {
        opaque!(@impl $t, $type, {
            fn as_comparer(&self) -> Option<&dyn cel::common::traits::Comparer> {
                Some(self)
            }
        });
    };
    ($t:ty, $type:ident, as_indexer) => {
        opaque!(@impl $t, $type, {
            fn as_indexer<'b, 'v>(
                &'b self,
            ) -> Option<&'b (dyn cel::common::traits::Indexer + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
        });
    };
    (@impl $t:ty, $type:ident, { $($accessor:tt)* }) => {
        impl cel::common::value::Val for $t {
            fn get_type(&self) -> &cel::common::types::Type {
                &$type
            }

            fn cel_type() -> &'static cel::common::types::Type {
                &$type
            }

            $($accessor)*

            fn equals(&self, other: &dyn cel::common::value::Val) -> bool {
                other.downcast_ref::<Self>().is_some_and(|o| o == self)
            }

            fn clone_as_boxed<'v>(&self) -> Box<dyn cel::common::value::Val + 'v>
            where
                Self: 'v,
            {
                Box::new(Clone::clone(self))
            }

            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
        }

        impl cel::common::value::StaticVal for $t {}
    };
}

pub mod authz;
mod check;
pub mod cost;
pub mod escaping;
mod format;
mod net;
mod quantity;
mod url;

use std::cmp::Ordering;
use std::sync::{Arc, LazyLock};

use cel::common::types::{
    CelBool, CelInt, CelList, CelString, DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(build()));

/// An evaluation error in cel-go's words where they differ from the `cel` crate's (`no such
/// key: k`, `division by zero`, `modulus by zero`, `integer overflow`), and a library function's
/// error as its own message, which the libraries here write in Kubernetes' words (cel-go reports
/// a function's error without the crate's `Error executing function` prefix).
pub(crate) fn error_text(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::Overflow(_, cel::Value::UInt(_), _) => {
            "unsigned integer overflow".to_owned()
        }
        ExecutionError::Overflow(..) => "integer overflow".to_owned(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A JSON scalar as CEL holds it, for CRD rules and admission policies alike: an integer is an
/// `int`, any other number a `double`. Lists and objects are their callers' to convert (each
/// names an object's keys its way); given one, this is `null`.
pub(crate) fn scalar(value: &serde_json::Value) -> cel::Value {
    use serde_json::Value;
    match value {
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => n.as_i64().map_or_else(
            || cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            cel::Value::Int,
        ),
        Value::String(s) => cel::Value::from(s.as_str()),
        Value::Null | Value::Array(_) | Value::Object(_) => cel::Value::Null,
    }
}

/// The environment, built once.
#[must_use]
pub fn env() -> Arc<Env> {
    Arc::clone(&ENV)
}

fn build() -> Env {
    let mut env = Env::stdlib();
    // The declarations are fixed and distinct, so a failure is a bug caught by the tests here.
    let declared = cel::extensions::strings(&mut env)
        .and_then(|()| lists(&mut env))
        .and_then(|()| regex(&mut env))
        .and_then(|()| sets(&mut env))
        .and_then(|()| quantity::declare(&mut env))
        .and_then(|()| net::declare(&mut env))
        .and_then(|()| url::declare(&mut env))
        .and_then(|()| format::declare(&mut env))
        .and_then(|()| authz::declare(&mut env));
    if let Err(error) = declared {
        tracing::error!(%error, "the Kubernetes CEL libraries could not be declared");
    }
    env
}

/// Kubernetes' lists library: `isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`.
fn lists(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    Ok(())
}

/// CEL's `matches` (global and on a string) and Kubernetes' regex library: `find` and `findAll`
/// (with an optional limit), all reading patterns as Go's `regexp` does ([`crate::pattern`]);
/// the `cel` crate's own `matches`, with Rust's Unicode classes, is left out.
fn regex(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(
        "matches",
        "matches",
        vec![STRING_TYPE, STRING_TYPE],
        matches,
    )?;
    env.add_member_overload(
        "matches",
        "string_matches_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        matches,
    )?;
    env.add_member_overload(
        "find",
        "string_find_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    Ok(())
}

/// cel-go's sets extension: `sets.contains`, `sets.equivalent`, `sets.intersects`.
fn sets(env: &mut Env) -> Result<(), cel::DeclarationError> {
    let two_lists = || vec![LIST_TYPE, LIST_TYPE];
    env.add_overload(
        "sets.contains",
        "list_sets_contains_list",
        two_lists(),
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "list_sets_equivalent_list",
        two_lists(),
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "list_sets_intersects_list",
        two_lists(),
        sets_intersects,
    )?;
    Ok(())
}

fn take<'b, 'v, const N: usize>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<[CowVal<'b, 'v>; N], ExecutionError> {
    args.try_into()
        .map_err(|args: Vec<_>| ExecutionError::invalid_argument_count(N, args.len()))
}

/// A list's elements, borrowed.
type Elements<'b, 'v> = Vec<&'b (dyn Val + 'v)>;

/// The elements of a list argument.
fn elements<'b, 'v>(
    list: &'b (dyn Val + 'v),
    function: &str,
) -> Result<Elements<'b, 'v>, ExecutionError> {
    let iterable = list.as_iterable().ok_or_else(|| {
        ExecutionError::function_error(function, "expects a list receiver or argument")
    })?;
    let mut items = iterable.iter();
    let mut out = Vec::new();
    while let Some(item) = items.next() {
        out.push(item);
    }
    Ok(out)
}

fn text<'b>(value: &'b dyn Val, function: &str) -> Result<&'b str, ExecutionError> {
    value
        .downcast_ref::<CelString>()
        .map(CelString::inner)
        .ok_or_else(|| ExecutionError::function_error(function, "expects a string"))
}

fn compare(a: &dyn Val, b: &dyn Val, function: &str) -> Result<Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| {
            ExecutionError::function_error(function, "list elements must be comparable")
        })?
        .compare(b)
}

fn boolean<'b, 'v>(value: bool) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelBool::from(value)))
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = take(args)?;
    let items = elements(list.as_ref(), "isSorted")?;
    for pair in items.windows(2) {
        if compare(pair[0], pair[1], "isSorted")? == Ordering::Greater {
            return boolean(false);
        }
    }
    boolean(true)
}

/// The sum of the elements (ints, uints, doubles or durations); 0 for an empty list.
fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = take(args)?;
    let items = elements(list.as_ref(), "sum")?;
    let Some((first, rest)) = items.split_first() else {
        return Ok(CowVal::owned(CelInt::from(0)));
    };
    let mut total: Box<dyn Val + 'v> = first.clone_as_boxed();
    for item in rest {
        let adder = total.as_adder().ok_or_else(|| {
            ExecutionError::function_error("sum", "list elements must be summable")
        })?;
        let next = adder.add(*item)?.into_owned();
        total = next;
    }
    Ok(CowVal::Owned(total))
}

fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = take(args)?;
    let items = elements(list.as_ref(), function)?;
    let Some((first, rest)) = items.split_first() else {
        return Err(ExecutionError::function_error(
            function,
            format!("{function}(list) called on empty list"),
        ));
    };
    let mut best = *first;
    for item in rest {
        if compare(*item, best, function)? == keep {
            best = *item;
        }
    }
    Ok(CowVal::Owned(best.clone_as_boxed()))
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "max", Ordering::Greater)
}

fn position<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    last: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, wanted] = take(args)?;
    let items = elements(list.as_ref(), function)?;
    let found = if last {
        items.iter().rposition(|item| item.equals(wanted.as_ref()))
    } else {
        items.iter().position(|item| item.equals(wanted.as_ref()))
    };
    let index = found.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX));
    Ok(CowVal::owned(CelInt::from(index)))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, "indexOf", false)
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, "lastIndexOf", true)
}

/// `source` compiled as Go reads it ([`crate::pattern`]). Not kept: the pattern may come from the
/// object a rule checks, and so from any writer.
fn pattern(source: &str, function: &str) -> Result<::regex::Regex, ExecutionError> {
    crate::pattern::compiled_unkept(source)
        .map_err(|why| ExecutionError::function_error(function, why))
}

/// Whether the pattern matches anywhere in the string.
fn matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [subject, regex] = take(args)?;
    let re = pattern(text(regex.as_ref(), "matches")?, "matches")?;
    let found = re.is_match(text(subject.as_ref(), "matches")?);
    Ok(CowVal::owned(CelBool::from(found)))
}

/// The first match of the pattern, or "" when there is none.
fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [subject, regex] = take(args)?;
    let re = pattern(text(regex.as_ref(), "find")?, "find")?;
    let found = re
        .find(text(subject.as_ref(), "find")?)
        .map_or_else(String::new, |m| m.as_str().to_owned());
    Ok(CowVal::owned(CelString::from(found)))
}

fn matches_upto<'b, 'v>(
    subject: &CowVal<'b, 'v>,
    regex: &CowVal<'b, 'v>,
    limit: Option<usize>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let re = pattern(text(regex.as_ref(), "findAll")?, "findAll")?;
    let found: Vec<Box<dyn Val>> = re
        .find_iter(text(subject.as_ref(), "findAll")?)
        .take(limit.unwrap_or(usize::MAX))
        .map(|m| Box::new(CelString::from(m.as_str().to_owned())) as Box<dyn Val>)
        .collect();
    Ok(CowVal::owned(CelList::from(found)))
}

/// Every match of the pattern.
fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [subject, regex] = take(args)?;
    matches_upto(&subject, &regex, None)
}

/// At most `n` matches (all when `n` is negative), as Go's `FindAllString`.
fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [subject, regex, n] = take(args)?;
    let n = n
        .as_ref()
        .downcast_ref::<CelInt>()
        .map(|i| *i.inner())
        .ok_or_else(|| ExecutionError::function_error("findAll", "expects an int limit"))?;
    matches_upto(&subject, &regex, usize::try_from(n).ok())
}

fn contains_all(outer: &[&dyn Val], inner: &[&dyn Val]) -> bool {
    inner
        .iter()
        .all(|wanted| outer.iter().any(|have| have.equals(*wanted)))
}

fn two_lists<'b, 'v>(
    args: &'b [CowVal<'b, 'v>; 2],
    function: &str,
) -> Result<(Elements<'b, 'v>, Elements<'b, 'v>), ExecutionError> {
    Ok((
        elements(args[0].as_ref(), function)?,
        elements(args[1].as_ref(), function)?,
    ))
}

/// Whether the first list holds every element of the second.
fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args: [CowVal<'_, '_>; 2] = take(args)?;
    let (a, b) = two_lists(&args, "sets.contains")?;
    boolean(contains_all(&a, &b))
}

/// Whether each list holds every element of the other.
fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args: [CowVal<'_, '_>; 2] = take(args)?;
    let (a, b) = two_lists(&args, "sets.equivalent")?;
    boolean(contains_all(&a, &b) && contains_all(&b, &a))
}

/// Whether the lists share an element.
fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args: [CowVal<'_, '_>; 2] = take(args)?;
    let (a, b) = two_lists(&args, "sets.intersects")?;
    boolean(a.iter().any(|x| b.iter().any(|y| x.equals(*y))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expression: &str) -> Result<cel::Value, String> {
        let env = env();
        let program = env.compile(expression).map_err(|e| e.to_string())?;
        let context = cel::Context::with_env(env);
        program.execute(&context).map_err(|e| e.to_string())
    }

    fn truth(expression: &str) {
        assert_eq!(eval(expression), Ok(cel::Value::Bool(true)), "{expression}");
    }

    #[test]
    fn the_strings_extension() {
        truth("'Hello'.lowerAscii() == 'hello' && 'a,b'.split(',') == ['a', 'b']");
        truth("['a', 'b'].join('-') == 'a-b' && ' x '.trim() == 'x'");
        truth(
            "'abc'.indexOf('c') == 2 && 'abcabc'.lastIndexOf('b') == 4 && 'abc'.charAt(1) == 'b'",
        );
        truth("'abcd'.substring(1, 3) == 'bc' && 'aXa'.replace('a', 'b') == 'bXb'");
        truth("'a'.upperAscii() == 'A' && strings.quote('x') == '\"x\"'");
    }

    #[test]
    fn the_lists_library() {
        truth("[1, 2, 3].isSorted() && ![2, 1].isSorted() && ['a', 'b'].isSorted()");
        truth("[1, 2, 3].sum() == 6 && [].sum() == 0 && [1.5, 2.5].sum() == 4.0");
        truth("[3, 1, 2].min() == 1 && [3, 1, 2].max() == 3 && ['b', 'a'].min() == 'a'");
        truth("[1, 2, 1].indexOf(1) == 0 && [1, 2, 1].lastIndexOf(1) == 2 && [1].indexOf(5) == -1");
        let empty = eval("[].min()").unwrap_err();
        assert!(empty.contains("min(list) called on empty list"), "{empty}");
    }

    #[test]
    fn the_regex_library() {
        truth("'abc 123'.find('[0-9]+') == '123' && 'abc'.find('[0-9]+') == ''");
        truth(
            "'1 2 3'.findAll('[0-9]') == ['1', '2', '3'] && '1 2 3'.findAll('[0-9]', 2) == ['1', '2']",
        );
        truth("'1 2'.findAll('[0-9]', -1) == ['1', '2'] && '1 2'.findAll('[0-9]', 0) == []");
        let bad = eval("'a'.find('(')").unwrap_err();
        assert!(bad.contains("missing closing )"), "{bad}");
        // Go's regexp, as cel-go's library uses it: \d is ASCII, \Q...\E quotes.
        truth(r"'x١٢٣ 42'.find('\\d+') == '42'");
        truth(r"'a.b'.findAll('\\Q.\\E') == ['.']");
        truth(r"!'١٢٣'.matches('^\\d+$') && '123'.matches('^\\d+$') && matches('a.b', '\\Q.\\E')");
        // A rule's pattern may come from the object it checks: it is compiled, not kept.
        truth("!'x'.matches('^x-from-an-object$')");
        assert!(!crate::pattern::kept("^x-from-an-object$"));
        let bad = eval("'a'.matches('(')").unwrap_err();
        assert!(bad.contains("missing closing )"), "{bad}");
    }

    #[test]
    fn the_sets_extension() {
        truth("sets.contains([1, 2, 3], [3, 1]) && !sets.contains([1], [2])");
        truth("sets.equivalent([1, 2], [2, 1, 1]) && !sets.equivalent([1], [1, 2])");
        truth("sets.intersects([1, 2], [2, 5]) && !sets.intersects([1], [])");
    }

    #[test]
    fn every_library_is_declared() {
        // A declaration conflict would leave a library out without failing the build.
        let mut env = Env::stdlib();
        cel::extensions::strings(&mut env).unwrap();
        lists(&mut env).unwrap();
        regex(&mut env).unwrap();
        sets(&mut env).unwrap();
        quantity::declare(&mut env).unwrap();
        net::declare(&mut env).unwrap();
        url::declare(&mut env).unwrap();
        format::declare(&mut env).unwrap();
    }

    #[test]
    fn the_format_library_and_optional_values() {
        truth(
            "!format.dns1123Label().validate('my-name').hasValue() && format.dns1123Label().validate('My_Name').hasValue()",
        );
        truth(
            "format.dns1123Label().validate('My_Name').value()[0].startsWith('a lowercase RFC 1123 label')",
        );
        truth(
            "!format.dns1123LabelPrefix().validate('web-').hasValue() && format.dns1123Label().validate('web-').hasValue()",
        );
        truth("format.named('uuid').hasValue() && !format.named('nope').hasValue()");
        truth(
            "!format.named('uuid').value().validate('f81d4fae-7dec-11d0-a765-00a0c91e6bf6').hasValue()",
        );
        truth(
            "format.uuid().validate('x').hasValue() && !format.labelValue().validate('').hasValue()",
        );
        truth("{'a': 1}.?b.orValue(2) == 2 && optional.of(1).hasValue()");
    }

    #[test]
    fn the_url_library() {
        truth(
            "url('https://example.com:8443/x').getScheme() == 'https' && url('https://example.com:8443/x').getHost() == 'example.com:8443'",
        );
        truth(
            "url('https://example.com:8443/x').getHostname() == 'example.com' && url('https://example.com:8443/x').getPort() == '8443'",
        );
        truth(
            "url('https://[::1]/a%20b').getHostname() == '::1' && url('https://[::1]/a%20b').getEscapedPath() == '/a%20b'",
        );
        truth("url('https://e.com/?k=a&k=b&j=c').getQuery() == {'k': ['a', 'b'], 'j': ['c']}");
        truth("isURL('/absolute/path') && !isURL('relative/path') && !isURL('https://e.com:port')");
        assert!(eval("url('nope')").unwrap_err().contains("URL parse error"));
    }

    #[test]
    fn the_ip_and_cidr_libraries() {
        truth(
            "isIP('10.1.2.3') && !isIP('10.1.2') && ip('10.1.2.3').family() == 4 && ip('::1').family() == 6",
        );
        truth(
            "ip('127.0.0.1').isLoopback() && ip('0.0.0.0').isUnspecified() && ip('10.0.0.1').isGlobalUnicast()",
        );
        truth(
            "ip('fe80::1').isLinkLocalUnicast() && ip('ff02::1').isLinkLocalMulticast() && !ip('8.8.8.8').isLinkLocalUnicast()",
        );
        truth(
            "ip.isCanonical('2001:db8::1') && !ip.isCanonical('2001:DB8::1') && ip('10.0.0.1') == ip('10.0.0.1')",
        );
        truth(
            "cidr('10.0.0.0/8').containsIP(ip('10.9.9.9')) && cidr('10.0.0.0/8').containsIP('10.1.1.1') && !cidr('10.0.0.0/8').containsIP('11.0.0.1')",
        );
        truth(
            "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && !cidr('10.1.0.0/16').containsCIDR(cidr('10.0.0.0/8'))",
        );
        truth(
            "cidr('192.168.1.7/24').masked() == cidr('192.168.1.0/24') && cidr('192.168.1.7/24').prefixLength() == 24",
        );
        truth(
            "cidr('192.168.1.7/24').ip() == ip('192.168.1.7') && isCIDR('::/0') && !isCIDR('10.0.0.0/33')",
        );
        assert!(
            eval("ip('::ffff:1.2.3.4')")
                .unwrap_err()
                .contains("IPv4-mapped")
        );
        truth(
            "string(ip('2001:DB8::1')) == '2001:db8::1' && string(cidr('10.1.2.3/8')) == '10.1.2.3/8'",
        );
        truth("string(1) == '1' && string('x') == 'x'");
    }

    #[test]
    fn the_quantity_library() {
        truth(
            "quantity('1Gi').isGreaterThan(quantity('1000Mi')) && quantity('1k').isLessThan(quantity('1Ki'))",
        );
        truth(
            "quantity('1.5').compareTo(quantity('1500m')) == 0 && quantity('1500m') == quantity('1.5')",
        );
        truth("isQuantity('10Mi') && !isQuantity('ten') && quantity('2k').asInteger() == 2000");
        truth("!quantity('1.5').isInteger() && quantity('-3').sign() == -1");
        truth(
            "quantity('1').add(quantity('500m')) == quantity('1.5') && quantity('2').sub(1) == quantity('1')",
        );
        truth("quantity('250m').asApproximateFloat() == 0.25");
        assert!(eval("quantity('1.5').asInteger()").is_err());
        assert!(eval("quantity('x') == quantity('1')").is_err());
    }

    #[test]
    fn evaluation_errors_read_as_cel_go_words_them() {
        let error = |expression: &str| {
            let env = env();
            let program = env.compile(expression).expect("compiles");
            let context = cel::Context::with_env(env);
            program
                .execute(&context)
                .map(|v| format!("{v:?}"))
                .map_err(|e| error_text(&e))
        };
        assert_eq!(error("{'a': 1}['b']"), Err("no such key: b".to_owned()));
        assert_eq!(error("1 / 0"), Err("division by zero".to_owned()));
        assert_eq!(error("5 % 0"), Err("modulus by zero".to_owned()));
        assert_eq!(
            error("9223372036854775807 + 1"),
            Err("integer overflow".to_owned())
        );
        let quantity = error("quantity('1.2.3')").expect_err("not a quantity");
        assert!(!quantity.contains("Error executing function"), "{quantity}");
    }
}
