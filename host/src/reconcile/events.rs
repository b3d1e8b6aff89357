//! Kubernetes Events and logs on condition transitions, by each condition's observability
//! (seed 003). Publishing happens off the reconcile, one event at a time; a failure is logged,
//! never fatal.
//!
//! What reaches the API server is bounded as client-go's `EventCorrelator` bounds it
//! (tools/record/events_cache.go), per object: similar events are aggregated, repeats become
//! count increments, and a token bucket filters spam. kube-runtime's [`Recorder`] already turns a
//! repeat (same type, reason, action, reporter and object) into a `series.count` increment of the
//! existing `events.k8s.io/v1` Event; [`Correlator`] adds the rest in front of it. Its aggregation
//! key leaves out the reason (client-go keeps it), since reasons come from an untrusted plugin and
//! a plugin inventing a new reason every reconcile must not get a new Event object each time.

use super::conditions::ComputedCondition;
use crate::contract::{ConditionStatus, ObjectRef, Observability};
use crate::rate::TokenBucket;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The reporting controller of every event.
pub const CONTROLLER: &str = "capstan";

/// The action of reconcile events.
pub const ACTION: &str = "Reconcile";

/// Distinct events (reason and note) about one object and type within
/// [`AGGREGATE_INTERVAL`] after which further new ones are combined (client-go: 10).
pub const AGGREGATE_MAX_EVENTS: usize = 10;

/// How long similar events are remembered for aggregation (client-go: 10 minutes).
pub const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);

/// The reason of a combined event: one Event object, whose count grows.
pub const COMBINED_REASON: &str = "SimilarEventsCombined";

/// The note prefix of a combined event (client-go's).
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// Events about one object sent at once (client-go: 25).
pub const SPAM_BURST: u64 = 25;

/// Then one event about the object per this interval (client-go: 5 minutes).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);

/// Queued events waiting to be published; more are dropped.
const QUEUED: usize = 256;

/// Objects tracked before stale records are pruned.
const TRACKED: usize = 4096;

/// Similar events seen about one object and type.
struct Aggregate {
    /// The (reason, note) of each distinct event.
    local: HashSet<(String, String)>,
    last: Instant,
}

/// Decides which events about an object are sent, and in which form: client-go's aggregator and
/// spam filter, in front of the [`Recorder`]'s count increments.
#[derive(Default)]
pub struct Correlator {
    aggregates: HashMap<(ObjectRef, EventType), Aggregate>,
    spam: HashMap<ObjectRef, TokenBucket>,
}

impl Correlator {
    /// A correlator that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The event to send for `event` about `object`, or `None` when the object's budget is
    /// spent. The [`AGGREGATE_MAX_EVENTS`]th distinct event about an object and type within
    /// [`AGGREGATE_INTERVAL`], and every new one after it, is sent as a combined event
    /// ([`COMBINED_REASON`]).
    pub fn correlate(&mut self, object: &ObjectRef, event: KubeEvent) -> Option<KubeEvent> {
        let event = self.aggregate(object, event);
        self.admit(object).then_some(event)
    }

    fn aggregate(&mut self, object: &ObjectRef, event: KubeEvent) -> KubeEvent {
        let now = Instant::now();
        if self.aggregates.len() > TRACKED {
            self.aggregates
                .retain(|_, a| now.duration_since(a.last) <= AGGREGATE_INTERVAL);
        }
        let record = self
            .aggregates
            .entry((object.clone(), event.type_))
            .or_insert_with(|| Aggregate {
                local: HashSet::new(),
                last: now,
            });
        if now.duration_since(record.last) > AGGREGATE_INTERVAL {
            record.local.clear();
        }
        record.last = now;
        let note = event.note.clone().unwrap_or_default();
        record.local.insert((event.reason.clone(), note.clone()));
        if record.local.len() < AGGREGATE_MAX_EVENTS {
            return event;
        }
        // Keep the set from growing past the threshold (client-go pops any one).
        if let Some(any) = record.local.iter().next().cloned() {
            record.local.remove(&any);
        }
        KubeEvent {
            reason: COMBINED_REASON.into(),
            note: Some(truncate(&format!("{COMBINED_PREFIX}{note}"), 1024)),
            ..event
        }
    }

