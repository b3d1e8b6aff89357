//! The consistent-hash ring of a set of replicas, and sets of hash ranges.
//!
//! Objects hash into the 64-bit space with FNV-1a over their uid (the hash of KEP-5866's
//! `shardRange`, [`capstan_apiserver::shard::fnv1a64`]). Each member puts [`VIRTUAL_NODES`]
//! points on the ring (`fnv1a64("<identity>#<i>")`); an object belongs to the member of the first
//! point at or after its hash, wrapping around. A member's share is thus a union of arcs, which
//! [`Ranges`] holds as sorted half-open intervals and renders as a KEP-5866 shard selector.

use capstan_apiserver::shard::{HASH_SPACE_END, ShardField, ShardRange, ShardSelector, fnv1a64};
use std::collections::BTreeSet;

/// Points each member puts on the ring: with 3 members, each owns about a third (± a few %).
pub const VIRTUAL_NODES: usize = 128;

/// The hash of an object key (its uid), as KEP-5866 hashes `object.metadata.uid`.
#[must_use]
pub fn key_hash(uid: &str) -> u64 {
    fnv1a64(uid.as_bytes())
}

/// A set of hash values: sorted, disjoint, non-empty half-open intervals `[start, end)` within
/// `[0, 2^64)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u128, u128)>);

impl Ranges {
    /// No hash.
    #[must_use]
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Every hash.
    #[must_use]
    pub fn all() -> Self {
        Self(vec![(0, HASH_SPACE_END)])
    }

    /// The union of `intervals` (in any order, possibly overlapping or empty).
    #[must_use]
    pub fn from_intervals(mut intervals: Vec<(u128, u128)>) -> Self {
        intervals.retain(|(s, e)| s < e);
        intervals.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(intervals.len());
        for (s, e) in intervals {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e.min(HASH_SPACE_END))),
            }
        }
        Self(out)
    }

    /// Whether `hash` is in the set.
    #[must_use]
    pub fn contains(&self, hash: u64) -> bool {
        let h = u128::from(hash);
        let i = self.0.partition_point(|(s, _)| *s <= h);
        i > 0 && h < self.0[i - 1].1
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The intervals.
    #[must_use]
    pub fn intervals(&self) -> &[(u128, u128)] {
        &self.0
    }

    /// The fraction of the hash space the set covers.
    #[must_use]
    pub fn share(&self) -> f64 {
        let covered: u128 = self.0.iter().map(|(s, e)| e - s).sum();
        covered as f64 / HASH_SPACE_END as f64
    }

    /// The hashes in both sets.
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Self {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let (s, e) = (a.0.max(b.0), a.1.min(b.1));
            if s < e {
                out.push((s, e));
            }
            if a.1 < b.1 { i += 1 } else { j += 1 }
        }
        Self(out)
    }

    /// The hashes not in the set.
    #[must_use]
    pub fn complement(&self) -> Self {
        let mut out = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.0 {
            if at < s {
                out.push((at, s));
            }
            at = e;
        }
        if at < HASH_SPACE_END {
            out.push((at, HASH_SPACE_END));
        }
        Self(out)
    }

    /// The hashes in this set and not in `other`.
    #[must_use]
    pub fn subtract(&self, other: &Self) -> Self {
        self.intersect(&other.complement())
    }

    /// Whether every hash of this set is in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        self.subtract(other).is_empty()
    }

    /// The KEP-5866 selector of exactly these hashes of `object.metadata.uid` (`None` for every
    /// hash: no selector needed).
    #[must_use]
    pub fn selector(&self) -> Option<ShardSelector> {
        if *self == Self::all() {
            return None;
        }
        Some(ShardSelector::from_ranges(
            self.0
                .iter()
                .map(|&(start, end)| ShardRange {
                    field: ShardField::Uid,
                    start,
                    end,
                })
                .collect(),
        ))
    }
}

