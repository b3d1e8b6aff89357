//! Kubernetes' identifier rules (apimachinery `util/validation` and `api/validation/path`): what a
//! name, namespace, group, version or kind may look like. The API server checks every path segment
//! and object name with them, and the host checks every identifier a plugin returns before it
//! builds a request.

use std::fmt;

/// Longest DNS-1123 / DNS-1035 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// Why an identifier breaks Kubernetes' rules; the text follows kube-apiserver's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdentifier {
    /// Empty where a value is required.
    #[error("must not be empty")]
    Empty,
    /// Longer than the rule allows.
    #[error("must be no more than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not a DNS-1123 label.
    #[error(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )]
    NotDns1123Label,
    /// Not a DNS-1123 subdomain.
    #[error(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )]
    NotDns1123Subdomain,
    /// Not a DNS-1035 label.
    #[error(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    )]
    NotDns1035Label,
    /// `.` or `..`, or contains `/` or `%`: cannot be a path segment.
    #[error("may not be '.' or '..' and may not contain '/' or '%'")]
    NotPathSegment,
    /// Not a label value (`IsValidLabelValue`).
    #[error(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    )]
    NotLabelValue,
    /// The name part of a qualified name (label and annotation keys) is empty.
    #[error("name part must be non-empty")]
    EmptyNamePart,
    /// The name part of a qualified name is longer than 63 characters.
    #[error("name part must be no more than 63 characters")]
    NamePartTooLong,
    /// The name part of a qualified name has characters it may not have.
    #[error(
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )]
    NotNamePart,
    /// The prefix of a qualified name is not a DNS-1123 subdomain.
    #[error("prefix part {0}")]
    Prefix(Box<InvalidIdentifier>),
    /// More than one `/` in a qualified name.
    #[error(
        "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    )]
    NotQualifiedName,
    /// Not a kind (an ASCII letter, then letters and digits).
    #[error(
        "a kind must start with a letter and consist of ASCII letters and digits (e.g. 'Deployment')"
    )]
    NotKind,
}

fn label_chars(s: &str, first_alpha: bool) -> bool {
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    let first_ok = if first_alpha {
        first.is_ascii_lowercase()
    } else {
        first.is_ascii_lowercase() || first.is_ascii_digit()
    };
    first_ok
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn length(s: &str, max: usize) -> Result<(), InvalidIdentifier> {
    if s.is_empty() {
        Err(InvalidIdentifier::Empty)
    } else if s.len() > max {
        Err(InvalidIdentifier::TooLong { max })
    } else {
        Ok(())
    }
}

/// A DNS-1123 label (namespaces, container names, most label-like names): `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
pub fn dns1123_label(s: &str) -> Result<(), InvalidIdentifier> {
    length(s, DNS1123_LABEL_MAX_LENGTH)?;
    if label_chars(s, false) {
        Ok(())
    } else {
        Err(InvalidIdentifier::NotDns1123Label)
    }
}

/// A DNS-1123 subdomain (the names of most objects, API groups): dot-separated labels, at most 253.
pub fn dns1123_subdomain(s: &str) -> Result<(), InvalidIdentifier> {
    length(s, DNS1123_SUBDOMAIN_MAX_LENGTH)?;
    if s.split('.').all(|l| label_chars(l, false)) {
        Ok(())
    } else {
        Err(InvalidIdentifier::NotDns1123Subdomain)
    }
}

/// A DNS-1035 label (Service names, API versions): like a DNS-1123 label, starting with a letter.
pub fn dns1035_label(s: &str) -> Result<(), InvalidIdentifier> {
    length(s, DNS1123_LABEL_MAX_LENGTH)?;
    if label_chars(s, true) {
        Ok(())
    } else {
        Err(InvalidIdentifier::NotDns1035Label)
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: label values and the name part of label keys.
fn label_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label value (`IsValidLabelValue`): empty, or at most 63 alphanumerics, `-`, `_` and `.`,
/// starting and ending alphanumeric.
pub fn label_value(s: &str) -> Result<(), InvalidIdentifier> {
    if s.len() > DNS1123_LABEL_MAX_LENGTH {
        Err(InvalidIdentifier::TooLong {
            max: DNS1123_LABEL_MAX_LENGTH,
        })
    } else if s.is_empty() || label_like(s) {
        Ok(())
    } else {
        Err(InvalidIdentifier::NotLabelValue)
    }
}

/// A qualified name (`IsQualifiedName`): label and annotation keys, `[prefix/]name` with a DNS-1123
/// subdomain prefix and a name part as a label value, not empty.
pub fn qualified_name(s: &str) -> Result<(), InvalidIdentifier> {
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err(InvalidIdentifier::Prefix(Box::new(
                    InvalidIdentifier::Empty,
                )));
            }
            dns1123_subdomain(prefix).map_err(|e| InvalidIdentifier::Prefix(Box::new(e)))?;
            name
        }
        _ => return Err(InvalidIdentifier::NotQualifiedName),
    };
    if name.is_empty() {
        Err(InvalidIdentifier::EmptyNamePart)
    } else if name.len() > DNS1123_LABEL_MAX_LENGTH {
        Err(InvalidIdentifier::NamePartTooLong)
    } else if label_like(name) {
        Ok(())
    } else {
        Err(InvalidIdentifier::NotNamePart)
    }
}