    /// Spend one of the object's tokens (client-go's `EventSourceObjectSpamFilter`).
    fn admit(&mut self, object: &ObjectRef) -> bool {
        if self.spam.len() > TRACKED {
            self.spam.retain(|_, b| !b.is_full());
        }
        self.spam
            .entry(object.clone())
            .or_insert_with(|| TokenBucket::one_per(SPAM_BURST, SPAM_REFILL))
            .try_take(1.0)
    }
}

/// How loud a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Info log, `Normal` event.
    Info,
    /// Warn log, `Warning` event.
    Warn,
    /// Error log, `Warning` event.
    Error,
}

/// What to report about a condition in this reconcile, if anything: `Info` reports transitions
/// (`Normal` event, info log); `Silent` nothing; `Warning` and `Error` report every reconcile
/// while the condition is not `True` (`Warning` event, warn or error log) and a recovery as
/// `Info`.
pub fn level(c: &ComputedCondition, transitioned: bool) -> Option<Level> {
    match c.observability {
        Observability::Silent => None,
        Observability::Info => transitioned.then_some(Level::Info),
        Observability::Warning | Observability::Error if !c.healthy() => {
            Some(if c.observability == Observability::Error {
                Level::Error
            } else {
                Level::Warn
            })
        }
        Observability::Warning | Observability::Error => transitioned.then_some(Level::Info),
    }
}

/// Publishes condition events as controller `capstan`, instance the plugin's name, through a
/// [`Correlator`], one at a time on a task of its own (the [`Recorder`] reads, then writes, its
/// cache of sent events).
#[derive(Clone)]
pub struct Events {
    correlator: Arc<Mutex<Correlator>>,
    queue: mpsc::Sender<(KubeEvent, ObjectReference)>,
}

impl Events {
    /// A publisher for `plugin`'s controller. Starts its publishing task: call in a runtime.
    pub fn new(client: kube::Client, plugin: &str) -> Self {
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: CONTROLLER.into(),
                instance: Some(plugin.to_owned()),
            },
        );
        let (queue, mut events) = mpsc::channel::<(KubeEvent, ObjectReference)>(QUEUED);
        let plugin = plugin.to_owned();
        tokio::spawn(async move {
            while let Some((event, reference)) = events.recv().await {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(plugin = %plugin, object = ?reference.name, %error, "cannot publish an event");
                }
            }
        });
        Self {
            correlator: Arc::new(Mutex::new(Correlator::new())),
            queue,
        }
    }

    /// Log and publish what `conditions` (with whether each transitioned) call for.
    pub fn report(
        &self,
        plugin: &str,
        object: &ObjectRef,
        conditions: &[(ComputedCondition, bool)],
    ) {
        let mut events = Vec::new();
        for (c, transitioned) in conditions {
            let Some(level) = level(c, *transitioned) else {
                continue;
            };
            let status = match c.status {
                ConditionStatus::True => "True",
                ConditionStatus::False => "False",
                ConditionStatus::Unknown => "Unknown",
            };
            let ty = &c.condition_type;
            match level {
                Level::Info => {
                    tracing::info!(plugin, %object, condition = %ty, status, reason = %c.reason, message = %c.message, "condition changed");
                }
                Level::Warn => {
                    tracing::warn!(plugin, %object, condition = %ty, status, reason = %c.reason, message = %c.message, "condition not healthy");
                }
                Level::Error => {
                    tracing::error!(plugin, %object, condition = %ty, status, reason = %c.reason, message = %c.message, "condition not healthy");
                }
            }
            events.push(KubeEvent {
                type_: if level == Level::Info {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: truncate(&c.reason, 128),
                note: Some(truncate(&format!("{ty} is {status}: {}", c.message), 1024)),
                action: ACTION.into(),
                secondary: None,
            });
        }
        if events.is_empty() {
            return;
        }
        let sent: Vec<KubeEvent> = {
            let mut correlator = self
                .correlator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            events
                .into_iter()
                .filter_map(|e| correlator.correlate(object, e))
                .collect()
        };
        let reference = reference(object);
        for event in sent {
            if self.queue.try_send((event, reference.clone())).is_err() {
                tracing::debug!(plugin, %object, "event queue full: event dropped");
            }
        }
    }
}

