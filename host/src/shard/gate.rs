//! The gate every unit of sharded work passes: which hashes this replica may start work on (its
//! *grant*), and which work is in flight, so that a replica can tell when it has stopped working
//! on what it is giving up (drained) before it says so to the others.
//!
//! The grant only shrinks on the replica's own say ([`Gate::narrow`]), and widens only from a
//! fresh reading of the ring ([`Gate::set`], by the membership loop); a gate whose replica is no
//! ring member (its shard Lease lapsed) grants nothing ([`Gate::revoke`]).

use super::audit::{self, Audit};
use super::ring::Ranges;
use std::collections::HashMap;
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
}

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
                }),
                gained: broadcast::channel(64).0,
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

    /// Start work on the object `uid` of `hash` if the grant holds it (and the bound fence is
    /// open); it is in flight until the returned [`Work`] is dropped.
    #[must_use]
    pub fn begin(&self, hash: u64, uid: &str) -> Option<Work> {
        let fenced = self
            .inner
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|f| !f.is_open());
        if fenced {
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
        state.grant = state.grant.intersect(keep);
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

    /// Replace the grant (from a fresh reading of the ring); returns whether it gained hashes.
    pub fn set(&self, grant: Ranges) -> bool {
        let gained = {
            let mut state = self.state();
            let gained = grant.subtract(&state.grant);
            state.grant = grant;
            gained
        };
        if gained.is_empty() {
            return false;
        }
        // Nobody listening (no controller yet) is fine: a new one queues every object.
        let _ = self.inner.gained.send(gained);
        true
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
        assert!(gate.set(Ranges::from_intervals(vec![(0, 100)])));
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
        assert!(!gate.set(Ranges::from_intervals(vec![(40, 60)])), "no gain");
        assert!(gained.try_recv().is_err());
        // After a narrowing, widening again reports exactly what came back.
        assert!(gate.set(Ranges::from_intervals(vec![(30, 60)])));
        assert_eq!(
            gained.try_recv().unwrap(),
            Ranges::from_intervals(vec![(30, 40)])
        );
        gate.revoke();
        assert!(!gate.owns(50));
    }
}
