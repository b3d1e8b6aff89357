//! Quarantine: a plugin whose calls keep failing on distinct objects is taken out of service for a
//! growing backoff. One poison object does not take a plugin down: its repeated failures count
//! once, and it backs off alone (the reconcile queue's per-object backoff, a handler event's
//! retries).

use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// Distinct failing objects remembered between two successes.
const TRACKED_OBJECTS: usize = 1024;

/// When a failing plugin is quarantined, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Consecutive failed calls (trap, timeout) on distinct objects, with no success in between,
    /// that quarantine a plugin. Failures of an object that already failed since the last success
    /// do not count. 0 never quarantines.
    pub after_failures: u32,
    /// The first quarantine's length; each further one doubles it.
    pub initial_backoff: Duration,
    /// The longest quarantine.
    pub max_backoff: Duration,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self {
            after_failures: 5,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Whether a plugin takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PluginState {
    /// Serving calls.
    Running,
    /// Quarantined after repeated failures: calls are refused until the backoff ends.
    Degraded {
        /// Consecutive failed calls, on distinct objects.
        failures: u32,
        /// Milliseconds until calls are taken again (0: the next call is a trial).
        retry_in_ms: u64,
    },
}

/// What a finished call changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth a log line.
    None,
    /// The plugin was quarantined for this long.
    Quarantined(Duration),
    /// A call succeeded after a quarantine: the plugin is back.
    Recovered,
}

/// The failure record of one plugin version.
#[derive(Debug)]
pub struct Quarantine {
    policy: QuarantinePolicy,
    /// Counted failures since the last success: one per distinct object, one per call about none.
    failures: u32,
    /// The objects that failed since the last success.
    failing: HashSet<String>,
    backoff: Duration,
    until: Option<Instant>,
}

impl Quarantine {
    /// A healthy record under `policy`.
    pub fn new(policy: QuarantinePolicy) -> Self {
        let backoff = policy.initial_backoff;
        Self {
            policy,
            failures: 0,
            failing: HashSet::new(),
            backoff,
            until: None,
        }
    }

    /// If calls are refused now, how long until they are taken again.
    pub fn refused_for(&self) -> Option<Duration> {
        let until = self.until?;
        let now = Instant::now();
        (now < until).then(|| until - now)
    }

    /// The current state.
    pub fn state(&self) -> PluginState {
        match self.until {
            None => PluginState::Running,
            Some(_) => PluginState::Degraded {
                failures: self.failures,
                retry_in_ms: self
                    .refused_for()
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            },
        }
    }

    /// Record a successful call.
    pub fn succeeded(&mut self) -> Transition {
        let was_degraded = self.until.is_some();
        self.failures = 0;
        self.failing.clear();
        self.until = None;
        self.backoff = self.policy.initial_backoff;
        if was_degraded {
            Transition::Recovered
        } else {
            Transition::None
        }
    }

    /// Record a failed call about `object` (`None`: a call about no object, such as `describe`).
    /// An object that already failed since the last success is not counted again. A counted
    /// failure while on trial (after a quarantine ended) quarantines again at once, for twice as
    /// long.
    pub fn failed(&mut self, object: Option<&str>) -> Transition {
        if let Some(object) = object {
            if self.failing.contains(object) {
                return Transition::None;
            }
            if self.failing.len() < TRACKED_OBJECTS {
                self.failing.insert(object.to_owned());
            }
        }
        self.failures = self.failures.saturating_add(1);
        let threshold = self.policy.after_failures;
        if threshold == 0 || self.failures < threshold {
            return Transition::None;
        }
        let length = if self.until.is_some() {
            self.backoff = (self.backoff * 2).min(self.policy.max_backoff);
            self.backoff
        } else {
            self.backoff
        };
        self.until = Some(Instant::now() + length);
        Transition::Quarantined(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> QuarantinePolicy {
        QuarantinePolicy {
            after_failures: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_quarantine_with_growing_backoff() {
        let mut q = Quarantine::new(policy());
        assert_eq!(q.failed(None), Transition::None);
        assert_eq!(q.failed(None), Transition::None);
        assert_eq!(
            q.failed(None),
            Transition::Quarantined(Duration::from_secs(1))
        );
        assert!(q.refused_for().is_some());
        assert!(matches!(
            q.state(),
            PluginState::Degraded { failures: 3, .. }
        ));
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(q.refused_for(), None, "the trial call is let through");
        assert_eq!(
            q.failed(None),
            Transition::Quarantined(Duration::from_secs(2))
        );
        tokio::time::advance(Duration::from_millis(2001)).await;
        assert_eq!(
            q.failed(None),
            Transition::Quarantined(Duration::from_secs(3)),
            "capped"
        );
        tokio::time::advance(Duration::from_millis(3001)).await;
        assert_eq!(q.succeeded(), Transition::Recovered);
        assert_eq!(q.state(), PluginState::Running);
        assert_eq!(q.failed(None), Transition::None, "counting starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let mut q = Quarantine::new(policy());
        q.failed(None);
        q.failed(None);
        assert_eq!(q.succeeded(), Transition::None);
        q.failed(None);
        q.failed(None);
        assert_eq!(q.state(), PluginState::Running);
    }

    #[tokio::test(start_paused = true)]
    async fn one_poison_object_never_quarantines() {
        let mut q = Quarantine::new(policy());
        for _ in 0..100 {
            assert_eq!(q.failed(Some("WebApp default/poison")), Transition::None);
        }
        assert_eq!(q.state(), PluginState::Running);
        assert_eq!(q.failed(Some("WebApp default/other")), Transition::None);
        assert!(matches!(q.state(), PluginState::Running));
    }

    #[tokio::test(start_paused = true)]
    async fn distinct_failing_objects_quarantine() {
        let mut q = Quarantine::new(policy());
        assert_eq!(q.failed(Some("a")), Transition::None);
        assert_eq!(q.failed(Some("a")), Transition::None, "a again");
        assert_eq!(q.failed(Some("b")), Transition::None);
        assert_eq!(
            q.failed(Some("c")),
            Transition::Quarantined(Duration::from_secs(1)),
            "three distinct objects"
        );
        assert!(matches!(
            q.state(),
            PluginState::Degraded { failures: 3, .. }
        ));
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(
            q.failed(Some("a")),
            Transition::None,
            "on trial, an object that already failed does not quarantine again"
        );
        assert_eq!(
            q.failed(Some("d")),
            Transition::Quarantined(Duration::from_secs(2)),
            "a new failing object does"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_forgets_the_failing_objects() {
        let mut q = Quarantine::new(policy());
        q.failed(Some("a"));
        q.failed(Some("b"));
        assert_eq!(q.succeeded(), Transition::None);
        assert_eq!(q.failed(Some("a")), Transition::None);
        assert_eq!(q.failed(Some("b")), Transition::None);
        assert_eq!(q.state(), PluginState::Running, "counting started over");
        assert!(matches!(q.failed(Some("c")), Transition::Quarantined(_)));
    }

    #[test]
    fn zero_threshold_never_quarantines() {
        let mut q = Quarantine::new(QuarantinePolicy {
            after_failures: 0,
            ..policy()
        });
        for _ in 0..100 {
            assert_eq!(q.failed(None), Transition::None);
        }
    }
}
