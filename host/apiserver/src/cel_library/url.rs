//! Kubernetes' URL library for CEL (`k8s.io/apiserver/pkg/cel/library/urls.go`): `url(s)` (an
//! absolute URI or an absolute path, as Go's `url.ParseRequestURI` takes it), `isURL(s)`, and on
//! a URL `getScheme`, `getHost`, `getHostname`, `getPort`, `getEscapedPath`, `getQuery`.

use std::collections::HashMap;

use cel::common::types::{CelList, CelMap, CelMapKey, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{boolean, take, text};

const URL: Type = Type::new_unspecified_type("kubernetes.URL");
static URL_TYPE: Type = URL;

/// A parsed URL, its parts as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    /// `host[:port]`, IPv6 addresses in brackets.
    host: String,
    /// The path as written (escaped).
    path: String,
    /// What follows `?`, before any `#`.
    query: String,
}

opaque!(Url, URL_TYPE);

/// Why a string is not a URL (Go's `net/url` errors, in short).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// Empty.
    #[error("empty url")]
    Empty,
    /// A control character.
    #[error("net/url: invalid control character in URL")]
    Control,
    /// Neither an absolute URI nor an absolute path.
    #[error("invalid URI for request")]
    NotAbsolute,
    /// The host or port is malformed.
    #[error("invalid host or port {0:?}")]
    Host(String),
    /// A `%` not followed by two hex digits.
    #[error("invalid URL escape {0:?}")]
    Escape(String),
}

fn valid_escapes(text: &str) -> Result<(), UrlError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            if hex.is_none() {
                let end = (i + 3).min(bytes.len());
                return Err(UrlError::Escape(
                    String::from_utf8_lossy(&bytes[i..end]).into(),
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Checks `host[:port]` as `parseHost` does: a bracketed IPv6 literal or a name, and digits
/// after the last colon.
fn check_host(host: &str) -> Result<(), UrlError> {
    let bad = || UrlError::Host(host.to_owned());
    let port = if let Some(rest) = host.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or_else(bad)?;
        literal.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        }
    } else {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        if name
            .chars()
            .any(|c| c.is_whitespace() || "<>\"{}|\\^`/?#".contains(c))
        {
            return Err(bad());
        }
        port
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    valid_escapes(host)
}

impl Url {
    /// Parses `text` as `url.ParseRequestURI` accepts it (then drops a fragment, as `url.Parse`).
    ///
    /// # Errors
    /// [`UrlError`] when it is not an absolute URI or an absolute path.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        if text.is_empty() {
            return Err(UrlError::Empty);
        }
        if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(UrlError::Control);
        }
        let text = text.split_once('#').map_or(text, |(before, _)| before);
        let (scheme, rest) = if text.starts_with('/') {
            ("", text)
        } else {
            let (scheme, rest) = text.split_once(':').ok_or(UrlError::NotAbsolute)?;
            let mut chars = scheme.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !valid {
                return Err(UrlError::NotAbsolute);
            }
            (scheme, rest)
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match rest.strip_prefix("//") {
            Some(authority) if !scheme.is_empty() => {
                let end = authority.find('/').unwrap_or(authority.len());
                let (authority, path) = authority.split_at(end);
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                check_host(host)?;
                (host, path)
            }
            // An opaque URI (`mailto:x`) has no host and no path.
            _ if !rest.starts_with('/') => ("", ""),
            _ => ("", rest),
        };
        valid_escapes(path)?;
        Ok(Self {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
        })
    }

    /// The host without its port, an IPv6 literal without its brackets.
    fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(literal, _)| literal);
        }
        self.host
            .rsplit_once(':')
            .map_or(&self.host, |(name, _)| name)
    }

    fn port(&self) -> &str {
        let after = match self.host.rfind(']') {
            Some(end) => &self.host[end + 1..],
            None => &self.host,
        };
        after.rsplit_once(':').map_or("", |(_, port)| port)
    }

    /// `EscapedPath`: the path with what a path may not hold as is escaped.
    fn escaped_path(&self) -> String {
        let mut out = String::with_capacity(self.path.len());
        for c in self.path.chars() {
            if c.is_ascii_alphanumeric() || "-_.~$&+,/:;=@%!'()*".contains(c) {
                out.push(c);
            } else {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        out
    }
}

/// `url.ParseQuery`, keeping the pairs that parse (as `URL.Query` does).
/// `url.ParseQuery`, keeping the pairs that parse (as `URL.Query` does): a pair with a `;` or a
/// bad escape is left out.
fn query(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.contains(';') && valid_escapes(pair).is_ok())
        .flat_map(|pair| form_urlencoded::parse(pair.as_bytes()).into_owned())
        .collect()
}

