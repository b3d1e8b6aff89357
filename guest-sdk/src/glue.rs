//! Glue between the generated bindings and the SDK's idiomatic types; used by [`crate::export!`].
#![doc(hidden)]

use crate::health::ErrorCategory;
use crate::manifest::{Gvk, StatusMode, Verb};
use crate::wit::capstan::controller::types as t;
use crate::{Error, Plugin};
use std::marker::PhantomData;

/// The exports of a plugin type `T`, handed to the generated export macro.
pub struct Exports<T>(PhantomData<T>);

impl<T: Plugin> crate::wit::exports::capstan::controller::plugin::Guest for Exports<T> {
    fn describe() -> t::Manifest {
        let m = T::manifest();
        t::Manifest {
            name: m.name,
            version: m.version,
            watches: m.watches.into_iter().map(gvk_out).collect(),
            owns: m.owns.into_iter().map(gvk_out).collect(),
            access: m
                .access
                .into_iter()
                .map(|(gvk, verbs)| t::AccessRule {
                    gvk: gvk_out(gvk),
                    verbs: verbs.into_iter().map(verb_out).collect(),
                })
                .collect(),
            status_mode: match m.status_mode {
                StatusMode::Automatic => t::StatusMode::Automatic,
                StatusMode::Decorate => t::StatusMode::Decorate,
                StatusMode::Manual => t::StatusMode::Manual,
            },
            finalizer: m.finalizer,
            pod_logs: m.pod_logs,
            observability: observability_out(m.observability),
            phase_timeouts: m
                .phase_timeouts
                .into_iter()
                .map(|(phase, d)| t::PhaseTimeout {
                    phase,
                    seconds: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
                })
                .collect(),
            wait_for_owner: m.wait_for_owner.map(gvk_out),
        }
    }
}

fn observability_out(o: crate::Observability) -> t::Observability {
    use crate::Observability as O;
    match o {
        O::Silent => t::Observability::Silent,
        O::Info => t::Observability::Info,
        O::Warning => t::Observability::Warning,
        O::Error => t::Observability::Error,
    }
}

fn gvk_out(g: Gvk) -> t::GroupVersionKind {
    t::GroupVersionKind {
        group: g.group,
        version: g.version,
        kind: g.kind,
    }
}

#[cfg_attr(not(feature = "handler"), allow(dead_code))]
fn gvk_in(g: t::GroupVersionKind) -> Gvk {
    Gvk {
        group: g.group,
        version: g.version,
        kind: g.kind,
    }
}

fn verb_out(v: Verb) -> t::Verb {
    match v {
        Verb::Get => t::Verb::Get,
        Verb::List => t::Verb::List,
        Verb::Watch => t::Verb::Watch,
        Verb::Create => t::Verb::Create,
        Verb::Update => t::Verb::Update,
        Verb::Patch => t::Verb::Patch,
        Verb::Delete => t::Verb::Delete,
    }
}

fn category_out(c: ErrorCategory) -> t::ErrorCategory {
    match c {
        ErrorCategory::Infrastructure => t::ErrorCategory::Infrastructure,
        ErrorCategory::Auth => t::ErrorCategory::Auth,
        ErrorCategory::InvalidSpec => t::ErrorCategory::InvalidSpec,
        ErrorCategory::MissingUpstreamDependency => t::ErrorCategory::MissingUpstreamDependency,
        ErrorCategory::MissingDownstreamDependency => t::ErrorCategory::MissingDownstreamDependency,
        ErrorCategory::ResourceExhaustion => t::ErrorCategory::ResourceExhaustion,
    }
}

#[cfg_attr(not(feature = "reconciler"), allow(dead_code))]
fn category_in(c: t::ErrorCategory) -> ErrorCategory {
    match c {
        t::ErrorCategory::Infrastructure => ErrorCategory::Infrastructure,
        t::ErrorCategory::Auth => ErrorCategory::Auth,
        t::ErrorCategory::InvalidSpec => ErrorCategory::InvalidSpec,
        t::ErrorCategory::MissingUpstreamDependency => ErrorCategory::MissingUpstreamDependency,
        t::ErrorCategory::MissingDownstreamDependency => ErrorCategory::MissingDownstreamDependency,
        t::ErrorCategory::ResourceExhaustion => ErrorCategory::ResourceExhaustion,
    }
}

#[cfg_attr(not(feature = "reconciler"), allow(dead_code))]
fn error_out(e: Error) -> t::CategorizedError {
    t::CategorizedError {
        category: category_out(e.category),
        message: e.message,
    }
}

/// Forward a log record to the host.
pub fn log(level: crate::log::Level, message: &str, fields: &[(&str, &str)]) {
    use crate::log::Level;
    use crate::wit::capstan::controller::log as l;
    let level = match level {
        Level::Trace => l::Level::Trace,
        Level::Debug => l::Level::Debug,
        Level::Info => l::Level::Info,
        Level::Warn => l::Level::Warn,
        Level::Error => l::Level::Error,
    };
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l::log(level, message, &fields);
}

