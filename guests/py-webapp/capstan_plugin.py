"""Helpers for Capstan plugins written in Python: the contract's defaults, in one place.

The WIT records have no optional fields: every field of a manifest, an event status or a
component health must be given. These functions fill what docs/PLUGINS.md calls the defaults,
so that a plugin names only what differs. Pure Python: tests import it natively.
"""

from wit_world.imports import types


def gvk(group, version, kind):
    """A group-version-kind; `group` is empty for the core group (ConfigMap, Service...)."""
    return types.GroupVersionKind(group=group, version=version, kind=kind)


def manifest(name, version, **fields):
    """A manifest with every field at its default, then `fields` (snake_case names) over them."""
    m = types.Manifest(
        name=name,
        version=version,
        watches=[],
        owns=[],
        access=[],
        status_mode=types.StatusMode.AUTOMATIC,
        finalizer=False,
        pod_logs=False,
        observability=types.Observability.INFO,
        phase_timeouts=[],
        wait_for_owner=None,
        object_kind=None,
        events=types.EventFilter(
            namespaces=[], label_selector=None, changes=types.ChangeFilter.ALL
        ),
    )
    for key, value in fields.items():
        if not hasattr(m, key):
            raise TypeError(f"a manifest has no field {key!r}")
        setattr(m, key, value)
    return m


def event_status(status=types.EventStatus.COMPLETED, messages=None, retry=False, max_retry=0, error=None):
    """An event-process-status: `completed`, no messages, no retry, host default retries."""
    return types.EventProcessStatus(
        status=status,
        messages=[types.Message(key=k, value=v) for k, v in (messages or {}).items()],
        retry=retry,
        max_retry=max_retry,
        error=error,
    )


def health(component, state, reason, message="", errors=None, requeue_after=None):
    """A component-health; `component` and `reason` in CamelCase."""
    return types.ComponentHealth(
        component=component,
        state=state,
        reason=reason,
        message=message,
        errors=errors or [],
        requeue_after=requeue_after,
    )


def error(category, message):
    """The exception a result-returning export raises to return `err(categorized-error)`."""
    from componentize_py_types import Err

    return Err(types.CategorizedError(category=category, message=message))