/// A virtual node's point: FNV-1a, then MurmurHash3's `fmix64` (a bijection that spreads every
/// input bit over the whole word).
fn point(name: &str) -> u64 {
    let mut h = fnv1a64(name.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The ring of one set of members.
#[derive(Debug, Clone)]
pub struct Ring {
    /// `(point, member index)`, sorted by point.
    points: Vec<(u64, usize)>,
    members: Vec<String>,
}

impl Ring {
    /// The ring of `members`.
    #[must_use]
    pub fn new(members: &BTreeSet<String>) -> Self {
        let members: Vec<String> = members.iter().cloned().collect();
        let mut points: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(m, id)| (0..VIRTUAL_NODES).map(move |i| (point(&format!("{id}#{i}")), m)))
            .collect();
        points.sort_unstable();
        points.dedup_by_key(|(p, _)| *p);
        Self { points, members }
    }

    /// The member that owns `hash`, if the ring has any.
    #[must_use]
    pub fn owner(&self, hash: u64) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|(p, _)| *p < hash);
        let (_, m) = self.points[i % self.points.len()];
        Some(&self.members[m])
    }

    /// The hashes `member` owns (none if it is not on the ring).
    #[must_use]
    pub fn ranges_of(&self, member: &str) -> Ranges {
        let Some(index) = self.members.iter().position(|m| m == member) else {
            return Ranges::none();
        };
        let mut arcs = Vec::new();
        for (k, &(point, m)) in self.points.iter().enumerate() {
            if m != index {
                continue;
            }
            // The arc (previous point, point]: [previous + 1, point + 1).
            let end = u128::from(point) + 1;
            if k == 0 {
                let last = self.points[self.points.len() - 1].0;
                arcs.push((0, end));
                arcs.push((u128::from(last) + 1, HASH_SPACE_END));
            } else {
                arcs.push((u128::from(self.points[k - 1].0) + 1, end));
            }
        }
        Ranges::from_intervals(arcs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn members_partition_the_space_as_owner_says() {
        let ring = Ring::new(&view(&["a_1", "b_2", "c_3"]));
        let ranges: Vec<Ranges> = ["a_1", "b_2", "c_3"]
            .iter()
            .map(|m| ring.ranges_of(m))
            .collect();
        let shares: Vec<f64> = ranges.iter().map(Ranges::share).collect();
        assert!(
            (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{shares:?}"
        );
        assert!(shares.iter().all(|s| *s > 0.25 && *s < 0.42), "{shares:?}");
        for i in 0..5000u32 {
            let h = key_hash(&format!("{:016x}-uid", key_hash(&format!("seed-{i}"))));
            let owner = ring.owner(h).unwrap();
            for (m, r) in ["a_1", "b_2", "c_3"].iter().zip(&ranges) {
                assert_eq!(r.contains(h), *m == owner, "hash {h:#x}");
            }
        }
        // The edges: the wrap-around arc and the points themselves.
        for h in [0, u64::MAX, ring.points[0].0, ring.points[0].0 + 1] {
            let owner = ring.owner(h).unwrap();
            assert!(ring.ranges_of(owner).contains(h));
        }
    }

    #[test]
    fn a_new_member_takes_only_from_the_others() {
        let three = Ring::new(&view(&["a", "b", "c"]));
        let four = Ring::new(&view(&["a", "b", "c", "d"]));
        for m in ["a", "b", "c"] {
            assert!(four.ranges_of(m).is_subset(&three.ranges_of(m)), "{m}");
        }
        assert!(four.ranges_of("d").share() > 0.15);
        assert!(Ring::new(&view(&[])).owner(1).is_none());
    }

    #[test]
    fn range_algebra() {
        let a = Ranges::from_intervals(vec![(0, 10), (20, 30), (5, 12)]);
        assert_eq!(a.intervals(), &[(0, 12), (20, 30)]);
        let b = Ranges::from_intervals(vec![(10, 25)]);
        assert_eq!(a.intersect(&b).intervals(), &[(10, 12), (20, 25)]);
        assert_eq!(a.subtract(&b).intervals(), &[(0, 10), (25, 30)]);
        assert!(a.contains(0) && a.contains(11) && !a.contains(12) && a.contains(29));
        assert_eq!(Ranges::all().complement(), Ranges::none());
        assert!(Ranges::all().selector().is_none());
        let selector = a.selector().unwrap();
        let h = "x";
        let object = serde_json::json!({"metadata": {"uid": h}});
        assert_eq!(selector.matches(&object), a.contains(key_hash(h)));
    }
}
