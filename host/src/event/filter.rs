//! Filters: the host applies a filter's verdict, so filters never acknowledge events themselves.
//!
//! A [`Filter`] inspects an event (it may modify its payload in place) and returns a [`Verdict`];
//! [`apply`] turns the verdict into zero or more events and acknowledges what the filter consumed:
//!
//! | verdict | result | acknowledgement |
//! |---|---|---|
//! | [`Verdict::Pass`] | the event, possibly modified | none |
//! | [`Verdict::Drop`] | nothing | the event is acknowledged |
//! | [`Verdict::Recontext`] | one child with the new context, sharing the payload | the event |
//! | [`Verdict::Split`] | one child per part | the event (no parts = drop) |
//!
//! A filter error fails the event ([`EventError::Filter`]), which reports to the tree's `on_error`.

use std::fmt;

use super::{BoxError, Context, Event, EventError, SharedError};

/// What a [`Filter`] decided for an event.
pub enum Verdict<P, C = Context> {
    /// Keep the event (with any in-place change the filter made).
    Pass,
    /// Filter the event out; the host acknowledges it.
    Drop,
    /// Replace the event by a child with this context, sharing the payload.
    Recontext(C),
    /// Replace the event by one child per `(payload, context)` part.
    Split(Vec<(P, C)>),
}

impl<P, C> fmt::Debug for Verdict<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("Pass"),
            Self::Drop => f.write_str("Drop"),
            Self::Recontext(_) => f.write_str("Recontext(..)"),
            Self::Split(parts) => write!(f, "Split({} parts)", parts.len()),
        }
    }
}

/// A filter of events with payload `P` and context `C`.
///
/// Any `Fn(&mut Event<P, C>) -> Result<Verdict<P, C>, BoxError>` closure is a filter.
pub trait Filter<P, C = Context>: Send + Sync {
    /// Inspects (and possibly modifies) `event` and decides its fate.
    ///
    /// # Errors
    ///
    /// Any error fails the event; see [`apply`].
    fn filter(&self, event: &mut Event<P, C>) -> Result<Verdict<P, C>, BoxError>;
}

impl<P, C, F> Filter<P, C> for F
where
    F: Fn(&mut Event<P, C>) -> Result<Verdict<P, C>, BoxError> + Send + Sync,
{
    fn filter(&self, event: &mut Event<P, C>) -> Result<Verdict<P, C>, BoxError> {
        self(event)
    }
}

/// Runs `filter` on `event` and applies its verdict; see the [module documentation](self).
///
/// An event the filter acknowledged or failed itself is not passed on.
///
/// # Errors
///
/// [`EventError::Acknowledged`] if `event` had already ended; [`EventError::Filter`] if the filter
/// failed (the event is then failed with the same error).
pub fn apply<P, C, F>(filter: &F, mut event: Event<P, C>) -> Result<Vec<Event<P, C>>, EventError>
where
    F: Filter<P, C> + ?Sized,
{
    if event.is_acknowledged() {
        return Err(EventError::Acknowledged);
    }
    let verdict = match filter.filter(&mut event) {
        Ok(verdict) => verdict,
        Err(error) => {
            let error = EventError::Filter(SharedError::from(error));
            event.fail_with(error.clone());
            return Err(error);
        }
    };
    if event.is_acknowledged() {
        return Ok(Vec::new());
    }
    let out = match verdict {
        Verdict::Pass => return Ok(vec![event]),
        Verdict::Drop => Vec::new(),
        Verdict::Recontext(context) => vec![event.with_context(context)?],
        Verdict::Split(parts) => parts
            .into_iter()
            .map(|(payload, context)| event.split_child(payload, context))
            .collect::<Result<Vec<_>, _>>()?,
    };
    event.ack();
    Ok(out)
}

/// Filters applied in sequence; every event produced by one filter goes through the next.
pub struct FilterChain<P, C = Context> {
    filters: Vec<Box<dyn Filter<P, C>>>,
}

impl<P, C> Default for FilterChain<P, C> {
    fn default() -> Self {
        Self {
            filters: Vec::new(),
        }
    }
}

impl<P, C> fmt::Debug for FilterChain<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterChain")
            .field("filters", &self.filters.len())
            .finish()
    }
}

impl<P, C> FilterChain<P, C> {
    /// An empty chain (passes every event).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `filter` to the chain.
    #[must_use]
    pub fn then(mut self, filter: impl Filter<P, C> + 'static) -> Self {
        self.filters.push(Box::new(filter));
        self
    }

