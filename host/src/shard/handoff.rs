//! Handler events across a hand-over: a replica keeps the events it did not deliver (their object
//! was outside its grant) for a while, and when its grant widens it delivers those of the gained
//! hashes that the replica which released them had not delivered yet.
//!
//! Each replica's event pump routes every change of a kind, owned or not, through its
//! [`Gate`](super::Gate), which remembers the resourceVersion of the last one (the pump's
//! *position*). When the grant first shrinks after a publish, the gate keeps those positions as
//! the replica's *marks*, and the replica publishes them with its acknowledgement (a
//! [`HandoverNote`]): of the hashes it gave up, it delivered the events at or before its mark and
//! none after. The replica that widens takes, for each gained hash, the marks of every live
//! replica whose note says it released that hash, and delivers a kept event only when its
//! resourceVersion is after the smallest of them (or nobody's note covers the hash: its owner
//! died, and what it delivered is unknown). Live events of gained hashes at or before those marks
//! are skipped too: the old owner's pump may have been behind this one's.
//!
//! resourceVersions of one resource compare as integers since Kubernetes 1.35 (KEP-5504,
//! `k8s.io/apimachinery/pkg/util/resourceversion.CompareResourceVersion`); one watch delivers a
//! kind's events in that order. So a hand-over delivers every change once, and a replica that
//! died costs at-least-once delivery of what it received in its last lease duration: never a
//! loss, within the window events are kept.

use super::gate::Gate;
use super::ring::Ranges;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The resourceVersion a replica's pump had reached, per kind (`<apiVersion>/<kind>`).
pub type Marks = BTreeMap<String, String>;

/// At most this many undelivered events are kept per kind; past it the oldest are dropped.
pub const MAX_KEPT: usize = 50_000;

/// What a replica publishes with its acknowledgement: the view it drained *from*, and its marks
/// at the first narrowing since (absent: it narrowed nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandoverNote {
    /// The member set of the view published before this one.
    pub from: BTreeSet<String>,
    /// The marks, if the grant shrank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marks: Option<Marks>,
}

/// One widening of a replica's grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    /// What the grant gained.
    pub gained: Ranges,
    /// What live replicas said they released, each with its marks.
    pub released: Vec<(Ranges, Marks)>,
}

impl Handover {
    /// Whether the change of resourceVersion `rv` to an object of `hash` was delivered before
    /// this hand-over: every replica that released `hash` had passed `rv`, and one did.
    #[must_use]
    pub fn delivered(&self, hash: u64, kind: &str, rv: Option<&str>) -> bool {
        let Some(rv) = rv else { return false };
        let mut claims = self
            .released
            .iter()
            .filter(|(ranges, _)| ranges.contains(hash))
            .peekable();
        claims.peek().is_some()
            && claims.all(|(_, marks)| {
                marks.get(kind).is_some_and(|mark| {
                    compare_resource_versions(rv, mark).is_some_and(Ordering::is_le)
                })
            })
    }

    /// The latest mark for `kind` among the releasing replicas: live events after it cannot have
    /// been delivered by them.
    fn horizon(&self, kind: &str) -> Option<&str> {
        self.released
            .iter()
            .filter_map(|(_, marks)| marks.get(kind).map(String::as_str))
            .max_by(|a, b| compare_resource_versions(a, b).unwrap_or(Ordering::Equal))
    }
}

