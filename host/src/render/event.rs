//! A handler's render: the object handed to the plugin's handler as one event (`capstan render
//! --event`), on the instance, status channel and `on-status` calls `capstan run` gives an event.

use super::{Observed, RenderError, prepare};
use crate::contract::{EventProcessStatus, EventStatus, ObjectRef};
use crate::plugin::{HandlerEvent, Plugin};
use crate::status::Delivery;
use serde_json::Value;

/// What a handler did with one event.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The plugin.
    pub plugin: String,
    /// The object of the event.
    pub object: ObjectRef,
    /// The event: `added`, `updated` or `deleted`.
    pub event: &'static str,
    /// What the handler returned.
    pub status: EventStatus,
    /// The statuses it sent on the event's channel, with how each was delivered.
    pub statuses: Vec<(EventProcessStatus, Delivery)>,
    /// Whether it left the channel open (the host closes it, with a warning).
    pub left_open: bool,
}

/// The kind of event a handler is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventKind {
    /// The object appeared.
    Added,
    /// The object changed (the old state is its observed one, if any, else itself).
    Modified,
    /// The object is gone.
    Deleted,
}

/// Deliver `object` to `plugin`'s handler as one `event`, offline (the handler's instance, its
/// status channel and `on-status` calls as `capstan run` makes them). For `modified`, the old
/// state is the observed object of the same name, if any, else the object itself.
///
/// # Errors
/// [`RenderError::Plugin`] when the call fails.
pub async fn handle(
    plugin: &Plugin,
    object: &Value,
    event: EventKind,
    observed: &Observed,
) -> Result<Handled, RenderError> {
    if !plugin.info().world.handles() {
        return Err(RenderError::Role {
            plugin: plugin.name().to_owned(),
            role: "handler",
        });
    }
    let (value, oref, _) = prepare(object, &Observed::default())?;
    let json = value.to_string();
    let (name, event) = match event {
        EventKind::Added => ("added", HandlerEvent::Added(json)),
        EventKind::Deleted => ("deleted", HandlerEvent::Deleted(json)),
        EventKind::Modified => {
            let mut key = oref.clone();
            key.uid = None;
            let old = observed
                .get(&key)
                .map_or_else(|| json.clone(), Value::to_string);
            ("updated", HandlerEvent::Updated { new: json, old })
        }
    };
    let outcome = plugin
        .handle(&oref, event)
        .await
        .map_err(|source| RenderError::Plugin {
            plugin: plugin.name().to_owned(),
            object: oref.to_string(),
            source: Box::new(source),
        })?;
    Ok(Handled {
        plugin: plugin.name().to_owned(),
        object: oref,
        event: name,
        status: outcome.status,
        statuses: outcome.statuses,
        left_open: outcome.left_open,
    })
}