/// A reference to a reconciled object, for events about it.
pub fn reference(object: &ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(object.gvk.api_version()),
        kind: Some(object.gvk.kind.clone()),
        name: Some(object.name.clone()),
        namespace: object.namespace.clone(),
        uid: object.uid.clone(),
        resource_version: None,
        field_path: None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: ConditionStatus, observability: Observability) -> ComputedCondition {
        ComputedCondition::new("Ready", status, "R", "m", observability)
    }

    #[test]
    fn info_reports_transitions_only() {
        let ok = c(ConditionStatus::True, Observability::Info);
        let bad = c(ConditionStatus::False, Observability::Info);
        assert_eq!(level(&ok, true), Some(Level::Info));
        assert_eq!(level(&bad, true), Some(Level::Info));
        assert_eq!(level(&bad, false), None);
    }

    #[test]
    fn silent_reports_nothing() {
        let bad = c(ConditionStatus::False, Observability::Silent);
        assert_eq!(level(&bad, true), None);
    }

    #[test]
    fn warning_and_error_repeat_while_unhealthy() {
        let warn = c(ConditionStatus::False, Observability::Warning);
        assert_eq!(level(&warn, true), Some(Level::Warn));
        assert_eq!(level(&warn, false), Some(Level::Warn), "every reconcile");
        let err = c(ConditionStatus::Unknown, Observability::Error);
        assert_eq!(level(&err, false), Some(Level::Error));
        let recovered = c(ConditionStatus::True, Observability::Error);
        assert_eq!(level(&recovered, true), Some(Level::Info));
        assert_eq!(level(&recovered, false), None);
    }

    fn object(name: &str) -> ObjectRef {
        ObjectRef {
            gvk: crate::contract::Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"),
            namespace: Some("default".into()),
            name: name.into(),
            uid: Some(format!("uid-{name}")),
        }
    }

    fn event(reason: &str, note: &str) -> KubeEvent {
        KubeEvent {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.into()),
            action: ACTION.into(),
            secondary: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_event_passes_a_burst_then_one_per_refill() {
        let mut c = Correlator::new();
        let app = object("app");
        let sent = (0..100)
            .filter(|_| c.correlate(&app, event("Same", "same")).is_some())
            .count();
        assert_eq!(sent, 25, "the burst");
        tokio::time::advance(SPAM_REFILL).await;
        let sent = (0..100)
            .filter(|_| c.correlate(&app, event("Same", "same")).is_some())
            .count();
        assert_eq!(sent, 1, "one per refill interval");
        assert!(
            c.correlate(&object("other"), event("Same", "same"))
                .is_some(),
            "each object has its own budget"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn new_reasons_are_combined_after_ten() {
        let mut c = Correlator::new();
        let app = object("app");
        let out: Vec<KubeEvent> = (0..20)
            .filter_map(|i| c.correlate(&app, event(&format!("Reason{i}"), "note")))
            .collect();
        assert_eq!(out.len(), 20);
        for (i, e) in out.iter().enumerate().take(9) {
            assert_eq!(e.reason, format!("Reason{i}"));
        }
        for e in &out[9..] {
            assert_eq!(e.reason, COMBINED_REASON, "one reason: one Event object");
            assert_eq!(
                e.note.as_deref(),
                Some("(combined from similar events): note")
            );
            assert_eq!(e.type_, EventType::Warning);
        }
        let normal = KubeEvent {
            type_: EventType::Normal,
            ..event("Reason19", "note")
        };
        assert_eq!(
            c.correlate(&app, normal).unwrap().reason,
            "Reason19",
            "other types are aggregated apart"
        );
        tokio::time::advance(AGGREGATE_INTERVAL + Duration::from_secs(1)).await;
        assert_eq!(
            c.correlate(&app, event("Fresh", "n")).unwrap().reason,
            "Fresh",
            "forgotten after the interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn whatever_the_reasons_an_object_gets_a_bounded_number_of_event_objects() {
        // The Recorder makes one Event object per distinct (type, reason): count them.
        let mut c = Correlator::new();
        let app = object("app");
        let mut reasons = HashSet::new();
        for i in 0..10_000 {
            if let Some(e) = c.correlate(&app, event(&format!("Unique{i}"), &format!("m{i}"))) {
                reasons.insert(e.reason);
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(reasons.len() <= AGGREGATE_MAX_EVENTS, "{}", reasons.len());
    }

    #[test]
    fn long_texts_are_cut_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