/// Compare two resourceVersions of one resource as KEP-5504 defines it: decimal integers without
/// leading zeros, by value; `None` when either is not one.
#[must_use]
pub fn compare_resource_versions(a: &str, b: &str) -> Option<Ordering> {
    let valid =
        |s: &str| !s.starts_with('0') && !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    (valid(a) && valid(b)).then(|| a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

struct Kept<T> {
    at: Instant,
    hash: u64,
    rv: Option<String>,
    item: T,
}

/// The hand-over state of one kind's event pump: routes each change through the gate, keeps
/// what it does not deliver, and gives back what a widening makes due.
pub struct EventRouter<T> {
    gate: Gate,
    kind: String,
    window: Duration,
    /// The gate's hand-over epoch caught up with.
    seen: u64,
    kept: VecDeque<Kept<T>>,
    /// Hand-overs whose marks this pump's live events have not passed yet.
    recent: Vec<Arc<Handover>>,
    overflowed: bool,
}

impl<T> EventRouter<T> {
    /// A router for the events of `kind` (`<apiVersion>/<kind>`), keeping undelivered ones for
    /// `window`. Hand-overs before now are not its concern (it starts with nothing kept).
    #[must_use]
    pub fn new(gate: Gate, kind: String, window: Duration) -> Self {
        let seen = gate.epoch();
        Self {
            gate,
            kind,
            window,
            seen,
            kept: VecDeque::new(),
            recent: Vec::new(),
            overflowed: false,
        }
    }

    /// Route the change `item` of an object of routing `hash` and resourceVersion `rv`: what to
    /// deliver now, in order (kept events a widening made due first, then `item` if it is).
    pub fn offer(&mut self, hash: u64, rv: Option<String>, item: T) -> Vec<T> {
        let (owned, epoch) = self.gate.route(&self.kind, hash, rv.as_deref());
        let mut due = if epoch == self.seen {
            Vec::new()
        } else {
            self.catch_up()
        };
        let delivered = owned
            && self
                .recent
                .iter()
                .any(|h| h.gained.contains(hash) && h.delivered(hash, &self.kind, rv.as_deref()));
        // Hand-overs whose every mark the stream has passed can no longer skip anything.
        if let Some(rv) = rv.as_deref() {
            let kind = &self.kind;
            self.recent.retain(|h| {
                h.horizon(kind).is_some_and(|mark| {
                    compare_resource_versions(rv, mark).is_some_and(Ordering::is_le)
                })
            });
        }
        if !owned {
            self.keep(hash, rv, item);
        } else if !delivered {
            due.push(item);
        }
        due
    }

    /// The kept events the gate's hand-overs since the last call make due, oldest first.
    pub fn catch_up(&mut self) -> Vec<T> {
        let (epoch, handovers) = self.gate.handovers_since(self.seen);
        self.seen = epoch;
        self.expire(Instant::now());
        let mut due = Vec::new();
        for handover in handovers {
            let mut rest = VecDeque::with_capacity(self.kept.len());
            for kept in self.kept.drain(..) {
                if !handover.gained.contains(kept.hash) {
                    rest.push_back(kept);
                } else if !handover.delivered(kept.hash, &self.kind, kept.rv.as_deref()) {
                    due.push(kept.item);
                }
            }
            self.kept = rest;
            if handover.horizon(&self.kind).is_some() {
                self.recent.push(handover);
            }
        }
        due
    }

    /// How many undelivered events are kept.
    #[must_use]
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    fn keep(&mut self, hash: u64, rv: Option<String>, item: T) {
        let now = Instant::now();
        self.expire(now);
        if self.kept.len() >= MAX_KEPT {
            self.kept.pop_front();
            if !self.overflowed {
                self.overflowed = true;
                tracing::warn!(
                    kind = %self.kind,
                    kept = MAX_KEPT,
                    "sharding: too many events outside this replica's share to keep; the oldest \
                     are dropped and a hand-over now may miss some"
                );
            }
        } else {
            self.overflowed = false;
        }
        self.kept.push_back(Kept {
            at: now,
            hash,
            rv,
            item,
        });
    }

    fn expire(&mut self, now: Instant) {
        while self
            .kept
            .front()
            .is_some_and(|k| now.duration_since(k.at) > self.window)
        {
            self.kept.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(kind: &str, rv: &str) -> Marks {
        Marks::from([(kind.to_owned(), rv.to_owned())])
    }

    const KIND: &str = "apps/v1/Deployment";

    #[test]
    fn resource_versions_compare_as_kep_5504_says() {
        assert_eq!(compare_resource_versions("9", "10"), Some(Ordering::Less));
        assert_eq!(
            compare_resource_versions("123", "123"),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare_resource_versions("200", "199"),
            Some(Ordering::Greater)
        );
        for bad in ["", "0", "012", "1a", "-1", "1.0"] {
            assert_eq!(compare_resource_versions(bad, "5"), None, "{bad:?}");
        }
    }

    #[test]
    fn an_event_counts_as_delivered_only_below_every_releasers_mark() {
        let low = Ranges::from_intervals(vec![(0, 100)]);
        let h = Handover {
            gained: Ranges::all(),
            released: vec![
                (low.clone(), marks(KIND, "50")),
                (Ranges::from_intervals(vec![(50, 200)]), marks(KIND, "70")),
            ],
        };
        assert!(h.delivered(10, KIND, Some("50")));
        assert!(!h.delivered(10, KIND, Some("51")));
        assert!(
            h.delivered(60, KIND, Some("50")),
            "both released 60, both passed 50"
        );
        assert!(
            !h.delivered(60, KIND, Some("60")),
            "one of them had not passed 60"
        );
        assert!(h.delivered(150, KIND, Some("70")));
        assert!(
            !h.delivered(300, KIND, Some("1")),
            "nobody released 300: its owner died"
        );
        assert!(
            !h.delivered(10, "v1/ConfigMap", Some("1")),
            "no mark for the kind"
        );
        assert!(!h.delivered(10, KIND, None));
        assert!(!h.delivered(10, KIND, Some("x")), "not comparable: deliver");
    }

    #[tokio::test]
    async fn a_widening_delivers_what_the_releaser_had_not_and_skips_what_it_had() {
        let gate = Gate::new(None);
        let mut router = EventRouter::new(gate.clone(), KIND.to_owned(), Duration::from_secs(60));
        // Nothing granted: everything is kept.
        for (hash, rv) in [(10, "4"), (20, "5"), (500, "6"), (10, "7")] {
            assert!(router.offer(hash, Some(rv.to_owned()), rv).is_empty());
        }
        assert_eq!(router.kept(), 4);
        // The grant gains [0, 100), released by a replica whose pump had reached 8: it
        // delivered 4, 5 and 7 (ours is behind it).
        let gained = Ranges::from_intervals(vec![(0, 100)]);
        assert!(gate.set(gained.clone(), vec![(gained, marks(KIND, "8"))]));
        assert!(router.catch_up().is_empty());
        assert_eq!(router.kept(), 1, "500 stays kept");
        // Live: 8 was delivered there too; 9 was not.
        assert!(router.offer(30, Some("8".to_owned()), "8").is_empty());
        assert_eq!(router.offer(30, Some("9".to_owned()), "9"), vec!["9"]);
        // A second widening, released by a replica that had reached 5 only: 6 is due.
        let more = Ranges::from_intervals(vec![(0, 1000)]);
        assert!(gate.set(more.clone(), vec![(more, marks(KIND, "5"))]));
        assert_eq!(
            router.offer(30, Some("10".to_owned()), "10"),
            vec!["6", "10"]
        );
        assert_eq!(router.kept(), 0);
    }

    #[tokio::test]
    async fn a_dead_owners_share_is_delivered_again_and_old_events_expire() {
        let gate = Gate::new(None);
        let mut router = EventRouter::new(gate.clone(), KIND.to_owned(), Duration::from_millis(50));
        assert!(router.offer(10, Some("1".to_owned()), "old").is_empty());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(router.offer(10, Some("2".to_owned()), "2").is_empty());
        // Nobody says it released [0, 100): its owner died, so at-least-once.
        assert!(gate.set(Ranges::from_intervals(vec![(0, 100)]), Vec::new()));
        assert_eq!(router.catch_up(), vec!["2"], "1 is older than the window");
    }

    #[test]
    fn notes_round_trip_as_json() {
        let note = HandoverNote {
            from: BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            marks: Some(marks(KIND, "42")),
        };
        let text = serde_json::to_string(&note).unwrap();
        assert_eq!(
            text,
            r#"{"from":["a","b"],"marks":{"apps/v1/Deployment":"42"}}"#
        );
        assert_eq!(serde_json::from_str::<HandoverNote>(&text).unwrap(), note);
    }
}
