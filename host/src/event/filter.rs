//! Filters: the host applies a filter's verdict, so filters never acknowledge events themselves.
//!
//! A [`Filter`] inspects an event (it may modify its payload in place) and returns a [`Verdict`];
//! [`apply`] turns the verdict into the event or nothing, and acknowledges what the filter
//! consumed:
//!
//! | verdict | result | acknowledgement |
//! |---|---|---|
//! | [`Verdict::Pass`] | the event, possibly modified | none |
//! | [`Verdict::Drop`] | nothing | the event is acknowledged |
//!
//! A filter error fails the event ([`EventError::Filter`]), which reports to the tree's `on_error`.
//!
//! The dispatcher runs one filter per handler plugin, built from the plugin's manifest (its event
//! filter), on the child event of every change before the plugin's lane sees it.

use super::{BoxError, Context, Event, EventError, SharedError};

/// What a [`Filter`] decided for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the event (with any in-place change the filter made).
    Pass,
    /// Filter the event out; the host acknowledges it.
    Drop,
}

/// A filter of events with payload `P` and context `C`.
///
/// Any `Fn(&mut Event<P, C>) -> Result<Verdict, BoxError>` closure is a filter.
pub trait Filter<P, C = Context>: Send + Sync {
    /// Inspects (and possibly modifies) `event` and decides its fate.
    ///
    /// # Errors
    ///
    /// Any error fails the event; see [`apply`].
    fn filter(&self, event: &mut Event<P, C>) -> Result<Verdict, BoxError>;
}

impl<P, C, F> Filter<P, C> for F
where
    F: Fn(&mut Event<P, C>) -> Result<Verdict, BoxError> + Send + Sync,
{
    fn filter(&self, event: &mut Event<P, C>) -> Result<Verdict, BoxError> {
        self(event)
    }
}

/// Runs `filter` on `event` and applies its verdict: the event to pass on, or `None` when the
/// filter dropped it (it is then acknowledged); see the [module documentation](self).
///
/// An event the filter acknowledged or failed itself is not passed on.
///
/// # Errors
///
/// [`EventError::Acknowledged`] if `event` had already ended; [`EventError::Filter`] if the filter
/// failed (the event is then failed with the same error).
pub fn apply<P, C, F>(filter: &F, mut event: Event<P, C>) -> Result<Option<Event<P, C>>, EventError>
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
        return Ok(None);
    }
    match verdict {
        Verdict::Pass => Ok(Some(event)),
        Verdict::Drop => {
            event.ack();
            Ok(None)
        }
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

    #[test]
    fn pass_through() {
        let probe = Arc::new(Probe::default());
        let pass = |_: &mut Event<String>| Ok(Verdict::Pass);
        let mut out = apply(&pass, root(&probe, "a"))
            .expect("filter ok")
            .expect("passed");
        assert_eq!(out.payload(), "a");
        assert_eq!(probe.handled.load(Ordering::SeqCst), 0);
        out.ack();
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn drop_acknowledges() {
        let probe = Arc::new(Probe::default());
        let drop_all = |_: &mut Event<String>| Ok(Verdict::Drop);
        let out = apply(&drop_all, root(&probe, "a")).expect("filter ok");
        assert!(out.is_none());
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
        let mut out = apply(&upper, root(&probe, "abc"))
            .expect("filter ok")
            .expect("passed");
        assert_eq!(out.payload(), "ABC");
        out.ack();
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn filter_error_fails_the_event() {
        let probe = Arc::new(Probe::default());
        let broken = |_: &mut Event<String>| Err::<Verdict, BoxError>("bad input".into());
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
        assert!(apply(&eager, root(&probe, "x")).expect("ok").is_none());
        assert_eq!(probe.handled.load(Ordering::SeqCst), 1);
    }
}