#[cfg(feature = "handler")]
mod handler {
    use super::*;
    use crate::plan::ObjectRef;
    use crate::status::{ChannelError, Delivery, EventProcessStatus, EventStatus};
    use crate::wit::capstan::controller::status_channel::{self as sc, StatusSender};
    use crate::{Handler, StatusChannel};
    use serde::de::DeserializeOwned;

    pub(crate) fn status_out(s: EventProcessStatus) -> t::EventProcessStatus {
        t::EventProcessStatus {
            status: event_status_out(s.status),
            messages: s
                .messages
                .into_iter()
                .map(|(key, value)| t::Message { key, value })
                .collect(),
            retry: s.retry,
            max_retry: s.max_retry,
            error: s.error,
        }
    }

    fn status_in(s: t::EventProcessStatus) -> EventProcessStatus {
        EventProcessStatus {
            status: event_status_in(s.status),
            messages: s.messages.into_iter().map(|m| (m.key, m.value)).collect(),
            retry: s.retry,
            max_retry: s.max_retry,
            error: s.error,
        }
    }

    fn event_status_out(s: EventStatus) -> t::EventStatus {
        match s {
            EventStatus::Skip => t::EventStatus::Skip,
            EventStatus::Retry => t::EventStatus::Retry,
            EventStatus::MaxRetryReached => t::EventStatus::MaxRetryReached,
            EventStatus::Completed => t::EventStatus::Completed,
            EventStatus::Failure => t::EventStatus::Failure,
            EventStatus::Processing => t::EventStatus::Processing,
            EventStatus::PartialCompleted => t::EventStatus::PartialCompleted,
        }
    }

    fn event_status_in(s: t::EventStatus) -> EventStatus {
        match s {
            t::EventStatus::Skip => EventStatus::Skip,
            t::EventStatus::Retry => EventStatus::Retry,
            t::EventStatus::MaxRetryReached => EventStatus::MaxRetryReached,
            t::EventStatus::Completed => EventStatus::Completed,
            t::EventStatus::Failure => EventStatus::Failure,
            t::EventStatus::Processing => EventStatus::Processing,
            t::EventStatus::PartialCompleted => EventStatus::PartialCompleted,
        }
    }

    /// Deliver a status on a host channel.
    pub fn deliver(
        handle: &StatusSender,
        status: EventProcessStatus,
        how: Delivery,
    ) -> Result<(), ChannelError> {
        let status = status_out(status);
        let result = match how {
            Delivery::Send => handle.send(&status),
            Delivery::SendClose => handle.send_close(&status),
            Delivery::SkipClose => handle.skip_close(&status),
        };
        result.map_err(|e| match e {
            sc::ChannelError::Closed => ChannelError::Closed,
            sc::ChannelError::Expired => ChannelError::Expired,
            sc::ChannelError::TooLarge => ChannelError::TooLarge,
        })
    }

    fn decode<O: DeserializeOwned>(json: &str) -> Option<O> {
        match serde_json::from_str(json) {
            Ok(o) => Some(o),
            Err(e) => {
                crate::log::error("cannot decode event object", &[("error", &e.to_string())]);
                None
            }
        }
    }

    impl<T: Handler> crate::wit::exports::capstan::controller::handler::Guest for Exports<T> {
        fn added(obj: String, status: &StatusSender) -> t::EventStatus {
            let ch = StatusChannel::from_host(status);
            event_status_out(match decode(&obj) {
                Some(o) => T::added(o, &ch),
                None => EventStatus::Failure,
            })
        }

        fn updated(new_obj: String, old_obj: String, status: &StatusSender) -> t::EventStatus {
            let ch = StatusChannel::from_host(status);
            event_status_out(match (decode(&new_obj), decode(&old_obj)) {
                (Some(n), Some(o)) => T::updated(n, o, &ch),
                _ => EventStatus::Failure,
            })
        }

        fn deleted(obj: String, status: &StatusSender) -> t::EventStatus {
            let ch = StatusChannel::from_host(status);
            event_status_out(match decode(&obj) {
                Some(o) => T::deleted(o, &ch),
                None => EventStatus::Failure,
            })
        }

        fn on_status(obj: t::ObjectRef, status: t::EventProcessStatus) {
            let obj = ObjectRef {
                gvk: gvk_in(obj.gvk),
                namespace: obj.namespace,
                name: obj.name,
            };
            T::on_status(&obj, status_in(status));
        }
    }
}

#[cfg(feature = "handler")]
pub use handler::deliver;

#[cfg(feature = "reconciler")]
mod reconciler {
    use super::*;
    use crate::Reconciler;
    use crate::cache::Cache;
    use crate::conditions::{Cleanup, Condition, ConditionStatus, StatusUpdate};
    use crate::health::HealthState;
    use crate::plan::PlanEntry;
    use crate::wit::capstan::controller::cache as c;
    use crate::wit::exports::capstan::controller::reconciler as r;
    use serde::de::DeserializeOwned;

    fn decode<O: DeserializeOwned>(json: &str, what: &str) -> Result<O, Error> {
        serde_json::from_str(json)
            .map_err(|e| Error::invalid_spec(format!("cannot decode {what}: {e}")))
    }

