//! The string `format`s a CRD schema may name, checked as apiextensions-apiserver checks them
//! (kube-openapi's `strfmt` registry): the names of `supportedVersionedFormats`, compared with `-`
//! removed (`date-time` is `datetime`); any other format is ignored, as kube-apiserver strips it.
//! A value that does not parse fails with kube-openapi's `InvalidType`:
//! `spec.when in body must be of type date-time: "tomorrow"`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;

/// Whether `value` is valid for `format` (true for a format not checked).
#[must_use]
pub fn valid(format: &str, value: &str) -> bool {
    match format.replace('-', "").as_str() {
        "bsonobjectid" => value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => uri(value),
        "email" => email(value),
        "hostname" => hostname(value),
        "ipv4" => value.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => value.contains(':') && value.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(value),
        "mac" => mac(value),
        "uuid" => matches(&UUID, value),
        "uuid3" => matches(&UUID3, value),
        "uuid4" => matches(&UUID4, value),
        "uuid5" => matches(&UUID5, value),
        "isbn" => isbn10(value) || isbn13(value),
        "isbn10" => isbn10(value),
        "isbn13" => isbn13(value),
        "creditcard" => matches(
            &CREDIT_CARD,
            &value
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>(),
        ),
        "ssn" => matches(&SSN, value),
        "hexcolor" => matches(&HEX_COLOR, value),
        "rgbcolor" => matches(&RGB_COLOR, value),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok(),
        "datetime" => datetime(value),
        "duration" => matches(&DURATION, value),
        // "password" is any string; unknown formats are not checked.
        _ => true,
    }
}

fn matches(re: &LazyLock<Regex>, value: &str) -> bool {
    re.is_match(value)
}

macro_rules! regex {
    ($name:ident, $re:literal) => {
        static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new($re).expect("a fixed, valid regular expression"));
    };
}

