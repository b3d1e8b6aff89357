//! Request paths: the segments of a path, each percent-decoded on its own (so an encoded `/`
//! never splits one), and the check every segment that names something passes before routing.
//!
//! Empty segments are kept, never skipped: `configmaps/` is a request for the object named "",
//! which is refused, not a request for the collection.

use crate::error::ApiError;
use crate::validation::{self, InvalidIdentifier};

/// What a path segment names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// An API group (`/apis/{group}`): a DNS-1123 subdomain.
    Group,
    /// An API version: a DNS-1035 label.
    Version,
    /// A resource (plural name).
    Resource,
    /// A subresource such as `status`.
    Subresource,
    /// A namespace.
    Namespace,
    /// An object name.
    Name,
}

impl Segment {
    /// Checks `value` in this position. A group, version, resource or subresource that breaks
    /// its rule names nothing served (404 NotFound, as an unknown path); an empty or invalid
    /// namespace or name is a bad request (400, kube-apiserver's "name must be provided" and
    /// "Name parameter invalid").
    ///
    /// # Errors
    /// [`ApiError::UnknownResource`] or [`ApiError::BadRequest`] as above.
    pub fn check(self, value: &str) -> Result<(), ApiError> {
        let not_served = |_: InvalidIdentifier| ApiError::UnknownResource;
        match self {
            Self::Group if value.is_empty() => Err(ApiError::UnknownResource),
            Self::Group => validation::group(value).map_err(not_served),
            Self::Version => validation::version(value).map_err(not_served),
            Self::Resource | Self::Subresource => {
                validation::path_segment(value).map_err(not_served)
            }
            Self::Namespace => named(value, "namespace", "Namespace"),
            Self::Name => named(value, "name", "Name"),
        }
    }
}

fn named(value: &str, lower: &str, title: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::BadRequest(format!("{lower} must be provided")));
    }
    validation::path_segment(value)
        .map_err(|e| ApiError::BadRequest(format!("{title} parameter invalid: {value:?}: {e}")))
}

/// The segments of `path` after its leading `/`, each percent-decoded; empty segments are kept
/// (`/a//b/` gives `a`, ``, `b`, ``).
///
/// # Errors
/// [`ApiError::BadRequest`] when the path does not start with `/`, has a malformed `%` escape or
/// decodes to text that is not UTF-8.
pub fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::BadRequest(format!("the path {path:?} is not absolute")))?;
    rest.split('/').map(decode).collect()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes one segment strictly (`+` stays `+`; a `%` must start a two-digit escape), as
/// Go's `url.PathUnescape`.
///
/// # Errors
/// [`ApiError::BadRequest`] for a malformed escape or text that is not UTF-8.
pub fn decode(segment: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid URL escape in {segment:?}"));
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex).ok_or_else(bad)?;
            let low = bytes.get(i + 2).copied().and_then(hex).ok_or_else(bad)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::BadRequest(format!("the path segment {segment:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_empties_and_decode_one_by_one() {
        assert_eq!(
            segments("/api/v1/namespaces/default/configmaps/").unwrap(),
            ["api", "v1", "namespaces", "default", "configmaps", ""]
        );
        assert_eq!(segments("//a").unwrap(), ["", "a"]);
        assert_eq!(segments("/").unwrap(), [""]);
        assert_eq!(segments("/a%2Fb/c").unwrap(), ["a/b", "c"]);
        assert_eq!(
            segments("/system%3Aadmin/a+b").unwrap(),
            ["system:admin", "a+b"]
        );
        for bad in ["/a%", "/a%2", "/a%zz", "/%ff", "relative"] {
            assert_eq!(segments(bad).unwrap_err().code(), 400, "{bad}");
        }
    }

    #[test]
    fn segments_are_checked_by_what_they_name() {
        assert!(Segment::Name.check("web").is_ok());
        assert!(Segment::Name.check("system:admin").is_ok());
        for bad in ["", ".", "..", "a/b", "a%b"] {
            assert_eq!(Segment::Name.check(bad).unwrap_err().code(), 400, "{bad}");
            assert_eq!(
                Segment::Namespace.check(bad).unwrap_err().code(),
                400,
                "{bad}"
            );
        }
        assert_eq!(
            Segment::Name.check("").unwrap_err().to_string(),
            "name must be provided"
        );
        for bad in ["", "..", "apps/v1", "Apps"] {
            assert_eq!(Segment::Group.check(bad).unwrap_err().code(), 404, "{bad}");
        }
        for bad in ["", "1", "v1/..", "V1"] {
            assert_eq!(
                Segment::Version.check(bad).unwrap_err().code(),
                404,
                "{bad}"
            );
        }
        assert_eq!(Segment::Resource.check("..").unwrap_err().code(), 404);
        assert_eq!(Segment::Subresource.check("").unwrap_err().code(), 404);
        assert!(Segment::Group.check("apps").is_ok());
        assert!(Segment::Version.check("v1beta1").is_ok());
    }
}