/// A name that can stand as one segment of a request path (`IsValidPathSegmentName`): not empty,
/// not `.` or `..`, without `/` or `%`.
pub fn path_segment(s: &str) -> Result<(), InvalidIdentifier> {
    if s.is_empty() {
        Err(InvalidIdentifier::Empty)
    } else if s == "." || s == ".." || s.contains(['/', '%']) {
        Err(InvalidIdentifier::NotPathSegment)
    } else {
        Ok(())
    }
}

/// An API group: empty (the core group) or a DNS-1123 subdomain.
pub fn group(s: &str) -> Result<(), InvalidIdentifier> {
    if s.is_empty() {
        Ok(())
    } else {
        dns1123_subdomain(s)
    }
}

/// An API version: a DNS-1035 label (`v1`, `v1beta2`), as CRD versions must be.
pub fn version(s: &str) -> Result<(), InvalidIdentifier> {
    dns1035_label(s)
}

/// A kind: an ASCII letter, then letters and digits, whose lowercase form is a DNS-1035 label (as
/// CRD validation requires of `names.kind`).
pub fn kind(s: &str) -> Result<(), InvalidIdentifier> {
    length(s, DNS1123_LABEL_MAX_LENGTH)?;
    let mut chars = s.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if starts && chars.all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(InvalidIdentifier::NotKind)
    }
}

/// The rule an object's name follows, by kind (`ValidateObjectMeta`'s name function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: most kinds.
    Subdomain,
    /// DNS-1123 label: Namespaces.
    Label,
    /// DNS-1035 label: Services.
    Dns1035,
    /// Only a valid path segment: RBAC roles and bindings (`system:controller:...`),
    /// CertificateSigningRequests.
    PathSegment,
}

impl NameRule {
    /// The rule for objects of `kind` in `group`: DNS-1123 subdomain (custom resources too), except
    /// where Kubernetes' strategy for the kind says otherwise.
    pub fn for_kind(group: &str, kind: &str) -> Self {
        match (group, kind) {
            ("", "Namespace") => Self::Label,
            ("", "Service") => Self::Dns1035,
            ("rbac.authorization.k8s.io", _) => Self::PathSegment,
            // `ValidateCertificateRequestName` accepts any name (`node-csr-<base64url>`).
            ("certificates.k8s.io", "CertificateSigningRequest") => Self::PathSegment,
            _ => Self::Subdomain,
        }
    }

    /// Check `name` against this rule (a name is always a valid path segment too). The kind's
    /// own rule is checked first, so the error is the one kube-apiserver reports.
    pub fn check(self, name: &str) -> Result<(), InvalidIdentifier> {
        match self {
            Self::Subdomain => dns1123_subdomain(name),
            Self::Label => dns1123_label(name),
            Self::Dns1035 => dns1035_label(name),
            Self::PathSegment => Ok(()),
        }?;
        path_segment(name)
    }

    /// Check a `generateName` prefix: as a name, but with a trailing dash masked (a random suffix
    /// follows it), as apimachinery's `maskTrailingDash` does.
    pub fn check_prefix(self, prefix: &str) -> Result<(), InvalidIdentifier> {
        self.check(&mask_trailing_dash(prefix))
    }
}

/// apimachinery's `maskTrailingDash`: a trailing `-` no longer ends the text. Like upstream it
/// drops the last two characters and appends `a`, so which prefixes pass is the same.
pub(crate) fn mask_trailing_dash(prefix: &str) -> std::borrow::Cow<'_, str> {
    match prefix.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => {
            let mut chars = rest.chars();
            chars.next_back();
            format!("{}a", chars.as_str()).into()
        }
        _ => prefix.into(),
    }
}