/// Registers the library on `env`.
pub(super) fn declare(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], url)?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    for (name, op) in [
        ("getScheme", get_scheme as cel::common::functions::Function),
        ("getHost", get_host),
        ("getHostname", get_hostname),
        ("getPort", get_port),
        ("getEscapedPath", get_escaped_path),
        ("getQuery", get_query),
    ] {
        env.add_member_overload(name, &format!("url_{name}"), URL, vec![], op)?;
    }
    Ok(())
}

fn url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    Url::parse(text(s.as_ref(), "url")?)
        .map(CowVal::owned)
        .map_err(|e| {
            ExecutionError::function_error(
                "url",
                format!("URL parse error during conversion from string: {e}"),
            )
        })
}

fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    boolean(Url::parse(text(s.as_ref(), "isURL")?).is_ok())
}

fn this<'a>(value: &'a dyn Val, function: &str) -> Result<&'a Url, ExecutionError> {
    value
        .downcast_ref::<Url>()
        .ok_or_else(|| ExecutionError::function_error(function, "expects a URL"))
}

fn part<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    get: fn(&Url) -> String,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [u] = take(args)?;
    Ok(CowVal::owned(CelString::from(get(this(
        u.as_ref(),
        function,
    )?))))
}

fn get_scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part(args, "getScheme", |u| u.scheme.clone())
}

fn get_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part(args, "getHost", |u| u.host.clone())
}

fn get_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part(args, "getHostname", |u| u.hostname().to_owned())
}

fn get_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part(args, "getPort", |u| u.port().to_owned())
}

fn get_escaped_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part(args, "getEscapedPath", Url::escaped_path)
}

/// The query as a map from each key to its values, in order.
fn get_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [u] = take(args)?;
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in query(&this(u.as_ref(), "getQuery")?.query) {
        values.entry(key).or_default().push(value);
    }
    let map: HashMap<CelMapKey<'static>, Box<dyn Val>> = values
        .into_iter()
        .map(|(key, list)| {
            let list: Vec<Box<dyn Val>> = list
                .into_iter()
                .map(|v| Box::new(CelString::from(v)) as Box<dyn Val>)
                .collect();
            (
                CelMapKey::from(key),
                Box::new(CelList::from(list)) as Box<dyn Val>,
            )
        })
        .collect();
    Ok(CowVal::owned(CelMap::from(map)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_parse_request_uri_takes_them() {
        let u = Url::parse("https://user@example.com:8443/a%20b/c?x=1&y=2&x=3#frag").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.hostname(), u.port()),
            ("https", "example.com:8443", "example.com", "8443")
        );
        assert_eq!(
            (u.path.as_str(), u.query.as_str()),
            ("/a%20b/c", "x=1&y=2&x=3")
        );
        let v6 = Url::parse("http://[::1]:80/").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.hostname(), v6.port()),
            ("[::1]:80", "::1", "80")
        );
        assert_eq!(Url::parse("/just/a/path").unwrap().scheme, "");
        assert!(Url::parse("mailto:someone@example.com").is_ok());
        for bad in [
            "",
            "example.com/x",
            "1http://x",
            "http://x:port/",
            "http://[::1/",
            "/a%zz",
            "http://a b/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Url::parse("/a b").unwrap().escaped_path(), "/a%20b");
        assert_eq!(
            query("a=1&b=x+y&a=%2F&bad;pair&c&d=%zz"),
            [("a", "1"), ("b", "x y"), ("a", "/"), ("c", "")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
