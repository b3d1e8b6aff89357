//! The gate every unit of sharded work passes: which hashes this replica may start work on (its
//! *grant*), and which work is in flight, so that a replica can tell when it has stopped working
//! on what it is giving up (drained) before it says so to the others.
//!
//! The grant only shrinks on the replica's own say ([`Gate::narrow`]), and widens only from a
//! fresh reading of the ring ([`Gate::set`], by the membership loop); a gate whose replica is no
//! ring member (its shard Lease lapsed) grants nothing ([`Gate::revoke`]).
//!
//! Handler events pass it too ([`Gate::route`]): it remembers how far each kind's event pump
//! got, keeps those positions as the marks of a narrowing, and lists each widening with what the
//! releasing replicas said of it, for [`super::handoff`].

use super::audit::{self, Audit};
use super::handoff::{Handover, Marks};
use super::ring::Ranges;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{broadcast, watch};

/// This replica's grant and its work in flight. Cheap to clone; clones share one gate.
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// What this replica owns in the ring it moves to, as it changes: what its sharded caches
    /// hold.
    target: watch::Sender<Ranges>,
    /// What each widening of the grant added: owners requeue what they may now work on.
    gained: broadcast::Sender<Ranges>,
    /// The number of widenings so far: event pumps catch up when it moves.
    epochs: watch::Sender<u64>,
    audit: Option<Audit>,
    /// When set, nothing starts while it is closed (the shard Lease lapsed), whether or not the
    /// membership loop has revoked the grant yet.
    fence: Mutex<Option<crate::leader::Fence>>,
}

#[derive(Debug)]
struct State {
    grant: Ranges,
    /// Work in flight by hash.
    in_flight: HashMap<u64, usize>,
    /// The resourceVersion of the last change each kind's event pump routed.
    positions: Marks,
    /// `positions` at the first narrowing since the last acknowledgement.
    marks: Option<Marks>,
    /// The latest widenings, by epoch.
    handovers: VecDeque<(u64, Arc<Handover>)>,
    epoch: u64,
}

/// Widenings kept for event pumps that have not caught up yet (one that falls further behind
/// treats its whole grant as gained).
const HANDOVERS_KEPT: usize = 32;

/// A unit of work the gate let through; it counts as in flight until dropped.
#[derive(Debug)]
pub struct Work {
    gate: Gate,
    hash: u64,
    uid: String,
    started: u64,
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(audit) = &self.gate.inner.audit {
            audit.record(&self.uid, self.started, audit::now());
        }
        let mut state = self.gate.state();
        if let Some(n) = state.in_flight.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                state.in_flight.remove(&self.hash);
            }
        }
    }
}

