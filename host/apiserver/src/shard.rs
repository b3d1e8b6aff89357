//! KEP-5866 shard selectors (server-side sharded list and watch): the `shardSelector` query
//! parameter of `list` and `watch`, e.g.
//! `shardRange(object.metadata.uid, '0x0', '0x8000000000000000') || shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')`.
//!
//! As the KEP and the API reference specify: each `shardRange(field, hexStart, hexEnd)` selects
//! the objects whose field (`object.metadata.uid` or `object.metadata.namespace`) hashes, with
//! 64-bit FNV-1a over its bytes, into `hexStart <= hash < hexEnd`; the bounds are `'0x'`-prefixed
//! hex string literals in the space `[0x0, 0x10000000000000000)` (the exclusive end may be 2^64);
//! ranges joined by `||` select their union. An object without the field (a cluster-scoped object
//! and `object.metadata.namespace`) is in no range. A list answered with a selector echoes it in
//! its `metadata.shardInfo.selector`, which is how a client tells a server that applied it from
//! one that ignored the parameter (kube-state-metrics relies on this). Both fields are immutable,
//! so an object never enters or leaves a selection by an update: a watch only filters.

use serde_json::Value;
use std::fmt;
use std::hash::Hasher;

/// The exclusive end of the hash space, 2^64.
pub const HASH_SPACE_END: u128 = 1 << 64;

/// Why a shard selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardSelectorError {
    /// The text does not follow `shardRange(field, 'hexStart', 'hexEnd') || ...`.
    #[error("invalid shardSelector {selector:?}: expected {expected} at byte {at}")]
    Syntax {
        /// The selector.
        selector: String,
        /// What the parser expected.
        expected: &'static str,
        /// Where.
        at: usize,
    },
    /// A field other than `object.metadata.uid` and `object.metadata.namespace`.
    #[error(
        "unsupported shardRange field {0:?}: only object.metadata.uid and object.metadata.namespace"
    )]
    Field(String),
    /// A bound that is not `0x` and hex digits within `[0x0, 0x10000000000000000]`.
    #[error("invalid shardRange bound {0:?}: a quoted '0x' hex number of at most 2^64")]
    Bound(String),
    /// A start above its end.
    #[error("shardRange start {start:#x} is above its end {end:#x}")]
    Order {
        /// Start.
        start: u128,
        /// End.
        end: u128,
    },
}

/// The field a range hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardField {
    /// `object.metadata.uid`.
    Uid,
    /// `object.metadata.namespace`.
    Namespace,
}

impl ShardField {
    fn path(self) -> &'static str {
        match self {
            Self::Uid => "object.metadata.uid",
            Self::Namespace => "object.metadata.namespace",
        }
    }

    fn value(self, object: &Value) -> Option<&str> {
        let key = match self {
            Self::Uid => "uid",
            Self::Namespace => "namespace",
        };
        object["metadata"][key].as_str().filter(|s| !s.is_empty())
    }
}

/// One `shardRange`: `start <= fnv1a64(field) < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    /// The hashed field.
    pub field: ShardField,
    /// Inclusive start.
    pub start: u128,
    /// Exclusive end (at most [`HASH_SPACE_END`]).
    pub end: u128,
}

impl ShardRange {
    /// Whether `hash` is in the range.
    #[must_use]
    pub fn contains(&self, hash: u64) -> bool {
        let h = u128::from(hash);
        self.start <= h && h < self.end
    }
}

impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shardRange({}, '{:#018x}', '{:#018x}')",
            self.field.path(),
            self.start,
            self.end
        )
    }
}

/// A parsed `shardSelector`: the union of its ranges. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSelector {
    ranges: Vec<ShardRange>,
}

/// 64-bit FNV-1a of `bytes`, the KEP's hash.
#[must_use]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

impl ShardSelector {
    /// Parse a `shardSelector` (empty text: no selector).
    ///
    /// # Errors
    /// [`ShardSelectorError`] when the text is not a disjunction of `shardRange` calls on a
    /// supported field with valid bounds.
    pub fn parse(text: &str) -> Result<Self, ShardSelectorError> {
        let mut p = Parser { text, at: 0 };
        let mut ranges = Vec::new();
        p.skip();
        if p.at == text.len() {
            return Ok(Self::default());
        }
        loop {
            ranges.push(p.range()?);
            p.skip();
            if p.at == text.len() {
                break;
            }
            p.expect("||")?;
        }
        Ok(Self { ranges })
    }

    /// A selector of `ranges` (none: everything).
    #[must_use]
    pub fn from_ranges(ranges: Vec<ShardRange>) -> Self {
        Self { ranges }
    }

    /// Whether no range is given (everything is selected).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges.
    #[must_use]
    pub fn ranges(&self) -> &[ShardRange] {
        &self.ranges
    }

    /// Whether `object` (JSON) is selected.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        self.ranges.is_empty()
            || self.ranges.iter().any(|r| {
                r.field
                    .value(object)
                    .is_some_and(|v| r.contains(fnv1a64(v.as_bytes())))
            })
    }
}