/// Which part of an identifier was wrong, for messages such as `metadata.namespace: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `metadata.name`.
    pub field: String,
    /// The value given.
    pub value: String,
    /// The rule it breaks.
    pub error: InvalidIdentifier,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: Invalid value: {:?}: {}",
            self.field, self.value, self.error
        )
    }
}

impl std::error::Error for FieldError {}

/// Check `value` of `field` with `rule`, naming the field on failure.
pub fn field(
    field: &str,
    value: &str,
    rule: fn(&str) -> Result<(), InvalidIdentifier>,
) -> Result<(), FieldError> {
    rule(value).map_err(|error| FieldError {
        field: field.to_owned(),
        value: value.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains_follow_rfc_1123() {
        for ok in ["a", "a-b", "0abc", "abc-123"] {
            assert_eq!(dns1123_label(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a/b", "a_b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        for ok in ["a.b", "example.com", "a-1.b-2", &"a".repeat(253)] {
            assert_eq!(dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "a..b",
            ".a",
            "a.",
            "/",
            "a/b",
            "a?b",
            "A.b",
            &"a".repeat(254),
        ] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
        assert!(dns1035_label("1abc").is_err());
        assert_eq!(dns1035_label("abc1"), Ok(()));
    }

    #[test]
    fn path_segments_refuse_traversal_and_separators() {
        for bad in ["", ".", "..", "a/b", "a%2fb", "/"] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
        assert_eq!(path_segment("a..b"), Ok(()), "only whole '..' is refused");
        assert_eq!(
            path_segment("a?b"),
            Ok(()),
            "a query is escaped by the client"
        );
    }

    #[test]
    fn names_follow_their_kind() {
        assert_eq!(
            NameRule::for_kind("", "ConfigMap").check("a..b"),
            Err(InvalidIdentifier::NotDns1123Subdomain)
        );
        assert!(NameRule::for_kind("", "Service").check("1svc").is_err());
        assert!(NameRule::for_kind("", "Namespace").check("a.b").is_err());
        assert!(NameRule::for_kind("x.dev", "Thing").check("Upper").is_err());
        assert_eq!(
            NameRule::for_kind("rbac.authorization.k8s.io", "ClusterRole").check("system:x"),
            Ok(())
        );
        assert!(
            NameRule::for_kind("rbac.authorization.k8s.io", "Role")
                .check("a/b")
                .is_err()
        );
        assert_eq!(
            NameRule::Subdomain.check(".."),
            Err(InvalidIdentifier::NotDns1123Subdomain),
            "the kind's rule speaks first"
        );
    }

    #[test]
    fn generate_name_prefixes_mask_the_trailing_dash() {
        assert_eq!(NameRule::Subdomain.check_prefix("web-"), Ok(()));
        assert_eq!(NameRule::Label.check_prefix("ns-"), Ok(()));
        assert_eq!(NameRule::Subdomain.check_prefix("web"), Ok(()));
        assert!(NameRule::Subdomain.check_prefix("Web-").is_err());
        assert!(NameRule::Subdomain.check_prefix("-").is_err());
        assert!(
            NameRule::Subdomain.check_prefix("a_-").is_ok(),
            "upstream drops two characters"
        );
        assert!(NameRule::Subdomain.check_prefix("a--").is_ok());
        assert!(NameRule::Dns1035.check_prefix("1a-").is_err());
        assert_eq!(
            NameRule::Dns1035.check_prefix("1-"),
            Ok(()),
            "upstream masks it to \"a\""
        );
    }

    #[test]
    fn groups_versions_kinds() {
        assert_eq!(group(""), Ok(()));
        assert_eq!(group("apps"), Ok(()));
        assert!(group("apps/v1").is_err());
        assert!(group("../api").is_err());
        assert_eq!(version("v1beta1"), Ok(()));
        assert!(version("v1/..").is_err());
        assert!(version("").is_err());
        assert_eq!(kind("ConfigMap"), Ok(()));
        assert!(kind("Config Map").is_err());
        assert!(kind("1Kind").is_err());
        assert!(kind("a/b").is_err());
        let e = field("metadata.namespace", "a/b", dns1123_label).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("metadata.namespace: Invalid value: \"a/b\"")
        );
    }
}
