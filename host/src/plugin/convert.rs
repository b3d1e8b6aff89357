//! Conversions between the generated binding types and the host's contract types.

use crate::bindings::capstan::controller::types as t;
use crate::contract as c;
use crate::status;

pub(crate) fn gvk_in(g: t::GroupVersionKind) -> c::Gvk {
    c::Gvk {
        group: g.group,
        version: g.version,
        kind: g.kind,
    }
}

pub(crate) fn gvk_out(g: &c::Gvk) -> t::GroupVersionKind {
    t::GroupVersionKind {
        group: g.group.clone(),
        version: g.version.clone(),
        kind: g.kind.clone(),
    }
}

pub(crate) fn object_ref_out(r: &c::ObjectRef) -> t::ObjectRef {
    t::ObjectRef {
        gvk: gvk_out(&r.gvk),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
    }
}

pub(crate) fn object_ref_in(r: t::ObjectRef) -> c::ObjectRef {
    c::ObjectRef {
        gvk: gvk_in(r.gvk),
        namespace: r.namespace,
        name: r.name,
        uid: r.uid,
    }
}

pub(crate) fn manifest_in(m: t::Manifest) -> c::Manifest {
    c::Manifest {
        name: m.name,
        version: m.version,
        watches: m.watches.into_iter().map(gvk_in).collect(),
        owns: m.owns.into_iter().map(gvk_in).collect(),
        access: m
            .access
            .into_iter()
            .map(|a| (gvk_in(a.gvk), a.verbs.into_iter().map(verb_in).collect()))
            .collect(),
        status_mode: match m.status_mode {
            t::StatusMode::Automatic => c::StatusMode::Automatic,
            t::StatusMode::Decorate => c::StatusMode::Decorate,
            t::StatusMode::Manual => c::StatusMode::Manual,
        },
        finalizer: m.finalizer,
        pod_logs: m.pod_logs,
        observability: observability_in(m.observability),
        phase_timeouts: m
            .phase_timeouts
            .into_iter()
            .map(|p| {
                (
                    p.phase,
                    std::time::Duration::from_secs(u64::from(p.seconds)),
                )
            })
            .collect(),
        wait_for_owner: m.wait_for_owner.map(gvk_in),
    }
}

fn verb_in(v: t::Verb) -> c::Verb {
    match v {
        t::Verb::Get => c::Verb::Get,
        t::Verb::List => c::Verb::List,
        t::Verb::Watch => c::Verb::Watch,
        t::Verb::Create => c::Verb::Create,
        t::Verb::Update => c::Verb::Update,
        t::Verb::Patch => c::Verb::Patch,
        t::Verb::Delete => c::Verb::Delete,
    }
}

pub(crate) fn event_status_in(s: t::EventStatus) -> status::EventStatus {
    use status::EventStatus as S;
    match s {
        t::EventStatus::Skip => S::Skip,
        t::EventStatus::Retry => S::Retry,
        t::EventStatus::MaxRetryReached => S::MaxRetryReached,
        t::EventStatus::Completed => S::Completed,
        t::EventStatus::Failure => S::Failure,
        t::EventStatus::Processing => S::Processing,
        t::EventStatus::PartialCompleted => S::PartialCompleted,
    }
}

fn event_status_out(s: status::EventStatus) -> t::EventStatus {
    use status::EventStatus as S;
    match s {
        S::Skip => t::EventStatus::Skip,
        S::Retry => t::EventStatus::Retry,
        S::MaxRetryReached => t::EventStatus::MaxRetryReached,
        S::Completed => t::EventStatus::Completed,
        S::Failure => t::EventStatus::Failure,
        S::Processing => t::EventStatus::Processing,
        S::PartialCompleted => t::EventStatus::PartialCompleted,
    }
}

pub(crate) fn process_status_in(s: t::EventProcessStatus) -> status::EventProcessStatus {
    status::EventProcessStatus {
        status: event_status_in(s.status),
        messages: s.messages.into_iter().map(|m| (m.key, m.value)).collect(),
        retry: s.retry,
        max_retry: s.max_retry,
        error: s.error,
    }
}

pub(crate) fn process_status_out(s: &status::EventProcessStatus) -> t::EventProcessStatus {
    t::EventProcessStatus {
        status: event_status_out(s.status),
        messages: s
            .messages
            .iter()
            .map(|(key, value)| t::Message {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        retry: s.retry,
        max_retry: s.max_retry,
        error: s.error.clone(),
    }
}

pub(crate) fn category_in(c: t::ErrorCategory) -> c::ErrorCategory {
    match c {
        t::ErrorCategory::Infrastructure => c::ErrorCategory::Infrastructure,
        t::ErrorCategory::Auth => c::ErrorCategory::Auth,
        t::ErrorCategory::InvalidSpec => c::ErrorCategory::InvalidSpec,
        t::ErrorCategory::MissingUpstreamDependency => c::ErrorCategory::MissingUpstreamDependency,
        t::ErrorCategory::MissingDownstreamDependency => {
            c::ErrorCategory::MissingDownstreamDependency
        }
        t::ErrorCategory::ResourceExhaustion => c::ErrorCategory::ResourceExhaustion,
    }
}

pub(crate) fn category_out(c: c::ErrorCategory) -> t::ErrorCategory {
    match c {
        c::ErrorCategory::Infrastructure => t::ErrorCategory::Infrastructure,
        c::ErrorCategory::Auth => t::ErrorCategory::Auth,
        c::ErrorCategory::InvalidSpec => t::ErrorCategory::InvalidSpec,
        c::ErrorCategory::MissingUpstreamDependency => t::ErrorCategory::MissingUpstreamDependency,
        c::ErrorCategory::MissingDownstreamDependency => {
            t::ErrorCategory::MissingDownstreamDependency
        }
        c::ErrorCategory::ResourceExhaustion => t::ErrorCategory::ResourceExhaustion,
    }
}

pub(crate) fn error_in(e: t::CategorizedError) -> c::CategorizedError {
    c::CategorizedError {
        category: category_in(e.category),
        message: e.message,
    }
}

pub(crate) fn health_in(h: t::ComponentHealth) -> c::ComponentHealth {
    c::ComponentHealth {
        component: h.component,
        state: match h.state {
            t::HealthState::Ready => c::HealthState::Ready,
            t::HealthState::Progressing => c::HealthState::Progressing,
            t::HealthState::Degraded => c::HealthState::Degraded,
            t::HealthState::Failed => c::HealthState::Failed,
            t::HealthState::Unknown => c::HealthState::Unknown,
        },
        reason: h.reason,
        message: h.message,
        errors: h.errors.into_iter().map(error_in).collect(),
        requeue_after: h
            .requeue_after
            .map(|s| std::time::Duration::from_secs(u64::from(s))),
    }
}

pub(crate) fn condition_in(c: t::Condition) -> c::Condition {
    c::Condition {
        condition_type: c.condition_type,
        status: match c.status {
            t::ConditionStatus::True => c::ConditionStatus::True,
            t::ConditionStatus::False => c::ConditionStatus::False,
            t::ConditionStatus::Unknown => c::ConditionStatus::Unknown,
        },
        reason: c.reason,
        message: c.message,
        observability: observability_in(c.observability),
    }
}

fn observability_in(o: t::Observability) -> c::Observability {
    match o {
        t::Observability::Silent => c::Observability::Silent,
        t::Observability::Info => c::Observability::Info,
        t::Observability::Warning => c::Observability::Warning,
        t::Observability::Error => c::Observability::Error,
    }
}