impl fmt::Display for ShardSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(" || ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn error(&self, expected: &'static str) -> ShardSelectorError {
        ShardSelectorError::Syntax {
            selector: self.text.to_owned(),
            expected,
            at: self.at,
        }
    }

    fn expect(&mut self, token: &'static str) -> Result<(), ShardSelectorError> {
        self.skip();
        if self.rest().starts_with(token) {
            self.at += token.len();
            Ok(())
        } else {
            Err(self.error(token))
        }
    }

    fn range(&mut self) -> Result<ShardRange, ShardSelectorError> {
        self.expect("shardRange")?;
        self.expect("(")?;
        self.skip();
        let end = self
            .rest()
            .find(|c: char| c == ',' || c.is_whitespace())
            .ok_or_else(|| self.error(","))?;
        let path = &self.rest()[..end];
        let field = match path {
            "object.metadata.uid" => ShardField::Uid,
            "object.metadata.namespace" => ShardField::Namespace,
            other => return Err(ShardSelectorError::Field(other.to_owned())),
        };
        self.at += end;
        self.expect(",")?;
        let start = self.bound()?;
        self.expect(",")?;
        let end = self.bound()?;
        self.expect(")")?;
        if start > end {
            return Err(ShardSelectorError::Order { start, end });
        }
        Ok(ShardRange { field, start, end })
    }

    /// A quoted hex bound (CEL string literal: single or double quotes).
    fn bound(&mut self) -> Result<u128, ShardSelectorError> {
        self.skip();
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("a quoted bound")),
        };
        self.at += 1;
        let close = self
            .rest()
            .find(quote)
            .ok_or_else(|| self.error("a closing quote"))?;
        let literal = &self.rest()[..close];
        self.at += close + 1;
        let bad = || ShardSelectorError::Bound(literal.to_owned());
        let digits = literal
            .strip_prefix("0x")
            .or_else(|| literal.strip_prefix("0X"))
            .filter(|d| !d.is_empty() && d.len() <= 32)
            .ok_or_else(bad)?;
        let value = u128::from_str_radix(digits, 16).map_err(|_| bad())?;
        if value > HASH_SPACE_END || digits.starts_with('+') {
            return Err(bad());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn uid(u: &str) -> Value {
        json!({"metadata": {"uid": u, "namespace": "default"}})
    }

    #[test]
    fn fnv1a64_is_the_standard_hash() {
        // The FNV-1a 64 offset basis and the published test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_keps_two_and_four_shard_examples_partition_every_uid() {
        let two = [
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')",
            "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')",
        ];
        let four = [
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x4000000000000000')",
            "shardRange(object.metadata.uid, '0x4000000000000000', '0x8000000000000000')",
            "shardRange(object.metadata.uid, '0x8000000000000000', '0xc000000000000000')",
            "shardRange(object.metadata.uid, '0xc000000000000000', '0x10000000000000000')",
        ];
        for shards in [&two[..], &four[..]] {
            let selectors: Vec<_> = shards
                .iter()
                .map(|s| ShardSelector::parse(s).unwrap())
                .collect();
            let mut counts = vec![0; shards.len()];
            for i in 0..2000 {
                // Random-looking uids, as the server's (v4) are.
                let r = fnv1a64(format!("seed-{i}").as_bytes());
                let o = uid(&format!(
                    "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
                    r >> 32,
                    r & 0xffff,
                    i,
                    r >> 16
                ));
                let hits: Vec<_> = (0..shards.len())
                    .filter(|&s| selectors[s].matches(&o))
                    .collect();
                assert_eq!(hits.len(), 1, "each uid in exactly one shard");
                counts[hits[0]] += 1;
            }
            assert!(
                counts.iter().all(|&c| c > 2000 / shards.len() / 2),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn bounds_are_half_open_on_the_hash() {
        let h = fnv1a64(b"some-uid");
        let at = |s: u128, e: u128| {
            ShardSelector::parse(&format!(
                "shardRange(object.metadata.uid, '{s:#x}', '{e:#x}')"
            ))
            .unwrap()
            .matches(&uid("some-uid"))
        };
        let h = u128::from(h);
        assert!(at(h, h + 1));
        assert!(!at(h + 1, h + 2), "start is inclusive");
        assert!(!at(h - 1, h), "end is exclusive");
        assert!(at(0, HASH_SPACE_END));
    }

    #[test]
    fn or_unions_ranges_and_namespace_hashes_the_namespace() {
        let ns = u128::from(fnv1a64(b"default"));
        let s = ShardSelector::parse(&format!(
            "shardRange(object.metadata.uid, '0x0', '0x1') ||shardRange( object.metadata.namespace , \"{ns:#x}\", '{:#x}' )",
            ns + 1
        ))
        .unwrap();
        assert_eq!(s.ranges().len(), 2);
        assert!(s.matches(&uid("x")));
        assert!(
            !s.matches(&json!({"metadata": {"uid": "x"}})),
            "no namespace, in no namespace range"
        );
        let again = ShardSelector::parse(&s.to_string()).unwrap();
        assert_eq!(again, s, "Display renders what parse reads");
        assert!(ShardSelector::parse("  ").unwrap().matches(&uid("x")));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in [
            "shardRange(metadata.uid, '0x0', '0x1')",
            "shardRange(object.metadata.name, '0x0', '0x1')",
            "shardRange(object.metadata.uid, 0x0, '0x1')",
            "shardRange(object.metadata.uid, '0', '0x1')",
            "shardRange(object.metadata.uid, '0x0', '0x10000000000000001')",
            "shardRange(object.metadata.uid, '0x2', '0x1')",
            "shardRange(object.metadata.uid, '0x0', '0x1') &&",
            "shardRange(object.metadata.uid, '0x0', '0x1'",
            "shardRange(object.metadata.uid, '0xg', '0x1')",
        ] {
            assert!(ShardSelector::parse(bad).is_err(), "{bad}");
        }
    }
}
