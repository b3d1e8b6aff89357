//! Kubernetes Events and logs on condition transitions, by each condition's observability
//! (seed 003). Publishing happens off the reconcile; a failure is logged, never fatal.

use super::conditions::ComputedCondition;
use crate::contract::{ConditionStatus, ObjectRef, Observability};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};

/// The reporting controller of every event.
pub const CONTROLLER: &str = "capstan";

/// The action of reconcile events.
pub const ACTION: &str = "Reconcile";

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

/// Publishes condition events as controller `capstan`, instance the plugin's name.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A publisher for `plugin`'s controller.
    pub fn new(client: kube::Client, plugin: &str) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: CONTROLLER.into(),
                    instance: Some(plugin.to_owned()),
                },
            ),
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
        let (recorder, reference, plugin) =
            (self.recorder.clone(), reference(object), plugin.to_owned());
        tokio::spawn(async move {
            for event in events {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(plugin = %plugin, object = ?reference.name, %error, "cannot publish an event");
                }
            }
        });
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

    #[test]
    fn long_texts_are_cut_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