    /// Number of filters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether the chain has no filter.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Runs `event` through every filter and returns the surviving events.
    ///
    /// # Errors
    ///
    /// The first error of [`apply`]; every other in-flight event of this run is then failed with
    /// the same error, so nothing is left un-acknowledged.
    pub fn run(&self, event: Event<P, C>) -> Result<Vec<Event<P, C>>, EventError> {
        let mut events = vec![event];
        for filter in &self.filters {
            let mut next = Vec::with_capacity(events.len());
            let mut pending = events.into_iter();
            while let Some(event) = pending.next() {
                match apply(filter.as_ref(), event) {
                    Ok(out) => next.extend(out),
                    Err(error) => {
                        for mut event in pending.chain(next) {
                            event.fail_with(error.clone());
                        }
                        return Err(error);
                    }
                }
            }
            events = next;
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Probe {
        handled: AtomicUsize,
        errors: Mutex<Vec<String>>,
    }

    fn root(probe: &Arc<Probe>, payload: &str) -> Event<String> {
        let (h, e) = (Arc::clone(probe), Arc::clone(probe));
        Event::with_ack(
            payload.to_owned(),
            Context::new().with_trace_id("t"),
            move || {
                h.handled.fetch_add(1, Ordering::SeqCst);
            },
            move |err| e.errors.lock().expect("lock").push(err.to_string()),
        )
    }

    fn ack_all(events: Vec<Event<String>>) {
        for mut event in events {
            event.ack();
        }
    }

    #[test]
    fn pass_through() {
        let probe = Arc::new(Probe::default());
        let pass = |_: &mut Event<String>| Ok(Verdict::Pass);
        let out = apply(&pass, root(&probe, "a")).expect("filter ok");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload(), "a");
        assert_eq!(probe.handled.load(Ordering::SeqCst), 0);
        ack_all(out);
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn drop_acknowledges() {
        let probe = Arc::new(Probe::default());
        let drop_all = |_: &mut Event<String>| Ok(Verdict::Drop);
        let out = apply(&drop_all, root(&probe, "a")).expect("filter ok");
        assert!(out.is_empty());
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
        assert!(probe.errors.lock().expect("lock").is_empty());
    }

    #[test]
    fn modify_payload_in_place() {
        let probe = Arc::new(Probe::default());
        let upper = |e: &mut Event<String>| {
            let upper = e.payload().to_uppercase();
            e.set_payload(upper)?;
            Ok(Verdict::Pass)
        };
        let out = apply(&upper, root(&probe, "abc")).expect("filter ok");
        assert_eq!(out[0].payload(), "ABC");
        ack_all(out);
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn recontext_replaces_the_context() {
        let probe = Arc::new(Probe::default());
        let span =
            |e: &mut Event<String>| Ok(Verdict::Recontext(e.context().clone().with_span_id("s-2")));
        let out = apply(&span, root(&probe, "abc")).expect("filter ok");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].context().span_id(), Some("s-2"));
        assert_eq!(out[0].context().trace_id(), Some("t"));
        assert_eq!(out[0].payload(), "abc");
        assert_eq!(probe.handled.load(Ordering::SeqCst), 0);
        ack_all(out);
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn split_into_parts_and_empty_split_is_a_drop() {
        let probe = Arc::new(Probe::default());
        let words = |e: &mut Event<String>| {
            let parts = e
                .payload()
                .split(' ')
                .enumerate()
                .map(|(i, w)| {
                    (
                        w.to_owned(),
                        e.context().clone().with("part", i.to_string()),
                    )
                })
                .collect();
            Ok(Verdict::Split(parts))
        };
        let out = apply(&words, root(&probe, "a b c")).expect("filter ok");
        let payloads: Vec<_> = out.iter().map(|e| e.payload().as_str()).collect();
        assert_eq!(payloads, ["a", "b", "c"]);
        assert_eq!(out[2].context().get("part"), Some("2"));
        let mut out = out.into_iter();
        ack_all(out.by_ref().take(2).collect());
        assert_eq!(probe.handled.load(Ordering::SeqCst), 0);
        ack_all(out.collect());
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);

        let probe = Arc::new(Probe::default());
        let none = |_: &mut Event<String>| Ok(Verdict::Split(Vec::new()));
        assert!(apply(&none, root(&probe, "x")).expect("ok").is_empty());
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn filter_error_fails_the_event() {
        let probe = Arc::new(Probe::default());
        let broken = |_: &mut Event<String>| Err::<Verdict<String>, BoxError>("bad input".into());
        let err = apply(&broken, root(&probe, "x")).expect_err("filter fails");
        assert_eq!(err.to_string(), "filter rejected event: bad input");
        assert_eq!(
            *probe.errors.lock().expect("lock"),
            vec!["filter rejected event: bad input"]
        );
        assert_eq!(probe.handled.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_filter_that_acks_itself_passes_nothing_on() {
        let probe = Arc::new(Probe::default());
        let eager = |e: &mut Event<String>| {
            e.ack();
            Ok(Verdict::Pass)
        };
        assert!(apply(&eager, root(&probe, "x")).expect("ok").is_empty());
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn chain_runs_filters_in_sequence() {
        let probe = Arc::new(Probe::default());
        let chain = FilterChain::new()
            .then(|e: &mut Event<String>| {
                let parts = e
                    .payload()
                    .split(' ')
                    .map(|w| (w.to_owned(), e.context().clone()))
                    .collect();
                Ok(Verdict::Split(parts))
            })
            .then(|e: &mut Event<String>| {
                Ok(if e.payload().is_empty() {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                })
            })
            .then(|e: &mut Event<String>| {
                e.payload_mut()?.push('!');
                Ok(Verdict::Pass)
            });
        assert_eq!(chain.len(), 3);
        let out = chain.run(root(&probe, "a  b")).expect("chain ok");
        let payloads: Vec<_> = out.iter().map(|e| e.payload().as_str()).collect();
        assert_eq!(payloads, ["a!", "b!"]);
        ack_all(out);
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);

        // An error part-way fails everything in flight and reports once.
        let probe = Arc::new(Probe::default());
        let failing = FilterChain::new()
            .then(|e: &mut Event<String>| {
                Ok(Verdict::Split(vec![
                    ("ok".into(), e.context().clone()),
                    ("bad".into(), e.context().clone()),
                    ("ok".into(), e.context().clone()),
                ]))
            })
            .then(|e: &mut Event<String>| {
                if e.payload() == "bad" {
                    Err("bad part".into())
                } else {
                    Ok(Verdict::Pass)
                }
            });
        assert!(failing.run(root(&probe, "x")).is_err());
        assert_eq!(probe.errors.lock().expect("lock").len(), 1);
        assert_eq!(probe.handled.load(Ordering::SeqCst), 0);
    }
}