// strfmt's expressions.
regex!(
    UUID,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
);
regex!(
    UUID3,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
);
regex!(
    UUID4,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
);
regex!(
    UUID5,
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
);
regex!(
    CREDIT_CARD,
    r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11})$"
);
regex!(SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$");
regex!(
    HOSTNAME,
    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$"
);
regex!(HEX_COLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$");
regex!(
    RGB_COLOR,
    r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"
);
// Go's `time.ParseDuration` forms ("1h30m", "-1.5s") and the Scala forms strfmt also takes
// ("3 days", "1 h").
regex!(
    DURATION,
    r"^(?:[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+|0|[-+]?[0-9]+\s*(?:ns|us|ms|s|m|h|d|w|nanos?|nanoseconds?|micros?|microseconds?|millis?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|second|minute|hour|day|week))$"
);

/// RFC 3339 `date-time`, as strfmt's `ParseDateTime` takes it (a `T` or a space, seconds'
/// fraction optional, `Z` or an offset).
fn datetime(value: &str) -> bool {
    let normalized = value.replacen(' ', "T", 1);
    chrono::DateTime::parse_from_rfc3339(&normalized).is_ok()
}

/// Go's `net/url.ParseRequestURI`: an absolute URI, or an absolute path.
fn uri(value: &str) -> bool {
    if value.is_empty() || value.contains(char::is_whitespace) {
        return false;
    }
    if value.starts_with('/') {
        return true;
    }
    match value.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Go's `net/mail.ParseAddress`, for the plain `local@domain` form and `Name <local@domain>`.
fn email(value: &str) -> bool {
    let address = match (value.rfind('<'), value.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => value,
    };
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !address.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

/// RFC 1034 host names, as strfmt's `IsHostname`: its `HostnamePattern` (labels of letters,
/// digits, symbols and inner `-`; a dotted name ends in a top-level domain of two letters or
/// more), at most 255 characters, labels at most 63.
fn hostname(value: &str) -> bool {
    matches(&HOSTNAME, value) && value.len() <= 255 && value.split('.').all(|l| l.len() <= 63)
}

/// Go's `net.ParseCIDR`.
fn cidr(value: &str) -> bool {
    let Some((ip, bits)) = value.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets separated by `:` or `-`, or dotted groups of four.
fn mac(value: &str) -> bool {
    let hex_groups = |sep: char, width: usize| {
        let groups: Vec<&str> = value.split(sep).collect();
        matches!(groups.len() * width / 2, 6 | 8 | 20)
            && groups
                .iter()
                .all(|g| g.len() == width && g.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    hex_groups(':', 2) || hex_groups('-', 2) || hex_groups('.', 4)
}

fn isbn10(value: &str) -> bool {
    let digits: Vec<char> = value.chars().filter(|c| *c != '-' && *c != ' ').collect();
    if digits.len() != 10 {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.iter().enumerate() {
        let v = match (i, c) {
            (9, 'X' | 'x') => 10,
            (_, c) => match c.to_digit(10) {
                Some(d) => d,
                None => return false,
            },
        };
        sum += v * (10 - u32::try_from(i).unwrap_or(0));
    }
    sum % 11 == 0
}

fn isbn13(value: &str) -> bool {
    let digits: Vec<u32> = value
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_digit(10))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    digits.len() == 13
        && digits
            .iter()
            .enumerate()
            .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
            .sum::<u32>()
            % 10
            == 0
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn formats_accept_and_refuse_as_strfmt_does() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "date-time",
                &["2014-12-15T19:30:20.000Z", "2024-01-02T03:04:05+02:00"],
                &["tomorrow", "2024-13-01T00:00:00Z"],
            ),
            ("datetime", &["2024-01-02 03:04:05Z"], &["2024-01-02"]),
            ("date", &["2006-01-02"], &["2006-1-2x", "02/01/2006"]),
            (
                "uuid",
                &[
                    "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
                    "F81D4FAE7DEC11D0A76500A0C91E6BF6",
                ],
                &["f81d4fae"],
            ),
            (
                "uuid4",
                &["9b2f2a1e-3c4d-4e5f-8a6b-7c8d9e0f1a2b"],
                &["f81d4fae-7dec-11d0-a765-00a0c91e6bf6"],
            ),
            ("ipv4", &["10.0.0.1"], &["10.0.0.256", "::1"]),
            ("ipv6", &["::1", "fe80::1"], &["10.0.0.1"]),
            (
                "cidr",
                &["10.0.0.0/8", "fd00::/64"],
                &["10.0.0.0/33", "10.0.0.0"],
            ),
            (
                "mac",
                &["00:1a:2b:3c:4d:5e", "00-1A-2B-3C-4D-5E", "001a.2b3c.4d5e"],
                &["00:1a:2b"],
            ),
            (
                "hostname",
                &["example.com", "a-b.cd", "localhost"],
                &["-a.com", "a_b.com", "a.b.c", ""],
            ),
            (
                "email",
                &["a@example.com", "Ann <a@example.com>"],
                &["a.example.com"],
            ),
            (
                "uri",
                &["https://example.com/x", "/path"],
                &["example.com", "rel/path"],
            ),
            ("byte", &["aGVsbG8="], &["not base64!"]),
            ("duration", &["1h30m", "3 days", "500ms"], &["soon"]),
            ("hexcolor", &["#FFF", "a0b1c2"], &["#GGG"]),
            ("rgbcolor", &["rgb(255,255,0)"], &["rgb(256,0,0)"]),
            ("ssn", &["123-45-6789"], &["12-345-6789"]),
            ("isbn", &["0321751043", "978-0321751041"], &["0321751044"]),
            ("bsonobjectid", &["507f1f77bcf86cd799439011"], &["507f1f77"]),
            ("password", &["anything at all"], &[]),
            ("int32", &["not checked: a numeric format"], &[]),
        ];
        for (format, good, bad) in cases {
            for v in *good {
                assert!(valid(format, v), "{format} should take {v:?}");
            }
            for v in *bad {
                assert!(!valid(format, v), "{format} should refuse {v:?}");
            }
        }
    }
}