impl Gate {
    /// A gate granting nothing yet, recording finished work in `audit`, if given.
    #[must_use]
    pub fn new(audit: Option<Audit>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    grant: Ranges::none(),
                    in_flight: HashMap::new(),
                    positions: Marks::new(),
                    marks: None,
                    handovers: VecDeque::new(),
                    epoch: 0,
                }),
                gained: broadcast::channel(64).0,
                epochs: watch::channel(0).0,
                target: watch::channel(Ranges::all()).0,
                audit,
                fence: Mutex::new(None),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether work on `hash` may start now.
    #[must_use]
    pub fn owns(&self, hash: u64) -> bool {
        self.state().grant.contains(hash)
    }

    /// The grant now.
    #[must_use]
    pub fn grant(&self) -> Ranges {
        self.state().grant.clone()
    }

    /// Refuse all work while `fence` is closed (the membership loop's: open while the shard
    /// Lease is renewed), even before the grant is revoked.
    pub fn bind(&self, fence: crate::leader::Fence) {
        *self
            .inner
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(fence);
    }

    fn fenced(&self) -> bool {
        self.inner
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|f| !f.is_open())
    }

    /// Start work on the object `uid` of `hash` if the grant holds it (and the bound fence is
    /// open); it is in flight until the returned [`Work`] is dropped.
    #[must_use]
    pub fn begin(&self, hash: u64, uid: &str) -> Option<Work> {
        if self.fenced() {
            return None;
        }
        let mut state = self.state();
        if !state.grant.contains(hash) {
            return None;
        }
        *state.in_flight.entry(hash).or_default() += 1;
        Some(Work {
            gate: self.clone(),
            hash,
            uid: uid.to_owned(),
            started: audit::now(),
        })
    }

    /// Keep only the part of the grant within `keep`, what this replica owns in the ring it
    /// moves to (new work outside it is refused from now on; work in flight goes on until
    /// [`drained`](Self::drained)).
    pub fn narrow(&self, keep: &Ranges) {
        let mut state = self.state();
        let grant = state.grant.intersect(keep);
        if grant != state.grant && state.marks.is_none() {
            state.marks = Some(state.positions.clone());
        }
        state.grant = grant;
        drop(state);
        // Caches follow: after the grant, so no work starts on what they drop.
        self.inner.target.send_if_modified(|t| {
            let changed = t != keep;
            if changed {
                keep.clone_into(t);
            }
            changed
        });
    }

    /// What this replica owns in the ring it moves to, as it changes (everything until it first
    /// reads the ring).
    #[must_use]
    pub fn targets(&self) -> watch::Receiver<Ranges> {
        self.inner.target.subscribe()
    }

    /// Grant nothing (the replica left the ring).
    pub fn revoke(&self) {
        self.state().grant = Ranges::none();
    }

    /// Replace the grant (from a fresh reading of the ring), with what live replicas said they
    /// `released` (and their marks); returns whether it gained hashes.
    pub fn set(&self, grant: Ranges, released: Vec<(Ranges, Marks)>) -> bool {
        let (gained, epoch) = {
            let mut state = self.state();
            let gained = grant.subtract(&state.grant);
            state.grant = grant;
            if gained.is_empty() {
                return false;
            }
            state.epoch += 1;
            let handover = Handover {
                gained: gained.clone(),
                released,
            };
            let epoch = state.epoch;
            state.handovers.push_back((epoch, Arc::new(handover)));
            if state.handovers.len() > HANDOVERS_KEPT {
                state.handovers.pop_front();
            }
            (gained, epoch)
        };
        // Nobody listening (no controller yet) is fine: a new one queues every object.
        let _ = self.inner.gained.send(gained);
        self.inner.epochs.send_replace(epoch);
        true
    }

    /// Route a change of `kind` to an object of `hash` and resourceVersion `rv` (the event
    /// pump's position from now on): whether this replica delivers it, and the widenings so far.
    pub fn route(&self, kind: &str, hash: u64, rv: Option<&str>) -> (bool, u64) {
        let fenced = self.fenced();
        let mut state = self.state();
        if let Some(rv) = rv {
            match state.positions.get_mut(kind) {
                Some(position) => rv.clone_into(position),
                None => {
                    state.positions.insert(kind.to_owned(), rv.to_owned());
                }
            }
        }
        (!fenced && state.grant.contains(hash), state.epoch)
    }

    /// The marks of the first narrowing since the last call, if the grant shrank: what to
    /// publish with the next acknowledgement.
    pub fn take_marks(&self) -> Option<Marks> {
        self.state().marks.take()
    }

    /// The widenings so far.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Wakes when the grant widens.
    #[must_use]
    pub fn epochs(&self) -> watch::Receiver<u64> {
        self.inner.epochs.subscribe()
    }

    /// The widenings after `epoch`, oldest first, and the epoch now. A caller further behind
    /// than the kept widenings gets its whole grant as one, with no marks.
    #[must_use]
    pub fn handovers_since(&self, epoch: u64) -> (u64, Vec<Arc<Handover>>) {
        let state = self.state();
        let kept_from = state.handovers.front().map_or(state.epoch + 1, |(e, _)| *e);
        if epoch + 1 < kept_from {
            let all = Handover {
                gained: state.grant.clone(),
                released: Vec::new(),
            };
            return (state.epoch, vec![Arc::new(all)]);
        }
        let since = state
            .handovers
            .iter()
            .filter(|(e, _)| *e > epoch)
            .map(|(_, h)| Arc::clone(h))
            .collect();
        (state.epoch, since)
    }

    /// Record in the audit log, if any, that the change of `kind` with resourceVersion `rv` to
    /// the object `uid` was delivered to the handlers here.
    pub fn record_event(&self, kind: &impl std::fmt::Display, uid: &str, rv: &str) {
        if let Some(audit) = &self.inner.audit {
            audit.record_event(kind, uid, rv);
        }
    }

    /// Whether no work is in flight outside the grant.
    #[must_use]
    pub fn drained(&self) -> bool {
        let state = self.state();
        state.in_flight.keys().all(|h| state.grant.contains(*h))
    }

    /// What each widening of the grant adds, from now on (a receiver that lags should take the
    /// whole grant as gained).
    #[must_use]
    pub fn gained(&self) -> broadcast::Receiver<Ranges> {
        self.inner.gained.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_starts_only_within_the_grant_and_drains() {
        let gate = Gate::new(None);
        assert!(gate.begin(5, "a").is_none(), "a new gate grants nothing");
        let mut gained = gate.gained();
        assert!(gate.set(Ranges::from_intervals(vec![(0, 100)]), Vec::new()));
        assert_eq!(
            gained.try_recv().unwrap(),
            Ranges::from_intervals(vec![(0, 100)])
        );
        let work = gate.begin(5, "a").unwrap();
        let other = gate.begin(50, "b").unwrap();
        gate.narrow(&Ranges::from_intervals(vec![(40, 100)]));
        assert!(gate.begin(6, "c").is_none(), "narrowed away");
        assert!(!gate.drained(), "5 still in flight");
        drop(work);
        assert!(gate.drained(), "50 is still granted");
        drop(other);
        assert!(
            !gate.set(Ranges::from_intervals(vec![(40, 60)]), Vec::new()),
            "no gain"
        );
        assert!(gained.try_recv().is_err());
        // After a narrowing, widening again reports exactly what came back.
        assert!(gate.set(Ranges::from_intervals(vec![(30, 60)]), Vec::new()));
        assert_eq!(
            gained.try_recv().unwrap(),
            Ranges::from_intervals(vec![(30, 40)])
        );
        gate.revoke();
        assert!(!gate.owns(50));
    }

    #[test]
    fn marks_are_the_event_positions_at_the_first_narrowing_since_the_last_publish() {
        const KIND: &str = "v1/ConfigMap";
        let gate = Gate::new(None);
        assert!(gate.set(Ranges::from_intervals(vec![(0, 100)]), Vec::new()));
        assert_eq!(gate.route(KIND, 5, Some("10")), (true, 1));
        assert_eq!(
            gate.route(KIND, 500, Some("11")),
            (false, 1),
            "routed, not owned"
        );
        gate.narrow(&Ranges::all());
        assert_eq!(gate.take_marks(), None, "nothing given up, no marks");
        gate.narrow(&Ranges::from_intervals(vec![(0, 50)]));
        let _ = gate.route(KIND, 5, Some("12"));
        gate.narrow(&Ranges::from_intervals(vec![(0, 40)]));
        // The first narrowing's positions: events after 11 may not have been delivered here.
        let marks = gate.take_marks().unwrap();
        assert_eq!(marks.get(KIND).map(String::as_str), Some("11"));
        assert_eq!(gate.take_marks(), None, "taken");
        gate.narrow(&Ranges::from_intervals(vec![(0, 30)]));
        assert_eq!(
            gate.take_marks().unwrap().get(KIND).map(String::as_str),
            Some("12")
        );
    }

    #[test]
    fn a_pump_far_behind_takes_its_whole_grant_as_gained() {
        let gate = Gate::new(None);
        for i in 1..=u128::try_from(HANDOVERS_KEPT).unwrap() + 2 {
            assert!(gate.set(Ranges::from_intervals(vec![(0, i)]), Vec::new()));
        }
        let (epoch, since) = gate.handovers_since(0);
        assert_eq!(epoch, gate.epoch());
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].gained, gate.grant());
        assert!(since[0].released.is_empty());
        let (_, recent) = gate.handovers_since(epoch - 2);
        assert_eq!(recent.len(), 2);
    }
}