    fn read_error(e: c::ReadError) -> Error {
        Error::new(category_in(e.category), e.message)
    }

    pub fn cache_get(
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        let found = c::get(&gvk_out(gvk.clone()), namespace, name).map_err(read_error)?;
        found.map(|json| decode(&json, "cached object")).transpose()
    }

    pub fn cache_list(
        gvk: &Gvk,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let options = c::ListOptions {
            namespace: namespace.map(str::to_owned),
            label_selector: label_selector.map(str::to_owned),
        };
        c::list(&gvk_out(gvk.clone()), &options)
            .map_err(read_error)?
            .iter()
            .map(|json| decode(json, "cached object"))
            .collect()
    }

    fn plan_entry_out(e: PlanEntry) -> t::PlanEntry {
        match e {
            PlanEntry::Apply(v) => t::PlanEntry::Apply(v.to_string()),
            PlanEntry::ApplyWithoutOwnerRef(v) => t::PlanEntry::ApplyWithoutOwnerRef(v.to_string()),
            PlanEntry::Delete(o) => t::PlanEntry::Delete(t::ObjectRef {
                gvk: gvk_out(o.gvk),
                namespace: o.namespace,
                name: o.name,
                uid: None,
            }),
        }
    }

    fn condition_out(c: Condition) -> t::Condition {
        t::Condition {
            condition_type: c.condition_type,
            status: match c.status {
                ConditionStatus::True => t::ConditionStatus::True,
                ConditionStatus::False => t::ConditionStatus::False,
                ConditionStatus::Unknown => t::ConditionStatus::Unknown,
            },
            reason: c.reason,
            message: c.message,
            observability: super::observability_out(c.observability),
        }
    }

    impl<T: Reconciler> r::Guest for Exports<T> {
        fn fetch(obj: String) -> Result<String, t::CategorizedError> {
            let run = || -> Result<String, Error> {
                let obj: T::Object = decode(&obj, "object")?;
                let observation = T::fetch(&obj, &Cache::host())?;
                serde_json::to_string(&observation)
                    .map_err(|e| Error::invalid_spec(format!("cannot encode observation: {e}")))
            };
            run().map_err(error_out)
        }

        fn plan_resources(
            obj: String,
            observation: String,
        ) -> Result<Vec<t::PlanEntry>, t::CategorizedError> {
            let run = || -> Result<Vec<t::PlanEntry>, Error> {
                let obj: T::Object = decode(&obj, "object")?;
                let obs: T::Observation = decode(&observation, "observation")?;
                Ok(T::plan(&obj, &obs)?
                    .into_entries()
                    .into_iter()
                    .map(plan_entry_out)
                    .collect())
            };
            run().map_err(error_out)
        }

        fn get_component_health(obj: String, observation: String) -> Vec<t::ComponentHealth> {
            let decoded = decode::<T::Object>(&obj, "object").and_then(|o| {
                decode::<T::Observation>(&observation, "observation").map(|obs| (o, obs))
            });
            let health = match decoded {
                Ok((o, obs)) => T::health(&o, &obs),
                Err(e) => vec![
                    crate::ComponentHealth::failed("Plugin", "DecodeFailed", e.message.clone())
                        .with_error(e),
                ],
            };
            health
                .into_iter()
                .map(|h| t::ComponentHealth {
                    component: h.component,
                    state: match h.state {
                        HealthState::Ready => t::HealthState::Ready,
                        HealthState::Progressing => t::HealthState::Progressing,
                        HealthState::Degraded => t::HealthState::Degraded,
                        HealthState::Failed => t::HealthState::Failed,
                        HealthState::Unknown => t::HealthState::Unknown,
                    },
                    reason: h.reason,
                    message: h.message,
                    errors: h.errors.into_iter().map(error_out).collect(),
                    requeue_after: h
                        .requeue_after
                        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                })
                .collect()
        }

        fn status(obj: String, observation: String, computed: String) -> r::StatusUpdate {
            let update = match (
                decode::<T::Object>(&obj, "object"),
                decode::<T::Observation>(&observation, "observation"),
                decode::<serde_json::Value>(&computed, "status"),
            ) {
                (Ok(o), Ok(obs), Ok(computed)) => T::status(&o, &obs, &computed),
                _ => StatusUpdate::default(),
            };
            r::StatusUpdate {
                fields: update.fields.to_string(),
                conditions: update.conditions.into_iter().map(condition_out).collect(),
            }
        }

        fn cleanup(obj: String) -> Result<r::CleanupOutcome, t::CategorizedError> {
            let run = || -> Result<r::CleanupOutcome, Error> {
                let obj: T::Object = decode(&obj, "object")?;
                Ok(match T::cleanup(&obj)? {
                    Cleanup::Done => r::CleanupOutcome::Done,
                    Cleanup::RequeueAfter(s) => r::CleanupOutcome::RequeueAfter(s),
                })
            };
            run().map_err(error_out)
        }
    }
}

#[cfg(feature = "reconciler")]
pub use reconciler::{cache_get, cache_list};
